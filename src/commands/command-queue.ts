import { sql } from 'kysely';
import type { Db } from '../core/store/db.ts';
import { toJson } from '../core/store/db.ts';
import type { Bus } from '../core/bus/bus.ts';
import { subjects, type DownlinkMessage } from '../core/bus/subjects.ts';
import type { CommandChange } from '../core/bus/events.ts';
import { broadcast, type Broadcast } from '../core/cluster/broadcast.ts';
import type { Logger } from '../core/logger.ts';
import { HearthError } from '../core/errors.ts';
import type { PresenceService } from '../devices/presence-service.ts';

/** The states of a queued command (docs/api.md, queued commands). */
export type QueuedState = 'queued' | 'sent' | 'answered' | 'failed' | 'expired' | 'cancelled';

/** What the queue needs to know of a ledger row. */
export interface QueueRow {
  id: string;
  device_id: string;
  action: string;
  params: string;
  source: string;
  status: string;
  accepted_at: number;
  expires_at: number | null;
  ok: number | null;
  result: string | null;
  error: string | null;
  warnings: string | null;
  latency_ms: number | null;
}

export interface QueueLimits {
  /** Commands a device may have queued or in flight. */
  maxQueued: number;
  /** Commands sent to a device and not yet answered. */
  maxInFlight: number;
}

/** A new queued command, as the ledger stores it. */
export interface NewQueued {
  id: string;
  deviceId: string;
  action: string;
  params: Record<string, unknown>;
  source: string;
  acceptedAt: number;
  expiresAt: number;
  /** `{caller} {Idempotency-Key}`; null without the header. */
  idempotencyKey: string | null;
}

const ACTIVE = ['queued', 'sent'] as const;
const QUEUE_COLUMNS = [
  'id',
  'device_id',
  'action',
  'params',
  'source',
  'status',
  'accepted_at',
  'expires_at',
  'ok',
  'result',
  'error',
  'warnings',
  'latency_ms',
] as const;

/**
 * Commands that wait for their device (issue 17). They are rows of the command ledger with an
 * `expires_at`, so they survive a restart, a SIGKILL and a move of the device to another node.
 *
 * The node that owns the device's shard sends them: in `queue_seq` order, at most `maxInFlight`
 * unanswered at a time, when the device subscribes to its commands topic (the gateway's
 * `subscribed` uplink reaches the shard owner), when one is answered (the result is ingested
 * there too), and when a new one is queued (`cluster.commands.queue`, heard by every node, acted
 * on by the owner). A subscription sends the unanswered ones again with the same id: the
 * connection they went out on may have lost them, and a device answers a repeated id without
 * running it again (docs/protocol.md). A sweeper expires what its TTL passed, on the owner too.
 */
export class CommandQueue {
  /** Pumps in progress, chained per device so that two never interleave their sends. */
  private readonly pumps = new Map<string, Promise<void>>();
  private lastSeq = 0;
  private sweeper: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> = Promise.resolve();
  private readonly kick: Broadcast<{ deviceId: string }>;

  constructor(
    private readonly deps: {
      db: Db;
      bus: Bus;
      log: Logger;
      presence: Pick<PresenceService, 'get'>;
      limits: QueueLimits;
      /** Whether this node owns the device's shard (and so sends its queue). */
      owns: (deviceId: string) => boolean;
      /** How often expired commands are looked for. */
      sweepMs?: number;
      observer?: { commandQueue?(event: 'queued' | 'sent' | 'resent' | 'expired' | 'cancelled' | 'duplicate-answer'): void };
    },
  ) {
    this.kick = broadcast(deps.bus, 'cluster.commands.queue', ({ deviceId }) => {
      if (this.deps.owns(deviceId)) void this.pump(deviceId, 'kick');
    });
  }

  start(): void {
    this.kick.open();
    this.sweeper = setInterval(() => {
      this.sweeping = this.sweeping.then(() => this.sweep()).catch((err) => this.deps.log.warn({ err }, 'command queue sweep failed'));
    }, this.deps.sweepMs ?? 1000);
    this.sweeper.unref();
  }

  async stop(): Promise<void> {
    this.kick.close();
    clearInterval(this.sweeper);
    await this.sweeping;
    while (this.pumps.size) await Promise.all([...this.pumps.values()]);
  }

  /** A strictly increasing order key (epoch µs), so commands queued in one millisecond keep their order. */
  private nextSeq(): number {
    this.lastSeq = Math.max(this.lastSeq + 1, Date.now() * 1000);
    return this.lastSeq;
  }

  /** The command a retried POST (same caller and Idempotency-Key) created. */
  async byKey(deviceId: string, key: string): Promise<QueueRow | undefined> {
    return this.deps.db.selectFrom('commands').select(QUEUE_COLUMNS).where('device_id', '=', deviceId).where('idempotency_key', '=', key).executeTakeFirst();
  }

  async get(deviceId: string, id: string): Promise<QueueRow | undefined> {
    return this.deps.db.selectFrom('commands').select(QUEUE_COLUMNS).where('id', '=', id).where('device_id', '=', deviceId).executeTakeFirst();
  }

  /**
   * Stores a queued command, unless the device's queue is full (429) or a command with the same
   * idempotency key exists: then that one is returned (`created: false`).
   */
  async add(c: NewQueued): Promise<{ created: boolean; row: QueueRow }> {
    const { db } = this.deps;
    const { n } = await db
      .selectFrom('commands')
      .select((eb) => eb.fn.countAll().as('n'))
      .where('device_id', '=', c.deviceId)
      .where('status', 'in', ACTIVE)
      .where('expires_at', 'is not', null)
      .executeTakeFirstOrThrow();
    const limit = this.deps.limits.maxQueued;
    if (Number(n) >= limit) {
      throw new HearthError(
        'E_COMMAND_QUEUE_FULL',
        `device "${c.deviceId}" already has ${Number(n)} commands queued or in flight; the limit is ${limit} (HEARTH_COMMAND_QUEUE_MAX)`,
        { limit },
      );
    }
    try {
      await db
        .insertInto('commands')
        .values({
          id: c.id,
          device_id: c.deviceId,
          action: c.action,
          params: toJson(c.params),
          source: c.source,
          status: 'queued',
          accepted_at: c.acceptedAt,
          sent_at: null,
          answered_at: null,
          timed_out_at: null,
          ok: null,
          result: null,
          error: null,
          latency_ms: null,
          expires_at: c.expiresAt,
          queue_seq: this.nextSeq(),
          idempotency_key: c.idempotencyKey,
          attempts: 0,
          cancelled_at: null,
        })
        .execute();
    } catch (err) {
      // Two requests with one key at the same moment: the unique index lets one in.
      const existing = c.idempotencyKey ? await this.byKey(c.deviceId, c.idempotencyKey) : undefined;
      if (existing) return { created: false, row: existing };
      throw err;
    }
    this.deps.observer?.commandQueue?.('queued');
    this.change({ id: c.id, deviceId: c.deviceId, action: c.action, status: 'queued', source: c.source, expiresAt: c.expiresAt });
    await this.kick.send({ deviceId: c.deviceId });
    return { created: true, row: (await this.get(c.deviceId, c.id))! };
  }

  /** The device subscribed to its commands topic: send again what is unanswered, then what waits. */
  subscribed(deviceId: string): Promise<void> {
    return this.pump(deviceId, 'subscribed');
  }

  /** A queued command was answered: the next may go. */
  answered(deviceId: string): Promise<void> {
    return this.pump(deviceId, 'answered');
  }

  /** Cancels a command that has not been sent yet. */
  async cancel(deviceId: string, id: string): Promise<QueueRow> {
    const res = await this.deps.db
      .updateTable('commands')
      .set({ status: 'cancelled', cancelled_at: Date.now() })
      .where('id', '=', id)
      .where('device_id', '=', deviceId)
      .where('status', '=', 'queued')
      .executeTakeFirst();
    const row = await this.get(deviceId, id);
    if (!row) throw new HearthError('E_COMMAND_NOT_FOUND', `device "${deviceId}" has no command "${id}"`);
    if (Number(res.numUpdatedRows) === 0) {
      throw new HearthError('E_CONFLICT', `command "${id}" is ${row.status}: only a queued command (not sent yet) can be cancelled`, { state: row.status });
    }
    this.deps.observer?.commandQueue?.('cancelled');
    this.change({ id, deviceId, action: row.action, status: 'cancelled', source: row.source });
    return row;
  }

  /** The device left its home: what waits for it is cancelled (never delivered to a new owner). */
  async drop(deviceId: string): Promise<number> {
    const res = await this.deps.db
      .updateTable('commands')
      .set({ status: 'cancelled', cancelled_at: Date.now(), error: 'the device was removed from its home' })
      .where('device_id', '=', deviceId)
      .where('status', 'in', ACTIVE)
      .where('expires_at', 'is not', null)
      .executeTakeFirst();
    const n = Number(res.numUpdatedRows);
    if (n) this.deps.log.info({ deviceId, dropped: n }, 'command queue dropped: the device left its home');
    return n;
  }

  /** Runs one pump for the device after the ones before it. */
  pump(deviceId: string, why: 'subscribed' | 'answered' | 'kick' | 'expired'): Promise<void> {
    const prev = this.pumps.get(deviceId) ?? Promise.resolve();
    const next = prev.then(() => this.pumpNow(deviceId, why)).catch((err) => this.deps.log.warn({ err, deviceId }, 'command queue could not be sent'));
    this.pumps.set(deviceId, next);
    void next.finally(() => {
      if (this.pumps.get(deviceId) === next) this.pumps.delete(deviceId);
    });
    return next;
  }

  private async pumpNow(deviceId: string, why: 'subscribed' | 'answered' | 'kick' | 'expired'): Promise<void> {
    const { db, limits } = this.deps;
    // A subscription is proof of presence; otherwise an offline device's queue just waits.
    if (why !== 'subscribed' && !(await this.deps.presence.get(deviceId)).online) return;
    const now = Date.now();
    const sent = await db
      .selectFrom('commands')
      .select(['id', 'action', 'params', 'source', 'expires_at'])
      .where('device_id', '=', deviceId)
      .where('status', '=', 'sent')
      .where('expires_at', 'is not', null)
      .orderBy('queue_seq')
      .execute();
    if (why === 'subscribed') {
      for (const r of sent) {
        if (Number(r.expires_at) <= now) continue;
        const res = await db
          .updateTable('commands')
          .set((eb) => ({ attempts: eb(eb.fn.coalesce('attempts', eb.lit(0)), '+', 1) }))
          .where('id', '=', r.id)
          .where('status', '=', 'sent')
          .executeTakeFirst();
        if (Number(res.numUpdatedRows) === 0) continue;
        this.deps.observer?.commandQueue?.('resent');
        this.publish(deviceId, r.id, r.action, r.params);
      }
    }
    const free = limits.maxInFlight - sent.filter((r) => Number(r.expires_at) > now).length;
    if (free <= 0) return;
    const next = await db
      .selectFrom('commands')
      .select(['id', 'action', 'params', 'source', 'expires_at'])
      .where('device_id', '=', deviceId)
      .where('status', '=', 'queued')
      // `+expires_at`: not a term an index may serve, so SQLite walks this device's queue
      // (commands_queue) instead of every queued command of the fleet (commands_expiry), which made
      // each delivery cost O(queued commands): 4.5 ms a command with 100,000 queued.
      .where(sql<number>`+expires_at`, '>', now)
      // What lets the partial index (queued commands only, 0021) serve this query.
      .where('expires_at', 'is not', null)
      .orderBy('queue_seq')
      .orderBy('id')
      .limit(free)
      .execute();
    for (const r of next) {
      const res = await db
        .updateTable('commands')
        .set({ status: 'sent', sent_at: Date.now(), attempts: 1 })
        .where('id', '=', r.id)
        .where('status', '=', 'queued')
        .executeTakeFirst();
      if (Number(res.numUpdatedRows) === 0) continue; // cancelled or expired meanwhile
      this.deps.observer?.commandQueue?.('sent');
      this.publish(deviceId, r.id, r.action, r.params);
      this.change({ id: r.id, deviceId, action: r.action, status: 'sent', source: r.source, expiresAt: Number(r.expires_at) });
    }
  }

  private publish(deviceId: string, id: string, action: string, paramsJson: string): void {
    const params = JSON.parse(paramsJson) as Record<string, unknown>;
    // The same message as a command sent at once (docs/protocol.md): `params` only when there are some.
    const down: DownlinkMessage = { deviceId, kind: 'commands', payload: { id, action, ...(Object.keys(params).length ? { params } : {}) } };
    this.deps.bus.publish(subjects.down(deviceId), down);
  }

  private change(c: CommandChange): void {
    this.deps.bus.publish(subjects.command(c.deviceId), c);
  }

  /** Expires what its TTL passed (on the owner of its device's shard); a freed in-flight slot lets the next go. */
  async sweep(): Promise<void> {
    const { db } = this.deps;
    const now = Date.now();
    const due = await db
      .selectFrom('commands')
      .select(['id', 'device_id', 'action', 'source', 'status'])
      .where('status', 'in', ACTIVE)
      .where('expires_at', '<=', now)
      .orderBy('expires_at')
      .limit(1000)
      .execute();
    const freed = new Set<string>();
    for (const r of due) {
      if (!this.deps.owns(r.device_id)) continue;
      const res = await db
        .updateTable('commands')
        .set({ status: 'expired', timed_out_at: now })
        .where('id', '=', r.id)
        .where('status', '=', r.status)
        .executeTakeFirst();
      if (Number(res.numUpdatedRows) === 0) continue;
      this.deps.observer?.commandQueue?.('expired');
      this.change({ id: r.id, deviceId: r.device_id, action: r.action, status: 'expired', source: r.source });
      if (r.status === 'sent') freed.add(r.device_id);
    }
    for (const d of freed) void this.pump(d, 'expired');
  }
}
