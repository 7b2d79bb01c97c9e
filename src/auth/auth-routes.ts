import { Type } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { principal } from '../transports/http/http-server.ts';
import { AuthHeader, problems } from '../transports/http/http-schemas.ts';
import { HearthError } from '../core/errors.ts';
import type { AuthService, AuthSession } from './auth-service.ts';
import { actorOf, SCOPES, type Principal } from '../access/principal.ts';

/** Where the routes write who changed keys and passwords (the AuditService fits). */
export interface AuditSink {
  record(e: { actor: string; action: string; homeId?: string | null; targetType?: string; targetId?: string; details?: Record<string, unknown> }): void;
}

export interface AuthRoutesDeps {
  auth: AuthService;
  /** Config keys the routes read (the app's Config fits). */
  config?: { publicUrl?: string; passwordResetUrl?: string; signupEnabled?: boolean };
  audit?: AuditSink;
}

const T = '2026-11-23T08:00:00.000Z';
const userExample = { id: 'u_4k2m9x7p1q8r0t', email: 'ana@example.com', role: 'user', name: 'Ana', emailVerified: true };
const Email = Type.String({ format: 'email', maxLength: 254, examples: ['ana@example.com'] });
const NewPassword = Type.String({ minLength: 8, maxLength: 256, description: 'At least 8 characters', examples: ['correct horse battery staple'] });
const Scope = Type.Enum(SCOPES, { description: 'What the key may do' });
const Nullable = <S extends Parameters<typeof Type.Union>[0][number]>(s: S) => Type.Union([s, Type.Null()]);

const SignupBody = Type.Object(
  {
    email: Email,
    password: NewPassword,
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 100, examples: ['Ana'] })),
  },
  { additionalProperties: false, examples: [{ email: 'ana@example.com', password: 'correct horse battery staple', name: 'Ana' }] },
);

const LoginBody = Type.Object(
  {
    email: Type.String({ format: 'email', maxLength: 254, examples: ['admin@hearth.local'] }),
    password: Type.String({ minLength: 1, maxLength: 256, examples: ['correct horse battery staple'] }),
  },
  { examples: [{ email: 'admin@hearth.local', password: 'correct horse battery staple' }] },
);

const RefreshBody = Type.Object(
  {
    refreshToken: Type.String({ minLength: 1, maxLength: 200, examples: ['hrt_Yq3v0m1oQ2d3bU8pX1c2V3d4e5f6g7h8i9j0k1l2m3'] }),
  },
  { additionalProperties: false, examples: [{ refreshToken: 'hrt_Yq3v0m1oQ2d3bU8pX1c2V3d4e5f6g7h8i9j0k1l2m3' }] },
);

const PasswordBody = Type.Object(
  {
    currentPassword: Type.String({ minLength: 1, maxLength: 256, examples: ['old password 1'] }),
    newPassword: NewPassword,
  },
  { additionalProperties: false, examples: [{ currentPassword: 'old password 1', newPassword: 'correct horse battery staple' }] },
);

const ResetBody = Type.Object({ email: Email }, { additionalProperties: false, examples: [{ email: 'ana@example.com' }] });

const ResetConfirmBody = Type.Object(
  {
    token: Type.String({
      minLength: 1,
      maxLength: 200,
      description: 'The token from the reset e-mail',
      examples: ['mJ4v0q1oQ2d3bU8pX1c2V3d4e5f6g7h8i9j0k1l2m3'],
    }),
    newPassword: NewPassword,
  },
  { additionalProperties: false, examples: [{ token: 'mJ4v0q1oQ2d3bU8pX1c2V3d4e5f6g7h8i9j0k1l2m3', newPassword: 'correct horse battery staple' }] },
);

const EmailVerified = Type.Boolean({
  description: 'Whether the account confirmed its e-mail address; until it has, invitations and shares addressed to it do not take effect',
});

const UserSchema = Type.Object(
  {
    id: Type.String(),
    email: Type.String(),
    role: Type.String({ description: 'operator or user' }),
    name: Nullable(Type.String()),
    emailVerified: EmailVerified,
  },
  { examples: [userExample] },
);

const MeSchema = Type.Object(
  {
    id: Type.String(),
    email: Type.String(),
    role: Type.String({ description: 'operator or user' }),
    name: Nullable(Type.String()),
    emailVerified: EmailVerified,
    keyId: Type.Optional(Type.String({ description: 'Set when the caller is an API key' })),
    scopes: Type.Optional(Type.Array(Scope, { description: 'API keys only: what the key may do' })),
    homeIds: Type.Optional(Type.Array(Type.String(), { description: 'API keys only: the homes it is limited to' })),
  },
  { examples: [userExample, { ...userExample, keyId: 'k_7p1q8r0t4k2m9x', scopes: ['devices:read'], homeIds: ['h_5t2k9x4p1q8r0m'] }] },
);

export const TokenResponse = Type.Object(
  {
    token: Type.String({ description: 'Access token for the Authorization header (short-lived)' }),
    refreshToken: Type.String({ description: 'One-time token for POST /api/v1/auth/refresh; keep it secret' }),
    tokenType: Type.Literal('Bearer'),
    expiresIn: Type.Integer({ description: 'Seconds until the access token expires' }),
    refreshExpiresIn: Type.Integer({ description: 'Seconds until the refresh token expires unless used' }),
    user: UserSchema,
  },
  {
    examples: [
      {
        token: 'hth1.eyJzdWIiOiJ1XzEyMyJ9.c2lnbmF0dXJl',
        refreshToken: 'hrt_Yq3v0m1oQ2d3bU8pX1c2V3d4e5f6g7h8i9j0k1l2m3',
        tokenType: 'Bearer',
        expiresIn: 900,
        refreshExpiresIn: 2592000,
        user: { id: 'u_4k2m9x7p1q8r0t', email: 'admin@hearth.local', role: 'operator', name: 'Operator', emailVerified: true },
      },
    ],
  },
);

const Accepted = Type.Object(
  { status: Type.Literal('accepted'), detail: Type.String() },
  {
    examples: [{ status: 'accepted', detail: 'If an account has this e-mail, a reset link is on its way; it is valid for an hour.' }],
  },
);

const NoContent = Type.Null({ description: 'Done; no content' });

const VerifyBody = Type.Object(
  {
    token: Type.String({
      minLength: 1,
      maxLength: 200,
      description: 'The token from the verification e-mail',
      examples: ['vQ4v0q1oQ2d3bU8pX1c2V3d4e5f6g7h8i9j0k1l2m3'],
    }),
  },
  { additionalProperties: false, examples: [{ token: 'vQ4v0q1oQ2d3bU8pX1c2V3d4e5f6g7h8i9j0k1l2m3' }] },
);

const Sent = Type.Object(
  { status: Type.Literal('sent'), detail: Type.String() },
  {
    examples: [{ status: 'sent', detail: 'A new verification link is on its way to ana@example.com; it is valid for a day.' }],
  },
);

const KeyBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100, examples: ['Home Assistant'] }),
    scopes: Type.Array(Scope, { minItems: 1, uniqueItems: true, examples: [['devices:read', 'devices:control']] }),
    homeIds: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 64 }), {
        maxItems: 100,
        uniqueItems: true,
        description: 'Limit the key to these homes (default: all of yours)',
        examples: [['h_5t2k9x4p1q8r0m']],
      }),
    ),
  },
  { additionalProperties: false, examples: [{ name: 'Home Assistant', scopes: ['devices:read', 'devices:control'], homeIds: ['h_5t2k9x4p1q8r0m'] }] },
);

const keyExample = { id: 'k_7p1q8r0t4k2m9x', name: 'Home Assistant', scopes: ['devices:read', 'devices:control'], homeIds: ['h_5t2k9x4p1q8r0m'], createdAt: T };

const CreatedKey = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    key: Type.String({ description: 'The key itself (hk_…): shown this once, only a digest is kept' }),
    scopes: Type.Array(Scope),
    homeIds: Nullable(Type.Array(Type.String(), { description: 'null: all of your homes' })),
    createdAt: Type.String({ format: 'date-time' }),
  },
  { examples: [{ ...keyExample, key: 'hk_Zr2v0m1oQ2d3bU8pX1c2V3d4e5f6g7h8i9j0k1l2m3' }] },
);

const KeySchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  scopes: Type.Array(Scope),
  homeIds: Nullable(Type.Array(Type.String(), { description: 'null: all of your homes' })),
  createdAt: Type.String({ format: 'date-time' }),
  lastUsedAt: Nullable(Type.String({ format: 'date-time', description: 'Recorded at most once a minute' })),
  revokedAt: Nullable(Type.String({ format: 'date-time' })),
});

const KeyList = Type.Object(
  { items: Type.Array(KeySchema) },
  {
    examples: [{ items: [{ ...keyExample, lastUsedAt: '2026-11-23T09:00:00.000Z', revokedAt: null }] }],
  },
);

const KeyParams = Type.Object({ id: Type.String({ examples: ['k_7p1q8r0t4k2m9x'] }) });

export function tokenBody(s: AuthSession) {
  return {
    token: s.token,
    refreshToken: s.refreshToken,
    tokenType: 'Bearer' as const,
    expiresIn: s.expiresIn,
    refreshExpiresIn: s.refreshExpiresIn,
    user: s.user,
  };
}

/** Password sign-ins only: API keys do not manage keys or passwords. */
function requireSignIn(p: Principal, what: string): Principal {
  if (p.keyId) throw new HearthError('E_FORBIDDEN', `API keys cannot ${what}; sign in with a password`);
  return p;
}

/**
 * Accounts, sessions, e-mail verification, password resets and API keys. The public routes
 * throttle by the caller's address (`req.ip`: the socket's peer, as the server trusts no proxy
 * headers; behind a proxy the server needs `trustProxy` for it to be the client's).
 */
export async function authRoutes(app: HttpApp, deps: AuthRoutesDeps): Promise<void> {
  const { auth, audit } = deps;

  app.post(
    '/api/v1/auth/signup',
    {
      config: { auth: Auth.public },
      schema: {
        tags: ['auth'],
        summary: 'Create an account (role user)',
        description:
          'Mails a verification link to the address (valid a day). Sign-ups are limited per client address (429 with Retry-After), failed ones included.',
        body: SignupBody,
        response: { 201: UserSchema, ...problems('E_VALIDATION', 'E_FORBIDDEN', 'E_EMAIL_TAKEN', 'E_RATE_LIMITED') },
      },
    },
    async (req, reply) => {
      if (deps.config?.signupEnabled === false) throw new HearthError('E_FORBIDDEN', 'sign-up is disabled on this server; ask its operator for an account');
      const user = await auth.signup(req.body.email, req.body.password, req.body.name, {
        ip: req.ip,
        verifyUrlBase: verifyUrlBase(deps.config, req.socket.localPort),
      });
      return reply.status(201).send(user);
    },
  );

  app.post(
    '/api/v1/auth/login',
    {
      config: { auth: Auth.public },
      schema: {
        tags: ['auth'],
        summary: 'Sign in with e-mail and password',
        description:
          'Starts a session: a short-lived access token and a one-time refresh token. After 3 wrong passwords in a row for an e-mail from one client address, that address waits 1 s, 2 s, 4 s … (up to 15 minutes) between attempts for that e-mail (429 with Retry-After); other addresses are not held up. An address failing on many accounts is stopped too.',
        body: LoginBody,
        response: { 200: TokenResponse, ...problems('E_VALIDATION', 'E_BAD_CREDENTIALS', 'E_RATE_LIMITED') },
      },
    },
    async (req) => tokenBody(await auth.login(req.body.email, req.body.password, { ip: req.ip })),
  );

  app.post(
    '/api/v1/auth/refresh',
    {
      config: { auth: Auth.public },
      schema: {
        tags: ['auth'],
        summary: 'Exchange a refresh token for a new token pair',
        description: 'Each refresh token works once. Presenting a used one again ends the whole session (it was probably stolen).',
        body: RefreshBody,
        response: { 200: TokenResponse, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED') },
      },
    },
    async (req) => tokenBody(await auth.refresh(req.body.refreshToken)),
  );

  app.post(
    '/api/v1/auth/logout',
    {
      config: { auth: Auth.password },
      schema: {
        tags: ['auth'],
        summary: 'Sign out: end this session (its refresh and access tokens)',
        ...AuthHeader,
        response: { 204: NoContent, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN') },
      },
    },
    async (req, reply) => {
      await auth.logout(principal(req));
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/api/v1/auth/password',
    {
      config: { auth: Auth.password },
      schema: {
        tags: ['auth'],
        summary: 'Change your password',
        description: 'Ends all your other sessions; this one stays signed in.',
        ...AuthHeader,
        body: PasswordBody,
        response: { 204: NoContent, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_BAD_CREDENTIALS', 'E_FORBIDDEN', 'E_RATE_LIMITED') },
      },
    },
    async (req, reply) => {
      const p = requireSignIn(principal(req), 'change passwords');
      await auth.changePassword(p, req.body.currentPassword, req.body.newPassword, { ip: req.ip });
      audit?.record({ actor: actorOf(p), action: 'auth.password.change', targetType: 'user', targetId: p.userId });
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/api/v1/auth/password-reset',
    {
      config: { auth: Auth.public },
      schema: {
        tags: ['auth'],
        summary: 'Ask for a password reset e-mail',
        description:
          'Answers 202 whether or not an account has the e-mail. The e-mail holds a link and a token valid for an hour. At most 5 e-mails an hour go to one address (the rest are dropped silently); one client address may ask 20 times an hour (then 429 with Retry-After).',
        body: ResetBody,
        response: { 202: Accepted, ...problems('E_VALIDATION', 'E_RATE_LIMITED') },
      },
    },
    async (req, reply) => {
      await auth.requestPasswordReset(req.body.email, resetUrlBase(deps.config, req.socket.localPort), { ip: req.ip });
      return reply
        .status(202)
        .send({ status: 'accepted' as const, detail: 'If an account has this e-mail, a reset link is on its way; it is valid for an hour.' });
    },
  );

  app.post(
    '/api/v1/auth/password-reset/confirm',
    {
      config: { auth: Auth.public },
      schema: {
        tags: ['auth'],
        summary: 'Set a new password with the token from the reset e-mail',
        description:
          'Ends every session of the account. The reset link proves the address, so it counts as verified from now on; if it was not before, the API keys of the account are revoked and its push registrations (browsers, phones) removed too: whoever made them never proved the address was theirs.',
        body: ResetConfirmBody,
        response: { 204: NoContent, ...problems('E_VALIDATION', 'E_RESET_TOKEN_INVALID') },
      },
    },
    async (req, reply) => {
      const { userId, reclaimed } = await auth.confirmPasswordReset(req.body.token, req.body.newPassword);
      audit?.record({
        actor: `user:${userId}`,
        action: 'auth.password.reset',
        targetType: 'user',
        targetId: userId,
        ...(reclaimed ? { details: { emailVerified: true, keysRevoked: true, pushRemoved: true } } : {}),
      });
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/api/v1/auth/verify-email',
    {
      config: { auth: Auth.password },
      schema: {
        tags: ['auth'],
        summary: 'Confirm your e-mail address with the token from the verification e-mail',
        description:
          'Needs both the token (the mailbox) and your sign-in (the password): a link clicked by somebody else does not verify an account they did not make. Answers your account with emailVerified true.',
        ...AuthHeader,
        body: VerifyBody,
        response: { 200: UserSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_VERIFICATION_TOKEN_INVALID') },
      },
    },
    async (req) => {
      const p = requireSignIn(principal(req), 'verify e-mail addresses');
      const user = await auth.verifyEmail(p, req.body.token);
      audit?.record({ actor: actorOf(p), action: 'auth.email.verify', targetType: 'user', targetId: p.userId, details: { email: user.email } });
      return user;
    },
  );

  app.post(
    '/api/v1/auth/verify-email/resend',
    {
      config: { auth: Auth.password },
      schema: {
        tags: ['auth'],
        summary: 'Mail a new verification link to your address',
        description: 'At most 3 at once and 5 an hour per account (then 429 with Retry-After). 409 when the address is verified already.',
        ...AuthHeader,
        response: { 202: Sent, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_CONFLICT', 'E_RATE_LIMITED') },
      },
    },
    async (req, reply) => {
      const p = requireSignIn(principal(req), 'ask for verification e-mails');
      await auth.resendVerification(p, verifyUrlBase(deps.config, req.socket.localPort));
      return reply.status(202).send({ status: 'sent' as const, detail: 'A new verification link is on its way to your address; it is valid for a day.' });
    },
  );

  app.get(
    '/api/v1/auth/me',
    {
      config: { auth: Auth.caller() },
      schema: { tags: ['auth'], summary: 'Who the token or API key belongs to', ...AuthHeader, response: { 200: MeSchema, ...problems('E_UNAUTHENTICATED') } },
    },
    async (req) => {
      const p = principal(req);
      const user = await auth.userById(p.userId);
      if (!user) throw new HearthError('E_UNAUTHENTICATED', 'the account no longer exists');
      return {
        ...user,
        ...(p.keyId ? { keyId: p.keyId, scopes: [...(p.scopes ?? [])] } : {}),
        ...(p.keyId && p.homeIds ? { homeIds: [...p.homeIds] } : {}),
      };
    },
  );

  app.post(
    '/api/v1/keys',
    {
      config: { auth: Auth.password },
      schema: {
        tags: ['keys'],
        summary: 'Create an API key',
        description: 'The key is in this answer only. Use it as "Authorization: Bearer hk_…" or "X-Api-Key: hk_…". API keys cannot create keys.',
        ...AuthHeader,
        body: KeyBody,
        response: { 201: CreatedKey, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN') },
      },
    },
    async (req, reply) => {
      const p = requireSignIn(principal(req), 'manage API keys');
      const k = await auth.createKey(p, { name: req.body.name, scopes: req.body.scopes, homeIds: req.body.homeIds });
      audit?.record({
        actor: actorOf(p),
        action: 'key.create',
        targetType: 'key',
        targetId: k.id,
        details: { name: k.name, scopes: k.scopes, homeIds: k.homeIds },
      });
      return reply.status(201).send({ id: k.id, name: k.name, key: k.key, scopes: k.scopes, homeIds: k.homeIds, createdAt: k.createdAt });
    },
  );

  app.get(
    '/api/v1/keys',
    {
      config: { auth: Auth.password },
      schema: {
        tags: ['keys'],
        summary: 'Your API keys (without the keys themselves)',
        ...AuthHeader,
        response: { 200: KeyList, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN') },
      },
    },
    async (req) => ({ items: await auth.listKeys(requireSignIn(principal(req), 'manage API keys')) }),
  );

  app.delete(
    '/api/v1/keys/:id',
    {
      config: { auth: Auth.password },
      schema: {
        tags: ['keys'],
        summary: 'Revoke an API key; it stops working at once',
        ...AuthHeader,
        params: KeyParams,
        response: { 204: NoContent, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_KEY_NOT_FOUND') },
      },
    },
    async (req, reply) => {
      const p = requireSignIn(principal(req), 'manage API keys');
      await auth.revokeKey(p, req.params.id);
      audit?.record({ actor: actorOf(p), action: 'key.revoke', targetType: 'key', targetId: req.params.id });
      return reply.status(204).send(null);
    },
  );
}

/**
 * The page reset e-mails link to. Never built from the request's Host header: anyone could make
 * a victim's reset e-mail point at their own server and collect the token.
 */
function resetUrlBase(config: AuthRoutesDeps['config'], localPort: number | undefined): string {
  if (config?.passwordResetUrl) return config.passwordResetUrl;
  return `${publicBase(config, localPort)}/reset-password`;
}

/** The page verification e-mails link to: `<publicUrl>/verify-email` (never from the Host header either). */
function verifyUrlBase(config: AuthRoutesDeps['config'], localPort: number | undefined): string {
  return `${publicBase(config, localPort)}/verify-email`;
}

function publicBase(config: AuthRoutesDeps['config'], localPort: number | undefined): string {
  return config?.publicUrl ? config.publicUrl.replace(/\/+$/, '') : `http://localhost:${localPort ?? 8080}`;
}
