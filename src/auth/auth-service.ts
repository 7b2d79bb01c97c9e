import { sql, type Transaction } from 'kysely';
import { OPERATOR_SCOPES, SCOPES, type Principal, type Role, type Scope } from '../access/principal.ts';
import type { Db } from '../core/store/db.ts';
import type { Database } from '../core/store/schema.ts';
import type { SettingsStore } from '../core/settings-store.ts';
import type { Logger } from '../core/logger.ts';
import type { Mailer, MailMessage } from '../core/mailer.ts';
import { HearthError } from '../core/errors.ts';
import { newId, newSecret } from '../core/ids.ts';
import { digestToken, hashSecret, hmac, safeEqual, verifySecret } from '../core/secrets.ts';
import { LoginThrottle, sourceOf, type LoginOutcome, type LoginThrottleOptions, type SprayAlert } from './login-throttle.ts';
import { RateLimiter } from '../core/rate-limiter.ts';

export type { LoginOutcome, SprayAlert } from './login-throttle.ts';

/** An account as other capabilities see it (no password hash). */
export interface UserInfo {
  id: string;
  email: string;
  role: Role;
  name: string | null;
  /**
   * Whether the account proved it holds `email` (a verification link, or a password reset, sent
   * there). Until it has, nothing addressed to that e-mail (invitations, shares) takes effect for it.
   */
  emailVerified: boolean;
}

/** Why a sign-in failed, as counted in `hearth_login_failures_total`. */
export type LoginFailureReason = 'wrong_password' | 'unknown_account' | 'throttled';

/** Where AuthService reports what operators watch (the Metrics of the node fit). */
export interface AuthObserver {
  loginFailure(reason: LoginFailureReason): void;
  loginSpray(kind: SprayAlert['kind']): void;
}

/** What a sign-in or a refresh hands out. */
export interface AuthSession {
  /** Short-lived signed access token (`hth1.…`) for `Authorization: Bearer`. */
  token: string;
  /** Seconds until `token` expires. */
  expiresIn: number;
  /** One-time refresh token (`hrt_…`); POST it to /auth/refresh for a new pair. */
  refreshToken: string;
  /** Seconds until `refreshToken` expires if it is not used. */
  refreshExpiresIn: number;
  user: UserInfo;
  /** The principal `token` stands for (with its `sessionId`). */
  principal: Principal;
}

/** An API key as listed; the key itself is only ever returned by `createKey`. */
export interface ApiKeyInfo {
  id: string;
  name: string;
  scopes: Scope[];
  /** The homes the key is restricted to; null: all of its user's homes. */
  homeIds: string[] | null;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

export interface AuthServiceDeps {
  db: Db;
  settings: SettingsStore;
  /** Lifetime of access tokens (config `tokenTtlSeconds`). */
  ttlSeconds: number;
  /** Lifetime of refresh tokens (config `refreshTtlSeconds`); default 30 days. */
  refreshTtlSeconds?: number;
  /** Sends password-reset and verification e-mails; without one they are only logged (when `log` is given). */
  mailer?: Mailer;
  log?: Logger;
  /** Sign-in throttling (see LoginThrottle for the defaults). */
  throttle?: LoginThrottleOptions;
  /** Sign-ups allowed from one source (default 20 an hour, 5 at once). */
  signups?: { perHour: number; burst: number };
  /** Spreads a revocation to every node (which calls `learnRevoked`); default: this node only. */
  onRevoked?: (familyId: string, until: number) => void;
  /** The operator signed in with a password (the kept first password has served its purpose). */
  onOperatorSignIn?: () => void;
  /** An API key was revoked (after the store says so): what it opened elsewhere (live streams) ends. */
  onKeyRevoked?: (keyId: string) => void;
  /** Spreads the outcome of a checked password to every node (which calls `learnLoginOutcome`); default: this node only. */
  onLoginOutcome?: (o: LoginOutcome) => void;
  /** Told when spraying is noticed (after the warning is logged and counted), e.g. to write the audit log. */
  onSpray?: (alert: SprayAlert) => void;
  /**
   * A password reset verified an unverified account's address, so the account changes hands. Runs
   * inside the takeover's transaction: the owners of other tables drop what the previous holder
   * registered there (the composition root wires notify's push targets).
   */
  onAccountReclaimed?: (trx: Transaction<Database>, userId: string) => Promise<void>;
  observer?: AuthObserver;
}

interface TokenPayload {
  sub: string;
  email: string;
  role: Role;
  /** The session (refresh-token family); absent in tokens made by `sign()` without one. */
  sid?: string;
  iat: number;
  exp: number;
}

type UserRow = { id: string; email: string; password_hash: string; role: string; name: string | null; email_verified_at: number | null };

const USER_COLUMNS = ['id', 'email', 'password_hash', 'role', 'name', 'email_verified_at'] as const;
const RESET_TTL_MS = 3600_000;
const VERIFY_TTL_MS = 24 * 3600_000;
/** `last_used_at` of an API key is written at most this often. */
const KEY_USE_WRITE_MS = 60_000;
/** Access tokens whose signature was checked, kept (with their payload) so that the next request of the caller skips the HMAC. */
const VERIFIED_TOKENS = 10_000;
const ACCESS_PREFIX = 'hth1.';
const REFRESH_PREFIX = 'hrt_';
const KEY_PREFIX = 'hk_';
const PASSWORD_MIN = 8;

const iso = (ms: number | null): string | null => (ms == null ? null : new Date(Number(ms)).toISOString());
const normalizeEmail = (email: string): string => email.trim().toLowerCase();
const toUserInfo = (r: { id: string; email: string; role: string; name: string | null; email_verified_at: number | null }): UserInfo => ({
  id: r.id,
  email: r.email,
  role: r.role as Role,
  name: r.name,
  emailVerified: r.email_verified_at != null,
});

/** A bcrypt-class hash of a random string: login with an unknown e-mail costs the same as with a known one. */
let dummyHash: Promise<string> | undefined;

/**
 * Accounts, sessions and API keys.
 *
 * - Access tokens are signed (HMAC-SHA256) with a key kept in the store, so every node can check
 *   them without a lookup; they are short-lived and name their session (`sid`).
 * - A session is a family of one-time refresh tokens (stored as digests). Refreshing uses up the
 *   token and issues the next one of the family; presenting a used one again means it was stolen,
 *   and the whole family is revoked. Revoked sessions are kept in memory until their last access
 *   token has expired, so signing out also ends the access tokens at once.
 * - Failed sign-ins slow down the (e-mail, source) pair that failed, and a source failing on many
 *   accounts; never the account as such (see LoginThrottle). Spraying is logged, counted and reported.
 * - An address counts as the account's once a link sent to it was used (verification or reset).
 * - Everything that creates accounts or sends mail is rate limited per source or per account.
 * - API keys (`hk_…`) are random, stored as digests, limited by scopes and optionally homes.
 */
export class AuthService {
  private signingKey = '';
  private readonly refreshTtlSeconds: number;
  private readonly mailer: Mailer | undefined;
  /** Revoked session ids → when the last access token of the session expires (epoch ms). */
  private readonly revokedSessions = new Map<string, number>();
  private lastRevokedSweep = 0;
  /** Access tokens whose signature was checked → their payload (see `checkSignature`); at most VERIFIED_TOKENS. */
  private readonly verified = new Map<string, TokenPayload>();
  private readonly throttle: LoginThrottle;
  /** At most 5 reset e-mails per address and hour: no mail-bombing through the reset form. */
  private readonly resetMails = new RateLimiter({ perMinute: 5 / 60, burst: 5, maxKeys: 10_000 });
  /** Reset requests per source (any addresses): 20 an hour, 5 at once. */
  private readonly resetSources = new RateLimiter({ perMinute: 20 / 60, burst: 5, maxKeys: 100_000 });
  /** Verification e-mails per account beyond the one of the sign-up: 5 an hour, 3 at once. */
  private readonly verifyMails = new RateLimiter({ perMinute: 5 / 60, burst: 3, maxKeys: 100_000 });
  /** Sign-ups per source. */
  private readonly signups: RateLimiter;
  /** API key id → when its `last_used_at` was last written. */
  private readonly keyUseWritten = new Map<string, number>();
  private readonly pendingMail = new Set<Promise<void>>();

  constructor(private readonly deps: AuthServiceDeps) {
    this.refreshTtlSeconds = deps.refreshTtlSeconds ?? 30 * 86400;
    this.mailer = deps.mailer;
    this.throttle = new LoginThrottle(deps.throttle);
    const signups = deps.signups ?? { perHour: 20, burst: 5 };
    this.signups = new RateLimiter({ perMinute: signups.perHour / 60, burst: signups.burst });
  }

  async start(): Promise<void> {
    this.signingKey = await this.deps.settings.getOrCreate('auth.signingKey', () => newSecret(32));
    this.verified.clear();
    const now = Date.now();
    const ttlMs = this.deps.ttlSeconds * 1000;
    const rows = await this.deps.db
      .selectFrom('refresh_tokens')
      .select(['family_id', 'revoked_at', 'expires_at'])
      .where('revoked_at', 'is not', null)
      .where((eb) => eb.or([eb('expires_at', '>', now), eb('revoked_at', '>', now - ttlMs)]))
      .execute();
    for (const r of rows) {
      // An access token of the session was made before it was revoked, with at most a refresh token's life left.
      const until = Math.max(Number(r.revoked_at) + ttlMs, Number(r.expires_at));
      this.revokedSessions.set(r.family_id, Math.max(until, this.revokedSessions.get(r.family_id) ?? 0));
    }
  }

  /** Waits for e-mails still being sent. */
  async stop(): Promise<void> {
    await Promise.allSettled([...this.pendingMail]);
  }

  /**
   * Creates the operator account on first start. Returns the generated password when none was
   * configured (to be printed once), undefined when the account exists or the password was given.
   */
  async ensureOperator(email: string | undefined, password: string | undefined): Promise<{ email: string; generatedPassword?: string; created: boolean }> {
    const existing = await this.deps.db.selectFrom('users').select(['email']).where('role', '=', 'operator').orderBy('created_at').executeTakeFirst();
    // The operator's address comes from the configuration, not from a stranger's form: it counts as verified.
    if (existing) {
      // A password given for the operator (with its e-mail, or without any) is its password from now on.
      if (password && (!email || email.toLowerCase() === existing.email)) {
        await this.deps.db
          .updateTable('users')
          .set({ password_hash: await hashSecret(password) })
          .where('email', '=', existing.email)
          .execute();
      }
      return { email: existing.email, created: false };
    }
    const addr = (email ?? 'admin@hearth.local').toLowerCase();
    const generated = password ? undefined : newSecret(12);
    await this.deps.db
      .insertInto('users')
      .values({
        id: newId('u'),
        email: addr,
        password_hash: await hashSecret(password ?? generated!),
        role: 'operator',
        name: 'Operator',
        created_at: Date.now(),
        email_verified_at: Date.now(),
      })
      .execute();
    return { email: addr, generatedPassword: generated, created: true };
  }

  // ---------------------------------------------------------------- accounts

  /**
   * Creates an account with role `user` and mails a verification link to its address (valid a
   * day; `verifyUrlBase` is the page it opens). Every attempt from `meta.ip`, refused ones too,
   * counts against the source's sign-up budget, so the form is no cheap way to test addresses either.
   */
  async signup(email: string, password: string, name?: string, meta: { ip?: string; verifyUrlBase?: string } = {}): Promise<UserInfo> {
    const allowed = this.signups.take(sourceOf(meta.ip));
    if (!allowed.ok) {
      throw new HearthError('E_RATE_LIMITED', `too many sign-ups from your address; try again in ${allowed.retryAfterSeconds} s`, {
        retryAfter: allowed.retryAfterSeconds,
      });
    }
    const addr = normalizeEmail(email);
    if (!addr.includes('@') || addr.length > 254) throw new HearthError('E_VALIDATION', 'email is not an e-mail address', { field: 'body.email' });
    checkPassword(password, 'body.password');
    const cleanName = name?.trim() || null;
    if (await this.findUser(addr)) throw new HearthError('E_EMAIL_TAKEN', `an account with ${addr} already exists`);
    const row = {
      id: newId('u'),
      email: addr,
      password_hash: await hashSecret(password),
      role: 'user',
      name: cleanName,
      created_at: Date.now(),
      email_verified_at: null,
    };
    try {
      await this.deps.db.insertInto('users').values(row).execute();
    } catch (err) {
      // Two sign-ups with the same address at once: the unique index decides.
      if (/UNIQUE/i.test((err as Error).message)) throw new HearthError('E_EMAIL_TAKEN', `an account with ${addr} already exists`);
      throw err;
    }
    await this.sendVerification(row, meta.verifyUrlBase);
    return toUserInfo(row);
  }

  /**
   * Marks the caller's address verified with the token from the verification e-mail. It takes
   * both: the token (the mailbox) and the caller's own sign-in (the password), so that somebody
   * who signed up with another person's address cannot have that person verify it for them by
   * clicking the link; the person with the mailbox takes an account over by resetting its password.
   */
  async verifyEmail(p: Principal, token: string): Promise<UserInfo> {
    if (p.keyId) throw new HearthError('E_FORBIDDEN', 'API keys cannot verify e-mail addresses; sign in with a password');
    const hash = digestToken(token.trim());
    const now = Date.now();
    const row = await this.deps.db.selectFrom('email_verifications').selectAll().where('token_hash', '=', hash).executeTakeFirst();
    // Another account's token is "invalid" too: it must not tell that the token exists.
    if (!row || row.user_id !== p.userId || row.used_at != null || Number(row.expires_at) <= now) throw new HearthError('E_VERIFICATION_TOKEN_INVALID');
    const done = await this.deps.db.transaction().execute(async (trx) => {
      const used = await trx
        .updateTable('email_verifications')
        .set({ used_at: now })
        .where('token_hash', '=', hash)
        .where('used_at', 'is', null)
        .executeTakeFirst();
      if (Number(used.numUpdatedRows) !== 1) return false;
      // Only the address the link was sent to: one changed since then is not verified by it.
      const same = await trx.selectFrom('users').select('id').where('id', '=', row.user_id).where('email', '=', row.email).executeTakeFirst();
      if (!same) return false;
      await trx.updateTable('users').set({ email_verified_at: now }).where('id', '=', row.user_id).where('email_verified_at', 'is', null).execute();
      await trx.updateTable('email_verifications').set({ used_at: now }).where('user_id', '=', row.user_id).where('used_at', 'is', null).execute();
      return true;
    });
    if (!done) throw new HearthError('E_VERIFICATION_TOKEN_INVALID');
    const info = await this.userById(row.user_id);
    if (!info) throw new HearthError('E_UNAUTHENTICATED', 'the account no longer exists');
    return info;
  }

  /** Mails the caller a new verification link (5 an hour); E_CONFLICT when the address is verified already. */
  async resendVerification(p: Principal, verifyUrlBase?: string): Promise<void> {
    if (p.keyId) throw new HearthError('E_FORBIDDEN', 'API keys cannot ask for verification e-mails; sign in with a password');
    const row = await this.deps.db.selectFrom('users').select(USER_COLUMNS).where('id', '=', p.userId).executeTakeFirst();
    if (!row) throw new HearthError('E_UNAUTHENTICATED', 'the account no longer exists');
    if (row.email_verified_at != null) throw new HearthError('E_CONFLICT', `${row.email} is verified already`);
    const allowed = this.verifyMails.take(row.id);
    if (!allowed.ok) {
      throw new HearthError('E_RATE_LIMITED', `too many verification e-mails; try again in ${allowed.retryAfterSeconds} s`, {
        retryAfter: allowed.retryAfterSeconds,
      });
    }
    await this.sendVerification(row, verifyUrlBase);
  }

  async userByEmail(email: string): Promise<UserInfo | undefined> {
    const row = await this.findUser(normalizeEmail(email));
    return row ? toUserInfo(row) : undefined;
  }

  /**
   * The accounts, for the operator's support view: by e-mail, `q` a part of the e-mail (case
   * folded), a page of `limit` after the e-mail `after` (the previous page's `nextCursor`).
   */
  async listUsers(opts: { q?: string; limit: number; after?: string }): Promise<{ items: Array<UserInfo & { createdAt: string }>; nextCursor: string | null }> {
    let query = this.deps.db
      .selectFrom('users')
      .select(['id', 'email', 'role', 'name', 'email_verified_at', 'created_at'])
      .orderBy('email')
      .limit(opts.limit + 1);
    // E-mails are stored lower-cased; % and _ in `q` are literal (escaped), on SQLite and PostgreSQL alike.
    if (opts.q) query = query.where(sql<boolean>`${sql.ref('email')} like ${`%${opts.q.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`} escape '\\'`);
    if (opts.after !== undefined) query = query.where('email', '>', opts.after);
    const rows = await query.execute();
    const page = rows.slice(0, opts.limit);
    return {
      items: page.map((r) => ({ ...toUserInfo(r), createdAt: new Date(Number(r.created_at)).toISOString() })),
      nextCursor: rows.length > opts.limit ? page[page.length - 1].email : null,
    };
  }

  async userById(id: string): Promise<UserInfo | undefined> {
    const row = await this.deps.db.selectFrom('users').select(['id', 'email', 'role', 'name', 'email_verified_at']).where('id', '=', id).executeTakeFirst();
    return row ? toUserInfo(row) : undefined;
  }

  // ---------------------------------------------------------------- sessions

  /**
   * Signs in with e-mail and password and starts a session. While the (e-mail, source) pair or
   * the source in `meta.ip` is being slowed down (LoginThrottle), attempts answer E_RATE_LIMITED
   * with `retryAfter` seconds, without looking at the password.
   */
  async login(email: string, password: string, meta: { ip?: string } = {}): Promise<AuthSession> {
    const addr = normalizeEmail(email);
    const release = this.beginAttempt(addr, sourceOf(meta.ip));
    let ok: boolean | undefined;
    let row: UserRow | undefined;
    try {
      row = await this.findUser(addr);
      dummyHash ??= hashSecret(newSecret());
      ok = (await verifySecret(password, row?.password_hash ?? (await dummyHash))) && !!row;
    } finally {
      release(ok, row ? 'wrong_password' : 'unknown_account');
    }
    if (!row || !ok) throw new HearthError('E_BAD_CREDENTIALS');
    const session = await this.startSession(row);
    // A reset or password change that committed while this one checked the old password revokes
    // the sessions it finds: this one may be stored after that. Looked at again once it is stored,
    // either the change sees it, or this sees the change.
    const now = await this.deps.db.selectFrom('users').select('password_hash').where('id', '=', row.id).executeTakeFirst();
    if (now?.password_hash !== row.password_hash) {
      await this.revokeFamily(session.principal.sessionId!, row.id);
      throw new HearthError('E_BAD_CREDENTIALS');
    }
    if (row.role === 'operator') this.deps.onOperatorSignIn?.();
    return session;
  }

  /** The outcome of a password check on another node (or this one): the throttle counts it. */
  learnLoginOutcome(o: LoginOutcome): void {
    this.throttle.learn(o);
  }

  /**
   * Exchanges a refresh token for a new access token and refresh token of the same session.
   * A refresh token works once: presenting a used one revokes the whole session.
   */
  async refresh(refreshToken: string): Promise<AuthSession> {
    if (!refreshToken.startsWith(REFRESH_PREFIX)) throw new HearthError('E_UNAUTHENTICATED', 'not a refresh token (they start with hrt_)');
    const now = Date.now();
    const row = await this.deps.db.selectFrom('refresh_tokens').selectAll().where('token_hash', '=', digestToken(refreshToken)).executeTakeFirst();
    if (!row) throw new HearthError('E_UNAUTHENTICATED', 'unknown refresh token; sign in again');
    if (row.revoked_at != null || this.revokedSessions.has(row.family_id)) throw new HearthError('E_UNAUTHENTICATED', 'the session has ended; sign in again');
    if (row.used_at != null) {
      await this.revokeFamily(row.family_id);
      this.deps.log?.warn({ userId: row.user_id, sessionId: row.family_id }, 'a used refresh token was presented again; the session is revoked');
      throw new HearthError('E_UNAUTHENTICATED', 'this refresh token was already used; the session is revoked for safety, sign in again');
    }
    if (Number(row.expires_at) <= now) throw new HearthError('E_UNAUTHENTICATED', 'the refresh token has expired; sign in again');
    const user = await this.deps.db.selectFrom('users').select(USER_COLUMNS).where('id', '=', row.user_id).executeTakeFirst();
    if (!user) throw new HearthError('E_UNAUTHENTICATED', 'the account no longer exists');
    const next = this.newRefreshToken();
    const rotated = await this.deps.db.transaction().execute(async (trx) => {
      const used = await trx
        .updateTable('refresh_tokens')
        .set({ used_at: now })
        .where('id', '=', row.id)
        .where('used_at', 'is', null)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      if (Number(used.numUpdatedRows) !== 1) return false;
      await trx
        .insertInto('refresh_tokens')
        .values({
          id: newId('r'),
          user_id: user.id,
          family_id: row.family_id,
          token_hash: digestToken(next),
          created_at: now,
          expires_at: now + this.refreshTtlSeconds * 1000,
          used_at: null,
          revoked_at: null,
        })
        .execute();
      return true;
    });
    if (!rotated) {
      // Used or revoked in the meantime: a second refresh with the same token raced this one.
      await this.revokeFamily(row.family_id);
      throw new HearthError('E_UNAUTHENTICATED', 'this refresh token was already used; the session is revoked for safety, sign in again');
    }
    return this.session(user, row.family_id, next);
  }

  /** Ends the caller's session: its refresh token and its access tokens stop working. */
  async logout(p: Principal): Promise<void> {
    if (p.keyId) throw new HearthError('E_FORBIDDEN', 'API keys have no session to sign out of; revoke the key with DELETE /api/v1/keys/{id}');
    if (!p.sessionId) return;
    await this.revokeFamily(p.sessionId, p.userId);
  }

  /** Changes the caller's password and ends all of their other sessions. */
  async changePassword(p: Principal, current: string, next: string, meta: { ip?: string } = {}): Promise<void> {
    if (p.keyId) throw new HearthError('E_FORBIDDEN', 'API keys cannot change passwords');
    checkPassword(next, 'body.newPassword');
    const row = await this.deps.db.selectFrom('users').select(['id', 'email', 'password_hash']).where('id', '=', p.userId).executeTakeFirst();
    if (!row) throw new HearthError('E_UNAUTHENTICATED', 'the account no longer exists');
    // A stolen access token must not become a way to guess the password: same throttle as sign-in.
    const release = this.beginAttempt(row.email, sourceOf(meta.ip));
    let ok: boolean | undefined;
    try {
      ok = await verifySecret(current, row.password_hash);
    } finally {
      release(ok, 'wrong_password');
    }
    if (!ok) throw new HearthError('E_BAD_CREDENTIALS', 'the current password is wrong');
    await this.deps.db
      .updateTable('users')
      .set({ password_hash: await hashSecret(next) })
      .where('id', '=', row.id)
      .execute();
    await this.revokeUserSessions(row.id, p.sessionId);
  }

  /**
   * Mails a one-time reset link (valid an hour) when an account has this e-mail. Answers the same
   * whether or not it has, and sends in the background so the timing does not tell either.
   */
  async requestPasswordReset(email: string, resetUrlBase: string, meta: { ip?: string } = {}): Promise<void> {
    // Per source, the answer may say so: it is the same whether or not the address has an account.
    const allowed = this.resetSources.take(sourceOf(meta.ip));
    if (!allowed.ok) {
      throw new HearthError('E_RATE_LIMITED', `too many password reset requests from your address; try again in ${allowed.retryAfterSeconds} s`, {
        retryAfter: allowed.retryAfterSeconds,
      });
    }
    const addr = normalizeEmail(email);
    const user = await this.findUser(addr);
    if (!user) return;
    if (!this.resetMails.take(addr).ok) {
      this.deps.log?.warn({ userId: user.id }, 'password reset requested too often; no e-mail sent');
      return;
    }
    const now = Date.now();
    const token = newSecret(32);
    await this.deps.db.deleteFrom('password_resets').where('user_id', '=', user.id).where('expires_at', '<', now).execute();
    await this.deps.db
      .insertInto('password_resets')
      .values({ token_hash: digestToken(token), user_id: user.id, created_at: now, expires_at: now + RESET_TTL_MS, used_at: null })
      .execute();
    const link = `${resetUrlBase}${resetUrlBase.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
    this.deliver({
      to: user.email,
      subject: 'Reset your Hearth password',
      text: [
        `Someone (hopefully you) asked to reset the password of your Hearth account ${user.email}.`,
        '',
        `To choose a new password, open this link within the next hour:`,
        link,
        '',
        `Or send this token with your new password to POST /api/v1/auth/password-reset/confirm:`,
        token,
        '',
        'If you did not ask for this, ignore this e-mail; your password stays as it is.',
      ].join('\n'),
    });
  }

  /**
   * Sets a new password with a reset token; ends every session of the account. The link came to
   * the account's address, so the address counts as verified from now on. When it was not before,
   * whoever held the account until now never proved it was theirs (someone may have signed up with
   * another person's address): their API keys are revoked and their push registrations removed
   * too, not only their sessions.
   */
  async confirmPasswordReset(token: string, newPassword: string): Promise<{ userId: string; reclaimed: boolean }> {
    checkPassword(newPassword, 'body.newPassword');
    const hash = digestToken(token);
    const row = await this.deps.db.selectFrom('password_resets').selectAll().where('token_hash', '=', hash).executeTakeFirst();
    if (!row || row.used_at != null || Number(row.expires_at) <= Date.now()) throw new HearthError('E_RESET_TOKEN_INVALID');
    const passwordHash = await hashSecret(newPassword);
    const now = Date.now();
    const done = await this.deps.db.transaction().execute(async (trx) => {
      const used = await trx
        .updateTable('password_resets')
        .set({ used_at: now })
        .where('token_hash', '=', hash)
        .where('used_at', 'is', null)
        .executeTakeFirst();
      if (Number(used.numUpdatedRows) !== 1) return undefined;
      await trx.updateTable('users').set({ password_hash: passwordHash }).where('id', '=', row.user_id).execute();
      const verified = await trx
        .updateTable('users')
        .set({ email_verified_at: now })
        .where('id', '=', row.user_id)
        .where('email_verified_at', 'is', null)
        .executeTakeFirst();
      const reclaimed = Number(verified.numUpdatedRows) === 1;
      let revokedKeys: string[] = [];
      if (reclaimed) {
        revokedKeys = (
          await trx
            .updateTable('api_keys')
            .set({ revoked_at: now })
            .where('user_id', '=', row.user_id)
            .where('revoked_at', 'is', null)
            .returning('id')
            .execute()
        ).map((k) => k.id);
        // What the previous holder registered elsewhere (push targets: notifications for the
        // account must not reach their browsers and phones) goes in the same transaction.
        await this.deps.onAccountReclaimed?.(trx, row.user_id);
      }
      // Other links sent earlier must not reset the new password.
      await trx.updateTable('password_resets').set({ used_at: now }).where('user_id', '=', row.user_id).where('used_at', 'is', null).execute();
      return { reclaimed, revokedKeys };
    });
    if (!done) throw new HearthError('E_RESET_TOKEN_INVALID');
    await this.revokeUserSessions(row.user_id);
    // What those keys opened elsewhere (live streams, on every node) ends with them.
    for (const id of done.revokedKeys) {
      this.keyUseWritten.delete(id);
      this.deps.onKeyRevoked?.(id);
    }
    if (done.reclaimed)
      this.deps.log?.info({ userId: row.user_id }, 'a password reset verified the address of an unverified account: its sessions and API keys are revoked');
    return { userId: row.user_id, reclaimed: done.reclaimed };
  }

  // ---------------------------------------------------------------- access tokens

  sign(user: Principal, ttlSeconds = this.deps.ttlSeconds): string {
    const now = Math.floor(Date.now() / 1000);
    const payload: TokenPayload = {
      sub: user.userId,
      email: user.email,
      role: user.role,
      ...(user.sessionId ? { sid: user.sessionId } : {}),
      iat: now,
      exp: now + ttlSeconds,
    };
    const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
    return `${ACCESS_PREFIX}${body}.${hmac(this.signingKey, body)}`;
  }

  /** Checks a bearer token; throws E_UNAUTHENTICATED when it is malformed, forged, expired or its session ended. */
  verify(token: string): Principal {
    const payload = this.verified.get(token) ?? this.checkSignature(token);
    const now = Date.now();
    if (payload.exp * 1000 < now) throw new HearthError('E_UNAUTHENTICATED', 'access token expired; get a new one from POST /api/v1/auth/refresh');
    if (payload.sid) {
      this.sweepRevoked(now);
      if (this.revokedSessions.has(payload.sid))
        throw new HearthError('E_UNAUTHENTICATED', 'the session has ended (signed out or password changed); sign in again');
    }
    return { userId: payload.sub, email: payload.email, role: payload.role, ...(payload.sid ? { sessionId: payload.sid } : {}), expiresAt: payload.exp * 1000 };
  }

  /**
   * The payload of a token signed with our key (throws E_UNAUTHENTICATED otherwise), remembered
   * in `verified`: a token's signature and payload never change, so a repeated request skips the
   * HMAC and the parsing. Expiry and revocation are not remembered: `verify` checks them every time.
   */
  private checkSignature(token: string): TokenPayload {
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
    if (this.verified.size >= VERIFIED_TOKENS) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(token, payload);
    return payload;
  }

  /**
   * Establishes the caller of a request from its `Authorization` header (`Bearer hth1.…` access
   * token or `Bearer hk_…` API key) or, failing that, its `X-Api-Key` header.
   */
  async authenticate(authorization: string | undefined, apiKey?: string): Promise<Principal> {
    if (authorization) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization.trim());
      if (!m)
        throw new HearthError(
          'E_UNAUTHENTICATED',
          'the Authorization header must be "Bearer <token>" (an access token from POST /api/v1/auth/login or an API key hk_…)',
        );
      const credential = m[1];
      if (credential.startsWith(KEY_PREFIX)) return this.verifyKey(credential);
      if (credential.startsWith(ACCESS_PREFIX)) return this.verify(credential);
      if (credential.startsWith(REFRESH_PREFIX))
        throw new HearthError('E_UNAUTHENTICATED', 'that is a refresh token; exchange it for an access token at POST /api/v1/auth/refresh');
      throw new HearthError('E_UNAUTHENTICATED', 'unrecognised bearer token (access tokens start with hth1., API keys with hk_)');
    }
    if (apiKey) {
      const key = apiKey.trim();
      if (!key.startsWith(KEY_PREFIX)) throw new HearthError('E_UNAUTHENTICATED', 'the X-Api-Key header must hold an API key (hk_…) from POST /api/v1/keys');
      return this.verifyKey(key);
    }
    throw new HearthError(
      'E_UNAUTHENTICATED',
      'send "Authorization: Bearer <token>" (get one from POST /api/v1/auth/login) or "X-Api-Key: <key>" (from POST /api/v1/keys)',
    );
  }

  // ---------------------------------------------------------------- API keys

  /** Creates an API key for the caller. The key itself is in the answer only; the store keeps a digest. */
  async createKey(p: Principal, input: { name: string; scopes: readonly Scope[]; homeIds?: readonly string[] | null }): Promise<ApiKeyInfo & { key: string }> {
    if (p.keyId) throw new HearthError('E_FORBIDDEN', 'API keys cannot manage API keys; sign in with a password');
    const name = input.name.trim();
    if (!name) throw new HearthError('E_VALIDATION', 'name must not be empty', { field: 'body.name' });
    const bad = input.scopes.find((s) => !(SCOPES as readonly string[]).includes(s));
    if (bad !== undefined) throw new HearthError('E_VALIDATION', `unknown scope "${bad}"; scopes are ${SCOPES.join(', ')}`, { field: 'body.scopes' });
    const operatorOnly = input.scopes.find((s) => OPERATOR_SCOPES.includes(s));
    if (operatorOnly !== undefined && p.role !== 'operator')
      throw new HearthError('E_FORBIDDEN', `only the operator's keys may hold the scope "${operatorOnly}"`);
    const scopes = [...new Set(input.scopes)];
    const homeIds = input.homeIds == null ? null : [...new Set(input.homeIds)];
    const id = newId('k');
    const key = KEY_PREFIX + newSecret(32);
    const now = Date.now();
    await this.deps.db
      .insertInto('api_keys')
      .values({
        id,
        user_id: p.userId,
        name,
        key_hash: digestToken(key),
        scopes: JSON.stringify(scopes),
        home_ids: homeIds ? JSON.stringify(homeIds) : null,
        created_at: now,
        last_used_at: null,
        revoked_at: null,
      })
      .execute();
    // The session may have ended (a reset reclaiming the account) while the key was being made.
    if (p.sessionId !== undefined && this.revokedSessions.has(p.sessionId)) {
      await this.deps.db.updateTable('api_keys').set({ revoked_at: Date.now() }).where('id', '=', id).execute();
      throw new HearthError('E_UNAUTHENTICATED', 'the session has ended; sign in again');
    }
    return { id, name, key, scopes, homeIds, createdAt: iso(now)!, lastUsedAt: null, revokedAt: null };
  }

  /** The caller's keys, newest first, revoked ones included. */
  async listKeys(p: Principal): Promise<ApiKeyInfo[]> {
    if (p.keyId) throw new HearthError('E_FORBIDDEN', 'API keys cannot manage API keys; sign in with a password');
    const rows = await this.deps.db
      .selectFrom('api_keys')
      .select(['id', 'name', 'scopes', 'home_ids', 'created_at', 'last_used_at', 'revoked_at'])
      .where('user_id', '=', p.userId)
      .orderBy('created_at', 'desc')
      .orderBy('id')
      .execute();
    return rows.map((r) => ({
      id: r.id,
      name: r.name,
      scopes: JSON.parse(r.scopes) as Scope[],
      homeIds: r.home_ids ? (JSON.parse(r.home_ids) as string[]) : null,
      createdAt: iso(r.created_at)!,
      lastUsedAt: iso(r.last_used_at),
      revokedAt: iso(r.revoked_at),
    }));
  }

  /** Revokes one of the caller's keys; it stops working at once. Revoking twice is fine. */
  async revokeKey(p: Principal, id: string): Promise<void> {
    if (p.keyId) throw new HearthError('E_FORBIDDEN', 'API keys cannot manage API keys; sign in with a password');
    const row = await this.deps.db.selectFrom('api_keys').select(['id', 'revoked_at']).where('id', '=', id).where('user_id', '=', p.userId).executeTakeFirst();
    if (!row) throw new HearthError('E_KEY_NOT_FOUND', `API key "${id}" does not exist`);
    if (row.revoked_at == null)
      await this.deps.db.updateTable('api_keys').set({ revoked_at: Date.now() }).where('id', '=', id).where('revoked_at', 'is', null).execute();
    this.keyUseWritten.delete(id);
    this.deps.onKeyRevoked?.(id);
  }

  /** The principal of an API key; throws E_UNAUTHENTICATED when it is unknown or revoked. */
  async verifyKey(key: string): Promise<Principal> {
    if (!key.startsWith(KEY_PREFIX)) throw new HearthError('E_UNAUTHENTICATED', 'not an API key (they start with hk_)');
    const row = await this.deps.db
      .selectFrom('api_keys')
      .innerJoin('users', 'users.id', 'api_keys.user_id')
      .select([
        'api_keys.id as id',
        'api_keys.scopes as scopes',
        'api_keys.home_ids as home_ids',
        'api_keys.last_used_at as last_used_at',
        'api_keys.revoked_at as revoked_at',
        'users.id as user_id',
        'users.email as email',
        'users.role as role',
      ])
      .where('api_keys.key_hash', '=', digestToken(key))
      .executeTakeFirst();
    if (!row || row.revoked_at != null) throw new HearthError('E_UNAUTHENTICATED', 'unknown or revoked API key');
    await this.noteKeyUse(row.id, row.last_used_at == null ? undefined : Number(row.last_used_at));
    const homeIds = row.home_ids ? (JSON.parse(row.home_ids) as string[]) : undefined;
    return {
      userId: row.user_id,
      email: row.email,
      role: row.role as Role,
      keyId: row.id,
      scopes: JSON.parse(row.scopes) as Scope[],
      ...(homeIds ? { homeIds } : {}),
    };
  }

  // ---------------------------------------------------------------- internals

  private findUser(email: string): Promise<UserRow | undefined> {
    return this.deps.db.selectFrom('users').select(USER_COLUMNS).where('email', '=', email).executeTakeFirst();
  }

  /** Stores a one-time verification token for the account's current address and mails the link. */
  private async sendVerification(user: { id: string; email: string }, verifyUrlBase = 'http://localhost:8080/verify-email'): Promise<void> {
    const now = Date.now();
    const token = newSecret(32);
    await this.deps.db.deleteFrom('email_verifications').where('user_id', '=', user.id).where('expires_at', '<', now).execute();
    await this.deps.db
      .insertInto('email_verifications')
      .values({ token_hash: digestToken(token), user_id: user.id, email: user.email, created_at: now, expires_at: now + VERIFY_TTL_MS, used_at: null })
      .execute();
    const link = `${verifyUrlBase}${verifyUrlBase.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
    this.deliver({
      to: user.email,
      subject: 'Confirm your e-mail address for Hearth',
      text: [
        `Someone (hopefully you) created a Hearth account with the address ${user.email}.`,
        '',
        'To confirm that this address is yours, sign in to that account and open this link within a day:',
        link,
        '',
        'Or, signed in, send this token to POST /api/v1/auth/verify-email:',
        token,
        '',
        'Until the address is confirmed, invitations and devices shared with it do not reach the account.',
        'If you did not create this account, do not confirm it. Ignore this e-mail, or take the account',
        'over by resetting its password (POST /api/v1/auth/password-reset): that signs out whoever made it.',
      ].join('\n'),
    });
  }

  /**
   * Admits a password attempt of `account` from `source` or throws E_RATE_LIMITED. The attempt
   * counts as in flight until `release(ok)`, so a burst of parallel guesses cannot slip past the
   * limits while the first ones are still hashing.
   */
  private beginAttempt(account: string, source: string): (ok: boolean | undefined, reason: Exclude<LoginFailureReason, 'throttled'>) => void {
    const wait = this.throttle.begin(account, source);
    if (wait !== undefined) {
      this.deps.observer?.loginFailure('throttled');
      throw rateLimited(wait);
    }
    // ok undefined: the check itself failed (e.g. the store); that is no guess and does not count.
    return (ok, reason) => {
      this.throttle.end(account, source);
      if (ok === undefined) return;
      // A success only needs telling when there are failures to forget (the usual sign-in sends nothing).
      if (ok && !this.throttle.hasFailures(account, source)) return;
      const outcome: LoginOutcome = { account, source, ok, at: Date.now() };
      if (this.deps.onLoginOutcome) this.deps.onLoginOutcome(outcome);
      else this.throttle.learn(outcome);
      if (ok) return;
      this.deps.observer?.loginFailure(reason);
      for (const alert of this.throttle.sprayAlerts(account, source)) this.raiseSpray(alert);
    };
  }

  private raiseSpray(alert: SprayAlert): void {
    const what =
      alert.kind === 'source'
        ? `one source failed to sign in to ${alert.distinct} accounts within ${alert.windowSeconds} s (password spraying?)`
        : `one account failed to sign in from ${alert.distinct} sources within ${alert.windowSeconds} s (distributed guessing?)`;
    this.deps.log?.warn(
      {
        alert: 'login-spray',
        kind: alert.kind,
        ...(alert.kind === 'source' ? { source: alert.subject, accounts: alert.distinct } : { account: alert.subject, sources: alert.distinct }),
        windowSeconds: alert.windowSeconds,
      },
      what,
    );
    this.deps.observer?.loginSpray(alert.kind);
    try {
      this.deps.onSpray?.(alert);
    } catch (err) {
      this.deps.log?.error({ err }, 'could not report login spraying');
    }
  }

  private newRefreshToken(): string {
    return REFRESH_PREFIX + newSecret(32);
  }

  private async startSession(user: UserRow): Promise<AuthSession> {
    const now = Date.now();
    const familyId = newId('s');
    const refreshToken = this.newRefreshToken();
    await this.deps.db
      .insertInto('refresh_tokens')
      .values({
        id: newId('r'),
        user_id: user.id,
        family_id: familyId,
        token_hash: digestToken(refreshToken),
        created_at: now,
        expires_at: now + this.refreshTtlSeconds * 1000,
        used_at: null,
        revoked_at: null,
      })
      .execute();
    return this.session(user, familyId, refreshToken);
  }

  private session(user: UserRow, sessionId: string, refreshToken: string): AuthSession {
    const principal: Principal = { userId: user.id, email: user.email, role: user.role as Role, sessionId };
    return {
      token: this.sign(principal),
      expiresIn: this.deps.ttlSeconds,
      refreshToken,
      refreshExpiresIn: this.refreshTtlSeconds,
      user: toUserInfo(user),
      principal,
    };
  }

  /** Revokes every token of a session (of `userId`, when given) and ends its access tokens. */
  private async revokeFamily(familyId: string, userId?: string): Promise<void> {
    this.markRevoked(familyId);
    let q = this.deps.db.updateTable('refresh_tokens').set({ revoked_at: Date.now() }).where('family_id', '=', familyId).where('revoked_at', 'is', null);
    if (userId) q = q.where('user_id', '=', userId);
    await q.execute();
  }

  /** Revokes all sessions of a user except `keep`. */
  private async revokeUserSessions(userId: string, keep?: string): Promise<void> {
    let q = this.deps.db.selectFrom('refresh_tokens').select('family_id').distinct().where('user_id', '=', userId).where('revoked_at', 'is', null);
    if (keep) q = q.where('family_id', '!=', keep);
    const families = await q.execute();
    for (const f of families) this.markRevoked(f.family_id);
    let u = this.deps.db.updateTable('refresh_tokens').set({ revoked_at: Date.now() }).where('user_id', '=', userId).where('revoked_at', 'is', null);
    if (keep) u = u.where('family_id', '!=', keep);
    await u.execute();
  }

  private markRevoked(familyId: string): void {
    // Every access token of the session was signed before now, so none outlives now + ttl.
    const until = Date.now() + this.deps.ttlSeconds * 1000;
    if (this.deps.onRevoked) this.deps.onRevoked(familyId, until);
    else this.learnRevoked(familyId, until);
  }

  /** A session was revoked (here or on another node): its access tokens stop working until `until`. */
  learnRevoked(familyId: string, until: number): void {
    this.revokedSessions.set(familyId, Math.max(until, this.revokedSessions.get(familyId) ?? 0));
  }

  private sweepRevoked(now: number): void {
    if (now - this.lastRevokedSweep < 60_000) return;
    this.lastRevokedSweep = now;
    for (const [sid, until] of this.revokedSessions) if (until < now) this.revokedSessions.delete(sid);
  }

  /** Writes `last_used_at` at most once a minute per key. */
  private async noteKeyUse(keyId: string, storedLastUse: number | undefined): Promise<void> {
    const now = Date.now();
    const last = this.keyUseWritten.get(keyId) ?? storedLastUse;
    if (last !== undefined && now - last < KEY_USE_WRITE_MS) return;
    this.keyUseWritten.set(keyId, now);
    if (this.keyUseWritten.size > 10_000) {
      for (const [k, t] of this.keyUseWritten) if (now - t >= KEY_USE_WRITE_MS) this.keyUseWritten.delete(k);
    }
    try {
      await this.deps.db.updateTable('api_keys').set({ last_used_at: now }).where('id', '=', keyId).execute();
    } catch (err) {
      this.deps.log?.warn({ err, keyId }, 'could not record the use of an API key');
    }
  }

  /** Sends in the background; failures are logged, never shown to the requester. */
  private deliver(msg: MailMessage): void {
    const mailer = this.mailer;
    if (!mailer) {
      this.deps.log?.info({ mail: msg }, `e-mail to ${msg.to} (no mailer configured, logged instead): ${msg.subject}`);
      return;
    }
    const sending: Promise<void> = mailer
      .send(msg)
      .catch((err: unknown) => {
        this.deps.log?.error({ err, to: msg.to }, `could not send e-mail: ${msg.subject}`);
      })
      .finally(() => this.pendingMail.delete(sending));
    this.pendingMail.add(sending);
  }

  // ---------------------------------------------------------------- the operator, from the command line

  /**
   * Whether the operator's generated first password is still the one to hand out: the account
   * has it and has never signed in. Undefined when there is no operator account.
   */
  async operatorFirstPassword(password: string): Promise<{ email: string; pending: boolean } | undefined> {
    const op = await this.deps.db
      .selectFrom('users')
      .select(['id', 'email', 'password_hash'])
      .where('role', '=', 'operator')
      .orderBy('created_at')
      .executeTakeFirst();
    if (!op) return undefined;
    const signedIn = await this.deps.db.selectFrom('refresh_tokens').select('id').where('user_id', '=', op.id).limit(1).executeTakeFirst();
    return { email: op.email, pending: !signedIn && (await verifySecret(password, op.password_hash)) };
  }

  /**
   * Sets an operator's password (`hearth admin reset-password`, run on the store by someone with
   * access to the server) and ends all of their sessions. Without `email`, the first operator;
   * without `password`, a generated one, returned to be shown.
   */
  async resetOperatorPassword(email?: string, password?: string): Promise<{ email: string; password: string; generated: boolean }> {
    if (password !== undefined) checkPassword(password, 'password');
    let q = this.deps.db.selectFrom('users').select(['id', 'email']).where('role', '=', 'operator');
    if (email !== undefined) q = q.where('email', '=', normalizeEmail(email));
    const op = await q.orderBy('created_at').executeTakeFirst();
    if (!op)
      throw new HearthError(
        'E_USER_NOT_FOUND',
        email === undefined ? 'there is no operator account yet: it is created on the first start' : `no operator account has the e-mail ${email}`,
      );
    const next = password ?? newSecret(12);
    await this.deps.db
      .updateTable('users')
      .set({ password_hash: await hashSecret(next) })
      .where('id', '=', op.id)
      .execute();
    await this.revokeUserSessions(op.id);
    return { email: op.email, password: next, generated: password === undefined };
  }

  /**
   * First-run setup (operator-setup.ts): the operator chooses its e-mail and password in place of
   * the generated ones, while the account still has `initialPassword` and has never signed in.
   * Compare-and-set on the password digest, so two forms racing cannot both win. Signs in.
   */
  async setUpOperator(initialPassword: string, email: string, password: string, meta: { ip?: string } = {}): Promise<AuthSession> {
    checkPassword(password, 'body.password');
    const addr = normalizeEmail(email);
    if (!addr.includes('@') || addr.length > 254) throw new HearthError('E_VALIDATION', 'email is not an e-mail address', { field: 'body.email' });
    const op = await this.deps.db
      .selectFrom('users')
      .select(['id', 'email', 'password_hash'])
      .where('role', '=', 'operator')
      .orderBy('created_at')
      .executeTakeFirst();
    const pending = op ? await this.operatorFirstPassword(initialPassword) : undefined;
    if (!op || !pending?.pending) throw new HearthError('E_CONFLICT', 'the operator is set up already: sign in');
    if (addr !== op.email && (await this.findUser(addr))) throw new HearthError('E_EMAIL_TAKEN', `an account with ${addr} already exists`);
    const done = await this.deps.db
      .updateTable('users')
      .set({ email: addr, password_hash: await hashSecret(password) })
      .where('id', '=', op.id)
      .where('password_hash', '=', op.password_hash)
      .executeTakeFirst();
    if (Number(done.numUpdatedRows) !== 1) throw new HearthError('E_CONFLICT', 'the operator is set up already: sign in');
    return this.login(addr, password, meta);
  }
}

function checkPassword(password: string, field: string): void {
  if (password.length < PASSWORD_MIN) throw new HearthError('E_VALIDATION', `${field} must be at least ${PASSWORD_MIN} characters`, { field });
}

function rateLimited(retryAfter: number): HearthError {
  return new HearthError('E_RATE_LIMITED', `too many failed sign-ins; try again in ${retryAfter} s`, { retryAfter });
}
