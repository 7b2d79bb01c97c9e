import { Type } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { principal } from '../transports/http/http-server.ts';
import { AuthHeader, problems } from '../transports/http/http-schemas.ts';
import type { AuthService } from './auth-service.ts';

const LoginBody = Type.Object({
  email: Type.String({ format: 'email', examples: ['admin@hearth.local'] }),
  password: Type.String({ minLength: 1, examples: ['correct horse battery staple'] }),
}, { examples: [{ email: 'admin@hearth.local', password: 'correct horse battery staple' }] });

const UserSchema = Type.Object({ id: Type.String(), email: Type.String(), role: Type.String({ description: 'operator or user' }) }, { examples: [{ id: 'u_4k2m9x7p1q8r0t', email: 'admin@hearth.local', role: 'operator' }] });

const LoginResponse = Type.Object({
  token: Type.String({ description: 'Bearer token for the Authorization header' }),
  tokenType: Type.Literal('Bearer'),
  expiresIn: Type.Integer({ description: 'Seconds until the token expires' }),
  user: UserSchema,
}, { examples: [{ token: 'hth1.eyJzdWIiOiJ1XzEyMyJ9.c2lnbmF0dXJl', tokenType: 'Bearer', expiresIn: 3600, user: { id: 'u_4k2m9x7p1q8r0t', email: 'admin@hearth.local', role: 'operator' } }] });

export function authRoutes(app: HttpApp, deps: { auth: AuthService }): void {
  app.post('/api/v1/auth/login', {
    config: { public: true },
    schema: { tags: ['auth'], summary: 'Sign in with e-mail and password', body: LoginBody, response: { 200: LoginResponse, ...problems('E_VALIDATION', 'E_BAD_CREDENTIALS') } },
  }, async (req) => {
    const r = await deps.auth.login(req.body.email, req.body.password);
    return { token: r.token, tokenType: 'Bearer' as const, expiresIn: r.expiresIn, user: { id: r.user.userId, email: r.user.email, role: r.user.role } };
  });

  app.get('/api/v1/auth/me', {
    schema: { tags: ['auth'], summary: 'Who the token belongs to', ...AuthHeader, response: { 200: UserSchema, ...problems('E_UNAUTHENTICATED') } },
  }, async (req) => {
    const p = principal(req);
    return { id: p.userId, email: p.email, role: p.role };
  });
}
