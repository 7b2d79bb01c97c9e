/**
 * A start that cannot go on as configured (a port in use, a data directory held by another
 * Hearth). Its message is one line for a person, naming the variable to change; the CLI prints
 * it without a stack trace and exits with `EXIT_CANNOT_START`.
 */
export class StartupError extends Error {
  constructor(
    message: string,
    readonly variable?: string,
  ) {
    super(message);
    this.name = 'StartupError';
  }
}

/** Exit code of a start refused by its configuration or its surroundings (sysexits' EX_CONFIG). */
export const EXIT_CANNOT_START = 78;
