import type { EventOf, Known, MessageOf, ReplyOf, RequestOf } from './events.ts';

/**
 * The message bus every capability talks through. Subjects are dot-separated tokens
 * (`device.d_123.properties`); patterns use NATS wildcards: `*` matches one token, `>`
 * matches one or more trailing tokens. The in-process implementation (MemoryBus) and the
 * NATS one pass the same contract suite (test/bus-contract.test.ts).
 *
 * Data must be JSON-serialisable and is treated as immutable once published.
 */
export interface BusMessage<T = unknown, R = unknown> {
  readonly subject: string;
  readonly data: T;
  readonly headers: Readonly<Record<string, string>>;
  /** Present on requests: sends the reply to the requester. */
  respond?(data: R, headers?: Record<string, string>): void;
}

export type BusHandler<T = unknown, R = unknown> = (msg: BusMessage<T, R>) => void | Promise<void>;

export interface SubscribeOptions {
  /** Queue group: each message goes to one member of the group instead of all. */
  queue?: string;
  /** Names the subscriber in logs when its handler fails. */
  name?: string;
}

export interface PublishOptions {
  headers?: Record<string, string>;
}

export interface RequestOptions extends PublishOptions {
  timeoutMs?: number;
}

/** Undoes a subscribe. */
export type Unsubscribe = () => void;

/**
 * A durable stream (JetStream in a cluster): messages published with `publishDurable` on its
 * subjects are stored until every consumer has acknowledged them.
 */
export interface StreamConfig {
  name: string;
  /** Subject patterns the stream stores. */
  subjects: string[];
  /** Drop messages older than this (default 24 h). */
  maxAgeMs?: number;
  /** Window in which a repeated `msgId` is dropped as a duplicate (default 2 min). */
  duplicateWindowMs?: number;
}

export interface DurablePublishOptions extends PublishOptions {
  /** De-duplication id: a second publish with the same id within the stream's window is dropped. */
  msgId?: string;
}

export interface ConsumerOptions<F extends string = string> {
  /** Stream to read from (declared with `ensureStream`). */
  stream: string;
  /**
   * Durable consumer name. Every subscriber using the same name shares one position in the
   * stream: each message goes to one of them, and survives all of them stopping.
   */
  durable: string;
  /** Only subjects matching this pattern. */
  filter: F;
  /** A message not acknowledged within this time is delivered again (default 30 s). */
  ackWaitMs?: number;
  /** At most this many delivered and unacknowledged messages at a time (default 1000). */
  maxInFlight?: number;
}

/** A message from a durable consumer. Delivered at least once, in stream order (redeliveries may come later). */
export interface DurableMessage<T = unknown> extends BusMessage<T> {
  /** 1 on first delivery, more on redeliveries. */
  readonly deliveryCount: number;
  /** Stream sequence number: the same on every delivery of one message. */
  readonly seq: number;
  /** The message is done; it will not be delivered again. */
  ack(): void;
  /** Deliver again, after `delayMs` (default at once). */
  nak(delayMs?: number): void;
}

export type DurableHandler<T = unknown> = (msg: DurableMessage<T>) => void | Promise<void>;

export interface Consumer {
  /**
   * Stops delivering. Messages handed out may still be acknowledged afterwards (a subscriber
   * finishing its work); those not acknowledged within ackWait are delivered again (to another
   * subscriber of the same durable, or after a restart).
   */
  stop(): Promise<void>;
}

/**
 * The bus as capabilities hold it: every subject and payload is checked against the catalogue in
 * events.ts at compile time (types only: the engine underneath is a BusEngine, unchanged).
 * A subject chosen at run time outside the catalogue goes through `foreignSubject()`.
 */
export interface Bus {
  publish<S extends string>(subject: S & Known<S, EventOf<S>>, data: EventOf<S>, opts?: PublishOptions): void;
  subscribe<P extends string>(pattern: P & Known<P, MessageOf<P>>, handler: BusHandler<MessageOf<P>, ReplyOf<P>>, opts?: SubscribeOptions): Unsubscribe;
  /** Sends a request to one responder and resolves with its reply data. */
  request<S extends string>(subject: S & Known<S, RequestOf<S>>, data: RequestOf<S>, opts?: RequestOptions): Promise<ReplyOf<S>>;
  /** Declares a durable stream; idempotent, and updates the subjects of an existing one. */
  ensureStream(cfg: StreamConfig): Promise<void>;
  /** Stores a message in the stream that covers its subject; resolves once it is stored. */
  publishDurable<S extends string>(subject: S & Known<S, EventOf<S>>, data: EventOf<S>, opts?: DurablePublishOptions): Promise<void>;
  /** Starts a subscriber of a durable consumer (created if missing). */
  consume<F extends string>(opts: ConsumerOptions<F & Known<F, EventOf<F>>>, handler: DurableHandler<EventOf<F>>): Promise<Consumer>;
  /** Resolves when everything published so far has been handed to its handlers. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/**
 * What a bus engine implements (MemoryBus, NatsBus, the metrics wrapper): subjects and payloads
 * unchecked, as they travel. Every engine is a `Bus` too; the contract suite drives engines
 * directly with its own test subjects.
 */
export interface BusEngine {
  publish(subject: string, data: unknown, opts?: PublishOptions): void;
  subscribe<T = unknown>(pattern: string, handler: BusHandler<T>, opts?: SubscribeOptions): Unsubscribe;
  request<R = unknown>(subject: string, data: unknown, opts?: RequestOptions): Promise<R>;
  ensureStream(cfg: StreamConfig): Promise<void>;
  publishDurable(subject: string, data: unknown, opts?: DurablePublishOptions): Promise<void>;
  consume<T = unknown>(opts: ConsumerOptions, handler: DurableHandler<T>): Promise<Consumer>;
  flush(): Promise<void>;
  close(): Promise<void>;
}

export class BusError extends Error {
  constructor(
    readonly code: 'NO_RESPONDERS' | 'TIMEOUT' | 'CLOSED',
    message: string,
  ) {
    super(message);
    this.name = 'BusError';
  }
}

/** True when `subject` matches the wildcard `pattern`. */
export function subjectMatches(pattern: string, subject: string): boolean {
  if (pattern === subject) return true;
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    const tok = p[i];
    if (tok === '>') return s.length > i;
    if (i >= s.length) return false;
    if (tok !== '*' && tok !== s[i]) return false;
  }
  return p.length === s.length;
}

/**
 * `subjectMatches` for one pattern, prepared once: hot paths test every message against the same
 * few patterns, and the common shapes (`a.b.>`, no wildcard) need no splitting at all.
 */
export function compilePattern(pattern: string): (subject: string) => boolean {
  if (!isWildcard(pattern)) return (subject) => subject === pattern;
  const tokens = pattern.split('.');
  if (tokens.at(-1) === '>' && !tokens.slice(0, -1).some((t) => t === '*' || t === '>')) {
    const prefix = pattern.slice(0, -1);
    return (subject) => subject.length > prefix.length && subject.startsWith(prefix);
  }
  const toks = pattern.split('.');
  // Walks the subject token by token without splitting it (no allocation per message).
  return (subject) => {
    let pos = 0;
    for (const t of toks) {
      if (t === '>') return pos < subject.length;
      if (pos > subject.length) return false;
      let end = subject.indexOf('.', pos);
      if (end < 0) end = subject.length;
      if (t !== '*' && (end - pos !== t.length || !subject.startsWith(t, pos))) return false;
      pos = end + 1;
    }
    return pos === subject.length + 1;
  };
}

export function isWildcard(pattern: string): boolean {
  return pattern.split('.').some((t) => t === '*' || t === '>');
}
