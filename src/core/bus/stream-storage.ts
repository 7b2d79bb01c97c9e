/**
 * Where the in-process bus keeps its durable streams so that they survive the process: every
 * message published with `publishDurable` is a row until the consumer that took it acknowledges
 * it. The MemoryBus batches its changes (group commit) and hands each batch to `commit`, which
 * applies it in one transaction; a publish resolves only after its batch committed.
 *
 * `SqliteStreamStorage` (sqlite-stream-storage.ts) is the implementation; a MemoryBus without a
 * storage keeps its streams in memory only (unit tests).
 */
export interface StreamStorage {
  /**
   * The messages of `stream` still stored, in sequence order, and the last sequence number the
   * stream handed out. Deletes the messages stored before `notBefore` (epoch ms) first, and counts
   * one more delivery for each message loaded: the process may have handed it out before it stopped.
   */
  load(stream: string, notBefore: number): { lastSeq: number; messages: PersistedMessage[] };
  /** Applies one batch in one transaction; throws when it did not commit (then nothing of it did). */
  commit(batch: StreamBatch): void;
  close(): void;
}

/** A stored message as one consumer sees it (a message taken by two consumers is two rows). */
export interface PersistedMessage {
  /** The row's key: given by `load`, and set by `commit` on the messages it puts. */
  rowId?: number;
  stream: string;
  /** The durable consumer that took it; `''` while no consumer has. */
  consumer: string;
  seq: number;
  subject: string;
  /** JSON of the message data. */
  data: string;
  /** JSON of the headers; null when there are none. */
  headers: string | null;
  msgId: string | null;
  storedAt: number;
  /** Deliveries before the process last stopped (each restart it survived counts as one). */
  deliveries: number;
}

/** One group commit: applied in this order, in one transaction. */
export interface StreamBatch {
  put: PersistedMessage[];
  /** Messages no consumer had (by row), taken by the consumer that started since. */
  take: Array<{ rowId: number; consumer: string }>;
  /** Rows acknowledged by their consumer: they go. */
  ack: number[];
  /** The last sequence number of each stream that put messages. */
  lastSeq: Map<string, number>;
}
