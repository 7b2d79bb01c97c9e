import type { Logger } from '../logger.ts';
import { BusError, isWildcard, subjectMatches, type Bus, type BusHandler, type BusMessage, type PublishOptions, type RequestOptions, type SubscribeOptions, type Unsubscribe } from './bus.ts';
import { newId } from '../ids.ts';

interface Sub {
  pattern: string;
  handler: BusHandler<any>;
  queue: string | undefined;
  name: string;
  active: boolean;
}

const EMPTY_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

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

  constructor(private readonly log: Logger) {}

  publish(subject: string, data: unknown, opts?: PublishOptions): void {
    this.deliver(subject, data, opts?.headers, undefined);
  }

  subscribe<T>(pattern: string, handler: BusHandler<T>, opts: SubscribeOptions = {}): Unsubscribe {
    const sub: Sub = { pattern, handler, queue: opts.queue, name: opts.name ?? pattern, active: true };
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
    for (const sub of this.wildcards) if (subjectMatches(sub.pattern, subject)) consider(sub);
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
