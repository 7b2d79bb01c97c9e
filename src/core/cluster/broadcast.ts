import type { Bus, Unsubscribe } from '../bus/bus.ts';

/** A change to state that every node caches (revoked sessions, device placements). */
export interface Broadcast<T> {
  /** Applies the change here at once, then on every other node. */
  send(data: T): void;
  close: Unsubscribe;
}

/**
 * Keeps per-node caches coherent across a cluster: `apply` runs on this node synchronously
 * (callers may rely on it right away) and on every node that hears the bus message, this one
 * included, so it must be idempotent.
 */
export function broadcast<T>(bus: Bus, subject: string, apply: (data: T) => void): Broadcast<T> {
  const close = bus.subscribe<T>(subject, (msg) => apply(msg.data), { name: subject });
  return {
    send(data: T) {
      apply(data);
      bus.publish(subject, data);
    },
    close,
  };
}
