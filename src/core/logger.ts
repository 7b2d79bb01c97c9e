import { pino, type Logger, type LevelWithSilent, type DestinationStream } from 'pino';

export type { Logger };

/**
 * Structured JSON logs, on stdout unless another destination is given; pretty printing is left
 * to the operator's own tooling (pino-pretty).
 */
export function createLogger(level: LevelWithSilent, base: Record<string, unknown> = {}, destination?: DestinationStream): Logger {
  const opts = { level, base: { service: 'hearth', ...base }, timestamp: pino.stdTimeFunctions.isoTime };
  return destination ? pino(opts, destination) : pino(opts);
}
