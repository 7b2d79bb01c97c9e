import type { Logger } from '../logger.ts';
import {
  BusError,
  compilePattern,
  isWildcard,
  type Bus,
  type BusEngine,
  type BusHandler,
  type BusMessage,
  type Consumer,
  type ConsumerOptions,
  type DurableHandler,
  type DurableMessage,
  type DurablePublishOptions,
  type PublishOptions,
  type RequestOptions,
  type StreamConfig,
  type SubscribeOptions,
  type Unsubscribe,
} from './bus.ts';
import { newId } from '../ids.ts';
import { ExpiringKeys } from '../expiring-keys.ts';
import { isRecordError } from '../store/db.ts';
import type { PersistedMessage, StreamBatch, StreamStorage } from './stream-storage.ts';

interface Sub {
  pattern: string;
  match: (subject: string) => boolean;
  handler: BusHandler<any>;
  queue: string | undefined;
  name: string;
  active: boolean;
}

interface Stored {
  seq: number;
  subject: string;
  data: unknown;
  headers: Readonly<Record<string, string>>;
  deliveries: number;
  /** The durable consumer that took it; `''` while in the stream's backlog. */
  consumer: string;
  /** Its row in the storage (0 without one). */
  rowId: number;
}

interface MemStream {
  cfg: StreamConfig;
  matchers: Array<(subject: string) => boolean>;
  seq: number;
  /** Messages no consumer has taken yet; the first matching consumer gets them. */
  backlog: Stored[];
  /** Message ids stored within the duplicate window. */
  seen: ExpiringKeys;
  /** Loaded from storage: messages of durable consumers that have not started again yet, by durable name. */
  orphans: Map<string, Stored[]>;
}

interface MemConsumer {
  stream: string;
  durable: string;
  filter: string;
  match: (subject: string) => boolean;
  ackWaitMs: number;
  maxInFlight: number;
  /** Redeliveries, served before `queue`: stream order first, redeliveries may come later. */
  retry: Fifo<Stored>;
  queue: Fifo<Stored>;
  /** In delivery order, so their deadlines ascend: the sweep stops at the first one not due. */
  inflight: Map<number, Delivery>;
  /** Redelivers what was not acknowledged in time; one timer per consumer, not one per message. */
  sweeper: NodeJS.Timeout | undefined;
  subscribers: Sub[];
  next: number;
}

/** A queue with O(1) push and shift: `Array#shift` copies the whole array once it is large. */
class Fifo<T> {
  private items: Array<T | undefined> = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  shift(): T | undefined {
    if (this.head === this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
}

/** One delivery of a stored message (a class, not closures: it is made for every message). */
class Delivery implements DurableMessage {
  readonly subject: string;
  readonly data: unknown;
  readonly headers: Readonly<Record<string, string>>;
  readonly deliveryCount: number;
  readonly seq: number;

  constructor(
    private readonly bus: MemoryBus,
    readonly consumer: MemConsumer,
    readonly stored: Stored,
    readonly deadline: number,
  ) {
    this.subject = stored.subject;
    this.data = stored.data;
    this.headers = stored.headers;
    this.deliveryCount = stored.deliveries;
    this.seq = stored.seq;
  }

  ack(): void {
    this.bus.settle(this, undefined);
  }

  nak(delayMs = 0): void {
    this.bus.settle(this, delayMs);
  }
}

/** A durable publish waiting for its group commit. */
interface PendingPut {
  stream: MemStream;
  msg: Stored;
  /** The data and headers as JSON, made when it was published: a message that cannot be serialised fails alone. */
  data: string;
  headers: string | null;
  msgId: string | undefined;
  storedAt: number;
  /** The publish, and repeats of its msgId that arrived before it was stored. */
  settle: Array<{ resolve: () => void; reject: (err: unknown) => void }>;
}

/** The next group commit: everything that happens until it runs. */
interface PendingBatch {
  puts: PendingPut[];
  /** Puts with a msgId, so that a repeat waits for the same commit. */
  byMsgId: Map<string, PendingPut>;
  take: StreamBatch['take'];
  ack: StreamBatch['ack'];
  timer: NodeJS.Immediate;
  /** `flush()` callers waiting for this commit. */
  waiters: Array<() => void>;
}

export interface MemoryBusOptions {
  /**
   * Where durable streams are kept. With it, `publishDurable` resolves only once the message is
   * committed there, and a restart delivers again what was not acknowledged. Without it they live
   * in this process only (unit tests).
   */
  storage?: StreamStorage;
}

const EMPTY_HEADERS: Readonly<Record<string, string>> = Object.freeze({});
/** Messages older than this are dropped when a stream is restored, unless the stream says otherwise (as in NATS JetStream). */
const DEFAULT_MAX_AGE_MS = 24 * 3_600_000;
/** How long a message id counts as a duplicate when the stream does not say (as in NATS JetStream). */
const DEFAULT_DUPLICATE_WINDOW_MS = 120_000;

/**
 * In-process bus for the embedded mode: one process, no network. Not for a cluster;
 * there the NATS bus takes its place behind the same interface.
 *
 * Exact subjects are looked up in a map (O(1)); wildcard subscriptions are scanned, so
 * keep them few (capabilities subscribe once at start, not per device).
 *
 * Durable streams are kept in a {@link StreamStorage} when one is given (the embedded Hearth
 * always gives one), with group commit: durable publishes, takes and acks collect until the
 * event loop has handled what it had in hand (`setImmediate`), then go to the storage in one
 * transaction, and each publish resolves (so the device gets its PUBACK) only after that commit.
 * No fixed delay: one report alone commits at once; under load, whatever arrived meanwhile
 * shares the commit. A message reaches its consumer only once stored.
 */
export class MemoryBus implements BusEngine, Bus {
  private readonly exact = new Map<string, Set<Sub>>();
  private readonly wildcards = new Set<Sub>();
  private readonly roundRobin = new Map<string, number>();
  private pending = 0;
  private idleWaiters: Array<() => void> = [];
  private closed = false;
  private readonly streams = new Map<string, MemStream>();
  private readonly consumers = new Map<string, MemConsumer>();
  private readonly storage: StreamStorage | undefined;
  private batch: PendingBatch | undefined;

  constructor(
    private readonly log: Logger,
    opts: MemoryBusOptions = {},
  ) {
    this.storage = opts.storage;
  }

  async ensureStream(cfg: StreamConfig): Promise<void> {
    const cur = this.streams.get(cfg.name);
    const matchers = cfg.subjects.map(compilePattern);
    const dupWindow = cfg.duplicateWindowMs ?? DEFAULT_DUPLICATE_WINDOW_MS;
    if (cur) {
      Object.assign(cur, { cfg, matchers });
      // ids already seen keep the window they were stored under; new ones get the new window
      cur.seen.ttlMs = dupWindow;
      return;
    }
    const stream: MemStream = { cfg, matchers, seq: 0, backlog: [], seen: new ExpiringKeys(dupWindow), orphans: new Map() };
    if (this.storage) this.restore(stream);
    this.streams.set(cfg.name, stream);
  }

  /** What the stream held when the process last stopped: delivered again once its consumers start. */
  private restore(stream: MemStream): void {
    const now = Date.now();
    const { lastSeq, messages } = this.storage!.load(stream.cfg.name, now - (stream.cfg.maxAgeMs ?? DEFAULT_MAX_AGE_MS));
    stream.seq = lastSeq;
    for (const p of messages) {
      const m: Stored = {
        seq: p.seq,
        subject: p.subject,
        data: JSON.parse(p.data),
        headers: p.headers === null ? EMPTY_HEADERS : JSON.parse(p.headers),
        deliveries: p.deliveries,
        consumer: p.consumer,
        rowId: p.rowId!,
      };
      if (p.msgId !== null) stream.seen.set(p.msgId, true, now);
      if (p.consumer === '') stream.backlog.push(m);
      else {
        const list = stream.orphans.get(p.consumer);
        if (list) list.push(m);
        else stream.orphans.set(p.consumer, [m]);
      }
    }
    if (messages.length)
      this.log.info({ stream: stream.cfg.name, messages: messages.length }, 'durable stream restored: unacknowledged messages will be delivered again');
  }

  /**
   * Stores the message in its stream. With a storage, resolves once it is committed there (see the
   * class comment); without one, at once (kept in this process until acknowledged).
   */
  async publishDurable(subject: string, data: unknown, opts: DurablePublishOptions = {}): Promise<void> {
    if (this.closed) throw new BusError('CLOSED', 'bus is closed');
    let stream: MemStream | undefined;
    for (const s of this.streams.values()) for (const m of s.matchers) if (m(subject)) stream = s;
    if (!stream) throw new BusError('NO_RESPONDERS', `no stream stores ${subject}`);
    const now = Date.now();
    if (opts.msgId !== undefined) {
      // A repeat of a message still waiting for its commit is stored when that one is.
      const waiting = this.batch?.byMsgId.get(opts.msgId);
      if (waiting && waiting.stream === stream) return new Promise<void>((resolve, reject) => void waiting.settle.push({ resolve, reject }));
      if (stream.seen.get(opts.msgId, now)) return;
    }
    const headers = opts.headers ?? EMPTY_HEADERS;
    const msg: Stored = { seq: 0, subject, data, headers, deliveries: 0, consumer: '', rowId: 0 };
    if (!this.storage) {
      if (opts.msgId !== undefined) stream.seen.set(opts.msgId, true, now);
      msg.seq = ++stream.seq;
      this.route(stream, msg);
      return;
    }
    // Serialised here, alone: a message that cannot be stored fails its own publish, not the batch.
    const json = JSON.stringify(data) ?? 'null';
    const headersJson = headers === EMPTY_HEADERS || Object.keys(headers).length === 0 ? null : JSON.stringify(headers);
    if (opts.msgId !== undefined) stream.seen.set(opts.msgId, true, now);
    msg.seq = ++stream.seq;
    const b = this.pendingBatch();
    return new Promise<void>((resolve, reject) => {
      const put: PendingPut = { stream, msg, data: json, headers: headersJson, msgId: opts.msgId, storedAt: now, settle: [{ resolve, reject }] };
      b.puts.push(put);
      if (opts.msgId !== undefined) b.byMsgId.set(opts.msgId, put);
    });
  }

  /** The consumers of the stream that want the message (usually one: consumers' filters rarely overlap). */
  private takers(stream: MemStream, subject: string): MemConsumer[] {
    const out: MemConsumer[] = [];
    for (const c of this.consumers.values()) if (c.stream === stream.cfg.name && c.match(subject)) out.push(c);
    return out;
  }

  /**
   * Hands a stored message to the consumers that take it, or keeps it for the first one to start.
   * `rows`: the storage's row of each copy, in the order of `takers` (the backlog's row when none).
   */
  private route(stream: MemStream, msg: Stored, takers = this.takers(stream, msg.subject), rows?: PersistedMessage[]): void {
    if (takers.length === 0) {
      if (rows) msg.rowId = rows[0].rowId!;
      stream.backlog.push(msg);
      return;
    }
    takers.forEach((c, i) => {
      const copy = i === 0 ? msg : { ...msg };
      copy.consumer = c.durable;
      if (rows) copy.rowId = rows[i].rowId!;
      c.queue.push(copy);
      this.pump(c);
    });
  }

  /** The batch that the next group commit writes; scheduled when it is opened. */
  private pendingBatch(): PendingBatch {
    if (!this.batch) {
      this.batch = { puts: [], byMsgId: new Map(), take: [], ack: [], waiters: [], timer: setImmediate(() => this.commit()) };
    }
    return this.batch;
  }

  /**
   * The group commit: decides which consumer takes each new message, writes the batch in one
   * transaction, then delivers and resolves the publishes. When the transaction fails, each
   * publish is tried alone, so one the storage refuses fails by itself and the others are stored.
   */
  private commit(): void {
    const b = this.batch;
    if (!b) return;
    this.batch = undefined;
    clearImmediate(b.timer);
    const storage = this.storage!;
    const takers = b.puts.map((put) => this.takers(put.stream, put.msg.subject));
    const rows: PersistedMessage[][] = b.puts.map((put, i) => {
      const row = (consumer: string): PersistedMessage => ({
        stream: put.stream.cfg.name,
        consumer,
        seq: put.msg.seq,
        subject: put.msg.subject,
        data: put.data,
        headers: put.headers,
        msgId: put.msgId ?? null,
        storedAt: put.storedAt,
        deliveries: 0,
      });
      return takers[i].length === 0 ? [row('')] : takers[i].map((c) => row(c.durable));
    });
    const lastSeq = (puts: PendingPut[]) => {
      const m = new Map<string, number>();
      for (const p of puts) m.set(p.stream.cfg.name, Math.max(m.get(p.stream.cfg.name) ?? 0, p.msg.seq));
      return m;
    };
    let failed: Map<PendingPut, unknown> | undefined;
    try {
      storage.commit({ put: rows.flat(), take: b.take, ack: b.ack, lastSeq: lastSeq(b.puts) });
    } catch (err) {
      failed = new Map();
      // One message at a time only when the store refused a record; when the store itself fails
      // (busy, full, I/O), retrying each would only hold the event loop: every publish fails at once.
      if (!isRecordError(err)) for (const put of b.puts) failed.set(put, err);
      else if (b.puts.length + b.take.length + b.ack.length > 1) {
        b.puts.forEach((put, i) => {
          try {
            storage.commit({ put: rows[i], take: [], ack: [], lastSeq: lastSeq([put]) });
          } catch (e) {
            failed!.set(put, e);
          }
        });
        try {
          if (b.take.length + b.ack.length) storage.commit({ put: [], take: b.take, ack: b.ack, lastSeq: new Map() });
        } catch (e) {
          // Acknowledged messages that stay stored are delivered again after a restart: harmless.
          this.log.error({ err: e }, 'durable stream: acknowledgements could not be stored');
        }
      } else if (b.puts.length === 1) failed.set(b.puts[0], err);
      else this.log.error({ err }, 'durable stream: acknowledgements could not be stored');
    }
    for (const [i, put] of b.puts.entries()) {
      const err = failed?.get(put);
      if (err !== undefined) {
        if (put.msgId !== undefined) put.stream.seen.delete(put.msgId);
        this.log.error({ err, subject: put.msg.subject }, 'durable stream: message could not be stored; the publisher is told');
        for (const s of put.settle) s.reject(err);
        continue;
      }
      if (!this.closed) this.route(put.stream, put.msg, takers[i], rows[i]);
      for (const s of put.settle) s.resolve();
    }
    for (const w of b.waiters) w();
  }

  async consume<T>(opts: ConsumerOptions, handler: DurableHandler<T>): Promise<Consumer> {
    const stream = this.streams.get(opts.stream);
    if (!stream) throw new BusError('NO_RESPONDERS', `stream ${opts.stream} does not exist`);
    const key = `${opts.stream}/${opts.durable}`;
    let c = this.consumers.get(key);
    if (!c) {
      c = {
        stream: opts.stream,
        durable: opts.durable,
        filter: opts.filter,
        match: compilePattern(opts.filter),
        sweeper: undefined,
        ackWaitMs: opts.ackWaitMs ?? 30_000,
        maxInFlight: opts.maxInFlight ?? 1000,
        retry: new Fifo(),
        queue: new Fifo(),
        inflight: new Map(),
        subscribers: [],
        next: 0,
      };
      this.consumers.set(key, c);
      const keep: Stored[] = [];
      // Its own messages from before a restart, and what no consumer had taken, in stream order.
      const mine: Stored[] = stream.orphans.get(opts.durable) ?? [];
      stream.orphans.delete(opts.durable);
      for (const m of stream.backlog) {
        if (!c.match(m.subject)) {
          keep.push(m);
          continue;
        }
        m.consumer = opts.durable;
        mine.push(m);
        if (this.storage) this.pendingBatch().take.push({ rowId: m.rowId, consumer: opts.durable });
      }
      stream.backlog = keep;
      mine.sort((a, b) => a.seq - b.seq);
      for (const m of mine) c.queue.push(m);
    }
    const sub: Sub = {
      pattern: opts.filter,
      match: c.match,
      handler: handler as BusHandler<any>,
      queue: undefined,
      name: `durable ${opts.stream}/${opts.durable}`,
      active: true,
    };
    c.subscribers.push(sub);
    const consumer = c;
    this.pump(c);
    return {
      stop: async () => {
        sub.active = false;
        consumer.subscribers = consumer.subscribers.filter((s) => s !== sub);
        // Deliveries handed out stay in flight, as in JetStream: a subscriber that finishes its
        // work after stopping may still ack them (they are then done, and not handled again after
        // a restart); what is not acked comes again when ackWait runs out.
      },
    };
  }

  private pump(c: MemConsumer): void {
    while ((c.retry.length || c.queue.length) && c.inflight.size < c.maxInFlight && c.subscribers.length && !this.closed) {
      const m = (c.retry.shift() ?? c.queue.shift())!;
      const sub = c.subscribers[c.next++ % c.subscribers.length];
      m.deliveries++;
      const d = new Delivery(this, c, m, Date.now() + c.ackWaitMs);
      c.inflight.set(m.seq, d);
      if (!c.sweeper) {
        c.sweeper = setInterval(
          () => {
            const now = Date.now();
            for (const f of c.inflight.values()) {
              if (f.deadline > now) break;
              this.settle(f, 0);
            }
          },
          Math.max(20, Math.floor(c.ackWaitMs / 4)),
        );
        c.sweeper.unref();
      }
      this.pending++;
      queueMicrotask(() => this.run(sub, d));
    }
  }

  /** Ends a delivery: acknowledged (`redeliverAfter` undefined) or to be delivered again after the delay. */
  settle(d: Delivery, redeliverAfter: number | undefined): void {
    const c = d.consumer;
    if (c.inflight.get(d.seq) !== d) return;
    c.inflight.delete(d.seq);
    if (redeliverAfter === undefined) {
      if (this.storage && !this.closed) this.pendingBatch().ack.push(d.stored.rowId);
      return this.pump(c);
    }
    const again = () => {
      c.retry.push(d.stored);
      this.pump(c);
    };
    if (redeliverAfter > 0) {
      setTimeout(again, redeliverAfter).unref();
      this.pump(c); // the slot is free for the next message meanwhile
    } else again();
  }

  publish(subject: string, data: unknown, opts?: PublishOptions): void {
    this.deliver(subject, data, opts?.headers, undefined);
  }

  subscribe<T>(pattern: string, handler: BusHandler<T>, opts: SubscribeOptions = {}): Unsubscribe {
    const sub: Sub = { pattern, match: compilePattern(pattern), handler, queue: opts.queue, name: opts.name ?? pattern, active: true };
    if (isWildcard(pattern)) {
      this.wildcards.add(sub);
    } else {
      let set = this.exact.get(pattern);
      if (!set) this.exact.set(pattern, (set = new Set()));
      set.add(sub);
    }
    return () => {
      sub.active = false;
      if (this.wildcards.delete(sub)) return;
      const set = this.exact.get(pattern);
      if (set) {
        set.delete(sub);
        if (set.size === 0) this.exact.delete(pattern);
      }
    };
  }

  request<R>(subject: string, data: unknown, opts: RequestOptions = {}): Promise<R> {
    const timeoutMs = opts.timeoutMs ?? 5000;
    return new Promise<R>((resolve, reject) => {
      const inbox = `_INBOX.${newId('r', 12)}`;
      let timer: NodeJS.Timeout | undefined;
      const unsub = this.subscribe<R>(inbox, (msg) => {
        clearTimeout(timer);
        unsub();
        resolve(msg.data);
      });
      const delivered = this.deliver(subject, data, opts.headers, inbox);
      if (delivered === 0) {
        unsub();
        reject(new BusError('NO_RESPONDERS', `no responders for ${subject}`));
        return;
      }
      timer = setTimeout(() => {
        unsub();
        reject(new BusError('TIMEOUT', `request to ${subject} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
    });
  }

  async flush(): Promise<void> {
    const b = this.batch;
    if (b) await new Promise<void>((resolve) => b.waiters.push(resolve));
    if (this.pending === 0) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  async close(): Promise<void> {
    await this.flush();
    // Acknowledgements made meanwhile go with the last commit.
    this.commit();
    this.closed = true;
    this.storage?.close();
    for (const c of this.consumers.values()) clearInterval(c.sweeper);
    this.consumers.clear();
    this.exact.clear();
    this.wildcards.clear();
  }

  /** Returns how many subscriptions received the message. */
  private deliver(subject: string, data: unknown, headers: Record<string, string> | undefined, reply: string | undefined): number {
    if (this.closed) throw new BusError('CLOSED', 'bus is closed');
    const targets: Sub[] = [];
    let groups: Map<string, Sub[]> | undefined;
    const consider = (sub: Sub) => {
      if (sub.queue === undefined) {
        targets.push(sub);
        return;
      }
      groups ??= new Map();
      const g = groups.get(sub.queue);
      if (g) g.push(sub);
      else groups.set(sub.queue, [sub]);
    };
    const exact = this.exact.get(subject);
    if (exact) for (const sub of exact) consider(sub);
    for (const sub of this.wildcards) if (sub.match(subject)) consider(sub);
    if (groups) {
      for (const [queue, members] of groups) {
        const key = queue;
        const n = this.roundRobin.get(key) ?? 0;
        this.roundRobin.set(key, n + 1);
        targets.push(members[n % members.length]);
      }
    }
    if (targets.length === 0) return 0;
    const msg: BusMessage = {
      subject,
      data,
      headers: headers ?? EMPTY_HEADERS,
      respond: reply === undefined ? undefined : (replyData, replyHeaders) => this.publish(reply, replyData, { headers: replyHeaders }),
    };
    this.pending += targets.length;
    for (const sub of targets) queueMicrotask(() => this.run(sub, msg));
    return targets.length;
  }

  private run(sub: Sub, msg: BusMessage): void {
    const done = () => {
      if (--this.pending === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
    };
    if (!sub.active) return done();
    try {
      const r = sub.handler(msg);
      if (r && typeof (r as Promise<void>).then === 'function') {
        (r as Promise<void>).then(done, (err: unknown) => {
          this.log.error({ err, subscriber: sub.name, subject: msg.subject }, 'bus handler failed');
          done();
        });
        return;
      }
    } catch (err) {
      this.log.error({ err, subscriber: sub.name, subject: msg.subject }, 'bus handler failed');
    }
    done();
  }
}
