import { randomBytes } from 'node:crypto';
import type { Bus, Unsubscribe } from '../bus/bus.ts';
import type { BroadcastSubject, BusEvents } from '../bus/events.ts';

/** A change to state that every node caches (revoked sessions, device placements, automations). */
export interface Broadcast<T> {
  /** Applies the change here at once (resolving when that apply does), then on every other node. */
  send(data: T): Promise<void>;
  /** Starts hearing the other nodes' changes (a node's start, never its construction). */
  open(): void;
  /** Stops hearing them; `open()` may be called again after. */
  close: Unsubscribe;
}

/**
 * Keeps per-node caches coherent across a cluster: `apply` runs on this node at once, in the
 * caller's turn (callers may rely on it right away, or await it), and on every other node that
 * hears the bus message. A node skips its own message (it applied the change already); `apply`
 * should still be idempotent, as a node may hear a change it learnt another way. An apply that
 * returns a promise handles its own errors. Sending works at once; hearing starts with `open()`.
 * `subject` is one of the catalogue's `cluster.*` subjects (core/bus/events.ts), which gives the
 * payload's type.
 */
export function broadcast<S extends BroadcastSubject>(bus: Bus, subject: S, apply: (data: BusEvents[S]) => void | Promise<void>): Broadcast<BusEvents[S]> {
  type T = BusEvents[S];
  const origin = randomBytes(8).toString('hex');
  let unsubscribe: Unsubscribe | undefined;
  return {
    open() {
      // The catalogue's payload, plus the origin this function adds (generic over S, so checked by hand).
      unsubscribe ??= bus.subscribe(
        subject as BroadcastSubject,
        (msg) => {
          const data = msg.data as T & { [ORIGIN]?: string };
          if (data[ORIGIN] !== origin) void apply(data);
        },
        { name: subject },
      );
    },
    close() {
      unsubscribe?.();
      unsubscribe = undefined;
    },
    async send(data: T) {
      const applied = apply(data);
      bus.publish(subject as BroadcastSubject, { ...data, [ORIGIN]: origin } as unknown as BusEvents[BroadcastSubject]);
      await applied;
    },
  };
}

/** The sending broadcast's id, in the message (nodes of older versions ignore it). */
const ORIGIN = '_origin';
