import { BusError } from '../bus/bus.ts';
import { HearthError, isHearthError, type ErrorCode } from '../errors.ts';
import type { Logger } from '../logger.ts';

/** A refusal by the shard's owner (or by a node that no longer owns the shard: `E_NOT_OWNER`). */
export type ShardRefusal = { ok: false; code: string; message: string; extras?: Record<string, unknown> };

/**
 * Runs an operation on the node that owns a shard (shadows, automations): asks over the bus and
 * waits through an ownership change (a node that lost the shard answers E_NOT_OWNER; nobody
 * answering is a timeout), running it here when this node becomes the owner meanwhile. Any other
 * refusal is thrown as the owner's HearthError. After `patienceMs` without an owner: E_UNAVAILABLE.
 */
export async function askShardOwner<Reply extends { ok: true } | ShardRefusal, T>(o: {
  /** The request to the shard's subject (typed by the caller's bus catalogue). */
  send: () => Promise<Reply>;
  /** The answer out of a successful reply. */
  take: (reply: Extract<Reply, { ok: true }>) => T;
  /** Whether this node owns the shard by now. */
  owns: () => boolean;
  /** The operation, run here. */
  local: () => Promise<T>;
  patienceMs: number;
  /** The E_UNAVAILABLE message when no owner answers in time. */
  unavailable: string;
}): Promise<T> {
  const deadline = Date.now() + o.patienceMs;
  for (let attempt = 0; ; attempt++) {
    let reply: Reply | undefined;
    try {
      reply = await o.send();
    } catch (err) {
      if (!(err instanceof BusError) || err.code === 'CLOSED') throw err;
    }
    if (reply?.ok) return o.take(reply as Extract<Reply, { ok: true }>);
    if (reply && !reply.ok && reply.code !== 'E_NOT_OWNER') throw new HearthError(reply.code as ErrorCode, reply.message, reply.extras);
    if (Date.now() >= deadline) throw new HearthError('E_UNAVAILABLE', o.unavailable);
    // The shard is between owners: run it here when it is ours by now.
    if (o.owns()) return o.local();
    await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** attempt, 500)));
  }
}

/**
 * The owner's side of askShardOwner: refuses with E_NOT_OWNER when the shard moved away, runs the
 * operation, and turns a HearthError into a refusal the asker rethrows (anything else is logged
 * and answered as E_INTERNAL).
 */
export async function serveShard<R extends { ok: true }>(o: {
  owns: boolean;
  run: () => Promise<R>;
  log: Logger;
  context: Record<string, unknown>;
  what: string;
}): Promise<R | ShardRefusal> {
  if (!o.owns) return { ok: false, code: 'E_NOT_OWNER', message: 'shard moved' };
  try {
    return await o.run();
  } catch (err) {
    if (isHearthError(err)) return { ok: false, code: err.code, message: err.message, ...(err.extras ? { extras: err.extras } : {}) };
    o.log.error({ err, ...o.context }, `${o.what} failed`);
    return { ok: false, code: 'E_INTERNAL', message: `${o.what} failed` };
  }
}
