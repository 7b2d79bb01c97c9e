import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/** Structured JSON logs on stdout; `pretty` is left to the operator's own tooling (pino-pretty). */
export function createLogger(level: LevelWithSilent, base: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { service: 'hearth', ...base }, timestamp: pino.stdTimeFunctions.isoTime });
}
