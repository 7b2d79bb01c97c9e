import type { Db } from '../core/store/db.ts';
import { fromJson, toJson } from '../core/store/db.ts';
import type { Logger } from '../core/logger.ts';
import { newId } from '../core/ids.ts';
import { PeriodicFlush, writeIsolated } from '../core/periodic-flush.ts';
import { prepared } from '../core/store/prepared-query.ts';
import type { Database } from '../core/store/schema.ts';

/** One thing somebody did. `actor` is `user:u_…`, `key:k_…` or `system`. */
export interface AuditEntry {
  actor: string;
  /** Dotted verb, e.g. `device.command`, `home.member.add`, `key.create`. */
  action: string;
  homeId?: string | null;
  targetType?: string;
  targetId?: string;
  details?: Record<string, unknown>;
}

export interface AuditRecord extends Required<Omit<AuditEntry, 'details'>> {
  id: string;
  at: string;
  details: Record<string, unknown> | null;
}

/** An audit entry as stored (see `AuditService.entry`). */
export type AuditRow = {
  id: string;
  at: number;
  actor: string;
  action: string;
  home_id: string | null;
  target_type: string | null;
  target_id: string | null;
  details: string | null;
};

const insertEntry = prepared<Database, unknown, keyof AuditRow>((db, p) =>
  db.insertInto('audit_log').values({
    id: p('id'),
    at: p('at'),
    actor: p('actor'),
    action: p('action'),
    home_id: p('home_id'),
    target_type: p('target_type'),
    target_id: p('target_id'),
    details: p('details'),
  }),
);

/**
 * The audit log: who did what and when (control, configuration, membership, keys). Entries are
 * written with group commit: an entry starts a write as soon as the event loop is free, and the
 * entries recorded meanwhile share its transaction. The HTTP layer holds every answer until the
 * entries recorded before it are committed (`committed()`, wired in app.ts), so an API call answered
 * is an API call audited, also across a crash. Reads flush first.
 */
export class AuditService {
  private pending: AuditRow[] = [];
  private readonly writer: PeriodicFlush;
  private scheduled: NodeJS.Immediate | undefined;
  /** Entries taken from `pending` by a write that has not committed yet. */
  private writing = 0;

  constructor(private readonly deps: { db: Db; log: Logger; flushMs: number }) {
    this.writer = new PeriodicFlush(
      () => this.write(),
      deps.flushMs,
      (err) => deps.log.error({ err }, 'audit flush failed; will retry'),
    );
  }

  start(): void {
    this.writer.start();
  }

  stop(): Promise<void> {
    clearImmediate(this.scheduled);
    this.scheduled = undefined;
    return this.writer.stop();
  }

  /** Records an entry; it is committed with the next group commit (see `committed`). Never throws. */
  record(e: AuditEntry): void {
    this.requeue([this.entry(e)]);
  }

  /**
   * An entry to be written in the caller's own transaction (`writeIn`), with the change it
   * audits: one commit for both. If that transaction fails, the caller hands it back (`requeue`).
   */
  entry(e: AuditEntry): AuditRow {
    let details: string | null = null;
    if (e.details) {
      try {
        details = toJson(e.details);
      } catch (err) {
        // The entry itself matters more than its details: keep it, say why they are missing.
        this.deps.log.warn({ err, action: e.action }, 'audit details could not be serialised; recorded without them');
        details = toJson({ unrecorded: 'the details could not be serialised' });
      }
    }
    return {
      id: newId('a'),
      at: Date.now(),
      actor: e.actor,
      action: e.action,
      home_id: e.homeId ?? null,
      target_type: e.targetType ?? null,
      target_id: e.targetId ?? null,
      details,
    };
  }

  /** Writes entries (from `entry`) in the caller's transaction. */
  async writeIn(trx: Db, rows: readonly AuditRow[]): Promise<void> {
    for (const r of rows) await insertEntry.run(trx, r);
  }

  /** Entries whose transaction failed (or that have none): committed with the next group commit, retried as `record`'s are. */
  requeue(rows: readonly AuditRow[]): void {
    if (rows.length === 0) return;
    this.pending.push(...rows);
    this.scheduled ??= setImmediate(() => {
      this.scheduled = undefined;
      void this.writer.flush();
    });
  }

  /**
   * Resolves once every entry recorded so far is committed (at once when none is waiting). A
   * failed write is logged and retried by the next flush; this resolves anyway, so a store outage
   * cannot hold answers forever.
   */
  committed(): Promise<void> {
    return this.pending.length === 0 && this.scheduled === undefined && this.writing === 0 ? Promise.resolve() : this.writer.flush();
  }

  /** Newest first. `homeId` undefined lists every home's entries (operator). */
  async list(filter: { homeId?: string; before?: number; limit: number; action?: string }): Promise<AuditRecord[]> {
    await this.writer.flush();
    let q = this.deps.db.selectFrom('audit_log').selectAll();
    if (filter.homeId !== undefined) q = q.where('home_id', '=', filter.homeId);
    if (filter.before !== undefined) q = q.where('at', '<', filter.before);
    if (filter.action !== undefined) q = q.where('action', '=', filter.action);
    const rows = await q.orderBy('at', 'desc').orderBy('id', 'desc').limit(filter.limit).execute();
    return rows.map((r) => ({
      id: r.id,
      at: new Date(Number(r.at)).toISOString(),
      actor: r.actor,
      action: r.action,
      homeId: r.home_id,
      targetType: r.target_type ?? '',
      targetId: r.target_id ?? '',
      details: fromJson(r.details),
    }));
  }

  /** Deletes entries recorded before `before`, `batch` rows per statement with a turn of the event loop between them. */
  async pruneBefore(before: number, batch: number): Promise<number> {
    const { db } = this.deps;
    let total = 0;
    for (;;) {
      const ids = db.selectFrom('audit_log').select('id').where('at', '<', before).limit(batch);
      const n = Number((await db.deleteFrom('audit_log').where('id', 'in', ids).executeTakeFirst()).numDeletedRows);
      total += n;
      if (n < batch) return total;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** One transaction; an entry the store refuses is dropped alone, and on a store failure all are kept for the next try. */
  private async write(): Promise<void> {
    if (this.pending.length === 0) return;
    const rows = this.pending;
    this.pending = [];
    const { db, log } = this.deps;
    this.writing += rows.length;
    const { retry, error } = await writeIsolated(rows, {
      batch: (rs) =>
        db.transaction().execute(async (trx) => {
          // A few entries (the usual group): the compiled statement, no query to build.
          if (rs.length <= 10) return this.writeIn(trx, rs);
          for (let i = 0; i < rs.length; i += 200)
            await trx
              .insertInto('audit_log')
              .values(rs.slice(i, i + 200))
              .execute();
        }),
      one: async (r) => void (await insertEntry.run(db, r)),
      onBad: (r, err) => log.error({ err, action: r.action, actor: r.actor }, 'audit entry refused by the store; dropped, the rest of its batch is stored'),
    }).finally(() => void (this.writing -= rows.length));
    if (error === undefined) return;
    this.pending = retry.concat(this.pending);
    throw error;
  }
}
