import type { Db } from '../core/store/db.ts';
import type { SettingsStore } from '../core/settings-store.ts';
import { HearthError } from '../core/errors.ts';
import { newId, newSecret } from '../core/ids.ts';
import { hashSecret, hmac, safeEqual, verifySecret } from '../core/secrets.ts';

export type Role = 'operator' | 'user';

/** What an API key may be allowed to do. Users signed in with a password may do all their role allows. */
export const SCOPES = ['devices:read', 'devices:control', 'homes:read', 'homes:manage', 'automations:manage'] as const;
export type Scope = (typeof SCOPES)[number];

/** Who is calling, as established from a bearer token or an API key. */
export interface Principal {
  userId: string;
  email: string;
  role: Role;
  /** Set when the caller is an API key. */
  keyId?: string;
  /** API keys only: what the key may do. */
  scopes?: readonly Scope[];
  /** API keys only: the homes the key is restricted to (undefined: all of its user's). */
  homeIds?: readonly string[];
  /** Password sign-ins only: the session (refresh-token family) the token belongs to. */
  sessionId?: string;
}

/** How the audit log and the command ledger name a principal: `user:u_…` or `key:k_…`. */
export function actorOf(p: Principal): string {
  return p.keyId ? `key:${p.keyId}` : `user:${p.userId}`;
}

/** True when the principal may act within `scope` (always for password sign-ins). */
export function hasScope(p: Principal, scope: Scope): boolean {
  return !p.scopes || p.scopes.includes(scope);
}

interface TokenPayload {
  sub: string;
  email: string;
  role: Role;
  exp: number;
}

/** A bcrypt-class hash of a random string: login with an unknown e-mail costs the same as with a known one. */
let dummyHash: Promise<string> | undefined;

/**
 * Accounts and access tokens. Tokens are signed (HMAC-SHA256) with a key kept in the store,
 * so every node of a cluster can check them without a lookup; they expire after `ttlSeconds`.
 */
export class AuthService {
  private signingKey = '';

  constructor(private readonly deps: { db: Db; settings: SettingsStore; ttlSeconds: number }) {}

  async start(): Promise<void> {
    this.signingKey = await this.deps.settings.getOrCreate('auth.signingKey', () => newSecret(32));
  }

  /**
   * Creates the operator account on first start. Returns the generated password when none was
   * configured (to be printed once), undefined when the account exists or the password was given.
   */
  async ensureOperator(email: string | undefined, password: string | undefined): Promise<{ email: string; generatedPassword?: string; created: boolean }> {
    const existing = await this.deps.db.selectFrom('users').select(['email']).where('role', '=', 'operator').orderBy('created_at').executeTakeFirst();
    if (existing) {
      if (email && password && email.toLowerCase() === existing.email) {
        await this.deps.db.updateTable('users').set({ password_hash: await hashSecret(password) }).where('email', '=', existing.email).execute();
      }
      return { email: existing.email, created: false };
    }
    const addr = (email ?? 'admin@hearth.local').toLowerCase();
    const generated = password ? undefined : newSecret(12);
    await this.deps.db.insertInto('users').values({
      id: newId('u'), email: addr, password_hash: await hashSecret(password ?? generated!), role: 'operator', name: 'Operator', created_at: Date.now(),
    }).execute();
    return { email: addr, generatedPassword: generated, created: true };
  }

  async login(email: string, password: string): Promise<{ token: string; expiresIn: number; user: Principal }> {
    const row = await this.deps.db.selectFrom('users').selectAll().where('email', '=', email.toLowerCase()).executeTakeFirst();
    dummyHash ??= hashSecret(newSecret());
    const ok = await verifySecret(password, row?.password_hash ?? (await dummyHash));
    if (!row || !ok) throw new HearthError('E_BAD_CREDENTIALS');
    const user: Principal = { userId: row.id, email: row.email, role: row.role as Role };
    return { token: this.sign(user), expiresIn: this.deps.ttlSeconds, user };
  }

  sign(user: Principal, ttlSeconds = this.deps.ttlSeconds): string {
    const payload: TokenPayload = { sub: user.userId, email: user.email, role: user.role, exp: Math.floor(Date.now() / 1000) + ttlSeconds };
    const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
    return `hth1.${body}.${hmac(this.signingKey, body)}`;
  }

  /** Checks a bearer token; throws E_UNAUTHENTICATED when it is malformed, forged or expired. */
  verify(token: string): Principal {
    const parts = token.split('.');
    if (parts.length !== 3 || parts[0] !== 'hth1' || !safeEqual(hmac(this.signingKey, parts[1]), parts[2])) {
      throw new HearthError('E_UNAUTHENTICATED', 'invalid access token');
    }
    let payload: TokenPayload;
    try {
      payload = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')) as TokenPayload;
    } catch {
      throw new HearthError('E_UNAUTHENTICATED', 'invalid access token');
    }
    if (payload.exp * 1000 < Date.now()) throw new HearthError('E_UNAUTHENTICATED', 'access token expired');
    return { userId: payload.sub, email: payload.email, role: payload.role };
  }
}
