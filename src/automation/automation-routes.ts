import type { FastifySchema } from 'fastify';
import type { SwaggerTransform } from '@fastify/swagger';
import type { TSchema } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { principal } from '../transports/http/http-server.ts';
import { AuthHeader, problems } from '../transports/http/http-schemas.ts';
import { actorOf } from '../access/principal.ts';
import type { AutomationService } from './automation-service.ts';
import type { AutomationEngine } from './automation-engine.ts';
import type { AutomationInput, TriggerType } from './automation-types.ts';
import {
  AutomationListSchema,
  AutomationParams,
  AutomationSchema,
  CreateAutomationBody,
  DeletedSchema,
  HomeParams,
  HookAcceptedSchema,
  HookParams,
  ManualRunBody,
  RunListSchema,
  documented,
  RunParams,
  RunSchema,
  RunsQuery,
  TestBody,
  TestResultSchema,
  UpdateAutomationBody,
} from './automation-schema.ts';

const A = '/api/v1';

/** A route's `config.swaggerTransform`: the OpenAPI document shows `parts` (automation-schema's `documented`) in place of the route's own body and answers. */
function documentedAs(parts: { body?: TSchema; response?: Record<number, TSchema> }): SwaggerTransform {
  return ({ schema, url }) => ({
    url,
    schema: {
      ...schema,
      ...(parts.body ? { body: parts.body } : {}),
      ...(parts.response ? { response: { ...(schema.response as object), ...parts.response } } : {}),
    } as FastifySchema,
  });
}

/** Routes of automations: CRUD, manual runs, dry runs, runs with traces, and the incoming webhook. */
export async function automationRoutes(app: HttpApp, deps: { automations: AutomationService; engine: AutomationEngine }): Promise<void> {
  const { automations, engine } = deps;
  const tags = ['automations'];

  app.post(
    `${A}/homes/:homeId/automations`,
    {
      config: { auth: Auth.caller(), swaggerTransform: documentedAs({ body: documented.create, response: { 201: documented.automation } }) },
      schema: {
        tags,
        summary: "Create an automation (owner, admin); validated against the home and its devices' thing models",
        ...AuthHeader,
        description:
          'Every problem is reported at once: a 400 E_AUTOMATION_INVALID whose `errors` lists `{field, message}` with the path of each bad part (e.g. `actions[2].params.brightness`). See docs/automations.md.',
        params: HomeParams,
        body: CreateAutomationBody,
        response: { 201: AutomationSchema, ...problems('E_VALIDATION', 'E_AUTOMATION_INVALID', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND') },
      },
    },
    async (req, reply) => reply.status(201).send(await automations.create(principal(req), req.params.homeId, req.body as unknown as AutomationInput)),
  );

  app.get(
    `${A}/homes/:homeId/automations`,
    {
      config: { auth: Auth.caller(), swaggerTransform: documentedAs({ response: { 200: documented.list } }) },
      schema: {
        tags,
        summary: 'The automations of a home (members, admins, owner)',
        ...AuthHeader,
        params: HomeParams,
        response: { 200: AutomationListSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND') },
      },
    },
    async (req) => ({ items: await automations.list(principal(req), req.params.homeId) }),
  );

  app.get(
    `${A}/automations/:automationId`,
    {
      config: { auth: Auth.caller(), swaggerTransform: documentedAs({ response: { 200: documented.automation } }) },
      schema: {
        tags,
        summary: 'An automation, with its status (ok, unavailable, stopped) and why',
        ...AuthHeader,
        params: AutomationParams,
        response: { 200: AutomationSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_AUTOMATION_NOT_FOUND') },
      },
    },
    async (req) => automations.get(principal(req), req.params.automationId),
  );

  app.patch(
    `${A}/automations/:automationId`,
    {
      config: { auth: Auth.caller(), swaggerTransform: documentedAs({ body: documented.update, response: { 200: documented.automation } }) },
      schema: {
        tags,
        summary: 'Change, enable or disable an automation (owner, admin); active runs end and it starts anew',
        ...AuthHeader,
        params: AutomationParams,
        body: UpdateAutomationBody,
        response: { 200: AutomationSchema, ...problems('E_VALIDATION', 'E_AUTOMATION_INVALID', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_AUTOMATION_NOT_FOUND') },
      },
    },
    async (req) => automations.update(principal(req), req.params.automationId, req.body as unknown as Partial<AutomationInput>),
  );

  app.delete(
    `${A}/automations/:automationId`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags,
        summary: 'Delete an automation and its runs (owner, admin)',
        ...AuthHeader,
        params: AutomationParams,
        response: { 200: DeletedSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_AUTOMATION_NOT_FOUND') },
      },
    },
    async (req) => {
      await automations.delete(principal(req), req.params.automationId);
      return { id: req.params.automationId, deleted: true as const };
    },
  );

  app.post(
    `${A}/automations/:automationId/run`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags,
        summary: 'Run an automation now (members, admins, owner); the answer is the run as it started',
        ...AuthHeader,
        description:
          'The conditions are evaluated unless `skipConditions`; the run mode applies. Follow the run at GET /api/v1/automations/{id}/runs/{runId} or on the live stream.',
        params: AutomationParams,
        body: ManualRunBody,
        response: { 202: RunSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_AUTOMATION_NOT_FOUND', 'E_CONFLICT', 'E_UNAVAILABLE') },
      },
    },
    async (req, reply) => {
      const p = principal(req);
      const { a } = await automations.require(p, req.params.automationId, 'control');
      automations.audit(p, 'automation.run', a, {});
      const run = await engine.manual(a, {
        source: actorOf(p),
        ...(req.body?.data ? { data: req.body.data } : {}),
        ...(req.body?.skipConditions ? { skipConditions: true } : {}),
      });
      return reply.status(202).send(run);
    },
  );

  app.post(
    `${A}/automations/:automationId/test`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags,
        summary: 'Dry run: evaluate the automation against a trigger event without acting (owner, admin)',
        ...AuthHeader,
        description:
          'Says whether the event matches a trigger, evaluates the conditions on the current state, and walks the actions (choose branches decided, waits checked once), returning the would-be trace. Nothing is sent or recorded.',
        params: AutomationParams,
        body: TestBody,
        response: { 200: TestResultSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_AUTOMATION_NOT_FOUND') },
      },
    },
    async (req) => {
      const { a } = await automations.require(principal(req), req.params.automationId, 'configure');
      return engine.test(a, { type: req.body.trigger.type as TriggerType, ...(req.body.trigger.data ? { data: req.body.trigger.data } : {}) });
    },
  );

  app.get(
    `${A}/automations/:automationId/runs`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags,
        summary: 'Runs of an automation, newest first, each with its trace',
        ...AuthHeader,
        params: AutomationParams,
        querystring: RunsQuery,
        response: { 200: RunListSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_AUTOMATION_NOT_FOUND') },
      },
    },
    async (req) => ({
      items: await automations.listRuns(principal(req), req.params.automationId, {
        limit: req.query.limit,
        ...(req.query.before ? { before: Date.parse(req.query.before) } : {}),
        ...(req.query.status ? { status: req.query.status } : {}),
      }),
    }),
  );

  app.get(
    `${A}/automations/:automationId/runs/:runId`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags,
        summary: 'One run with its trace',
        ...AuthHeader,
        params: RunParams,
        response: { 200: RunSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_AUTOMATION_NOT_FOUND', 'E_RUN_NOT_FOUND') },
      },
    },
    async (req) => automations.getRun(principal(req), req.params.automationId, req.params.runId),
  );

  app.post(
    `${A}/hooks/:webhookId`,
    {
      config: { auth: Auth.self('the webhook id in the path is the secret') },
      schema: {
        tags,
        summary: 'Incoming webhook: fires the automation whose webhook trigger has this id (no sign-in; the id is the secret)',
        description: 'The JSON body (optional) is in the trigger data as `body`, and the query string as `query`. Answers 202 with the run id.',
        params: HookParams,
        response: { 202: HookAcceptedSchema, ...problems('E_WEBHOOK_NOT_FOUND', 'E_CONFLICT', 'E_UNAVAILABLE') },
      },
    },
    async (req, reply) => {
      const a = await automations.byWebhook(req.params.webhookId);
      const body = req.body === undefined ? null : req.body;
      // Sent by an automation's webhook action (ours): the loop guard counts the chain.
      const from = req.headers['x-hearth-automation'];
      const run = await engine.webhook(a, {
        body,
        query: req.query ?? {},
        ...(typeof from === 'string' && /^au_[A-Za-z0-9]{1,40}$/.test(from) ? { fromAutomation: from } : {}),
      });
      return reply.status(202).send({ runId: run.id, status: run.status });
    },
  );
}
