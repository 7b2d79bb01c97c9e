import {
  context,
  propagation,
  trace,
  diag,
  DiagLogLevel,
  ROOT_CONTEXT,
  INVALID_SPAN_CONTEXT,
  SpanKind,
  SpanStatusCode,
  type Attributes,
  type Context,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import type { Logger } from '../logger.ts';

export { SpanKind, SpanStatusCode, type Span, type Attributes };

export interface TracingOptions {
  serviceName: string;
  version: string;
  /** `service.instance.id` of the spans: which node made them. */
  nodeName: string;
  /** OTLP/HTTP collector base URL (spans go to `${otlpEndpoint}/v1/traces`); unset: tracing stays off. */
  otlpEndpoint?: string;
  /** Where the exporter's own troubles (collector unreachable, …) are reported. */
  log?: Logger;
}

export interface Tracing {
  /**
   * Exports the spans still buffered (for at most EXPORT_TIMEOUT_MS: an unreachable collector must
   * not hold up a shutdown) and turns tracing off. Never throws.
   */
  shutdown(): Promise<void>;
}

/** How long one export may take, retries included; the batch is dropped after that. */
export const EXPORT_TIMEOUT_MS = 5000;

let enabled = false;
/** The provider's own tracer, not the API's proxy: that one would keep a shut-down provider. */
let tracer: Tracer = trace.getTracer('hearth');
/** What the helpers hand out while tracing is off: records nothing, costs nothing. */
const NOOP_SPAN: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/**
 * Turns tracing on for the process (OpenTelemetry is process-global): a tracer provider with the
 * AsyncLocalStorage context manager and the W3C TraceContext propagator, exporting in batches as
 * OTLP/HTTP JSON. Without an endpoint nothing is loaded and the helpers below stay no-ops.
 */
export async function initTracing(opts: TracingOptions): Promise<Tracing> {
  if (!opts.otlpEndpoint) return { shutdown: async () => undefined };
  if (enabled) throw new Error('tracing is already on in this process');
  // Loaded only when needed: the SDK and the exporter are most of tracing's start-up cost.
  const [{ NodeTracerProvider, BatchSpanProcessor }, { OTLPTraceExporter }, { resourceFromAttributes }, { W3CTraceContextPropagator }, semconv] =
    await Promise.all([
      import('@opentelemetry/sdk-trace-node'),
      import('@opentelemetry/exporter-trace-otlp-http'),
      import('@opentelemetry/resources'),
      import('@opentelemetry/core'),
      import('@opentelemetry/semantic-conventions'),
    ]);
  const log = opts.log?.child({ component: 'tracing' });
  if (log) {
    diag.setLogger(
      {
        error: (msg, ...args) => log.warn({ details: args }, msg),
        warn: (msg, ...args) => log.warn({ details: args }, msg),
        info: () => undefined,
        debug: () => undefined,
        verbose: () => undefined,
      },
      DiagLogLevel.WARN,
    );
  }
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({
      [semconv.ATTR_SERVICE_NAME]: opts.serviceName,
      [semconv.ATTR_SERVICE_VERSION]: opts.version,
      'service.instance.id': opts.nodeName,
    }),
    spanProcessors: [
      new BatchSpanProcessor(new OTLPTraceExporter({ url: `${opts.otlpEndpoint.replace(/\/+$/, '')}/v1/traces`, timeoutMillis: EXPORT_TIMEOUT_MS })),
    ],
  });
  provider.register({ propagator: new W3CTraceContextPropagator() });
  tracer = provider.getTracer('hearth', opts.version);
  enabled = true;
  return {
    async shutdown() {
      if (!enabled) return;
      enabled = false;
      let timer: NodeJS.Timeout | undefined;
      const limit = new Promise<void>((resolve) => (timer = setTimeout(resolve, EXPORT_TIMEOUT_MS + 500)));
      try {
        await Promise.race([provider.shutdown(), limit]);
      } catch (err) {
        log?.warn({ err }, 'the last spans could not be exported');
      }
      clearTimeout(timer);
      trace.disable();
      context.disable();
      propagation.disable();
      diag.disable();
    },
  };
}

/** Whether spans are recorded: callers skip building attributes and carriers when not. */
export function tracingEnabled(): boolean {
  return enabled;
}

/** The context to start a span in: the carrier's trace when it has one, else the active one. */
function parentContext(carrier: Readonly<Record<string, string>> | undefined): Context {
  const active = context.active();
  return carrier ? propagation.extract(active, carrier) : active;
}

/**
 * Starts a span, child of the trace in `parentCarrier` (headers written by `injectTrace`,
 * e.g. carried in a bus envelope) or else of the active span. The caller ends it. The span is not
 * made active: use `withSpan` for that, or `injectTrace(carrier, span)` to pass it on.
 */
export function startSpan(name: string, attrs?: Attributes, parentCarrier?: Readonly<Record<string, string>>, kind: SpanKind = SpanKind.INTERNAL): Span {
  if (!enabled) return NOOP_SPAN;
  return tracer.startSpan(name, { attributes: attrs, kind }, parentContext(parentCarrier));
}

/** Runs `fn` with `span` active (logs inside carry its trace id); the caller still ends the span. */
export function runWithSpan<T>(span: Span, fn: () => T): T {
  if (!enabled) return fn();
  return context.with(trace.setSpan(context.active(), span), fn);
}

/** Marks the span failed with the error. */
export function recordError(span: Span, err: unknown): void {
  span.recordException(err instanceof Error ? err : String(err));
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
}

/**
 * Runs `fn` in a new active span (child as in `startSpan`) and ends the span when `fn` returns or
 * its promise settles; a throw or rejection marks the span failed and is passed on. Logs written
 * inside carry the span's trace id.
 */
export function withSpan<T>(
  name: string,
  attrs: Attributes | undefined,
  fn: (span: Span) => T,
  parentCarrier?: Readonly<Record<string, string>>,
  kind: SpanKind = SpanKind.INTERNAL,
): T {
  if (!enabled) return fn(NOOP_SPAN);
  const parent = parentContext(parentCarrier);
  const span = tracer.startSpan(name, { attributes: attrs, kind }, parent);
  return context.with(trace.setSpan(parent, span), () => {
    let result: T;
    try {
      result = fn(span);
    } catch (err) {
      recordError(span, err);
      span.end();
      throw err;
    }
    if (result instanceof Promise) {
      return result.then(
        (v) => (span.end(), v),
        (err: unknown) => {
          recordError(span, err);
          span.end();
          throw err;
        },
      ) as T;
    }
    span.end();
    return result;
  });
}

/**
 * Writes the trace of `span` (default: the active span) into `carrier` as W3C `traceparent` and
 * `tracestate` entries, for HTTP headers or a plain object inside a bus envelope. Returns the
 * carrier; leaves it untouched while tracing is off or there is no trace.
 */
export function injectTrace(carrier: Record<string, string>, span?: Span): Record<string, string> {
  if (!enabled) return carrier;
  propagation.inject(span ? trace.setSpan(context.active(), span) : context.active(), carrier);
  return carrier;
}

/**
 * The context of the trace in `carrier` (written by `injectTrace`), for `context.with(…)` when
 * work should continue a remote trace without a span of its own. ROOT_CONTEXT when there is none.
 */
export function extractTrace(carrier: Readonly<Record<string, string>>): Context {
  if (!enabled) return ROOT_CONTEXT;
  return propagation.extract(ROOT_CONTEXT, carrier);
}

/** The trace id of the active span, if tracing is on and a span is active. */
export function currentTraceId(): string | undefined {
  if (!enabled) return undefined;
  const id = trace.getActiveSpan()?.spanContext().traceId;
  return id && id !== INVALID_SPAN_CONTEXT.traceId ? id : undefined;
}

const NO_FIELDS: Readonly<Record<string, string>> = Object.freeze({});

/**
 * `trace_id` and `span_id` of the active span for log records (the logger's mixin); the same
 * frozen empty object when there is none, so that the logger can tell and skip the merge.
 */
export function traceLogFields(): Readonly<Record<string, string>> {
  if (!enabled) return NO_FIELDS;
  const span = trace.getActiveSpan();
  if (!span) return NO_FIELDS;
  const { traceId, spanId } = span.spanContext();
  if (traceId === INVALID_SPAN_CONTEXT.traceId) return NO_FIELDS;
  return { trace_id: traceId, span_id: spanId };
}

/** True for the empty result of `traceLogFields`. */
export function isNoTraceFields(fields: object): boolean {
  return fields === NO_FIELDS;
}
