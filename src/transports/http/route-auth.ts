import { HearthError } from '../../core/errors.ts';
import { hasAnyScope, OPERATOR_SCOPES, type Principal, type Scope } from '../../access/principal.ts';

/**
 * Who may call a route: every route declares it in its config (`config: { auth: … }`), and the
 * HTTP server attaches the check to the route itself, so how a URL was spelled (percent-encoded,
 * case) can never decide whether a request is authenticated. A route that declares nothing keeps
 * the server from starting.
 *
 * - `public`: no credentials are read (probes, sign-in, the OpenAPI document).
 * - `self`: the route establishes its caller by itself (device Basic credentials, a partner's
 *   signature, a webhook id, a token in the query of the live stream); `how` says with what.
 * - `caller`: any signed-in caller (password sign-in or API key); the AccessService decides per
 *   home and device. `scopes`, when given: an API key needs one of them.
 * - `password`: a password sign-in; API keys are refused (keys and passwords are managed this way).
 * - `operator`: the operator; an API key of the operator must hold one of `scopes` and must not be
 *   limited to homes (operator routes act on the whole fleet).
 */
export type RouteAuth =
  | { readonly who: 'public' }
  | { readonly who: 'self'; readonly how: string }
  | { readonly who: 'caller'; readonly scopes?: readonly Scope[] }
  | { readonly who: 'password' }
  | { readonly who: 'operator'; readonly scopes: readonly Scope[] };

/** Constructors for route declarations: `config: { auth: Auth.operator('gateway:manage') }`. */
export const Auth = {
  public: { who: 'public' } as RouteAuth,
  self: (how: string): RouteAuth => ({ who: 'self', how }),
  caller: (...scopes: Scope[]): RouteAuth => (scopes.length ? { who: 'caller', scopes } : { who: 'caller' }),
  password: { who: 'password' } as RouteAuth,
  operator: (scope: Scope, ...more: Scope[]): RouteAuth => ({ who: 'operator', scopes: [scope, ...more] }),
} as const;

const WHO = new Set(['public', 'self', 'caller', 'password', 'operator']);

/** Why a route's `auth` declaration is not one (undefined when it is fine). */
export function declarationProblem(auth: unknown): string | undefined {
  if (auth === undefined) return 'declares no config.auth';
  const a = auth as { who?: unknown; scopes?: unknown; how?: unknown };
  if (typeof a !== 'object' || a === null || typeof a.who !== 'string' || !WHO.has(a.who)) return `has an unknown config.auth ${JSON.stringify(auth)}`;
  if (a.who === 'operator' && (!Array.isArray(a.scopes) || a.scopes.length === 0)) return 'is for the operator but names no scope';
  // An operator route held by a home-world scope would open fleet-wide actions to keys any user can make.
  if (a.who === 'operator' && (a.scopes as unknown[]).some((x) => !(OPERATOR_SCOPES as readonly unknown[]).includes(x)))
    return `is for the operator but names a scope outside ${OPERATOR_SCOPES.join(', ')}`;
  if (a.who === 'self' && (typeof a.how !== 'string' || !a.how)) return 'authenticates by itself but does not say how';
  return undefined;
}

/** True when the route's check needs a principal from the Authorization or X-Api-Key header. */
export function needsPrincipal(auth: RouteAuth | undefined): boolean {
  return auth === undefined || auth.who === 'caller' || auth.who === 'password' || auth.who === 'operator';
}

/**
 * Checks an authenticated principal against a route's declaration; throws E_FORBIDDEN.
 * A route without a declaration (it cannot start, but should one slip through) is `caller`.
 */
export function authorize(p: Principal, auth: RouteAuth | undefined): void {
  if (!auth || auth.who === 'public' || auth.who === 'self') return;
  if (auth.who === 'password') {
    if (p.keyId) throw new HearthError('E_FORBIDDEN', 'API keys cannot do this; sign in with a password');
    return;
  }
  if (auth.who === 'operator') {
    if (p.role !== 'operator') throw new HearthError('E_FORBIDDEN', 'this action is for the operator');
    if (p.homeIds) throw new HearthError('E_FORBIDDEN', 'an API key limited to some homes cannot act on the whole fleet');
  }
  const scopes = auth.scopes ?? [];
  if (!hasAnyScope(p, scopes)) throw new HearthError('E_FORBIDDEN', `this needs an API key with the scope ${scopes.join(' or ')}`);
}

/** The OpenAPI `security` of a route: which schemes, and which scopes an API key needs. */
export function securityOf(auth: RouteAuth): Array<Record<string, string[]>> | undefined {
  if (!needsPrincipal(auth)) return undefined;
  const scopes = auth.who === 'caller' || auth.who === 'operator' ? [...(auth.scopes ?? [])] : [];
  return auth.who === 'password' ? [{ bearerAuth: [] }] : [{ bearerAuth: scopes }, { apiKey: scopes }];
}
