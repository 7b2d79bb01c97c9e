import type { Db } from '../core/store/db.ts';
import { fromJson, toJson } from '../core/store/db.ts';
import type { Logger } from '../core/logger.ts';
import { newId } from '../core/ids.ts';
import { PeriodicFlush } from '../core/periodic-flush.ts';

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

type Row = { id: string; at: number; actor: string; action: string; home_id: string | null; target_type: string | null; target_id: string | null; details: string | null };

/**
 * The audit log: who did what and when (control, configuration, membership, keys). Entries are
 * buffered and written in batches like history; reads flush first.
 */
export class AuditService {
  private pending: Row[] = [];
  private readonly writer: PeriodicFlush;

  constructor(private readonly deps: { db: Db; log: Logger; flushMs: number }) {
    this.writer = new PeriodicFlush(() => this.write(), deps.flushMs, (err) => deps.log.error({ err }, 'audit flush failed; will retry'));
  }

  start(): void {
    this.writer.start();
  }

  stop(): Promise<void> {
    return this.writer.stop();
  }

  record(e: AuditEntry): void {
    this.pending.push({ id: newId('a'), at: Date.now(), actor: e.actor, action: e.action, home_id: e.homeId ?? null, target_type: e.targetType ?? null, target_id: e.targetId ?? null, details: e.details ? toJson(e.details) : null });
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
      id: r.id, at: new Date(Number(r.at)).toISOString(), actor: r.actor, action: r.action, homeId: r.home_id,
      targetType: r.target_type ?? '', targetId: r.target_id ?? '', details: fromJson(r.details),
    }));
  }

  private async write(): Promise<void> {
    if (this.pending.length === 0) return;
    const rows = this.pending;
    this.pending = [];
    try {
      await this.deps.db.transaction().execute(async (trx) => {
        for (let i = 0; i < rows.length; i += 200) await trx.insertInto('audit_log').values(rows.slice(i, i + 200)).execute();
      });
    } catch (err) {
      this.pending = rows.concat(this.pending);
      throw err;
    }
  }
}
