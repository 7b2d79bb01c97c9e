import { Type, type Static } from 'typebox';
import { JsonObject } from '../transports/http/http-schemas.ts';
import { DeviceId } from '../devices/device-schema.ts';

/** Request and response schemas of the scene routes. */

export const SceneId = Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', examples: ['s_7m2k9x4p1q8r0t'] });
export const SceneParams = Type.Object({ sceneId: SceneId });

const Name = Type.String({ minLength: 1, maxLength: 200, examples: ['Movie night'] });
const DateTime = Type.String({ format: 'date-time' });

const State = Type.Object(
  {
    device: DeviceId,
    properties: Type.Record(Type.String(), Type.Unknown(), {
      description: 'Writable properties of the device and their values (thing model)',
      examples: [{ on: true, brightness: 30 }],
    }),
  },
  { additionalProperties: false },
);

const Action = Type.Object(
  {
    device: DeviceId,
    action: Type.String({ minLength: 1, maxLength: 64, examples: ['blink'] }),
    params: Type.Optional(JsonObject),
  },
  { additionalProperties: false },
);

const States = Type.Array(State, { maxItems: 500, description: 'One entry per device' });
const Actions = Type.Array(Action, { maxItems: 500, description: 'Commands sent on activation' });

const createExample = {
  name: 'Movie night',
  states: [
    { device: 'd_9x2k7m4p1q8r0t', properties: { on: true, brightness: 30, colorTemp: 2700 } },
    { device: 'd_2k7m4p1q8r0t9x', properties: { on: false } },
  ],
  actions: [{ device: 'd_9x2k7m4p1q8r0t', action: 'blink', params: { times: 1 } }],
};

export const SceneBody = Type.Object(
  {
    name: Name,
    states: States,
    actions: Type.Optional(Actions),
  },
  { additionalProperties: false, examples: [createExample] },
);

export const ScenePatchBody = Type.Object(
  {
    name: Type.Optional(Name),
    states: Type.Optional(States),
    actions: Type.Optional(Actions),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    examples: [{ name: 'Cinema', states: [{ device: 'd_9x2k7m4p1q8r0t', properties: { on: true, brightness: 20 } }] }],
  },
);

export const CaptureBody = Type.Object(
  {
    name: Name,
    devices: Type.Array(DeviceId, {
      minItems: 1,
      maxItems: 500,
      uniqueItems: true,
      description: 'Devices of the home whose current reported state the scene takes',
    }),
    properties: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 64 }), {
        maxItems: 100,
        uniqueItems: true,
        description: 'Only these properties (default: every writable property reported)',
      }),
    ),
    // No `properties` in the example: the OpenAPI generator takes a top-level `properties` key of an example for a schema's.
  },
  { additionalProperties: false, examples: [{ name: 'Evening', devices: ['d_9x2k7m4p1q8r0t', 'd_2k7m4p1q8r0t9x'] }] },
);

export const ActivateBody = Type.Object(
  {
    timeoutMs: Type.Optional(
      Type.Integer({ minimum: 100, maximum: 60000, description: 'How long to wait for each device to report the state or answer (default 5000)' }),
    ),
  },
  { additionalProperties: false, examples: [{ timeoutMs: 5000 }] },
);

const sceneExample = {
  id: 's_7m2k9x4p1q8r0t',
  homeId: 'h_5t2k9x4p1q8r0m',
  ...createExample,
  createdBy: 'user:u_4k2m9x7p1q8r0t',
  createdAt: '2026-11-23T08:00:00.000Z',
  updatedAt: '2026-11-23T08:00:00.000Z',
};

export const SceneSchema = Type.Object(
  {
    id: Type.String(),
    homeId: Type.String(),
    name: Type.String(),
    states: Type.Array(Type.Object({ device: Type.String(), properties: JsonObject })),
    actions: Type.Array(Type.Object({ device: Type.String(), action: Type.String(), params: Type.Optional(JsonObject) })),
    createdBy: Type.String(),
    createdAt: DateTime,
    updatedAt: DateTime,
  },
  { description: 'Entries of devices that left the home, and of devices the caller may not see, are not shown', examples: [sceneExample] },
);
export const SceneListSchema = Type.Object({ items: Type.Array(SceneSchema) }, { examples: [{ items: [sceneExample] }] });

export const SceneDeletedSchema = Type.Object({ id: Type.String(), deleted: Type.Literal(true) }, { examples: [{ id: 's_7m2k9x4p1q8r0t', deleted: true }] });

const activationExample = {
  id: 'sa_4k2m9x7p1q8r0t',
  sceneId: 's_7m2k9x4p1q8r0t',
  homeId: 'h_5t2k9x4p1q8r0m',
  source: 'user:u_4k2m9x7p1q8r0t',
  at: 1795420800000,
  ok: false,
  results: [
    { device: 'd_9x2k7m4p1q8r0t', kind: 'state', ok: true, status: 'applied', ms: 142 },
    {
      device: 'd_2k7m4p1q8r0t9x',
      kind: 'state',
      ok: false,
      status: 'offline',
      ms: 3,
      note: 'the device is offline; the desired state stays set and applies when it reconnects',
    },
    { device: 'd_9x2k7m4p1q8r0t', kind: 'action', action: 'blink', ok: true, status: 'applied', ms: 38 },
  ],
};

export const ActivationSchema = Type.Object(
  {
    id: Type.String(),
    sceneId: Type.String(),
    homeId: Type.String(),
    source: Type.String({ description: 'Who or what activated it: user:…, key:…, automation:…' }),
    at: Type.Number({ description: 'When it started (epoch ms)' }),
    ok: Type.Boolean({ description: 'Every entry applied' }),
    results: Type.Array(
      Type.Object({
        device: Type.String(),
        kind: Type.Union([Type.Literal('state'), Type.Literal('action')]),
        action: Type.Optional(Type.String()),
        ok: Type.Boolean(),
        status: Type.Union([Type.Literal('applied'), Type.Literal('offline'), Type.Literal('failed'), Type.Literal('timeout')], {
          description:
            'applied: reported / answered ok; offline: not connected (a state stays desired and applies on reconnect); timeout: no report or answer in time; failed: not allowed, answered not ok, or refused',
        }),
        error: Type.Optional(Type.String()),
        note: Type.Optional(Type.String()),
        ms: Type.Number({ description: 'How long this entry took' }),
      }),
      { description: 'One per state and action, of the devices the caller may see' },
    ),
  },
  { examples: [activationExample] },
);

export const ActivationListSchema = Type.Object({ items: Type.Array(ActivationSchema) }, { examples: [{ items: [activationExample] }] });

export const ActivationQuery = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 50, default: 50 }),
});

export type SceneBody = Static<typeof SceneBody>;
export type ScenePatchBody = Static<typeof ScenePatchBody>;
export type CaptureBody = Static<typeof CaptureBody>;
