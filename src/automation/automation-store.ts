import type { Db } from '../core/store/db.ts';
import { fromJson, toJson } from '../core/store/db.ts';
import type { Database } from '../core/store/schema.ts';
import type { Logger } from '../core/logger.ts';
import type { SettingsStore } from '../core/settings-store.ts';
import { shardOf } from '../core/cluster/shards.ts';
import { PeriodicFlush, writeIsolated } from '../core/periodic-flush.ts';
import type { Automation, AutomationStatus, Run, RunMode, RunStatus, Trace } from './automation-types.ts';

type Row = Database['automations'];
export type AutomationRow = Row;
type RunRow = Database['automation_runs'];

/** How many runs are kept per automation (older ones are deleted as new ones are written). */
export const RUNS_KEPT = 200;

const iso = (n: number | string) => new Date(Number(n)).toISOString();

export function toAutomation(r: Row): Automation {
  return {
    id: r.id,
    homeId: r.home_id,
    name: r.name,
    description: r.description,
    enabled: Number(r.enabled) === 1,
    mode: r.mode as RunMode,
    max: Number(r.max_runs),
    cooldownMs: Number(r.cooldown_ms),
    triggers: fromJson(r.triggers),
    conditions: fromJson(r.conditions),
    actions: fromJson(r.actions),
    webhookId: r.webhook_id,
    status: r.status as AutomationStatus,
    statusReason: r.status_reason,
    createdBy: r.created_by,
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
  };
}

function toRun(r: RunRow): Run {
  return {
    id: r.id,
    automationId: r.automation_id,
    homeId: r.home_id,
    status: r.status as RunStatus,
    reason: r.reason,
    startedAt: iso(r.started_at),
    finishedAt: r.finished_at == null ? null : iso(r.finished_at),
    ms: r.finished_at == null ? null : Number(r.finished_at) - Number(r.started_at),
    trace: fromJson<Trace>(r.trace),
  };
}

/** A run as the engine records it (serialised when written). */
export interface RunRecord {
  id: string;
  automationId: string;
  homeId: string;
  status: RunStatus;
  reason: string | null;
  startedAt: number;
  finishedAt: number | null;
  trace: Trace;
}

/** Run records held while the store does not take writes, at most. */
const MAX_PENDING = 20_000;
const ORPHAN_SWEEP_MS = 10 * 60_000;

/**
 * The automations' tables: definitions, and runs with their traces. Runs are written behind, in
 * batches (a run is recorded when it starts and again when it ends; both usually fall into one
 * batch and make one row), and each automation keeps its newest {@link RUNS_KEPT}. Reads flush first.
 */
export class AutomationStore {
  private pending = new Map<string, RunRecord>();
  private dropped = 0;
  private sweptAt = Date.now();
  /** Automations with runs written since their last pruning, and how many. */
  private written = new Map<string, number>();
  private readonly writer: PeriodicFlush;

  /**
   * `sharding`: the configured shard count, and where the count the rows were placed with is
   * kept; when given, `start()` re-places the automations if the count changed.
   */
  constructor(private readonly deps: { db: Db; log: Logger; flushMs: number; sharding?: { shardCount: number; settings: SettingsStore } }) {
    this.writer = new PeriodicFlush(
      () => this.write(),
      deps.flushMs,
      (err) => deps.log.error({ err }, 'automation runs flush failed; will retry'),
    );
  }

  async start(): Promise<void> {
    if (this.deps.sharding) await this.placeInShards(this.deps.sharding);
    this.writer.start();
  }

  /** Automations are stored with their home's shard: recomputed only when the shard count changed. */
  private async placeInShards({ shardCount, settings }: { shardCount: number; settings: SettingsStore }): Promise<void> {
    if ((await settings.get('automations.shardCount')) === String(shardCount)) return;
    await this.reshard((homeId) => shardOf(homeId, shardCount));
    await settings.set('automations.shardCount', String(shardCount));
  }

  stop(): Promise<void> {
    return this.writer.stop();
  }

  flush(): Promise<void> {
    return this.writer.flush();
  }

  async get(id: string): Promise<Automation | undefined> {
    const row = await this.row(id);
    return row ? toAutomation(row) : undefined;
  }

  async row(id: string): Promise<Row | undefined> {
    return this.deps.db.selectFrom('automations').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async byWebhook(webhookId: string): Promise<Automation | undefined> {
    const row = await this.deps.db.selectFrom('automations').selectAll().where('webhook_id', '=', webhookId).executeTakeFirst();
    return row ? toAutomation(row) : undefined;
  }

  async listHome(homeId: string): Promise<Automation[]> {
    const rows = await this.deps.db.selectFrom('automations').selectAll().where('home_id', '=', homeId).orderBy('created_at').orderBy('id').execute();
    return rows.map(toAutomation);
  }

  async rowsOfShard(shard: number): Promise<Row[]> {
    return this.deps.db.selectFrom('automations').selectAll().where('shard', '=', shard).execute();
  }

  async insert(row: Row): Promise<void> {
    await this.deps.db.insertInto('automations').values(row).execute();
  }

  async update(id: string, set: Partial<Row>): Promise<void> {
    await this.deps.db.updateTable('automations').set(set).where('id', '=', id).execute();
  }

  async delete(id: string): Promise<void> {
    await this.writer.flush();
    await this.deps.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('automation_runs').where('automation_id', '=', id).execute();
      await trx.deleteFrom('automations').where('id', '=', id).execute();
    });
  }

  /**
   * Puts every automation in its home's shard, for when the configured shard count changed: one
   * update per shard (and batch of homes), only of rows in another shard. Returns how many moved.
   */
  async reshard(shardOf: (homeId: string) => number): Promise<number> {
    const homes = await this.deps.db.selectFrom('automations').select('home_id').distinct().execute();
    const byShard = new Map<number, string[]>();
    for (const { home_id } of homes) {
      const s = shardOf(home_id);
      byShard.set(s, [...(byShard.get(s) ?? []), home_id]);
    }
    let moved = 0;
    for (const [shard, ids] of byShard) {
      for (let i = 0; i < ids.length; i += 500) {
        const r = await this.deps.db
          .updateTable('automations')
          .set({ shard })
          .where('home_id', 'in', ids.slice(i, i + 500))
          .where('shard', '!=', shard)
          .executeTakeFirst();
        moved += Number(r.numUpdatedRows);
      }
    }
    return moved;
  }

  /** Records a run (again when its state changes); written with the next batch. */
  recordRun(run: RunRecord): void {
    if (this.pending.size >= MAX_PENDING && !this.pending.has(run.id)) {
      // The store has been down for a while: keep memory bounded, losing the oldest traces (runs acted anyway).
      const oldest = this.pending.keys().next().value!;
      this.pending.delete(oldest);
      this.dropped++;
      if (this.dropped % 1000 === 1) this.deps.log.warn({ dropped: this.dropped }, 'automation run records dropped: the store is not taking writes');
    }
    // Kept as it is: a record superseded before the next batch (a run that started and ended) is never serialised.
    this.pending.set(run.id, run);
  }

  /** Newest first. */
  async listRuns(automationId: string, q: { limit: number; before?: number; status?: string }): Promise<Run[]> {
    await this.writer.flush();
    let query = this.deps.db.selectFrom('automation_runs').selectAll().where('automation_id', '=', automationId);
    if (q.before !== undefined) query = query.where('started_at', '<', q.before);
    if (q.status !== undefined) query = query.where('status', '=', q.status);
    const rows = await query.orderBy('started_at', 'desc').orderBy('id', 'desc').limit(q.limit).execute();
    return rows.map(toRun);
  }

  async getRun(automationId: string, runId: string): Promise<Run | undefined> {
    await this.writer.flush();
    const row = await this.deps.db
      .selectFrom('automation_runs')
      .selectAll()
      .where('id', '=', runId)
      .where('automation_id', '=', automationId)
      .executeTakeFirst();
    return row ? toRun(row) : undefined;
  }

  /**
   * Writes the pending runs in one transaction. Each run is serialised by itself first: a trace
   * that cannot be (a 20,000-deep webhook body) is stored without what failed, never taking the
   * other runs of the batch (other homes' among them) with it; a row the store refuses is dropped
   * alone. When the store fails, the runs stay pending for the next try.
   */
  private async write(): Promise<void> {
    if (this.pending.size === 0) return;
    const runs = [...this.pending.values()];
    this.pending = new Map();
    const { db, log } = this.deps;
    const rows = runs.map((run) => this.toRow(run));
    const { retry, error } = await writeIsolated(rows, {
      batch: (rs) =>
        db.transaction().execute(async (trx) => {
          for (const r of rs) await upsertRun(trx, r);
        }),
      one: (r) => upsertRun(db, r),
      onBad: (r, err) =>
        log.error({ err, runId: r.id, automationId: r.automation_id }, 'automation run refused by the store; dropped, the rest of its batch is stored'),
    });
    if (error !== undefined) {
      const again = new Set(retry.map((r) => r.id));
      for (const r of runs) if (again.has(r.id) && !this.pending.has(r.id)) this.pending.set(r.id, r);
      throw error;
    }
    for (const r of rows) this.written.set(r.automation_id, (this.written.get(r.automation_id) ?? 0) + 1);
    await this.prune();
  }

  /** The run's row; a trace that cannot be serialised is replaced by what of it can be, and says so. */
  private toRow(run: RunRecord): RunRow {
    const row = (trace: string): RunRow => ({
      id: run.id,
      automation_id: run.automationId,
      home_id: run.homeId,
      status: run.status,
      reason: run.reason,
      trigger_type: run.trace.trigger.type,
      started_at: run.startedAt,
      finished_at: run.finishedAt,
      trace,
    });
    try {
      return row(toJson(run.trace));
    } catch (err) {
      this.deps.log.warn({ err, runId: run.id, automationId: run.automationId }, 'automation run trace could not be serialised; stored without its data');
      const t = run.trace;
      const note = { unrecorded: `the trace could not be stored: ${(err as Error).message}` };
      const attempt = (trace: Trace) => {
        try {
          return toJson(trace);
        } catch {
          return undefined;
        }
      };
      return row(
        attempt({ ...t, trigger: { ...t.trigger, data: note } }) ??
          toJson({
            trigger: { index: t.trigger.index, type: t.trigger.type, at: t.trigger.at, description: String(t.trigger.description), data: note },
            conditions: [],
            actions: [],
          } satisfies Trace),
      );
    }
  }

  /** Keeps the newest RUNS_KEPT runs of automations that wrote enough since their last pruning. */
  private async prune(): Promise<void> {
    // Runs that ended after their automation was deleted (cancelled by the delete) are swept now and then.
    if (Date.now() - this.sweptAt > ORPHAN_SWEEP_MS) {
      this.sweptAt = Date.now();
      const db = this.deps.db;
      await db
        .deleteFrom('automation_runs')
        .where(({ not, exists, selectFrom }) =>
          not(exists(selectFrom('automations').select('id').whereRef('automations.id', '=', 'automation_runs.automation_id'))),
        )
        .execute();
    }
    for (const [id, n] of this.written) {
      if (n < 20) continue;
      this.written.delete(id);
      const cut = await this.deps.db
        .selectFrom('automation_runs')
        .select('started_at')
        .where('automation_id', '=', id)
        .orderBy('started_at', 'desc')
        .offset(RUNS_KEPT - 1)
        .limit(1)
        .executeTakeFirst();
      if (cut) await this.deps.db.deleteFrom('automation_runs').where('automation_id', '=', id).where('started_at', '<', Number(cut.started_at)).execute();
    }
  }
}

/** A run is recorded when it starts and again when it ends: the second write updates the first. */
async function upsertRun(db: Db, r: RunRow): Promise<void> {
  await db
    .insertInto('automation_runs')
    .values(r)
    .onConflict((oc) =>
      oc.column('id').doUpdateSet({ status: r.status, reason: r.reason, started_at: r.started_at, finished_at: r.finished_at, trace: r.trace }),
    )
    .execute();
}
