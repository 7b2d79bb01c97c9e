import type { Db } from '../core/store/db.ts';
import { fromJson, toJson } from '../core/store/db.ts';
import { HearthError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Delivery, Envelope, Target } from '../routing/envelope.ts';

/** waiting: kept for the operator; replayed: delivered again on request; discarded: given up on. */
export type DeadLetterStatus = 'waiting' | 'replayed' | 'discarded';

/** What a listing shows of the message: enough to recognise it without its payload. */
export type EnvelopeSummary = Pick<Envelope, 'id' | 'source' | 'deviceId' | 'kind' | 'topic' | 'tags'> & { product: string | null; receivedAt: string };

/** A dead letter as the API lists it; the target's secrets are redacted. */
export interface DeadLetterSummary {
  id: string;
  routeId: string;
  routeName: string;
  targetIndex: number;
  target: Record<string, unknown>;
  lane: string | null;
  reason: string;
  attempts: number;
  status: DeadLetterStatus;
  createdAt: string;
  updatedAt: string;
  envelope: EnvelopeSummary;
}

/** A dead letter with the whole message and the body the target would have got. */
export interface DeadLetter extends Omit<DeadLetterSummary, 'envelope'> {
  envelope: Envelope;
  body: string;
}

type Row = {
  id: string;
  route_id: string;
  route_name: string;
  target_index: number;
  target: string;
  envelope: string;
  body: string;
  lane: string | null;
  reason: string;
  attempts: number;
  status: string;
  created_at: number;
  updated_at: number;
};

const REDACTED = '[redacted]';

/** A URL with its password (if any) redacted: AMQP and webhook URLs may carry credentials. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (!u.password) return url;
    u.password = REDACTED;
    return u.toString();
  } catch {
    return url;
  }
}

/**
 * The target as an operator may see it: secrets, URL passwords and the values of static headers
 * (often `authorization`) are replaced; the rest says where the message was going.
 */
export function redactTarget(t: Target): Record<string, unknown> {
  const out: Record<string, unknown> = { ...t };
  if ('secret' in t && t.secret !== undefined) out.secret = REDACTED;
  if ('url' in t) out.url = redactUrl(t.url);
  if ('headers' in t && t.headers) out.headers = Object.fromEntries(Object.keys(t.headers).map((k) => [k, REDACTED]));
  return out;
}

function summaryOf(e: Envelope): EnvelopeSummary {
  return {
    id: e.id,
    source: e.source,
    deviceId: e.deviceId,
    product: e.product ?? null,
    kind: e.kind,
    topic: e.topic,
    tags: e.tags,
    receivedAt: new Date(e.receivedAt).toISOString(),
  };
}

/** The delivery job a dead letter was made from, as it was enqueued. */
function deliveryOf(r: Row): Delivery {
  return {
    routeId: r.route_id,
    routeName: r.route_name,
    targetIndex: Number(r.target_index),
    target: fromJson(r.target),
    envelope: fromJson(r.envelope),
    body: r.body,
    ...(r.lane !== null ? { lane: r.lane } : {}),
  };
}

function base(r: Row) {
  return {
    id: r.id,
    routeId: r.route_id,
    routeName: r.route_name,
    targetIndex: Number(r.target_index),
    target: redactTarget(fromJson<Target>(r.target)),
    lane: r.lane,
    reason: r.reason,
    attempts: Number(r.attempts),
    status: r.status as DeadLetterStatus,
    createdAt: new Date(Number(r.created_at)).toISOString(),
    updatedAt: new Date(Number(r.updated_at)).toISOString(),
  };
}

/**
 * The `dead_letters` table: delivery jobs that finally failed, kept whole (target with its
 * secret, envelope, rendered body) so that a replay sends exactly what failed. The delivery
 * service writes to it; the operator reads it through DeadLetterService.
 */
export class DeadLetterStore {
  constructor(private readonly db: Db) {}

  /** Keeps a job that failed for good; resolves with the dead letter's id once stored. */
  async record(d: Delivery, reason: string, attempts: number): Promise<string> {
    const id = newId('dl');
    const now = Date.now();
    await this.db
      .insertInto('dead_letters')
      .values({
        id,
        route_id: d.routeId,
        route_name: d.routeName,
        target_index: d.targetIndex,
        target: toJson(d.target),
        envelope: toJson(d.envelope),
        body: d.body,
        lane: d.lane ?? null,
        reason,
        attempts,
        status: 'waiting',
        created_at: now,
        updated_at: now,
      })
      .execute();
    return id;
  }

  /** Newest first; `before` (epoch ms) pages backwards. */
  async list(filter: { status?: DeadLetterStatus; routeId?: string; limit: number; before?: number }): Promise<DeadLetterSummary[]> {
    let q = this.db.selectFrom('dead_letters').selectAll();
    if (filter.status !== undefined) q = q.where('status', '=', filter.status);
    if (filter.routeId !== undefined) q = q.where('route_id', '=', filter.routeId);
    if (filter.before !== undefined) q = q.where('created_at', '<', filter.before);
    const rows = await q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(filter.limit).execute();
    return rows.map((r) => ({ ...base(r), envelope: summaryOf(fromJson(r.envelope)) }));
  }

  async get(id: string): Promise<{ letter: DeadLetter; delivery: Delivery } | undefined> {
    const r = await this.db.selectFrom('dead_letters').selectAll().where('id', '=', id).executeTakeFirst();
    if (!r) return undefined;
    const delivery = deliveryOf(r);
    return { letter: { ...base(r), envelope: delivery.envelope, body: r.body }, delivery };
  }

  async setStatus(id: string, status: DeadLetterStatus): Promise<void> {
    await this.db.updateTable('dead_letters').set({ status, updated_at: Date.now() }).where('id', '=', id).execute();
  }
}

/** Where a replay goes: the delivery queue, with a job id of the replay's own (see DeliveryService.enqueue). */
export interface ReplayQueue {
  enqueue(d: Delivery, jobId?: string): Promise<void>;
}

/**
 * The operator's handling of dead letters: inspect them, send one again to the same route
 * target (a new delivery job, retried and dead-lettered again like any other), or give up on it.
 */
export class DeadLetterService {
  constructor(private readonly deps: { store: DeadLetterStore; queue: ReplayQueue }) {}

  list(filter: { status?: DeadLetterStatus; routeId?: string; limit: number; before?: number }): Promise<DeadLetterSummary[]> {
    return this.deps.store.list(filter);
  }

  /** @throws E_DEAD_LETTER_NOT_FOUND */
  async get(id: string): Promise<DeadLetter> {
    return (await this.find(id)).letter;
  }

  /**
   * Enqueues the job again, exactly as it failed, and marks the dead letter `replayed`. The job
   * id is new, so the delivery stream does not drop it as a repeat of the first one.
   * @throws E_DEAD_LETTER_NOT_FOUND
   */
  async replay(id: string): Promise<DeadLetter> {
    const { letter, delivery } = await this.find(id);
    await this.deps.queue.enqueue(delivery, `${id}:${Date.now().toString(36)}`);
    await this.deps.store.setStatus(id, 'replayed');
    return { ...letter, status: 'replayed' };
  }

  /** Marks it `discarded`: kept for the record, no longer waiting. @throws E_DEAD_LETTER_NOT_FOUND */
  async discard(id: string): Promise<void> {
    await this.find(id);
    await this.deps.store.setStatus(id, 'discarded');
  }

  private async find(id: string): Promise<{ letter: DeadLetter; delivery: Delivery }> {
    const found = await this.deps.store.get(id);
    if (!found) throw new HearthError('E_DEAD_LETTER_NOT_FOUND', `no dead letter ${id}`);
    return found;
  }
}
