/**
 * Who is calling and what they may do in general: the principal that a bearer token or an API key
 * establishes, API key scopes, and how the audit log names a caller. The auth capability issues
 * principals; the access policy (access-service.ts) and the HTTP edge (route-auth.ts) judge them.
 */
export type Role = 'operator' | 'user';

/**
 * What an API key may be allowed to do. Users signed in with a password may do all their role allows.
 * The first five are the home world's (any user's keys); the others are the operator's areas, held
 * only by keys of the operator.
 */
export const SCOPES = [
  'devices:read',
  'devices:control',
  'homes:read',
  'homes:manage',
  'automations:manage',
  'products:manage',
  'devices:manage',
  'gateway:read',
  'gateway:manage',
  'partners:manage',
  'audit:read',
  'users:read',
] as const;
export type Scope = (typeof SCOPES)[number];

/** Scopes of the operator's areas (products, provisioning, the gateway, partners, the fleet audit log). */
export const OPERATOR_SCOPES: readonly Scope[] = [
  'products:manage',
  'devices:manage',
  'gateway:read',
  'gateway:manage',
  'partners:manage',
  'audit:read',
  'users:read',
];

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
  /** Access tokens only: when the token stops working (epoch ms); what it opened (a live stream) ends then. */
  expiresAt?: number;
}

/** How the audit log and the command ledger name a principal: `user:u_…` or `key:k_…`. */
export function actorOf(p: Principal): string {
  return p.keyId ? `key:${p.keyId}` : `user:${p.userId}`;
}

/** True when the principal may act within `scope` (always for password sign-ins). */
export function hasScope(p: Principal, scope: Scope): boolean {
  return !p.scopes || p.scopes.includes(scope);
}

/** True when the principal holds at least one of `scopes` (always for password sign-ins; true for none asked). */
export function hasAnyScope(p: Principal, scopes: readonly Scope[]): boolean {
  return !p.scopes || scopes.length === 0 || scopes.some((s) => p.scopes!.includes(s));
}
