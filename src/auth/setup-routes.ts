import { Type } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { problems } from '../transports/http/http-schemas.ts';
import { TokenResponse, tokenBody } from './auth-routes.ts';
import { isLoopback, type OperatorSetup } from './operator-setup.ts';

const SetupState = Type.Object(
  {
    needed: Type.Boolean({ description: 'The operator has not chosen its e-mail and password yet (it still has the generated first password)' }),
    codeRequired: Type.Boolean({ description: 'The caller is not on the server itself: POST needs the setup code printed in the server log' }),
  },
  { examples: [{ needed: true, codeRequired: false }] },
);

const SetupBody = Type.Object(
  {
    email: Type.String({ format: 'email', maxLength: 254, examples: ['me@example.com'] }),
    password: Type.String({ minLength: 8, maxLength: 256, examples: ['my-long-password'] }),
    code: Type.Optional(
      Type.String({ maxLength: 64, description: 'The setup code from the server log (needed from other machines)', examples: ['K3M9X7P1Q8'] }),
    ),
  },
  { additionalProperties: false, examples: [{ email: 'me@example.com', password: 'my-long-password' }] },
);

/** First-run setup (operator-setup.ts) over HTTP: the console's first screen on a fresh server. */
export async function setupRoutes(app: HttpApp, deps: { setup: OperatorSetup }): Promise<void> {
  const { setup } = deps;
  app.get(
    '/api/v1/setup',
    {
      config: { auth: Auth.public },
      schema: {
        tags: ['auth'],
        summary: 'Whether the first-run setup is open',
        description: 'True until the operator chooses its own e-mail and password (or signs in with the generated first password). Embedded mode.',
        response: { 200: SetupState },
      },
    },
    async (req) => ({ needed: await setup.needed(), codeRequired: !isLoopback(req.ip) }),
  );

  app.post(
    '/api/v1/setup',
    {
      config: { auth: Auth.public },
      schema: {
        tags: ['auth'],
        summary: "First-run setup: choose the operator's e-mail and password, and sign in",
        description:
          'Replaces the generated first password of the operator, once, while it has never signed in. From the server itself (loopback) no code is needed; from elsewhere, `code` is the setup code printed in the start banner and log (20 wrong codes close remote setup until the next start). 409 once set up.',
        body: SetupBody,
        response: { 200: TokenResponse, ...problems('E_VALIDATION', 'E_FORBIDDEN', 'E_CONFLICT', 'E_EMAIL_TAKEN') },
      },
    },
    async (req) => tokenBody(await setup.complete(req.body, req.ip)),
  );
}
