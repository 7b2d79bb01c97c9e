import { Type } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { AuthHeader, problems } from '../transports/http/http-schemas.ts';
import type { AuthService } from './auth-service.ts';

const UserListItem = Type.Object({
  id: Type.String(),
  email: Type.String(),
  role: Type.String({ description: 'operator or user' }),
  name: Type.Union([Type.String(), Type.Null()]),
  emailVerified: Type.Boolean({ description: 'Whether the account confirmed its e-mail address' }),
  createdAt: Type.String({ format: 'date-time' }),
});

const UserList = Type.Object(
  {
    items: Type.Array(UserListItem),
    nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'Pass as `cursor` for the next page; null on the last' }),
  },
  {
    examples: [
      {
        items: [{ id: 'u_4k2m9x7p1q8r0t', email: 'ana@example.com', role: 'user', name: 'Ana', emailVerified: true, createdAt: '2026-11-23T08:00:00.000Z' }],
        nextCursor: null,
      },
    ],
  },
);

/** The operator's view of the accounts (support: find a customer by e-mail). No secrets, no sessions. */
export async function userRoutes(app: HttpApp, deps: { auth: AuthService }): Promise<void> {
  app.get(
    '/api/v1/users',
    {
      config: { auth: Auth.operator('users:read') },
      schema: {
        tags: ['auth'],
        summary: 'List the accounts (operator), by e-mail',
        description: '`q` finds the accounts whose e-mail contains it; pages of `limit` in e-mail order, the next one with `cursor`.',
        ...AuthHeader,
        querystring: Type.Object({
          q: Type.Optional(Type.String({ minLength: 1, maxLength: 254, description: 'Part of the e-mail address' })),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50 })),
          cursor: Type.Optional(Type.String({ maxLength: 254, description: "The previous page's nextCursor" })),
        }),
        response: { 200: UserList, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN') },
      },
    },
    async (req) => deps.auth.listUsers({ q: req.query.q, limit: req.query.limit ?? 50, after: req.query.cursor }),
  );
}
