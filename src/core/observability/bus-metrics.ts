import type {
  Bus,
  BusEngine,
  BusHandler,
  Consumer,
  ConsumerOptions,
  DurableHandler,
  DurablePublishOptions,
  PublishOptions,
  RequestOptions,
  StreamConfig,
  SubscribeOptions,
  Unsubscribe,
} from '../bus/bus.ts';
import type { Metrics } from './metrics.ts';
import { injectTrace, SpanKind, tracingEnabled, withSpan } from './tracing.ts';

/** With tracing on: the active trace goes along in the message headers (W3C `traceparent`). */
function traced<O extends PublishOptions>(opts: O | undefined): O | undefined {
  if (!tracingEnabled()) return opts;
  const headers = injectTrace({ ...opts?.headers });
  return headers.traceparent ? ({ ...opts, headers } as O) : opts;
}

/** With tracing on: a handler of a message that carries a trace runs in a child span of it. */
function tracedHandler<M extends { subject: string; headers: Readonly<Record<string, string>> }>(
  name: string,
  handler: (msg: M) => void | Promise<void>,
): (msg: M) => void | Promise<void> {
  if (!tracingEnabled()) return handler;
  return (msg) =>
    msg.headers.traceparent
      ? withSpan(
          `bus ${name}`,
          { 'messaging.system': 'hearth-bus', 'messaging.destination.name': msg.subject },
          () => handler(msg),
          msg.headers,
          SpanKind.CONSUMER,
        )
      : handler(msg);
}

/**
 * Core publishes are timed one in this many: a publish costs about a microsecond and reading the
 * clock twice would add a fifth to it. The histogram's distribution stays right; its `_count` for
 * kind="core" is this fraction of the publishes.
 */
export const CORE_PUBLISH_SAMPLE = 16;

/**
 * A bus that times what it passes on to `inner`, for `hearth_bus_*_duration_seconds`, and with
 * tracing on carries the W3C trace context in message headers (NATS headers in a cluster) so a
 * trace follows a message from publisher to handlers across nodes.
 */
class InstrumentedBus implements BusEngine, Bus {
  private publishes = 0;

  constructor(
    private readonly inner: BusEngine,
    private readonly metrics: Metrics,
  ) {}

  publish(subject: string, data: unknown, opts?: PublishOptions): void {
    opts = traced(opts);
    if (++this.publishes % CORE_PUBLISH_SAMPLE !== 0) return this.inner.publish(subject, data, opts);
    const t = performance.now();
    try {
      this.inner.publish(subject, data, opts);
    } finally {
      this.metrics.observeBusPublish('core', performance.now() - t);
    }
  }

  async publishDurable(subject: string, data: unknown, opts?: DurablePublishOptions): Promise<void> {
    opts = traced(opts);
    const t = performance.now();
    try {
      await this.inner.publishDurable(subject, data, opts);
    } finally {
      this.metrics.observeBusPublish('durable', performance.now() - t);
    }
  }

  async request<R = unknown>(subject: string, data: unknown, opts?: RequestOptions): Promise<R> {
    opts = traced(opts);
    const t = performance.now();
    try {
      return await this.inner.request<R>(subject, data, opts);
    } finally {
      this.metrics.observeBusRequest(performance.now() - t);
    }
  }

  subscribe<T = unknown>(pattern: string, handler: BusHandler<T>, opts?: SubscribeOptions): Unsubscribe {
    return this.inner.subscribe(pattern, tracedHandler(opts?.name ?? pattern, handler), opts);
  }

  ensureStream(cfg: StreamConfig): Promise<void> {
    return this.inner.ensureStream(cfg);
  }

  consume<T = unknown>(opts: ConsumerOptions, handler: DurableHandler<T>): Promise<Consumer> {
    return this.inner.consume(opts, tracedHandler(opts.durable, handler));
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/**
 * Wraps a bus so that publishes (core, sampled; durable, all) and requests are timed into
 * `metrics`, and traces travel with messages. Everything else passes straight through; methods beyond the `Bus` interface are
 * not visible through the wrapper, so keep the inner bus for those.
 */
export function instrumentBus(bus: BusEngine, metrics: Metrics): Bus {
  return new InstrumentedBus(bus, metrics);
}
