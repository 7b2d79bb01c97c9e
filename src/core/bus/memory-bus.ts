import type { Logger } from '../logger.ts';
import {
  BusError, compilePattern, isWildcard,
  type Bus, type BusHandler, type BusMessage, type Consumer, type ConsumerOptions, type DurableHandler, type DurableMessage, type DurablePublishOptions,
  type PublishOptions, type RequestOptions, type StreamConfig, type SubscribeOptions, type Unsubscribe,
} from './bus.ts';
import { newId } from '../ids.ts';
import { ExpiringKeys } from '../expiring-keys.ts';

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
}

interface MemStream {
  cfg: StreamConfig;
  matchers: Array<(subject: string) => boolean>;
  seq: number;
  /** Messages no consumer has taken yet; the first matching consumer gets them. */
  backlog: Stored[];
  /** Message ids stored within the duplicate window. */
  seen: ExpiringKeys;
}

interface MemConsumer {
  stream: string;
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

  constructor(private readonly bus: MemoryBus, readonly consumer: MemConsumer, readonly stored: Stored, readonly deadline: number) {
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

const EMPTY_HEADERS: Readonly<Record<string, string>> = Object.freeze({});
/** How long a message id counts as a duplicate when the stream does not say (as in NATS JetStream). */
const DEFAULT_DUPLICATE_WINDOW_MS = 120_000;

/**
 * In-process bus for the embedded mode: one process, no network. Not for a cluster;
 * there the NATS bus takes its place behind the same interface.
 *
 * Exact subjects are looked up in a map (O(1)); wildcard subscriptions are scanned, so
 * keep them few (capabilities subscribe once at start, not per device).
 */
export class MemoryBus implements Bus {
  private readonly exact = new Map<string, Set<Sub>>();
  private readonly wildcards = new Set<Sub>();
  private readonly roundRobin = new Map<string, number>();
  private pending = 0;
  private idleWaiters: Array<() => void> = [];
  private closed = false;
  private readonly streams = new Map<string, MemStream>();
  private readonly consumers = new Map<string, MemConsumer>();

  constructor(private readonly log: Logger) {}

  async ensureStream(cfg: StreamConfig): Promise<void> {
    const cur = this.streams.get(cfg.name);
    const matchers = cfg.subjects.map(compilePattern);
    const dupWindow = cfg.duplicateWindowMs ?? DEFAULT_DUPLICATE_WINDOW_MS;
    if (cur) {
      Object.assign(cur, { cfg, matchers });
      // ids already seen keep the window they were stored under; new ones get the new window
      cur.seen.ttlMs = dupWindow;
    } else this.streams.set(cfg.name, { cfg, matchers, seq: 0, backlog: [], seen: new ExpiringKeys(dupWindow) });
  }

  /**
   * Durable in the sense of the interface, within this process: the message is kept until a
   * consumer acknowledges it; a graceful stop drains it. (The NATS bus stores it on disk.)
   */
  async publishDurable(subject: string, data: unknown, opts: DurablePublishOptions = {}): Promise<void> {
    if (this.closed) throw new BusError('CLOSED', 'bus is closed');
    let stream: MemStream | undefined;
    for (const s of this.streams.values()) for (const m of s.matchers) if (m(subject)) stream = s;
    if (!stream) throw new BusError('NO_RESPONDERS', `no stream stores ${subject}`);
    if (opts.msgId !== undefined) {
      const now = Date.now();
      if (stream.seen.get(opts.msgId, now)) return;
      stream.seen.set(opts.msgId, true, now);
    }
    const msg: Stored = { seq: ++stream.seq, subject, data, headers: opts.headers ?? EMPTY_HEADERS, deliveries: 0 };
    let taken = false;
    for (const c of this.consumers.values()) {
      if (c.stream !== stream.cfg.name || !c.match(subject)) continue;
      c.queue.push(taken ? { ...msg } : msg);
      taken = true;
      this.pump(c);
    }
    if (!taken) stream.backlog.push(msg);
  }

  async consume<T>(opts: ConsumerOptions, handler: DurableHandler<T>): Promise<Consumer> {
    const stream = this.streams.get(opts.stream);
    if (!stream) throw new BusError('NO_RESPONDERS', `stream ${opts.stream} does not exist`);
    const key = `${opts.stream}/${opts.durable}`;
    let c = this.consumers.get(key);
    if (!c) {
      c = { stream: opts.stream, filter: opts.filter, match: compilePattern(opts.filter), sweeper: undefined, ackWaitMs: opts.ackWaitMs ?? 30_000, maxInFlight: opts.maxInFlight ?? 1000, retry: new Fifo(), queue: new Fifo(), inflight: new Map(), subscribers: [], next: 0 };
      this.consumers.set(key, c);
      const keep: Stored[] = [];
      for (const m of stream.backlog) (c.match(m.subject) ? c.queue : keep).push(m);
      stream.backlog = keep;
    }
    const sub: Sub = { pattern: opts.filter, match: c.match, handler: handler as BusHandler<any>, queue: undefined, name: `durable ${opts.stream}/${opts.durable}`, active: true };
    c.subscribers.push(sub);
    const consumer = c;
    this.pump(c);
    return {
      stop: async () => {
        sub.active = false;
        consumer.subscribers = consumer.subscribers.filter((s) => s !== sub);
        if (consumer.subscribers.length === 0 && consumer.inflight.size) {
          // Nobody is left to ack: hand the unacknowledged messages back, in order.
          const back = [...consumer.inflight.values()].map((f) => f.stored).sort((a, b) => a.seq - b.seq);
          consumer.inflight.clear();
          for (const m of back) consumer.retry.push(m);
        }
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
        c.sweeper = setInterval(() => {
          const now = Date.now();
          for (const f of c.inflight.values()) {
            if (f.deadline > now) break;
            this.settle(f, 0);
          }
        }, Math.max(20, Math.floor(c.ackWaitMs / 4)));
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
    if (redeliverAfter === undefined) return this.pump(c);
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
    if (this.pending === 0) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
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
