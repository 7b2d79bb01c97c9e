import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Db } from '../core/store/db.ts';
import type { Database } from '../core/store/schema.ts';
import { fromJson, toJson } from '../core/store/db.ts';
import { HearthError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Logger } from '../core/logger.ts';
import { EXTENSIONS, openWriter, type ExportFormat } from './export-writers.ts';

export type ExportStatus = 'queued' | 'running' | 'done' | 'failed';

export interface ExportInput {
  product: string;
  properties: string[];
  from: number;
  to: number;
  format: ExportFormat;
}

export interface ExportView {
  id: string;
  product: string;
  properties: string[];
  from: string;
  to: string;
  format: ExportFormat;
  status: ExportStatus;
  progress: { devices: number; devicesDone: number; rows: number; bytes: number };
  error: string | null;
  createdBy: string;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  /** When the file and the job are deleted (done or failed jobs). */
  expiresAt: string | null;
  /** Where the file is fetched (with the operator's token), once done. */
  downloadUrl: string | null;
}

/** A job as the store holds it. */
type Row = Database['export_jobs'];

const iso = (n: number | null) => (n == null ? null : new Date(Number(n)).toISOString());

/** Devices read per page when a job walks the product. */
const DEVICE_PAGE = 200;

export interface ExportJobsDeps {
  db: Db;
  log: Logger;
  /** Where finished files are kept (HEARTH_EXPORTS_DIR, default `<dataDir>/exports`). */
  dir: string;
  nodeId: string;
  /** Whether this node runs jobs (workers do). */
  runs: () => boolean;
  devices: { idsOfProduct(product: string, afterId: string, limit: number): Promise<string[]> };
  history: {
    exportPoints(deviceId: string, properties: readonly string[], from: number, to: number): AsyncIterable<{ ts: number; property: string; value: unknown }>;
  };
  /** The product's boolean properties (history keeps them as 0/1; the export writes true/false). */
  booleans(product: string): Promise<ReadonlySet<string>>;
  /** How long a finished file is kept (ms; HEARTH_EXPORTS_TTL). */
  ttlMs: number;
  /** Between two looks for work (HEARTH_EXPORTS_POLL_MS). */
  pollMs: number;
  /** A running job's claim lasts this long unless renewed (a node that dies hands it on after it). */
  leaseMs?: number;
  audit?: { record(e: { actor: string; action: string; targetType: string; targetId: string; details?: Record<string, unknown> }): void };
}

/**
 * Fleet export jobs (docs/telemetry.md): the raw points of a product's devices over a range,
 * written in the background to one file (CSV, NDJSON or Parquet) in the exports directory.
 *
 * A job is a row; any node that runs jobs claims a queued one with a compare-and-set on its lease
 * and renews the lease as it goes, so exactly one node writes it. A node that stops gives its job
 * back (lease 0) and one that dies loses it when the lease runs out: the next claimer writes the
 * file again from the start (writes go to `<id>.part`, renamed when complete). Finished jobs and
 * their files are deleted `ttlMs` after they end.
 */
export class ExportJobs {
  private timer: NodeJS.Timeout | undefined;
  private running: { id: string; stopped: boolean; done: Promise<void> } | undefined;
  private polling: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly deps: ExportJobsDeps) {}

  private get leaseMs(): number {
    return this.deps.leaseMs ?? 30_000;
  }

  async start(): Promise<void> {
    this.stopped = false;
    await mkdir(this.deps.dir, { recursive: true });
    this.timer = setInterval(() => this.poke(), this.deps.pollMs);
    this.timer.unref();
  }

  /** Stops looking for work; a job under way is given back for the next node (or start) to redo. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.polling;
    const r = this.running;
    if (r) {
      r.stopped = true;
      await r.done;
    }
  }

  async create(actor: string, input: ExportInput): Promise<ExportView> {
    const id = newId('exp');
    const row: Row = {
      id,
      product_key: input.product,
      properties: toJson(input.properties),
      from_ts: input.from,
      to_ts: input.to,
      format: input.format,
      status: 'queued',
      devices_total: 0,
      devices_done: 0,
      rows: 0,
      bytes: 0,
      error: null,
      created_by: actor,
      created_at: Date.now(),
      started_at: null,
      finished_at: null,
      expires_at: null,
      owner: null,
      lease_until: 0,
    };
    await this.deps.db.insertInto('export_jobs').values(row).execute();
    this.deps.audit?.record({ actor, action: 'export.create', targetType: 'export', targetId: id, details: { ...input } });
    this.poke();
    return this.view(row);
  }

  async get(id: string): Promise<ExportView> {
    return this.view(await this.row(id));
  }

  async list(limit: number): Promise<ExportView[]> {
    const rows = await this.deps.db.selectFrom('export_jobs').selectAll().orderBy('created_at', 'desc').orderBy('id').limit(limit).execute();
    return rows.map((r) => this.view(r));
  }

  /** The finished file of a job: its path, format and size, or a 404/409 saying why not. */
  async file(id: string): Promise<{ path: string; format: ExportFormat; size: number; name: string }> {
    const r = await this.row(id);
    if (r.status !== 'done') throw new HearthError('E_CONFLICT', `export ${id} is ${r.status}: its file is there once it is done`);
    const name = `${r.id}.${EXTENSIONS[r.format as ExportFormat]}`;
    const path = join(this.deps.dir, name);
    const size = await stat(path).then(
      (s) => s.size,
      () => {
        throw new HearthError('E_NOT_FOUND', `the file of export ${id} is not on this node (a cluster needs a shared HEARTH_EXPORTS_DIR)`);
      },
    );
    return { path, format: r.format as ExportFormat, size, name };
  }

  private async row(id: string): Promise<Row> {
    const r = await this.deps.db.selectFrom('export_jobs').selectAll().where('id', '=', id).executeTakeFirst();
    if (!r) throw new HearthError('E_NOT_FOUND', `no export ${id}`);
    return r;
  }

  private view(r: Row): ExportView {
    return {
      id: r.id,
      product: r.product_key,
      properties: fromJson<string[]>(r.properties),
      from: new Date(Number(r.from_ts)).toISOString(),
      to: new Date(Number(r.to_ts)).toISOString(),
      format: r.format as ExportFormat,
      status: r.status as ExportStatus,
      progress: { devices: Number(r.devices_total), devicesDone: Number(r.devices_done), rows: Number(r.rows), bytes: Number(r.bytes) },
      error: r.error,
      createdBy: r.created_by,
      createdAt: new Date(Number(r.created_at)).toISOString(),
      startedAt: iso(r.started_at),
      finishedAt: iso(r.finished_at),
      expiresAt: iso(r.expires_at),
      downloadUrl: r.status === 'done' ? `/api/v1/exports/${r.id}/download` : null,
    };
  }

  // ---------------------------------------------------------------- running

  /** Looks for work now (when a job was made, and every `pollMs`). */
  poke(): void {
    if (this.stopped || this.polling || !this.deps.runs()) return;
    this.polling = this.poll()
      .catch((err) => this.deps.log.error({ err }, 'export jobs: looking for work failed; trying again'))
      .finally(() => (this.polling = undefined));
  }

  private async poll(): Promise<void> {
    await this.expire();
    if (this.running || this.stopped) return;
    const { db, nodeId } = this.deps;
    const now = Date.now();
    const next = await db
      .selectFrom('export_jobs')
      .select(['id', 'lease_until'])
      .where('status', 'in', ['queued', 'running'])
      .where('lease_until', '<', now)
      .orderBy('created_at')
      .limit(1)
      .executeTakeFirst();
    if (!next) return;
    const claimed = await db
      .updateTable('export_jobs')
      .set({ owner: nodeId, lease_until: now + this.leaseMs, status: 'running', started_at: now })
      .where('id', '=', next.id)
      .where('lease_until', '=', next.lease_until)
      .where('status', 'in', ['queued', 'running'])
      .executeTakeFirst();
    if (Number(claimed.numUpdatedRows) !== 1) return;
    const r = { id: next.id, stopped: false } as { id: string; stopped: boolean; done: Promise<void> };
    r.done = this.run(r)
      .catch(async (err: unknown) => {
        this.deps.log.error({ err, exportId: r.id }, 'export failed');
        await db
          .updateTable('export_jobs')
          .set({ status: 'failed', error: err instanceof Error ? err.message : String(err), finished_at: Date.now(), expires_at: Date.now() + this.deps.ttlMs })
          .where('id', '=', r.id)
          .where('owner', '=', nodeId)
          .execute()
          .catch(() => undefined);
      })
      .finally(() => {
        this.running = undefined;
        this.poke();
      });
    this.running = r;
  }

  /** Renews the claim and records progress; false when the job is no longer this node's. */
  private async renew(id: string, progress: Partial<Pick<Row, 'devices_total' | 'devices_done' | 'rows' | 'bytes'>>): Promise<boolean> {
    const res = await this.deps.db
      .updateTable('export_jobs')
      .set({ ...progress, lease_until: Date.now() + this.leaseMs })
      .where('id', '=', id)
      .where('owner', '=', this.deps.nodeId)
      .where('status', '=', 'running')
      .executeTakeFirst();
    return Number(res.numUpdatedRows) === 1;
  }

  private async run(r: { id: string; stopped: boolean }): Promise<void> {
    const { db, dir, devices, history, nodeId } = this.deps;
    const job = await this.row(r.id);
    const props = fromJson<string[]>(job.properties);
    const from = Number(job.from_ts);
    const to = Number(job.to_ts);
    const format = job.format as ExportFormat;
    const booleans = await this.deps.booleans(job.product_key);
    const final = join(dir, `${job.id}.${EXTENSIONS[format]}`);
    const part = `${final}.part`;
    // Counted first, so that progress has a total.
    let total = 0;
    for (let after = ''; ; ) {
      const ids = await devices.idsOfProduct(job.product_key, after, 1000);
      if (ids.length === 0) break;
      total += ids.length;
      after = ids[ids.length - 1];
    }
    if (!(await this.renew(job.id, { devices_total: total, devices_done: 0, rows: 0, bytes: 0 }))) return;
    const out = await openWriter(format, part);
    let rows = 0;
    let done = 0;
    let lastRenew = Date.now();
    let closed = false;
    try {
      for (let after = ''; ; ) {
        const ids = await devices.idsOfProduct(job.product_key, after, DEVICE_PAGE);
        if (ids.length === 0) break;
        after = ids[ids.length - 1];
        for (const deviceId of ids) {
          for await (const pt of history.exportPoints(deviceId, props, from, to)) {
            const value = booleans.has(pt.property) && typeof pt.value === 'number' ? pt.value !== 0 : pt.value;
            await out.write({ ts: pt.ts, deviceId, property: pt.property, value });
            rows++;
          }
          done++;
          if (r.stopped || this.stopped) {
            // Given back: the next claimer (another node, or this one after its restart) starts again.
            await db.updateTable('export_jobs').set({ lease_until: 0 }).where('id', '=', job.id).where('owner', '=', nodeId).execute();
            return;
          }
          if (Date.now() - lastRenew > 500) {
            lastRenew = Date.now();
            const bytes = await stat(part).then(
              (s) => s.size,
              () => 0,
            );
            if (!(await this.renew(job.id, { devices_done: done, rows, bytes }))) return;
          }
        }
      }
      await out.close();
      closed = true;
      await rename(part, final);
      const bytes = (await stat(final)).size;
      const now = Date.now();
      const res = await db
        .updateTable('export_jobs')
        .set({ status: 'done', devices_done: done, rows, bytes, finished_at: now, expires_at: now + this.deps.ttlMs, lease_until: 0 })
        .where('id', '=', job.id)
        .where('owner', '=', nodeId)
        .where('status', '=', 'running')
        .executeTakeFirst();
      if (Number(res.numUpdatedRows) === 1) this.deps.log.info({ exportId: job.id, rows, bytes }, 'export written');
    } finally {
      if (!closed) {
        await out.close().catch(() => undefined);
        await rm(part, { force: true });
      }
    }
  }

  /** Deletes finished jobs past their time, and their files (idempotent: any node may). */
  private async expire(): Promise<void> {
    const { db, dir } = this.deps;
    const old = await db
      .selectFrom('export_jobs')
      .select(['id', 'format'])
      .where('status', 'in', ['done', 'failed'])
      .where('expires_at', '<', Date.now())
      .limit(100)
      .execute();
    for (const o of old) {
      await rm(join(dir, `${o.id}.${EXTENSIONS[o.format as ExportFormat]}`), { force: true });
      await db.deleteFrom('export_jobs').where('id', '=', o.id).execute();
    }
  }
}
