import type { Db } from '../core/store/db.ts';
import { fromJson, toJson } from '../core/store/db.ts';
import { HearthError, isHearthError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Logger } from '../core/logger.ts';
import type { ShardListener } from '../core/cluster/shards.ts';
import { shardOf } from '../core/cluster/shards.ts';
import type { AuditEntry } from '../audit/audit-service.ts';
import type { DeviceRecord } from '../devices/device-service.ts';
import { queryOf, type FleetGroups } from './fleet-groups.ts';

/** What a bulk job does to each device. */
export type JobSpec =
  | { kind: 'command'; action: string; params?: Record<string, unknown>; timeoutMs?: number }
  | { kind: 'desired'; values: Record<string, unknown> }
  | { kind: 'tags'; tags: Record<string, string | null> }
  | { kind: 'disable' }
  | { kind: 'enable' }
  | { kind: 'delete'; purge?: boolean; children?: 'delete' | 'detach' };

/** Which devices: a fleet query, a fleet group, or a list of ids (resolved once, when the job is made). */
export type JobTarget = { query: string } | { groupId: string } | { deviceIds: string[] };

export type JobStatus = 'queued' | 'running' | 'done' | 'cancelled';
export type TargetStatus = 'pending' | 'running' | 'ok' | 'failed' | 'cancelled';

export interface JobView {
  id: string;
  kind: JobSpec['kind'];
  spec: JobSpec;
  target: JobTarget;
  /** Devices started per second. */
  rate: number;
  status: JobStatus;
  total: number;
  progress: Record<TargetStatus, number>;
  createdBy: string;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

/**
 * Why a job's `job` event was sent on the live stream: made, its first round began, a round of
 * devices finished (`progress`), it finished, or it was cancelled.
 */
export type JobChange = 'created' | 'started' | 'progress' | 'done' | 'cancelled';

export interface TargetView {
  deviceId: string;
  status: TargetStatus;
  error: string | null;
  result: Record<string, unknown> | null;
  finishedAt: string | null;
}

/** The largest job. */
export const MAX_JOB_DEVICES = 100_000;

/** How a job acts on one device; each throws a HearthError (its code is the device's result) or returns a result. */
export interface JobEffects {
  command(
    id: string,
    input: { action: string; params?: Record<string, unknown>; timeoutMs?: number },
    source: string,
  ): Promise<{ ok: boolean; result?: Record<string, unknown>; error?: string }>;
  setDesired(id: string, values: Record<string, unknown>): Promise<unknown>;
  setTags(id: string, tags: Record<string, string | null>): Promise<void>;
  setDisabled(actor: string, id: string, disabled: boolean): Promise<unknown>;
  delete(actor: string, id: string, opts: { purge?: boolean; children?: 'delete' | 'detach' }): Promise<unknown>;
}

type JobRow = {
  id: string;
  shard: number;
  kind: string;
  spec: string;
  target: string;
  rate: number;
  status: string;
  total: number;
  created_by: string;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
};

interface Runner {
  stopped: boolean;
  wake?: () => void;
  done: Promise<void>;
}

const iso = (n: number | null) => (n == null ? null : new Date(Number(n)).toISOString());

/**
 * Bulk jobs over a query, a group or a list of devices (docs/fleet.md): a command, desired state,
 * a tag change, disable/enable or delete, at a rate the caller sets, with per-device results,
 * progress and cancel.
 *
 * The devices are resolved when the job is made and stored as its targets. A job belongs to a
 * shard (of its id): the worker owning that shard runs it, so after a restart or a node loss the
 * shard's next owner resumes it (ShardListener). Each target is claimed with a compare-and-set
 * (`pending` → `running`) before it is acted on, so two nodes that both believe they own the
 * shard during a hand-over never act on one device twice. A target left `running` by a node that
 * died is done again if its kind is idempotent (desired state, tags, disable, enable, delete), and
 * failed as `interrupted` for a command: commands are sent at most once.
 */
export class FleetJobs implements ShardListener {
  readonly name = 'fleet-jobs';
  private readonly runners = new Map<string, Runner & { shard: number }>();
  private readonly owned = new Set<number>();
  private stopping = false;

  constructor(
    private readonly deps: {
      db: Db;
      log: Logger;
      shardCount: number;
      groups: FleetGroups;
      devices: { get(id: string): Promise<DeviceRecord | undefined> };
      effects: JobEffects;
      audit: { record(e: AuditEntry): void };
      /** Tells the node owning the job's shard (this one included) that it has work. */
      announce(job: { id: string; shard: number }): Promise<void>;
      /** A job changed: made, started, a round done, finished, cancelled (the live stream's `job` events). */
      changed?: (change: JobChange, job: JobView) => void;
    },
  ) {}

  async create(actor: string, input: { spec: JobSpec; target: JobTarget; rate?: number }): Promise<JobView> {
    const ids = await this.resolve(input.target);
    const id = newId('job');
    const now = Date.now();
    const rate = input.rate ?? 10;
    const row: JobRow = {
      id,
      shard: shardOf(id, this.deps.shardCount),
      kind: input.spec.kind,
      spec: toJson(input.spec),
      target: toJson(input.target),
      rate,
      status: ids.length ? 'queued' : 'done',
      total: ids.length,
      created_by: actor,
      created_at: now,
      started_at: null,
      finished_at: ids.length ? null : now,
    };
    await this.deps.db.transaction().execute(async (trx) => {
      await trx.insertInto('fleet_jobs').values(row).execute();
      for (let i = 0; i < ids.length; i += 500) {
        await trx
          .insertInto('fleet_job_targets')
          .values(
            ids.slice(i, i + 500).map((d, j) => ({ job_id: id, seq: i + j, device_id: d, status: 'pending', error: null, result: null, finished_at: null })),
          )
          .execute();
      }
    });
    this.deps.audit.record({
      actor,
      action: 'fleet.job.create',
      targetType: 'fleet-job',
      targetId: id,
      details: { kind: input.spec.kind, target: input.target, rate, devices: ids.length },
    });
    const view = await this.get(id);
    // Before the announce, so that `created` comes before the runner's `started`.
    this.deps.changed?.('created', view);
    if (ids.length) await this.deps.announce({ id, shard: row.shard });
    else this.deps.changed?.('done', view);
    return view;
  }

  async get(id: string): Promise<JobView> {
    const row = await this.deps.db.selectFrom('fleet_jobs').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new HearthError('E_JOB_NOT_FOUND', `bulk job "${id}" does not exist`);
    const counts = await this.deps.db
      .selectFrom('fleet_job_targets')
      .select(['status', (eb) => eb.fn.countAll<number>().as('n')])
      .where('job_id', '=', id)
      .groupBy('status')
      .execute();
    const progress: Record<TargetStatus, number> = { pending: 0, running: 0, ok: 0, failed: 0, cancelled: 0 };
    for (const c of counts) progress[c.status as TargetStatus] = Number(c.n);
    return {
      id: row.id,
      kind: row.kind as JobSpec['kind'],
      spec: fromJson(row.spec),
      target: fromJson(row.target),
      rate: Number(row.rate),
      status: row.status as JobStatus,
      total: Number(row.total),
      progress,
      createdBy: row.created_by,
      createdAt: iso(row.created_at)!,
      startedAt: iso(row.started_at),
      finishedAt: iso(row.finished_at),
    };
  }

  /** Newest first. */
  async list(limit: number): Promise<JobView[]> {
    const rows = await this.deps.db.selectFrom('fleet_jobs').select('id').orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
    return Promise.all(rows.map((r) => this.get(r.id)));
  }

  /** Per-device results in target order, paged by cursor (the last seq). */
  async targets(id: string, q: { status?: TargetStatus; limit: number; cursor?: string }): Promise<{ items: TargetView[]; nextCursor: string | null }> {
    await this.get(id);
    let after = -1;
    if (q.cursor !== undefined) {
      after = Number(q.cursor);
      if (!Number.isSafeInteger(after) || after < 0)
        throw new HearthError('E_VALIDATION', 'querystring.cursor is not a cursor this API gave: pass the nextCursor of the previous page', {
          field: 'querystring.cursor',
        });
    }
    let sel = this.deps.db.selectFrom('fleet_job_targets').selectAll().where('job_id', '=', id).where('seq', '>', after);
    if (q.status) sel = sel.where('status', '=', q.status);
    const rows = await sel
      .orderBy('seq')
      .limit(q.limit + 1)
      .execute();
    const page = rows.slice(0, q.limit);
    return {
      items: page.map((r) => ({
        deviceId: r.device_id,
        status: r.status as TargetStatus,
        error: r.error,
        result: fromJson<Record<string, unknown> | null>(r.result),
        finishedAt: iso(r.finished_at),
      })),
      nextCursor: rows.length > q.limit ? String(page[page.length - 1].seq) : null,
    };
  }

  /** Stops a job: devices not started yet are `cancelled`; those under way finish. A finished job: 409. */
  async cancel(actor: string, id: string): Promise<JobView> {
    const job = await this.get(id);
    const r = await this.deps.db
      .updateTable('fleet_jobs')
      .set({ status: 'cancelled', finished_at: Date.now() })
      .where('id', '=', id)
      .where('status', 'in', ['queued', 'running'])
      .executeTakeFirst();
    if (Number(r.numUpdatedRows) === 0) throw new HearthError('E_CONFLICT', `bulk job "${id}" is ${job.status} already`);
    await this.deps.db.updateTable('fleet_job_targets').set({ status: 'cancelled' }).where('job_id', '=', id).where('status', '=', 'pending').execute();
    this.runners.get(id)?.wake?.();
    this.deps.audit.record({ actor, action: 'fleet.job.cancel', targetType: 'fleet-job', targetId: id });
    const view = await this.get(id);
    this.deps.changed?.('cancelled', view);
    return view;
  }

  // ---------------------------------------------------------------- running (on the shard's owner)

  async acquire(shard: number): Promise<void> {
    this.owned.add(shard);
    const rows = await this.deps.db.selectFrom('fleet_jobs').select('id').where('shard', '=', shard).where('status', 'in', ['queued', 'running']).execute();
    for (const r of rows) this.start(r.id, shard);
  }

  async release(shard: number): Promise<void> {
    this.owned.delete(shard);
    await Promise.all([...this.runners.values()].filter((r) => r.shard === shard).map((r) => this.halt(r)));
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all([...this.runners.values()].map((r) => this.halt(r)));
  }

  /** A job was made (here or on another node): run it when its shard is ours. */
  heard(job: { id: string; shard: number }): void {
    if (this.owned.has(job.shard)) this.start(job.id, job.shard);
  }

  private halt(r: Runner): Promise<void> {
    r.stopped = true;
    r.wake?.();
    return r.done;
  }

  private start(id: string, shard: number): void {
    if (this.runners.has(id) || this.stopping) return;
    const runner = { stopped: false, shard } as Runner & { shard: number };
    runner.done = this.run(id, runner)
      .catch((err) => this.deps.log.error({ err, jobId: id }, 'bulk job stopped by an error; its shard owner resumes it'))
      .finally(() => this.runners.delete(id));
    this.runners.set(id, runner);
  }

  private async run(id: string, runner: Runner): Promise<void> {
    const { db } = this.deps;
    const row = await db.selectFrom('fleet_jobs').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row || (row.status !== 'queued' && row.status !== 'running')) return;
    const spec = fromJson<JobSpec>(row.spec);
    if (row.status === 'queued') {
      const r = await db
        .updateTable('fleet_jobs')
        .set({ status: 'running', started_at: Date.now() })
        .where('id', '=', id)
        .where('status', '=', 'queued')
        .executeTakeFirst();
      if (Number(r.numUpdatedRows) === 1) await this.tell('started', id);
    }
    // Targets a stopped node left under way: done again when that is harmless, never for a command.
    if (spec.kind === 'command') {
      await db
        .updateTable('fleet_job_targets')
        .set({
          status: 'failed',
          error: 'interrupted: the node running the job stopped while the command was under way; commands are not sent twice',
          finished_at: Date.now(),
        })
        .where('job_id', '=', id)
        .where('status', '=', 'running')
        .execute();
    } else {
      await db.updateTable('fleet_job_targets').set({ status: 'pending' }).where('job_id', '=', id).where('status', '=', 'running').execute();
    }
    const rate = Math.max(1, Number(row.rate));
    while (!runner.stopped) {
      const started = Date.now();
      const status = (await db.selectFrom('fleet_jobs').select('status').where('id', '=', id).executeTakeFirst())?.status;
      if (status !== 'running') return;
      const batch = await db
        .selectFrom('fleet_job_targets')
        .select(['seq', 'device_id'])
        .where('job_id', '=', id)
        .where('status', '=', 'pending')
        .orderBy('seq')
        .limit(rate)
        .execute();
      if (batch.length === 0) {
        const r = await db
          .updateTable('fleet_jobs')
          .set({ status: 'done', finished_at: Date.now() })
          .where('id', '=', id)
          .where('status', '=', 'running')
          .executeTakeFirst();
        if (Number(r.numUpdatedRows) === 1) {
          this.deps.audit.record({ actor: 'system', action: 'fleet.job.done', targetType: 'fleet-job', targetId: id });
          await this.tell('done', id);
        }
        return;
      }
      await Promise.all(batch.map((t) => this.one(id, row.created_by, spec, t.seq, t.device_id)));
      // One progress event a round (at most one a second), with the job's counts after it.
      await this.tell('progress', id);
      // Paced: at most `rate` devices started a second.
      const wait = started + 1000 - Date.now();
      if (wait > 0 && !runner.stopped)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, wait);
          runner.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      runner.wake = undefined;
    }
  }

  /** Sends a job event with the job's state now (never fails the job). */
  private async tell(change: JobChange, id: string): Promise<void> {
    if (!this.deps.changed) return;
    try {
      this.deps.changed(change, await this.get(id));
    } catch (err) {
      this.deps.log.warn({ err, jobId: id, change }, 'bulk job event not sent');
    }
  }

  /** Claims one target (compare-and-set) and acts on its device; its result is stored. */
  private async one(jobId: string, actor: string, spec: JobSpec, seq: number, deviceId: string): Promise<void> {
    const { db } = this.deps;
    const claimed = await db
      .updateTable('fleet_job_targets')
      .set({ status: 'running' })
      .where('job_id', '=', jobId)
      .where('seq', '=', seq)
      .where('status', '=', 'pending')
      .executeTakeFirst();
    if (Number(claimed.numUpdatedRows) !== 1) return;
    let status: TargetStatus = 'ok';
    let error: string | null = null;
    let result: Record<string, unknown> | null = null;
    try {
      result = await this.act(actor, jobId, spec, deviceId);
      if (result && result.ok === false) {
        status = 'failed';
        error = typeof result.error === 'string' ? result.error : 'the device answered not ok';
      }
    } catch (err) {
      status = 'failed';
      error = isHearthError(err) ? `${err.code}: ${err.message}` : 'E_INTERNAL: the action failed';
      if (!isHearthError(err)) this.deps.log.error({ err, jobId, deviceId }, 'bulk job action failed');
    }
    await db
      .updateTable('fleet_job_targets')
      .set({ status, error, result: result === null ? null : toJson(result), finished_at: Date.now() })
      .where('job_id', '=', jobId)
      .where('seq', '=', seq)
      .execute();
  }

  private async act(actor: string, jobId: string, spec: JobSpec, deviceId: string): Promise<Record<string, unknown> | null> {
    const e = this.deps.effects;
    switch (spec.kind) {
      case 'command': {
        const r = await e.command(
          deviceId,
          { action: spec.action, ...(spec.params ? { params: spec.params } : {}), ...(spec.timeoutMs ? { timeoutMs: spec.timeoutMs } : {}) },
          `job:${jobId}`,
        );
        return { ok: r.ok, ...(r.result !== undefined ? { result: r.result } : {}), ...(r.error !== undefined ? { error: r.error } : {}) };
      }
      case 'desired':
        await e.setDesired(deviceId, spec.values);
        return null;
      case 'tags':
        await e.setTags(deviceId, spec.tags);
        return null;
      case 'disable':
      case 'enable':
        await e.setDisabled(`${actor} job:${jobId}`, deviceId, spec.kind === 'disable');
        return null;
      case 'delete':
        await e.delete(`${actor} job:${jobId}`, deviceId, { purge: spec.purge, children: spec.children });
        return null;
    }
  }

  /** The devices of a target, at most MAX_JOB_DEVICES. */
  private async resolve(target: JobTarget): Promise<string[]> {
    let ids: string[];
    if ('query' in target) {
      ids = await this.deps.groups.collect([queryOf(target.query, 'body.target.query')], MAX_JOB_DEVICES, 'body.target.query');
    } else if ('groupId' in target) {
      ids = await this.deps.groups.allIds(target.groupId, MAX_JOB_DEVICES);
    } else {
      ids = [...new Set(target.deviceIds)];
      for (const d of ids)
        if (!(await this.deps.devices.get(d)))
          throw new HearthError('E_DEVICE_NOT_FOUND', `device "${d}" does not exist; no job was made`, { field: 'body.target.deviceIds' });
    }
    if (ids.length > MAX_JOB_DEVICES)
      throw new HearthError('E_VALIDATION', `the target has more than ${MAX_JOB_DEVICES} devices: narrow it (a job acts on at most ${MAX_JOB_DEVICES})`, {
        field: 'body.target',
      });
    return ids;
  }
}
