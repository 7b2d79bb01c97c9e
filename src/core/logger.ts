import { pino, type Logger, type LevelWithSilent, type DestinationStream } from 'pino';
import { isNoTraceFields, traceLogFields } from './observability/tracing.ts';

export type { Logger };

/**
 * Structured JSON logs, on stdout unless another destination is given; pretty printing is left
 * to the operator's own tooling (pino-pretty). While tracing is on, a record written inside a span
 * carries its `trace_id` and `span_id`, so logs and traces can be joined; otherwise the mixin
 * returns a shared empty object and the record is written as it is.
 */
export function createLogger(level: LevelWithSilent, base: Record<string, unknown> = {}, destination?: DestinationStream): Logger {
  const opts = {
    level,
    base: { service: 'hearth', ...base },
    timestamp: pino.stdTimeFunctions.isoTime,
    mixin: traceLogFields,
    // pino's default merge writes into the mixin's object, which must stay empty when shared.
    mixinMergeStrategy: (record: object, fields: object) => (isNoTraceFields(fields) ? record : Object.assign(fields, record)),
  };
  return destination ? pino(opts, destination) : pino(opts);
}
