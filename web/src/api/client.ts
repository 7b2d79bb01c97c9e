import createClient from 'openapi-fetch';
import type { components, paths } from './schema';
import { fromTokens, session } from './session';

export type { paths, components };

/** A problem+json answer (docs/errors.md) as an Error the pages can show. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string | undefined;
  readonly problem: Record<string, unknown> | undefined;
  constructor(status: number, problem: Record<string, unknown> | undefined) {
    const detail = problem && (typeof problem.detail === 'string' ? problem.detail : typeof problem.title === 'string' ? problem.title : undefined);
    super(detail ?? `HTTP ${status}`);
    this.status = status;
    this.code = typeof problem?.code === 'string' ? problem.code : undefined;
    this.problem = problem;
  }
}

let refreshing: Promise<boolean> | undefined;

/**
 * Rotates the refresh token once for every caller that needs it at the same moment (a refresh
 * token is single-use: two concurrent refreshes would end the session). False when the session ended.
 */
export function refreshSession(): Promise<boolean> {
  refreshing ??= (async () => {
    const s = session.get();
    if (!s) return false;
    const res = await fetch('/api/v1/auth/refresh', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refreshToken: s.refreshToken }),
    });
    if (!res.ok) {
      if (res.status === 401 || res.status === 400) session.set(null);
      return false;
    }
    session.set(fromTokens(await res.json()));
    return true;
  })().finally(() => {
    refreshing = undefined;
  });
  return refreshing;
}

/** A valid access token: refreshed first when it expires within half a minute. */
export async function accessToken(): Promise<string | undefined> {
  const s = session.get();
  if (!s) return undefined;
  if (s.expiresAt - Date.now() < 30_000) await refreshSession();
  return session.get()?.token;
}

/** fetch with the session's bearer token; on a 401 it refreshes the session once and retries. */
async function authedFetch(input: Request): Promise<Response> {
  const retry = input.clone();
  const token = await accessToken();
  if (token) input.headers.set('authorization', `Bearer ${token}`);
  const res = await fetch(input);
  if (res.status !== 401 || !token) return res;
  if (!(await refreshSession())) return res;
  retry.headers.set('authorization', `Bearer ${session.get()!.token}`);
  return fetch(retry);
}

/** The typed REST client (types generated from the OpenAPI document: scripts/gen-api-types.ts). */
export const api = createClient<paths>({ baseUrl: '', fetch: authedFetch });

/** The data of an openapi-fetch answer, or its problem thrown as an ApiError (for TanStack Query). */
export async function unwrap<T>(call: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  const { data, error, response } = await call;
  if (!response.ok) throw new ApiError(response.status, (error ?? undefined) as Record<string, unknown> | undefined);
  return data as T;
}

export type Device = paths['/api/v1/devices/{id}']['get']['responses'][200]['content']['application/json'];
export type DeviceListItem = paths['/api/v1/devices']['get']['responses'][200]['content']['application/json']['items'][number];
export type Product = paths['/api/v1/products/{key}']['get']['responses'][200]['content']['application/json'];
export type ThingModel = Product['model'];
export type CommandRecord = paths['/api/v1/devices/{id}/commands']['get']['responses'][200]['content']['application/json']['items'][number];
