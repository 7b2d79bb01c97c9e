import type { Bus } from '../../core/bus/bus.ts';
import { subjects, type UplinkMessage } from '../../core/bus/subjects.ts';

/**
 * Uplinks per batch at most by default (`HEARTH_UPLINK_BATCH_MAX`): a busy shard's messages go out
 * in pieces of this size. Small enough
 * that a worker's window of stream messages (INGEST_WINDOW in src/ingest/) stays a few seconds of
 * work when every message is a full batch; large enough to take most of the per-message cost.
 */
export const MAX_BATCH = 32;

type Waiter = { resolve: () => void; reject: (err: unknown) => void };
type Pending = { msgs: UplinkMessage[]; waiters: Waiter[] };

/**
 * Stores the uplinks a gateway receives in the same turn of the event loop together: one durable
 * message per shard (`uplink.{shard}.batch`) instead of one each, so the stream is written and
 * acknowledged once for all of them (one JetStream publish in cluster mode, one stream-log row
 * embedded). A lone message goes as it is (`uplink.{shard}.{device}.{kind}`), so a quiet gateway
 * adds no envelope and no wait; a busy one waits at most until the loop's next check phase.
 * Each caller's promise settles with its batch: resolved once it is stored, so the PUBACK that
 * waits on it still means "stored".
 */
export class UplinkBatcher {
  private readonly pending = new Map<number, Pending>();
  private scheduled = false;

  constructor(
    private readonly bus: Bus,
    /** At most this many a batch (`HEARTH_UPLINK_BATCH_MAX`; 1: every message alone). */
    private readonly maxBatch = MAX_BATCH,
  ) {}

  add(shard: number, msg: UplinkMessage): Promise<void> {
    let b = this.pending.get(shard);
    if (!b) {
      b = { msgs: [], waiters: [] };
      this.pending.set(shard, b);
    }
    const stored = new Promise<void>((resolve, reject) => b.waiters.push({ resolve, reject }));
    b.msgs.push(msg);
    if (b.msgs.length >= this.maxBatch) this.send(shard, b);
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.sendAll);
    }
    return stored;
  }

  private readonly sendAll = (): void => {
    this.scheduled = false;
    for (const [shard, b] of this.pending) this.send(shard, b);
  };

  private send(shard: number, b: Pending): void {
    this.pending.delete(shard);
    const { msgs, waiters } = b;
    const first = msgs[0];
    const stored =
      msgs.length === 1
        ? this.bus.publishDurable(subjects.up(shard, first.deviceId, first.kind), first, { msgId: first.id })
        : // The first message's id names the batch: unique (each message is in one batch), and the same when the bus client retries it.
          this.bus.publishDurable(subjects.upBatch(shard), { batch: msgs }, { msgId: `batch.${first.id}` });
    stored.then(
      () => {
        for (const w of waiters) w.resolve();
      },
      (err: unknown) => {
        for (const w of waiters) w.reject(err);
      },
    );
  }
}
