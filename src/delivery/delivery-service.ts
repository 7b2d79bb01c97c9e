import { signBody } from '../core/signing.ts';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import type { Bus, Consumer, DurableMessage } from '../core/bus/bus.ts';
import { foreignSubject } from '../core/bus/events.ts';
import { subjects } from '../core/bus/subjects.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/observability/metrics.ts';
import { createOutbound, OutboundError, type Outbound } from '../core/outbound.ts';
import type { DeadLetterStore } from './dead-letters.ts';
import { FILE_DEFAULTS, type FileTargets } from './file-target.ts';
import type { Delivery, DeliveryQueue, RouteSpec, Target } from '../routing/envelope.ts';

/** The durable stream of delivery jobs, one subject per route target: `delivery.{routeId}.{targetIndex}`. */
export const DELIVERY_STREAM = 'DELIVERY';

type ExternalTarget = Exclude<Target, { type: 'builtin' }>;

const DEFAULT_CONCURRENCY = 4;
const DEFAULT_RETRIES = 5;
const DEFAULT_TIMEOUT_MS = 10_000;

export interface BackoffOptions {
  /** Delay before the second attempt (default 500 ms); it doubles with every attempt… */
  initialMs: number;
  /** …up to this (default 30 s). */
  maxMs: number;
}

/**
 * How long to wait after failed attempt number `attempt` (1-based): exponential, capped, with
 * jitter (50–100 % of the step) so that jobs failing together do not come back together.
 */
export function retryDelay(attempt: number, opts: BackoffOptions = { initialMs: 500, maxMs: 30_000 }, random: () => number = Math.random): number {
  const step = Math.min(opts.maxMs, opts.initialMs * 2 ** Math.min(attempt - 1, 30));
  return Math.round(step * (0.5 + random() / 2));
}

export interface DeliveryServiceDeps {
  bus: Bus;
  log: Logger;
  metrics?: Metrics;
  deadLetters: DeadLetterStore;
  backoff?: BackoffOptions;
  /** Each target's circuit breaker (default: opens after 5 failures in a row, tries again after 30 s). */
  breaker?: { consecutiveFailures: number; halfOpenAfterMs: number };
  /** The file targets' writer (absent: a file target fails its deliveries). */
  files?: FileTargets;
}

/** One external target of a live route and the consumer that works on its jobs on this node. */
interface TargetWorker {
  key: string;
  /** `route-name#index`: the breaker's metric label, without URL or secret. */
  label: string;
  concurrency: number;
  outbound: Outbound;
  consumer: Consumer;
  /** Keyed by stream sequence: deliveries of a job refused by the open breaker, which do not count as attempts. */
  deferred: Map<number, number>;
}

/** Why an attempt failed, in words for a dead letter (never the URL: it may carry a secret). */
function describe(err: unknown, timeoutMs: number): string {
  if (err instanceof OutboundError) {
    if (err.status !== undefined) return `HTTP ${err.status}`;
    if (err.reason === 'timeout') return `no answer within ${timeoutMs} ms`;
    return err.message;
  }
  const e = err as Error & { cause?: { code?: string; message?: string } };
  if (e?.cause?.code) return `connection failed: ${e.cause.code}`;
  return e?.message ?? String(err);
}

/**
 * Connections to AMQP brokers, one per URL, each with one confirm channel that every target on
 * that broker publishes through. A connection or channel that closes is forgotten, and the next
 * publish opens a new one: reconnects are paced by the jobs' own retry backoff and breaker.
 */
class AmqpPool {
  private readonly channels = new Map<string, Promise<{ model: ChannelModel; channel: ConfirmChannel }>>();

  constructor(private readonly log: Logger) {}

  /** Publishes and resolves once the broker confirmed it; rejects when it refused or the channel closed first. */
  async publish(url: string, exchange: string, routingKey: string, body: Buffer, opts: { messageId: string; headers: Record<string, string> }): Promise<void> {
    const { channel } = await this.open(url);
    await new Promise<void>((resolve, reject) => {
      channel.publish(
        exchange,
        routingKey,
        body,
        { contentType: 'application/json', persistent: true, messageId: opts.messageId, headers: opts.headers },
        (err) => {
          if (err) reject(new Error(`the broker did not confirm the message: ${err instanceof Error ? err.message : String(err)}`));
          else resolve();
        },
      );
    });
  }

  private open(url: string) {
    let p = this.channels.get(url);
    if (p) return p;
    p = (async () => {
      // amqplib is loaded at the first AMQP target, not by every node.
      const { connect } = await import('amqplib');
      const model = await connect(url, { timeout: DEFAULT_TIMEOUT_MS });
      const forget = () => {
        if (this.channels.get(url) === p) this.channels.delete(url);
      };
      model.on('error', (err) => this.log.warn({ err: err.message }, 'AMQP delivery connection failed'));
      model.on('close', forget);
      const channel = await model.createConfirmChannel();
      // A channel error (an unknown exchange) closes the channel: its pending publishes fail, the next one reopens.
      channel.on('error', (err) => this.log.warn({ err: err.message }, 'AMQP delivery channel closed by the broker'));
      channel.on('close', () => {
        forget();
        model.close().catch(() => undefined);
      });
      return { model, channel };
    })();
    const opened = p;
    opened.catch(() => {
      if (this.channels.get(url) === opened) this.channels.delete(url);
    });
    this.channels.set(url, opened);
    return opened;
  }

  async close(): Promise<void> {
    const all = [...this.channels.values()];
    this.channels.clear();
    await Promise.all(
      all.map(async (p) => {
        try {
          await (await p).model.close();
        } catch {
          /* failed to open, or closed already */
        }
      }),
    );
  }
}

/**
 * Delivers routed messages to external targets (webhooks, NATS subjects, AMQP exchanges). The
 * pipeline enqueues one job per message and target on the durable DELIVERY stream; every worker
 * node consumes each live target's jobs through one shared durable consumer, at most the
 * target's `concurrency` at a time across the cluster. A failed attempt is retried through the
 * stream (`nak` with backoff), so a retry survives a restart; after the last attempt, or at once
 * for an answer another attempt cannot change (a 4xx other than 429), the job becomes a dead
 * letter and is acknowledged.
 */
export class DeliveryService implements DeliveryQueue {
  private readonly workers = new Map<string, TargetWorker>();
  private readonly amqp: AmqpPool;
  private readonly backoff: BackoffOptions;
  private readonly breaker: { consecutiveFailures: number; halfOpenAfterMs: number };
  /** Reconciles run one after the other: a route change must not race the previous one. */
  private reconciling: Promise<void> = Promise.resolve();

  constructor(private readonly deps: DeliveryServiceDeps) {
    this.amqp = new AmqpPool(deps.log);
    this.backoff = deps.backoff ?? { initialMs: 500, maxMs: 30_000 };
    this.breaker = deps.breaker ?? { consecutiveFailures: 5, halfOpenAfterMs: 30_000 };
  }

  /** Declares the DELIVERY stream (every node that enqueues or delivers). */
  declare(): Promise<void> {
    return this.deps.bus.ensureStream({ name: DELIVERY_STREAM, subjects: [subjects.allDelivery] });
  }

  /**
   * Stores the job. The stream drops a repeat of the same message for the same target (a
   * redelivered uplink routed twice); a replay passes a `jobId` of its own to be stored anew.
   */
  enqueue(d: Delivery, jobId = `${d.envelope.id}:${d.routeId}:${d.targetIndex}`): Promise<void> {
    // A NATS subject takes a core publish, which neither waits nor can be retried meaningfully:
    // publish it right here instead of storing a job (the routed message itself is durable).
    if (d.target.type === 'nats') {
      try {
        this.publishNats(d, d.target.subject);
        this.deps.metrics?.delivery('nats', 'ok');
        return Promise.resolve();
      } catch (err) {
        return Promise.reject(err as Error);
      }
    }
    return this.deps.bus.publishDurable(subjects.delivery(d.routeId, d.targetIndex), d, { msgId: jobId });
  }

  private publishNats(d: Delivery, subject: string): void {
    const meta: Record<string, string> = { 'x-hearth-message-id': d.envelope.id, 'x-hearth-route': d.routeName };
    if (d.lane) meta['x-hearth-lane'] = d.lane;
    let data: unknown;
    try {
      data = JSON.parse(d.body);
    } catch {
      throw new OutboundError(`${d.routeName}#${d.targetIndex}`, 'status', 'the body is not JSON', false);
    }
    // The operator's subject: outside the catalogue, carrying whatever the route's template made.
    this.deps.bus.publish(foreignSubject(subject), data, { headers: meta });
  }

  /** Starts consumers for the external targets of `routes` not yet served here and stops those of targets that are gone. */
  reconcile(routes: RouteSpec[]): Promise<void> {
    const run = this.reconciling.then(() => this.apply(routes));
    this.reconciling = run.catch(() => undefined);
    return run;
  }

  /** Stops every consumer (jobs under way finish first) and closes the AMQP connections. */
  async stop(): Promise<void> {
    await this.reconcile([]);
    await this.amqp.close();
    await this.deps.files?.close();
  }

  private async apply(routes: RouteSpec[]): Promise<void> {
    const wanted = new Map<string, { route: RouteSpec; index: number; target: ExternalTarget }>();
    for (const route of routes) {
      route.targets.forEach((target, index) => {
        if (target.type !== 'builtin') wanted.set(`${route.id}.${index}`, { route, index, target });
      });
    }
    for (const [key, w] of this.workers) {
      const want = wanted.get(key);
      if (want && concurrencyOf(want.target) === w.concurrency) continue;
      this.workers.delete(key);
      await w.consumer.stop();
    }
    for (const [key, { route, index, target }] of wanted) {
      if (this.workers.has(key)) continue;
      await this.startWorker(key, route, index, target);
    }
    await this.deps.files?.retain(new Set([...wanted].filter(([, w]) => w.target.type === 'file').map(([key]) => key)));
  }

  private async startWorker(key: string, route: RouteSpec, index: number, target: ExternalTarget): Promise<void> {
    const label = `${route.name}#${index}`;
    const timeoutMs = timeoutOf(target);
    const concurrency = concurrencyOf(target);
    const outbound = createOutbound({ name: label, metrics: this.deps.metrics, timeoutMs, retries: 0, breaker: this.breaker });
    const w = { key, label, concurrency, outbound, deferred: new Map<number, number>() } as TargetWorker;
    w.consumer = await this.deps.bus.consume(
      // A job is redelivered only if the worker holding it died: give an attempt ample time.
      {
        stream: DELIVERY_STREAM,
        durable: `deliver-${route.id}-${index}`,
        filter: subjects.delivery(route.id, index),
        maxInFlight: concurrency,
        ackWaitMs: Math.max(30_000, timeoutMs * 3),
      },
      (m) => this.handle(w, m),
    );
    this.workers.set(key, w);
  }

  /** One delivery attempt of one job, settled with ack (done, or dead-lettered) or nak (retry later). */
  private async handle(w: TargetWorker, m: DurableMessage<Delivery>): Promise<void> {
    const d = m.data;
    const type = d.target.type;
    const deferred = w.deferred.get(m.seq) ?? 0;
    const attempt = m.deliveryCount - deferred;
    try {
      // A file target writes to a local disk: no timeout or circuit breaker around it (its batches wait for each other).
      if (d.target.type === 'file') await this.send(d, new AbortController().signal);
      else await w.outbound.execute((signal) => this.send(d, signal));
      this.deps.metrics?.delivery(type, 'ok');
      w.deferred.delete(m.seq);
      return m.ack();
    } catch (err) {
      if (err instanceof OutboundError && err.reason === 'open') {
        // Not an attempt: the target was not even tried. Come back when the breaker lets a trial through.
        w.deferred.set(m.seq, deferred + 1);
        this.deps.metrics?.delivery(type, 'retry');
        return m.nak(this.breaker.halfOpenAfterMs + retryDelay(1, this.backoff));
      }
      const permanent = err instanceof OutboundError && !err.retryable;
      const maxAttempts = ('retries' in d.target && d.target.retries !== undefined ? d.target.retries : DEFAULT_RETRIES) + 1;
      const why = describe(err, timeoutOf(d.target));
      if (!permanent && attempt < maxAttempts) {
        this.deps.metrics?.delivery(type, 'retry');
        return m.nak(retryDelay(attempt, this.backoff));
      }
      const reason = permanent ? why : `${why} after ${attempt} attempt${attempt === 1 ? '' : 's'}`;
      try {
        const id = await this.deps.deadLetters.record(d, reason, attempt);
        this.deps.log.warn(
          { deadLetter: id, route: d.routeName, target: w.label, messageId: d.envelope.id, reason },
          'delivery failed for good; kept as a dead letter',
        );
      } catch (storeErr) {
        // Not lost: the job comes back and is dead-lettered on its next failure.
        this.deps.log.error({ err: storeErr, route: d.routeName, target: w.label }, 'could not store a dead letter; the job will be retried');
        return m.nak(retryDelay(attempt, this.backoff));
      }
      this.deps.metrics?.delivery(type, 'dead');
      this.deps.metrics?.deadLetter(type);
      w.deferred.delete(m.seq);
      return m.ack();
    }
  }

  /** One attempt; throws OutboundError with `retryable: false` for an answer another attempt will not change. */
  private async send(d: Delivery, signal: AbortSignal): Promise<void> {
    const t = d.target;
    const meta: Record<string, string> = { 'x-hearth-message-id': d.envelope.id, 'x-hearth-route': d.routeName };
    if (d.lane) meta['x-hearth-lane'] = d.lane;
    if (d.envelope.trace?.traceparent) meta.traceparent = d.envelope.trace.traceparent;
    if (d.envelope.trace?.tracestate) meta.tracestate = d.envelope.trace.tracestate;
    if (t.type === 'webhook') {
      // Static headers first: they cannot override what Hearth itself vouches for.
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(t.headers ?? {})) headers[k.toLowerCase()] = v;
      Object.assign(headers, { 'content-type': 'application/json' }, meta);
      if (t.secret) headers['x-hearth-signature'] = signBody(t.secret, d.body);
      const res = await fetch(t.url, { method: 'POST', headers, body: d.body, signal });
      // Read (and drop) the answer within the attempt, so the connection is reused.
      const text = await res.text();
      if (!res.ok) {
        const retryable = res.status >= 500 || res.status === 429;
        throw new OutboundError(
          `${d.routeName}#${d.targetIndex}`,
          'status',
          `answered ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}`,
          retryable,
          res.status,
        );
      }
      return;
    }
    if (t.type === 'nats') return this.publishNats(d, t.subject);
    if (t.type === 'file') {
      if (!this.deps.files) throw new OutboundError(`${d.routeName}#${d.targetIndex}`, 'status', 'file targets are not available on this node', false);
      return this.deps.files.append({ ...d, target: t });
    }
    await this.amqp.publish(t.url, t.exchange, t.routingKey ?? `hearth.${d.envelope.kind}`, Buffer.from(d.body), { messageId: d.envelope.id, headers: meta });
  }
}

function concurrencyOf(t: ExternalTarget): number {
  if (t.type === 'file') return t.concurrency ?? FILE_DEFAULTS.concurrency;
  return ('concurrency' in t && t.concurrency) || DEFAULT_CONCURRENCY;
}

function timeoutOf(t: ExternalTarget): number {
  return ('timeoutMs' in t && t.timeoutMs) || DEFAULT_TIMEOUT_MS;
}
