import { Type } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { principal } from '../transports/http/http-server.ts';
import { AuthHeader, problems } from '../transports/http/http-schemas.ts';
import { actorOf } from '../access/principal.ts';
import type { DeviceViews } from '../devices/device-view.ts';
import { DeviceId, DeviceListSchema, DeviceSearchQuery } from '../devices/device-schema.ts';
import type { FleetGroups } from './fleet-groups.ts';
import type { FleetJobs, JobSpec, JobTarget } from './fleet-jobs.ts';

const Id = (example: string) => Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', examples: [example] });
const GroupParams = Type.Object({ groupId: Id('fg_4m2k9x4p1q8r0t') });
const GroupDeviceParams = Type.Object({ groupId: Id('fg_4m2k9x4p1q8r0t'), deviceId: DeviceId });
const Query = Type.String({
  minLength: 1,
  maxLength: 2000,
  description: 'A fleet query (docs/fleet.md): a dynamic group holds the devices it matches',
  examples: ['product:light AND tag.site:berlin'],
});

const GroupSchema = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    description: Type.Union([Type.String(), Type.Null()]),
    type: Type.Union([Type.Literal('static'), Type.Literal('dynamic')]),
    query: Type.Union([Type.String(), Type.Null()]),
    parentId: Type.Union([Type.String(), Type.Null()]),
    createdAt: Type.String({ format: 'date-time' }),
    updatedAt: Type.String({ format: 'date-time' }),
  },
  {
    examples: [
      {
        id: 'fg_4m2k9x4p1q8r0t',
        name: 'Berlin lights',
        description: null,
        type: 'dynamic',
        query: 'product:light AND tag.site:berlin',
        parentId: null,
        createdAt: '2026-12-06T08:00:00.000Z',
        updatedAt: '2026-12-06T08:00:00.000Z',
      },
    ],
  },
);

const CreateGroupBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200 }),
    description: Type.Optional(Type.String({ maxLength: 1000 })),
    parentId: Type.Optional(Id('fg_1a2b3c4d5e6f7g')),
    query: Type.Optional(Query),
  },
  { additionalProperties: false, examples: [{ name: 'Berlin lights', query: 'product:light AND tag.site:berlin' }, { name: 'Pilot customers' }] },
);

const PatchGroupBody = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    description: Type.Optional(Type.Union([Type.String({ maxLength: 1000 }), Type.Null()])),
    parentId: Type.Optional(Type.Union([Id('fg_1a2b3c4d5e6f7g'), Type.Null()])),
    query: Type.Optional(Query),
  },
  { additionalProperties: false, minProperties: 1, examples: [{ name: 'Berlin lights (all)' }] },
);

const AddDevicesBody = Type.Object(
  {
    deviceIds: Type.Array(DeviceId, { minItems: 1, maxItems: 1000 }),
  },
  { additionalProperties: false, examples: [{ deviceIds: ['d_9x2k7m4p1q8r0t'] }] },
);

const PageQuery = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
  cursor: Type.Optional(Type.String({ maxLength: 1000 })),
});
/** A group's devices: a page, with its total bounded as in fleet search (totalLimit, totalCapped). */
const GroupDevicesQuery = Type.Object({ ...PageQuery.properties, totalLimit: DeviceSearchQuery.totalLimit });

const JobParams = Type.Object({ jobId: Id('job_4m2k9x4p1q8r0t') });
const Json = Type.Record(Type.String(), Type.Unknown());
const TagChanges = Type.Record(Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }), Type.Union([Type.String({ minLength: 1, maxLength: 256 }), Type.Null()]), {
  additionalProperties: false,
  minProperties: 1,
  maxProperties: 50,
});
const JobSpecSchema = Type.Union(
  [
    Type.Object(
      {
        kind: Type.Literal('command'),
        action: Type.String({ minLength: 1, maxLength: 64 }),
        params: Type.Optional(Json),
        timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 300000 })),
      },
      { additionalProperties: false },
    ),
    Type.Object({ kind: Type.Literal('desired'), values: Json }, { additionalProperties: false }),
    Type.Object({ kind: Type.Literal('tags'), tags: TagChanges }, { additionalProperties: false }),
    Type.Object({ kind: Type.Literal('disable') }, { additionalProperties: false }),
    Type.Object({ kind: Type.Literal('enable') }, { additionalProperties: false }),
    Type.Object(
      {
        kind: Type.Literal('delete'),
        purge: Type.Optional(Type.Boolean()),
        children: Type.Optional(Type.Union([Type.Literal('delete'), Type.Literal('detach')])),
      },
      { additionalProperties: false },
    ),
  ],
  { description: 'What to do to each device: command, desired, tags, disable, enable or delete' },
);
const JobTargetSchema = Type.Union(
  [
    Type.Object({ query: Query }, { additionalProperties: false }),
    Type.Object({ groupId: Id('fg_4m2k9x4p1q8r0t') }, { additionalProperties: false }),
    Type.Object({ deviceIds: Type.Array(DeviceId, { minItems: 1, maxItems: 1000 }) }, { additionalProperties: false }),
  ],
  { description: 'Which devices: a fleet query, a fleet group, or ids; resolved when the job is made' },
);
const CreateJobBody = Type.Object(
  {
    spec: JobSpecSchema,
    target: JobTargetSchema,
    rate: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 10, description: 'Devices started per second' })),
  },
  {
    additionalProperties: false,
    examples: [
      { spec: { kind: 'tags', tags: { rollout: 'wave-1' } }, target: { query: 'product:light AND tag.site:berlin' }, rate: 50 },
      { spec: { kind: 'command', action: 'toggle' }, target: { groupId: 'fg_4m2k9x4p1q8r0t' } },
    ],
  },
);
const Progress = Type.Object({ pending: Type.Integer(), running: Type.Integer(), ok: Type.Integer(), failed: Type.Integer(), cancelled: Type.Integer() });
const JobSchema = Type.Object(
  {
    id: Type.String(),
    kind: Type.String(),
    spec: Json,
    target: Json,
    rate: Type.Integer(),
    status: Type.String({ description: 'queued, running, done or cancelled' }),
    total: Type.Integer(),
    progress: Progress,
    createdBy: Type.String(),
    createdAt: Type.String({ format: 'date-time' }),
    startedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    finishedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  },
  {
    examples: [
      {
        id: 'job_4m2k9x4p1q8r0t',
        kind: 'tags',
        spec: { kind: 'tags', tags: { rollout: 'wave-1' } },
        target: { query: 'product:light' },
        rate: 50,
        status: 'running',
        total: 120,
        progress: { pending: 60, running: 10, ok: 49, failed: 1, cancelled: 0 },
        createdBy: 'user:u_1',
        createdAt: '2026-12-06T08:00:00.000Z',
        startedAt: '2026-12-06T08:00:00.100Z',
        finishedAt: null,
      },
    ],
  },
);
const TargetSchema = Type.Object({
  deviceId: Type.String(),
  status: Type.String({ description: 'pending, running, ok, failed or cancelled' }),
  error: Type.Union([Type.String(), Type.Null()], { description: 'Why it failed: an error code and its message' }),
  result: Type.Union([Json, Type.Null()], { description: "A command's answer" }),
  finishedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});

/** How a device looks to a caller (DeviceViews.summary). */
type Summaries = Pick<DeviceViews, 'summaries'>;

/** The operator's fleet groups and bulk jobs (docs/fleet.md). */
export async function fleetRoutes(app: HttpApp, deps: { groups: FleetGroups; jobs: FleetJobs; views: Summaries }): Promise<void> {
  const { groups, jobs, views } = deps;
  const manage = { auth: Auth.operator('devices:manage') };

  app.post(
    '/api/v1/fleet/groups',
    {
      config: manage,
      schema: {
        tags: ['fleet'],
        summary: 'Create a fleet group: static (add devices by id) or dynamic (a saved query); parentId nests it in a static group, one level',
        ...AuthHeader,
        body: CreateGroupBody,
        response: { 201: GroupSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_CONFLICT') },
      },
    },
    async (req, reply) => reply.status(201).send(await groups.create(actorOf(principal(req)), req.body)),
  );

  app.get(
    '/api/v1/fleet/groups',
    {
      config: manage,
      schema: {
        tags: ['fleet'],
        summary: 'Fleet groups',
        ...AuthHeader,
        response: { 200: Type.Object({ items: Type.Array(GroupSchema) }), ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN') },
      },
    },
    async () => ({ items: await groups.list() }),
  );

  app.get(
    '/api/v1/fleet/groups/:groupId',
    {
      config: manage,
      schema: {
        tags: ['fleet'],
        summary: 'A fleet group',
        ...AuthHeader,
        params: GroupParams,
        response: { 200: GroupSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_FLEET_GROUP_NOT_FOUND') },
      },
    },
    async (req) => groups.get(req.params.groupId),
  );

  app.patch(
    '/api/v1/fleet/groups/:groupId',
    {
      config: manage,
      schema: {
        tags: ['fleet'],
        summary: "Rename a group, move it, or change a dynamic group's query",
        ...AuthHeader,
        params: GroupParams,
        body: PatchGroupBody,
        response: { 200: GroupSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_FLEET_GROUP_NOT_FOUND', 'E_CONFLICT') },
      },
    },
    async (req) => groups.update(actorOf(principal(req)), req.params.groupId, req.body),
  );

  app.delete(
    '/api/v1/fleet/groups/:groupId',
    {
      config: manage,
      schema: {
        tags: ['fleet'],
        summary: 'Delete a group (its devices stay); a group with subgroups must lose them first',
        ...AuthHeader,
        params: GroupParams,
        response: { 204: Type.Null({ description: 'Deleted' }), ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_FLEET_GROUP_NOT_FOUND', 'E_CONFLICT') },
      },
    },
    async (req, reply) => {
      await groups.delete(actorOf(principal(req)), req.params.groupId);
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/api/v1/fleet/groups/:groupId/devices',
    {
      config: manage,
      schema: {
        tags: ['fleet'],
        summary: "The group's devices (with its subgroups'), by id, paged by cursor",
        ...AuthHeader,
        params: GroupParams,
        querystring: GroupDevicesQuery,
        response: { 200: DeviceListSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_FLEET_GROUP_NOT_FOUND') },
      },
    },
    async (req) => {
      const p = principal(req);
      const r = await groups.devices(req.params.groupId, req.query);
      return {
        items: await views.summaries(r.items, p),
        total: r.total,
        ...(r.totalCapped !== undefined ? { totalCapped: r.totalCapped } : {}),
        nextCursor: r.nextCursor,
      };
    },
  );

  app.post(
    '/api/v1/fleet/groups/:groupId/devices',
    {
      config: manage,
      schema: {
        tags: ['fleet'],
        summary: 'Add devices to a static group (a device may be in many groups)',
        ...AuthHeader,
        params: GroupParams,
        body: AddDevicesBody,
        response: {
          200: Type.Object({ added: Type.Integer({ description: 'How many were not in it yet' }) }, { examples: [{ added: 1 }] }),
          ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_FLEET_GROUP_NOT_FOUND', 'E_DEVICE_NOT_FOUND', 'E_CONFLICT'),
        },
      },
    },
    async (req) => groups.addDevices(actorOf(principal(req)), req.params.groupId, req.body.deviceIds),
  );

  app.delete(
    '/api/v1/fleet/groups/:groupId/devices/:deviceId',
    {
      config: manage,
      schema: {
        tags: ['fleet'],
        summary: 'Take a device out of a static group',
        ...AuthHeader,
        params: GroupDeviceParams,
        response: {
          204: Type.Null({ description: 'Removed' }),
          ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_FLEET_GROUP_NOT_FOUND', 'E_DEVICE_NOT_FOUND'),
        },
      },
    },
    async (req, reply) => {
      await groups.removeDevice(actorOf(principal(req)), req.params.groupId, req.params.deviceId);
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/api/v1/fleet/jobs',
    {
      config: manage,
      schema: {
        tags: ['fleet'],
        summary: 'Start a bulk job over a query, a group or devices: a command, desired state, tags, disable, enable or delete, at a rate',
        ...AuthHeader,
        body: CreateJobBody,
        response: { 201: JobSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_FLEET_GROUP_NOT_FOUND', 'E_DEVICE_NOT_FOUND') },
      },
    },
    async (req, reply) =>
      reply
        .status(201)
        .send(await jobs.create(actorOf(principal(req)), { spec: req.body.spec as JobSpec, target: req.body.target as JobTarget, rate: req.body.rate })),
  );

  app.get(
    '/api/v1/fleet/jobs',
    {
      config: manage,
      schema: {
        tags: ['fleet'],
        summary: 'Bulk jobs, newest first',
        ...AuthHeader,
        querystring: Type.Object({ limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }) }),
        response: { 200: Type.Object({ items: Type.Array(JobSchema) }), ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN') },
      },
    },
    async (req) => ({ items: await jobs.list(req.query.limit) }),
  );

  app.get(
    '/api/v1/fleet/jobs/:jobId',
    {
      config: manage,
      schema: {
        tags: ['fleet'],
        summary: 'A bulk job with its progress',
        ...AuthHeader,
        params: JobParams,
        response: { 200: JobSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_JOB_NOT_FOUND') },
      },
    },
    async (req) => jobs.get(req.params.jobId),
  );

  app.get(
    '/api/v1/fleet/jobs/:jobId/devices',
    {
      config: manage,
      schema: {
        tags: ['fleet'],
        summary: "A bulk job's per-device results, in order, paged by cursor",
        ...AuthHeader,
        params: JobParams,
        querystring: Type.Object({
          status: Type.Optional(
            Type.String({
              pattern: '^(pending|running|ok|failed|cancelled)$',
              description: 'Only the devices in this state: pending, running, ok, failed or cancelled',
            }),
          ),
          limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
          cursor: Type.Optional(Type.String({ maxLength: 20 })),
        }),
        response: {
          200: Type.Object(
            { items: Type.Array(TargetSchema), nextCursor: Type.Union([Type.String(), Type.Null()]) },
            {
              examples: [
                {
                  items: [
                    {
                      deviceId: 'd_9x2k7m4p1q8r0t',
                      status: 'failed',
                      error: 'E_DEVICE_OFFLINE: device "d_9x2k7m4p1q8r0t" is offline',
                      result: null,
                      finishedAt: '2026-12-06T08:00:01.000Z',
                    },
                  ],
                  nextCursor: null,
                },
              ],
            },
          ),
          ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_JOB_NOT_FOUND'),
        },
      },
    },
    async (req) => jobs.targets(req.params.jobId, { status: req.query.status as TargetStatusParam, limit: req.query.limit, cursor: req.query.cursor }),
  );

  app.post(
    '/api/v1/fleet/jobs/:jobId/cancel',
    {
      config: manage,
      schema: {
        tags: ['fleet'],
        summary: 'Cancel a bulk job: devices not started are cancelled, those under way finish',
        ...AuthHeader,
        params: JobParams,
        response: { 200: JobSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_JOB_NOT_FOUND', 'E_CONFLICT') },
      },
    },
    async (req) => jobs.cancel(actorOf(principal(req)), req.params.jobId),
  );
}

type TargetStatusParam = Parameters<FleetJobs['targets']>[1]['status'];
