/**
 * The message bus every capability talks through. Subjects are dot-separated tokens
 * (`device.d_123.properties`); patterns use NATS wildcards: `*` matches one token, `>`
 * matches one or more trailing tokens. The in-process implementation (MemoryBus) and the
 * NATS one pass the same contract suite (test/bus-contract.test.ts).
 *
 * Data must be JSON-serialisable and is treated as immutable once published.
 */
export interface BusMessage<T = unknown> {
  readonly subject: string;
  readonly data: T;
  readonly headers: Readonly<Record<string, string>>;
  /** Present on requests: sends the reply to the requester. */
  respond?(data: unknown, headers?: Record<string, string>): void;
}

export type BusHandler<T = unknown> = (msg: BusMessage<T>) => void | Promise<void>;

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

export interface Bus {
  publish(subject: string, data: unknown, opts?: PublishOptions): void;
  subscribe<T = unknown>(pattern: string, handler: BusHandler<T>, opts?: SubscribeOptions): Unsubscribe;
  /** Sends a request to one responder and resolves with its reply data. */
  request<R = unknown>(subject: string, data: unknown, opts?: RequestOptions): Promise<R>;
  /** Resolves when everything published so far has been handed to its handlers. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export class BusError extends Error {
  constructor(readonly code: 'NO_RESPONDERS' | 'TIMEOUT' | 'CLOSED', message: string) {
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

export function isWildcard(pattern: string): boolean {
  return pattern.split('.').some((t) => t === '*' || t === '>');
}
