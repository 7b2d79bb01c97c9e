import { sql } from 'kysely';
import type { Db } from '../core/store/db.ts';
import { fromJson, toJson } from '../core/store/db.ts';
import type { Bus } from '../core/bus/bus.ts';
import type { Logger } from '../core/logger.ts';
import type { Clock } from '../core/clock.ts';
import { shardOf, type ShardListener, type ShardManager } from '../core/cluster/shards.ts';
import { broadcast, type Broadcast } from '../core/cluster/broadcast.ts';
import type { TimerChange } from '../core/bus/events.ts';
import { HearthError } from '../core/errors.ts';
import { nextTime, nextTimes, specKey, specProblem, type TimerSpec } from './timer-spec.ts';

export type { TimerSpec } from './timer-spec.ts';

/** A timer came due (on time, or late within its grace). */
export interface TimerFiring {
  key: string;
  owner: string;
  payload: unknown;
  /** The due time this firing is for. */
  scheduledAt: number;
  firedAt: number;
  /** firedAt − scheduledAt: how late it runs (a node was down, the shard just moved). */
  lateMs: number;
}

/** A due time passed longer ago than the timer's grace: it does not run; the timer moves on. */
export interface SkippedFiring {
  key: string;
  owner: string;
  payload: unknown;
  /** The first due time that was missed (one report per timer, however many were missed). */
  scheduledAt: number;
  reason: 'missed';
}

export interface TimerServiceDeps {
  db: Db;
  bus: Bus;
  log: Logger;
  clock: Clock;
  shards: ShardManager;
  /** The cluster's shard count (`config.shards`): places a timer by its shard key. */
  shardCount: number;
  /** How often the owned timers are re-read from the store, in case a change notice was lost. */
  pollMs?: number;
}

interface Handler {
  fire: (f: TimerFiring) => Promise<void> | void;
  skipped?: (s: SkippedFiring) => Promise<void> | void;
}

type TimerRow = {
  key: string;
  owner: string;
  shard: number;
  spec: string;
  payload: string;
  grace_ms: number;
  next_at: number | null;
  version: number;
  last_fired_at: number | null;
};

export const DEFAULT_GRACE_MS = 5 * 60_000;
const DEFAULT_POLL_MS = 30_000;
/** Due timers claimed per query. */
const BATCH = 500;
/** Timers that changed, sent to every node (TimerChange): what the owner of the shard needs to schedule them without reading the store. */
const CHANGES_SUBJECT = 'cluster.timers';

/**
 * Persistent timers for schedules and sun triggers, exactly once across a cluster.
 *
 * Every timer is a row in `timers` with its next due time, placed on a shard by its shard key
 * (the home). Only the node owning a shard runs its timers: it keeps their due times in memory
 * and arms one clock timer for the earliest. When it rings, the node reads the due rows and
 * claims each with a compare-and-set of `next_at` (from the due time to the following one,
 * `version` unchanged); only a claim that changed the row fires. Two nodes that both believe
 * they own a shard (a hand-over) therefore fire a timer once. The claim is made before the
 * handler runs: a node that dies in between loses that firing (at most once, never twice).
 *
 * Missed due times (a node was down, a restart, a shard taken over from a lost node): one
 * within the timer's grace fires once, late; older ones are reported once through the owner's
 * `skipped` handler, then the timer fires for a due time inside the grace window if there is
 * one, and moves to its next future time.
 *
 * Changes made on any node are announced on the bus with the timer's shard, due time and row
 * version; the shard's owner updates its schedule from that (an older notice loses to a newer
 * version). A slow re-scan of the owned timers (`pollMs`) covers a lost or reordered announcement;
 * a due time in memory that turns out not to be due is re-read before anything fires.
 */
export class TimerService implements ShardListener {
  readonly name = 'timers';
  private readonly owned = new Set<number>();
  /** Next due time of every pending timer on an owned shard, by key, with the row version it was read at. */
  private readonly due = new Map<string, { shard: number; at: number; version: number }>();
  private readonly handlers = new Map<string, Handler>();
  private readonly inflight = new Set<Promise<void>>();
  /** Store reads and claims run one after another, so the view and the claims never interleave. */
  private queue: Promise<void> = Promise.resolve();
  private runQueued = false;
  private wake: { at: number; cancel: () => void } | undefined;
  private cancelPoll: (() => void) | undefined;
  private changes: Broadcast<TimerChange> | undefined;
  private stopped = false;
  private readonly pollMs: number;

  constructor(private readonly deps: TimerServiceDeps) {
    this.pollMs = deps.pollMs ?? DEFAULT_POLL_MS;
  }

  /** The next `n` due times of a spec after `from` (pure; for previews and tests). */
  static next(spec: TimerSpec, from: number, n = 1): number[] {
    return nextTimes(spec, from, n);
  }

  start(): void {
    this.stopped = false;
    this.changes = broadcast(this.deps.bus, CHANGES_SUBJECT, (c) => {
      if (this.owned.size > 0 || this.due.size > 0) void this.enqueue(() => this.changed(c));
    });
    this.changes.open();
    this.poll();
  }

  /** Stops arming and claiming; handlers already running finish on their own (their owners stop them). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.cancelPoll?.();
    this.cancelPoll = undefined;
    this.disarm();
    this.changes?.close();
    this.changes = undefined;
    await this.queue;
  }

  /**
   * Creates or replaces timer `key` for `owner`; `shardKey` (e.g. the home id) places it on a
   * shard. Keeps its next due time when the spec is unchanged. `graceMs` (default 5 min): a
   * firing missed by at most this much (node down, restart) still runs once, late; older ones
   * are skipped and reported. A one-off `at` up to `graceMs` in the past fires at once. Returns
   * the next due time (null: none, e.g. a one-off long past). Throws E_VALIDATION on a bad spec.
   */
  async upsert(t: { key: string; owner: string; shardKey: string; spec: TimerSpec; graceMs?: number; payload?: unknown }): Promise<{ nextAt: number | null }> {
    const { db, clock } = this.deps;
    const now = clock.now();
    if (typeof t.key !== 'string' || t.key === '') throw new HearthError('E_VALIDATION', 'a timer needs a key');
    if (typeof t.owner !== 'string' || t.owner === '') throw new HearthError('E_VALIDATION', `timer ${t.key}: an owner is needed`);
    const problem = specProblem(t.spec, now);
    if (problem) throw new HearthError('E_VALIDATION', `timer ${t.key}: ${problem}`, { key: t.key });
    const graceMs = t.graceMs ?? DEFAULT_GRACE_MS;
    if (!Number.isSafeInteger(graceMs) || graceMs < 0) throw new HearthError('E_VALIDATION', `timer ${t.key}: graceMs must be a non-negative integer`);
    const spec = specKey(t.spec);
    const shard = shardOf(t.shardKey, this.deps.shardCount);
    const payload = toJson(t.payload);

    // Same spec: everything but the due time is replaced. Not writing next_at means a firing
    // claimed meanwhile cannot be undone (and fire again); the version makes a claim in flight retry.
    const kept = await db
      .updateTable('timers')
      .set({ owner: t.owner, shard, payload, grace_ms: graceMs, version: sql<number>`version + 1`, updated_at: now })
      .where('key', '=', t.key)
      .where('spec', '=', spec)
      .executeTakeFirst();
    let nextAt: number | null;
    if (Number(kept.numUpdatedRows) > 0) {
      const row = await db.selectFrom('timers').select('next_at').where('key', '=', t.key).executeTakeFirst();
      nextAt = row?.next_at == null ? null : Number(row.next_at);
    } else {
      nextAt = t.spec.kind === 'at' ? (t.spec.at >= now - graceMs ? t.spec.at : null) : nextTime(t.spec, now);
      await db
        .insertInto('timers')
        .values({
          key: t.key,
          owner: t.owner,
          shard,
          spec,
          payload,
          grace_ms: graceMs,
          next_at: nextAt,
          version: 1,
          created_at: now,
          updated_at: now,
          last_fired_at: null,
        })
        .onConflict((oc) =>
          oc.column('key').doUpdateSet({
            owner: t.owner,
            shard,
            spec,
            payload,
            grace_ms: graceMs,
            next_at: nextAt,
            version: sql<number>`timers.version + 1`,
            updated_at: now,
          }),
        )
        .execute();
    }
    // The row as it is now (another write may have come in between: its version tells the owner which is newer).
    const row = await db.selectFrom('timers').select(['shard', 'next_at', 'version']).where('key', '=', t.key).executeTakeFirst();
    if (row)
      this.changes?.send({
        set: { key: t.key, shard: Number(row.shard), nextAt: row.next_at == null ? null : Number(row.next_at), version: Number(row.version) },
      });
    return { nextAt };
  }

  async cancel(key: string): Promise<void> {
    await this.deps.db.deleteFrom('timers').where('key', '=', key).execute();
    this.changes?.send({ removed: key });
  }

  /** Cancels every timer whose key starts with `prefix` (e.g. `automation:{id}:`). */
  async cancelPrefix(prefix: string): Promise<void> {
    if (prefix === '') throw new HearthError('E_VALIDATION', 'cancelPrefix needs a prefix (it would cancel every timer)');
    await this.deps.db.deleteFrom('timers').where(startsWith(prefix)).execute();
    this.changes?.send({ prefix });
  }

  /** Registers the handler for an owner's firings (and skips); returns the undo. A throwing handler is logged. */
  onFire(owner: string, fire: (f: TimerFiring) => Promise<void> | void, skipped?: (s: SkippedFiring) => void): () => void {
    const h: Handler = { fire, skipped };
    this.handlers.set(owner, h);
    return () => {
      if (this.handlers.get(owner) === h) this.handlers.delete(owner);
    };
  }

  /**
   * Resolves when nothing is left to do right now: store reads and claims done, and the
   * handlers they started returned. For tests, after moving a manual clock.
   */
  async settled(): Promise<void> {
    for (;;) {
      const q = this.queue;
      await q;
      await Promise.all([...this.inflight]);
      if (q === this.queue && this.inflight.size === 0) return;
    }
  }

  /** How many pending timers this node runs (on its shards). */
  get pending(): number {
    return this.due.size;
  }

  async acquire(shard: number): Promise<void> {
    this.owned.add(shard);
    await this.enqueue(async () => {
      if (!this.owned.has(shard)) return;
      const rows = await this.deps.db
        .selectFrom('timers')
        .select(['key', 'shard', 'next_at', 'version'])
        .where('shard', '=', shard)
        .where('next_at', 'is not', null)
        .execute();
      for (const r of rows) this.due.set(r.key, { shard, at: Number(r.next_at), version: Number(r.version) });
      this.arm();
    });
  }

  /** Stops claiming the shard's timers; a claim under way finishes first. */
  async release(shard: number): Promise<void> {
    this.owned.delete(shard);
    await this.enqueue(async () => {
      for (const [key, t] of this.due) if (t.shard === shard) this.due.delete(key);
      this.arm();
    });
  }

  // ── running ───────────────────────────────────────────────────────────────────────────

  private enqueue(task: () => Promise<void>): Promise<void> {
    const run = this.queue.then(task).catch((err) => this.deps.log.error({ err }, 'timers: store work failed'));
    this.queue = run;
    return run;
  }

  private requestRun(): void {
    if (this.runQueued || this.stopped) return;
    this.runQueued = true;
    void this.enqueue(async () => {
      this.runQueued = false;
      await this.runDue();
    });
  }

  /** One clock timer, for the earliest due time; a due time already passed runs at once. */
  private arm(): void {
    if (this.stopped) return;
    let earliest = Infinity;
    for (const t of this.due.values()) if (t.at < earliest) earliest = t.at;
    if (this.wake?.at === earliest) return;
    this.disarm();
    if (earliest === Infinity) return;
    const delay = earliest - this.deps.clock.now();
    if (delay <= 0) return this.requestRun();
    const cancel = this.deps.clock.setTimer(() => {
      this.wake = undefined;
      this.requestRun();
    }, delay);
    this.wake = { at: earliest, cancel };
  }

  private disarm(): void {
    this.wake?.cancel();
    this.wake = undefined;
  }

  private poll(): void {
    if (this.stopped) return;
    this.cancelPoll = this.deps.clock.setTimer(() => {
      void this.enqueue(() => this.rescan()).then(() => this.poll());
    }, this.pollMs);
  }

  /** Claims and fires every due timer on the owned shards. */
  private async runDue(): Promise<void> {
    const { db, clock } = this.deps;
    const now = clock.now();
    const claimed = new Set<string>();
    for (let round = 0; round < 1000 && !this.stopped && this.owned.size > 0; round++) {
      const rows = await db
        .selectFrom('timers')
        .select(['key', 'owner', 'shard', 'spec', 'payload', 'grace_ms', 'next_at', 'version', 'last_fired_at'])
        .where('shard', 'in', [...this.owned])
        .where('next_at', 'is not', null)
        .where('next_at', '<=', now)
        .orderBy('next_at')
        .limit(BATCH)
        .execute();
      for (const row of rows) {
        if (this.stopped || !this.owned.has(Number(row.shard))) continue;
        if (await this.claim(row as TimerRow, now)) claimed.add(row.key);
      }
      if (rows.length < BATCH) break;
    }
    // Due times in memory not claimed here (changed, claimed elsewhere, or a claim lost to an
    // upsert): re-read them; one still due makes arm() run again at once.
    const stale = [...this.due].filter(([key, t]) => t.at <= now && !claimed.has(key)).map(([key]) => key);
    if (stale.length) await this.reload(stale, false);
    this.arm();
  }

  /** Moves the timer on with a compare-and-set and fires it if this node made the move. */
  private async claim(row: TimerRow, now: number): Promise<boolean> {
    const { db, log } = this.deps;
    const due = Number(row.next_at);
    const grace = Number(row.grace_ms);
    let spec: TimerSpec;
    let following: number | null;
    let scheduledAt: number | null = due;
    let missed = false;
    try {
      spec = fromJson<TimerSpec>(row.spec);
      // upsert validated it; a row written by another version may not be valid any more
      const problem = specProblem(spec);
      if (problem) throw new TypeError(problem);
      following = nextTime(spec, now);
      if (now - due > grace) {
        missed = true;
        // the first due time inside the grace window, if any, still runs
        const inWindow = nextTime(spec, now - grace - 1);
        scheduledAt = inWindow !== null && inWindow <= now ? inWindow : null;
      }
    } catch (err) {
      // A spec stored by an older version that no longer parses: retire the timer rather than spin on it.
      log.error({ err, key: row.key }, 'timer spec unusable; timer stopped');
      following = null;
      scheduledAt = null;
    }
    const res = await db
      .updateTable('timers')
      .set({ next_at: following, last_fired_at: scheduledAt === null ? row.last_fired_at : now })
      .where('key', '=', row.key)
      .where('next_at', '=', due)
      .where('version', '=', row.version)
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) !== 1) return false;
    if (following === null) this.due.delete(row.key);
    else this.due.set(row.key, { shard: Number(row.shard), at: following, version: Number(row.version) });

    const payload = fromJson<unknown>(row.payload);
    const base = { key: row.key, owner: row.owner, payload };
    this.dispatch(
      row.owner,
      missed ? { ...base, scheduledAt: due, reason: 'missed' } : undefined,
      scheduledAt === null ? undefined : { ...base, scheduledAt, firedAt: now, lateMs: now - scheduledAt },
    );
    return true;
  }

  /** Runs the owner's handlers without holding up other timers; a throw is logged. */
  private dispatch(owner: string, skipped: SkippedFiring | undefined, firing: TimerFiring | undefined): void {
    const { log } = this.deps;
    const key = (firing ?? skipped)!.key;
    const h = this.handlers.get(owner);
    if (!h) {
      log.warn({ key, owner }, 'timer came due but its owner has no handler on this node');
      return;
    }
    if (skipped) log.info({ key, owner, scheduledAt: skipped.scheduledAt }, 'timer firing missed beyond its grace: skipped');
    const run = (async () => {
      if (skipped && h.skipped) {
        try {
          await h.skipped(skipped);
        } catch (err) {
          log.error({ err, key, owner }, 'timer skip handler failed');
        }
      }
      if (firing) {
        try {
          await h.fire(firing);
        } catch (err) {
          log.error({ err, key, owner }, 'timer handler failed');
        }
      }
    })();
    this.inflight.add(run);
    void run.finally(() => this.inflight.delete(run));
  }

  // ── the in-memory view ────────────────────────────────────────────────────────────────

  /**
   * A change announced by the node that made it: the owner of the timer's shard updates its
   * schedule from the notice alone (no store read); other nodes only forget the key (it may have
   * moved shards). A notice older than what this node knows (a lower version) is ignored.
   */
  private async changed(c: TimerChange): Promise<void> {
    if ('set' in c) {
      const { key, shard, nextAt, version } = c.set;
      const cur = this.due.get(key);
      if (cur && cur.version >= version) return;
      if (nextAt !== null && this.owned.has(shard)) this.due.set(key, { shard, at: nextAt, version });
      else this.due.delete(key);
    } else if ('removed' in c) {
      this.due.delete(c.removed);
    } else if ('prefix' in c) {
      for (const key of this.due.keys()) if (key.startsWith(c.prefix)) this.due.delete(key);
    } else if (Array.isArray((c as { keys?: unknown }).keys)) {
      // a node of the previous version (during a rolling update) sends only keys: re-read them
      return this.reload((c as unknown as { keys: string[] }).keys);
    }
    this.arm();
  }

  /** Re-reads timers by key; those on owned shards with a due time are kept. */
  private async reload(keys: string[], arm = true): Promise<void> {
    if (this.owned.size === 0) return;
    const { db } = this.deps;
    const rows: Array<{ key: string; shard: number; next_at: number | null; version: number }> = [];
    for (const key of keys) this.due.delete(key);
    // in slices: a statement takes a bounded number of parameters
    for (let i = 0; i < keys.length; i += 500)
      rows.push(
        ...(await db
          .selectFrom('timers')
          .select(['key', 'shard', 'next_at', 'version'])
          .where('key', 'in', keys.slice(i, i + 500))
          .execute()),
      );
    for (const r of rows) {
      if (r.next_at !== null && this.owned.has(Number(r.shard)))
        this.due.set(r.key, { shard: Number(r.shard), at: Number(r.next_at), version: Number(r.version) });
    }
    if (arm) this.arm();
  }

  /** The safety net: the owned timers read afresh. */
  private async rescan(): Promise<void> {
    if (this.owned.size === 0 || this.stopped) return;
    const rows = await this.deps.db
      .selectFrom('timers')
      .select(['key', 'shard', 'next_at', 'version'])
      .where('shard', 'in', [...this.owned])
      .where('next_at', 'is not', null)
      .execute();
    this.due.clear();
    for (const r of rows) this.due.set(r.key, { shard: Number(r.shard), at: Number(r.next_at), version: Number(r.version) });
    this.arm();
  }
}

/** `key` starts with `prefix`, exactly (LIKE is case-insensitive in SQLite and treats _ and % as wildcards). */
function startsWith(prefix: string) {
  return sql<boolean>`substr(${sql.ref('key')}, 1, ${prefix.length}) = ${prefix}`;
}
