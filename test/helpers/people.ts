import assert from 'node:assert/strict';
import type { ApiResponse, Platform } from './platform.ts';

/** A signed-in person and their API under /api/v1 (paths without the prefix). */
export interface TestUser {
  id: string;
  email: string;
  token: string;
  api: (method: string, path: string, body?: unknown) => Promise<ApiResponse<any>>;
}

/** Signs up `email` (password derived from it) over the API and signs in. */
export async function signupUser(p: Platform, email: string): Promise<TestUser> {
  const password = `password-of-${email}`;
  const s = await p.api('POST', '/api/v1/auth/signup', { email, password }, null);
  assert.equal(s.status, 201, JSON.stringify(s.body));
  const l = await p.api('POST', '/api/v1/auth/login', { email, password }, null);
  assert.equal(l.status, 200, JSON.stringify(l.body));
  const token = l.body.token as string;
  return { id: s.body.id, email, token, api: (method, path, body) => p.api(method, `/api/v1${path}`, body, token) };
}
