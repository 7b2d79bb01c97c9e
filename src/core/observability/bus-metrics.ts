import type {
  Bus, BusHandler, Consumer, ConsumerOptions, DurableHandler, DurablePublishOptions, PublishOptions, RequestOptions, StreamConfig, SubscribeOptions, Unsubscribe,
} from '../bus/bus.ts';
import type { Metrics } from './metrics.ts';

/**
 * Core publishes are timed one in this many: a publish costs about a microsecond and reading the
 * clock twice would add a fifth to it. The histogram's distribution stays right; its `_count` for
 * kind="core" is this fraction of the publishes.
 */
export const CORE_PUBLISH_SAMPLE = 16;

/** A bus that times what it passes on to `inner`, for `hearth_bus_*_duration_seconds`. */
class InstrumentedBus implements Bus {
  private publishes = 0;

  constructor(private readonly inner: Bus, private readonly metrics: Metrics) {}

  publish(subject: string, data: unknown, opts?: PublishOptions): void {
    if (++this.publishes % CORE_PUBLISH_SAMPLE !== 0) return this.inner.publish(subject, data, opts);
    const t = performance.now();
    try {
      this.inner.publish(subject, data, opts);
    } finally {
      this.metrics.observeBusPublish('core', performance.now() - t);
    }
  }

  async publishDurable(subject: string, data: unknown, opts?: DurablePublishOptions): Promise<void> {
    const t = performance.now();
    try {
      await this.inner.publishDurable(subject, data, opts);
    } finally {
      this.metrics.observeBusPublish('durable', performance.now() - t);
    }
  }

  async request<R = unknown>(subject: string, data: unknown, opts?: RequestOptions): Promise<R> {
    const t = performance.now();
    try {
      return await this.inner.request<R>(subject, data, opts);
    } finally {
      this.metrics.observeBusRequest(performance.now() - t);
    }
  }

  subscribe<T = unknown>(pattern: string, handler: BusHandler<T>, opts?: SubscribeOptions): Unsubscribe {
    return this.inner.subscribe(pattern, handler, opts);
  }

  ensureStream(cfg: StreamConfig): Promise<void> {
    return this.inner.ensureStream(cfg);
  }

  consume<T = unknown>(opts: ConsumerOptions, handler: DurableHandler<T>): Promise<Consumer> {
    return this.inner.consume(opts, handler);
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
 * `metrics`. Everything else passes straight through; methods beyond the `Bus` interface are
 * not visible through the wrapper, so keep the inner bus for those.
 */
export function instrumentBus(bus: Bus, metrics: Metrics): Bus {
  return new InstrumentedBus(bus, metrics);
}
