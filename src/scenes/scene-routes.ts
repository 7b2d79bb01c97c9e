import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { principal } from '../transports/http/http-server.ts';
import { AuthHeader, problems } from '../transports/http/http-schemas.ts';
import { HomeParams } from '../homes/home-schema.ts';
import type { SceneService } from './scene-service.ts';
import {
  ActivateBody,
  ActivationListSchema,
  ActivationQuery,
  ActivationSchema,
  CaptureBody,
  SceneBody,
  SceneDeletedSchema,
  SceneListSchema,
  SceneParams,
  ScenePatchBody,
  SceneSchema,
} from './scene-schema.ts';

const A = '/api/v1';

/** Routes of scenes; every check is the SceneService's (through the AccessService). */
export async function sceneRoutes(app: HttpApp, deps: { scenes: SceneService }): Promise<void> {
  const { scenes } = deps;

  app.post(
    `${A}/homes/:homeId/scenes`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['scenes'],
        summary: 'Create a scene of device states and actions (owner, admin); every entry is checked against the thing models',
        ...AuthHeader,
        params: HomeParams,
        body: SceneBody,
        response: { 201: SceneSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND') },
      },
    },
    async (req, reply) => reply.status(201).send(await scenes.create(principal(req), req.params.homeId, req.body)),
  );

  app.post(
    `${A}/homes/:homeId/scenes/capture`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['scenes'],
        summary: "Create a scene from the devices' current reported state (writable properties only; owner, admin)",
        ...AuthHeader,
        params: HomeParams,
        body: CaptureBody,
        response: { 201: SceneSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND') },
      },
    },
    async (req, reply) => reply.status(201).send(await scenes.capture(principal(req), req.params.homeId, req.body)),
  );

  app.get(
    `${A}/homes/:homeId/scenes`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['scenes'],
        summary: 'The scenes of a home',
        ...AuthHeader,
        params: HomeParams,
        response: { 200: SceneListSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND') },
      },
    },
    async (req) => ({ items: await scenes.list(principal(req), req.params.homeId) }),
  );

  app.get(
    `${A}/scenes/:sceneId`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['scenes'],
        summary: 'A scene',
        ...AuthHeader,
        params: SceneParams,
        response: { 200: SceneSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_SCENE_NOT_FOUND') },
      },
    },
    async (req) => scenes.get(principal(req), req.params.sceneId),
  );

  app.patch(
    `${A}/scenes/:sceneId`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['scenes'],
        summary: 'Rename a scene or replace its states or actions (owner, admin)',
        ...AuthHeader,
        params: SceneParams,
        body: ScenePatchBody,
        response: { 200: SceneSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_SCENE_NOT_FOUND') },
      },
    },
    async (req) => scenes.update(principal(req), req.params.sceneId, req.body),
  );

  app.delete(
    `${A}/scenes/:sceneId`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['scenes'],
        summary: 'Delete a scene and its activations (owner, admin)',
        ...AuthHeader,
        params: SceneParams,
        response: { 200: SceneDeletedSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_SCENE_NOT_FOUND') },
      },
    },
    async (req) => {
      await scenes.delete(principal(req), req.params.sceneId);
      return { id: req.params.sceneId, deleted: true as const };
    },
  );

  app.post(
    `${A}/scenes/:sceneId/activate`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['scenes'],
        summary: 'Activate a scene: all devices in parallel, one result per state and action; devices the caller may not control fail untouched',
        ...AuthHeader,
        params: SceneParams,
        body: ActivateBody,
        response: { 200: ActivationSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_SCENE_NOT_FOUND') },
      },
    },
    async (req) => scenes.activate(principal(req), req.params.sceneId, { ...(req.body?.timeoutMs !== undefined ? { timeoutMs: req.body.timeoutMs } : {}) }),
  );

  app.get(
    `${A}/scenes/:sceneId/activations`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['scenes'],
        summary: 'The recent activations of a scene (the last 50), newest first',
        ...AuthHeader,
        params: SceneParams,
        querystring: ActivationQuery,
        response: { 200: ActivationListSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_SCENE_NOT_FOUND') },
      },
    },
    async (req) => ({ items: await scenes.activations(principal(req), req.params.sceneId, req.query.limit) }),
  );
}
