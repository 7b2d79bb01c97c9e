import ipaddr from 'ipaddr.js';
import { HearthError } from '../core/errors.ts';
import { newSecret } from '../core/ids.ts';
import { safeEqual } from '../core/secrets.ts';
import type { AuthService, AuthSession } from './auth-service.ts';

/** Wrong setup codes from other machines before remote setup is closed until the next start. */
const MAX_CODE_FAILURES = 20;

export interface OperatorSetupDeps {
  auth: AuthService;
  /** The generated first password still kept in the data directory (undefined: none, or used). */
  initialPassword: () => string | undefined;
  /** Called once the operator chose its own credentials (the kept password is then removed). */
  onDone: () => void;
}

/**
 * First-run setup, as Home Assistant does it: while the operator still has its generated first
 * password and has never signed in, the console asks for the operator's own e-mail and password.
 * From this machine (loopback) that is enough; from elsewhere it takes the one-time setup code
 * printed in the start banner and log, so nobody who merely reaches a fresh server first takes it
 * over. Embedded mode only: the kept password lives in the node's data directory.
 */
export class OperatorSetup {
  /** Printed at start while setup is open; used up by a successful setup. */
  readonly code: string = newSecret(9)
    .replace(/[^A-Za-z0-9]/g, '')
    .slice(0, 10)
    .toUpperCase();
  private failures = 0;

  constructor(private readonly deps: OperatorSetupDeps) {}

  /** Whether the setup form is for this server now. */
  async needed(): Promise<boolean> {
    const kept = this.deps.initialPassword();
    if (kept === undefined) return false;
    return (await this.deps.auth.operatorFirstPassword(kept))?.pending ?? false;
  }

  /** Sets the operator's e-mail and password and signs in; `ip` is the caller's address. */
  async complete(body: { email: string; password: string; code?: string }, ip: string): Promise<AuthSession> {
    const kept = this.deps.initialPassword();
    if (kept === undefined || !(await this.needed())) throw new HearthError('E_CONFLICT', 'the operator is set up already: sign in');
    if (!isLoopback(ip)) {
      if (this.failures >= MAX_CODE_FAILURES)
        throw new HearthError('E_FORBIDDEN', 'too many wrong setup codes: finish the setup from the server itself, or restart it');
      if (!body.code || !safeEqual(body.code.trim().toUpperCase(), this.code)) {
        this.failures++;
        throw new HearthError('E_FORBIDDEN', 'from another machine, setup needs the setup code printed in the server log', { field: 'body.code' });
      }
    }
    const session = await this.deps.auth.setUpOperator(kept, body.email, body.password, { ip });
    this.deps.onDone();
    return session;
  }
}

/** 127.0.0.0/8 and ::1, also as IPv4-mapped IPv6. */
export function isLoopback(ip: string): boolean {
  if (!ipaddr.isValid(ip)) return false;
  return ipaddr.process(ip).range() === 'loopback';
}
