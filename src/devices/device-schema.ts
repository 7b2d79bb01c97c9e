import { Type, type Static } from 'typebox';
import { JsonObject } from '../transports/http/http-schemas.ts';

export const DeviceId = Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', examples: ['d_9x2k7m4p1q8r0t'] });
export const DeviceParams = Type.Object({ id: DeviceId });

export const ProvisionBody = Type.Object(
  {
    product: Type.String({ description: 'Product key', examples: ['light'] }),
    name: Type.String({ minLength: 1, maxLength: 200, examples: ['Hall light'] }),
    parentId: Type.Optional(DeviceId),
  },
  { examples: [{ product: 'hub', name: 'Living-room hub' }] },
);

export const BulkProvisionBody = Type.Object(
  {
    items: Type.Array(ProvisionBody, { minItems: 1, maxItems: 1000 }),
  },
  {
    examples: [
      {
        items: [
          { product: 'plug', name: 'Plug 1' },
          { product: 'plug', name: 'Plug 2' },
        ],
      },
    ],
  },
);

const deviceFields = {
  id: Type.String(),
  product: Type.String(),
  name: Type.String(),
  parentId: Type.Union([Type.String(), Type.Null()]),
  hwid: Type.Union([Type.String(), Type.Null()], { description: 'Hardware id of a sub-device joined by its hub' }),
  pairingCode: Type.Union([Type.String(), Type.Null()], { description: 'What the QR code on the box carries (shown to the operator only)' }),
  createdAt: Type.String({ format: 'date-time' }),
};

const placementFields = {
  homeId: Type.Union([Type.String(), Type.Null()], { description: 'The home the device belongs to (a sub-device follows its hub)' }),
  roomId: Type.Union([Type.String(), Type.Null()]),
};

export const ProvisionedSchema = Type.Object(
  {
    ...deviceFields,
    secret: Type.String({ description: 'The MQTT password. Shown once: only a digest is stored.' }),
    mqtt: Type.Object({ clientId: Type.String(), username: Type.String(), topics: Type.Record(Type.String(), Type.String()) }),
  },
  {
    examples: [
      {
        id: 'd_9x2k7m4p1q8r0t',
        product: 'hub',
        name: 'Living-room hub',
        parentId: null,
        hwid: null,
        pairingCode: 'K7M4-P1Q8-R2X9',
        createdAt: '2026-11-23T08:00:00.000Z',
        secret: 'q3VZ0m1oQ2d3bU8pX1c2V3d4',
        mqtt: { clientId: 'd_9x2k7m4p1q8r0t', username: 'd_9x2k7m4p1q8r0t', topics: { properties: 'devices/d_9x2k7m4p1q8r0t/properties' } },
      },
    ],
  },
);

export const ShadowSchema = Type.Object(
  {
    reported: JsonObject,
    desired: JsonObject,
    delta: JsonObject,
    version: Type.Integer(),
    metadata: Type.Optional(Type.Object({ reported: Type.Record(Type.String(), Type.Unknown()), desired: Type.Record(Type.String(), Type.Unknown()) })),
    updatedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  },
  { examples: [{ reported: { on: false, brightness: 40 }, desired: { on: true }, delta: { on: true }, version: 12, updatedAt: '2026-11-23T08:00:00.000Z' }] },
);

export const DeviceSchema = Type.Object(
  {
    ...deviceFields,
    ...placementFields,
    online: Type.Boolean(),
    lastSeen: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    disabled: Type.Optional(Type.Boolean({ description: 'The operator disabled it (or its hub): refused until enabled' })),
    tags: Type.Optional(Type.Record(Type.String(), Type.String(), { description: "Operator only: the operator's tags" })),
    attributes: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: "Operator only: the operator's attributes" })),
    presence: Type.Object({
      reason: Type.String({
        description:
          'Why presence last changed: connect, disconnect, keepalive-timeout, connection-lost, client-error, server-shutdown, server-restart, hub-reported, hub-offline, never-connected, node-lost (its gateway node died), credentials-revoked (its secret was rotated out or its certificate revoked), disabled (the operator disabled it), deleted',
      }),
      changedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
      session: Type.Integer({ description: 'Connection counter; grows with every accepted connection' }),
    }),
    shadow: ShadowSchema,
    firmware: Type.Optional(
      Type.Object(
        {
          version: Type.Union([Type.String(), Type.Null()], { description: 'The firmware version the device last reported (its `firmware` property)' }),
          reportedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
          lastJob: Type.Union(
            [
              Type.Object({
                id: Type.String(),
                campaign: Type.String(),
                state: Type.String(),
                progress: Type.Union([Type.Integer(), Type.Null()]),
                error: Type.Union([Type.String(), Type.Null()]),
                updatedAt: Type.String({ format: 'date-time' }),
              }),
              Type.Null(),
            ],
            { description: 'Its last firmware update job (docs/ota.md)' },
          ),
        },
        { description: 'Firmware version and last OTA job' },
      ),
    ),
  },
  {
    examples: [
      {
        id: 'd_9x2k7m4p1q8r0t',
        product: 'light',
        name: 'Hall light',
        parentId: 'd_h1b2c3d4e5f6g7',
        hwid: '00:12:4b:00:1c:a1:b2:01',
        pairingCode: 'K7M4-P1Q8-R2X9',
        createdAt: '2026-11-23T08:00:00.000Z',
        homeId: 'h_5t2k9x4p1q8r0m',
        roomId: 'r_8m2k9x4p1q8r0t',
        online: true,
        lastSeen: '2026-11-23T08:05:00.000Z',
        presence: { reason: 'hub-reported', changedAt: '2026-11-23T08:01:00.000Z', session: 0 },
        shadow: { reported: { on: true, brightness: 80 }, desired: {}, delta: {}, version: 3, updatedAt: '2026-11-23T08:05:00.000Z' },
      },
    ],
  },
);

export const DeviceSummarySchema = Type.Object({
  ...deviceFields,
  ...placementFields,
  online: Type.Boolean(),
  lastSeen: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  disabled: Type.Optional(Type.Boolean({ description: 'The operator disabled it (or its hub): refused until enabled' })),
  tags: Type.Optional(Type.Record(Type.String(), Type.String(), { description: "Fleet search, operator only: the operator's tags" })),
  firmware: Type.Optional(Type.Union([Type.String(), Type.Null()], { description: 'Fleet search, operator only: the firmware version it last reported' })),
});

const summaryExample = {
  id: 'd_9x2k7m4p1q8r0t',
  product: 'light',
  name: 'Hall light',
  parentId: 'd_h1b2c3d4e5f6g7',
  hwid: '00:12:4b:00:1c:a1:b2:01',
  pairingCode: 'K7M4-P1Q8-R2X9',
  createdAt: '2026-11-23T08:00:00.000Z',
  homeId: 'h_5t2k9x4p1q8r0m',
  roomId: 'r_8m2k9x4p1q8r0t',
  online: true,
  lastSeen: '2026-11-23T08:05:00.000Z',
};

export const DeviceListSchema = Type.Object(
  {
    items: Type.Array(DeviceSummarySchema),
    total: Type.Optional(Type.Integer({ description: 'Every device that matches (fleet search with total=false: absent)' })),
    totalCapped: Type.Optional(
      Type.Boolean({ description: 'Fleet search with totalLimit: true when more devices match than total (it stopped counting at totalLimit)' }),
    ),
    nextCursor: Type.Optional(
      Type.Union([Type.String(), Type.Null()], { description: 'Fleet search: pass it as cursor for the next page; null on the last page' }),
    ),
    counts: Type.Optional(
      Type.Array(Type.Object({ value: Type.Union([Type.String(), Type.Boolean(), Type.Null()]), count: Type.Integer() }), {
        description: 'With countBy: the matching devices counted by that field, most common first (at most 100 values)',
      }),
    ),
  },
  { examples: [{ items: [summaryExample], total: 1 }] },
);

export const DeviceSearchQuery = {
  q: Type.Optional(
    Type.String({
      maxLength: 2000,
      description:
        'Fleet search (docs/fleet.md): e.g. product:light AND online:false AND firmware<1.2 AND tag.site:berlin AND lastSeen<-7d; also attr.<key> and group:<id or name> (operator only)',
      examples: ['product:light AND online:false'],
    }),
  ),
  sort: Type.Optional(
    Type.String({
      pattern: '^-?(createdAt|id|name|lastSeen|firmware)$',
      description: 'createdAt (default), id, name, lastSeen, firmware; a leading - sorts descending',
    }),
  ),
  cursor: Type.Optional(Type.String({ maxLength: 1000, description: 'nextCursor of the previous page (fleet search pages by cursor, not offset)' })),
  countBy: Type.Optional(Type.String({ maxLength: 80, description: 'Count the matching devices by product, firmware, online, disabled, parent or tag.<key>' })),
  total: Type.Optional(Type.Boolean({ description: 'Fleet search: false skips counting every match (faster pages over a large fleet); default true' })),
  totalLimit: Type.Optional(
    Type.Integer({
      minimum: 1,
      maximum: 1_000_000,
      description:
        'Fleet search: count matches up to this many only (the store stops there); total is then at most this, and totalCapped says whether more match. Without it total is exact',
      examples: [1000],
    }),
  ),
};
export const ChildrenSchema = Type.Object({ items: Type.Array(DeviceSummarySchema) }, { examples: [{ items: [summaryExample] }] });

export type ProvisionBody = Static<typeof ProvisionBody>;

// ---- fleet lifecycle and the operator's data (docs/fleet.md)

const TagKey = '^[A-Za-z0-9_-]{1,64}$';
const TagValue = Type.String({ minLength: 1, maxLength: 256, pattern: '^[^\\u0000-\\u001f]*$' });

/**
 * The operator's fields of `PATCH /api/v1/devices/{id}` (beside the home's name and room): they
 * need the operator (an operator key: devices:manage).
 */
export const FleetPatchFields = {
  disabled: Type.Optional(Type.Boolean({ description: "Operator: true closes the device's connection and refuses it (and its sub-devices) until false" })),
  tags: Type.Optional(
    Type.Record(Type.String({ pattern: TagKey }), Type.Union([TagValue, Type.Null()]), {
      additionalProperties: false,
      maxProperties: 50,
      description: 'Operator: tags to set (a value) or remove (null); searchable as tag.<key>:<value>',
      examples: [{ site: 'berlin', batch: null }],
    }),
  ),
  attributes: Type.Optional(
    Type.Record(Type.String({ minLength: 1, maxLength: 64 }), Type.Unknown(), {
      maxProperties: 100,
      description: 'Operator: attributes to set (any JSON) or remove (null); string, number and boolean values are searchable as attr.<key>',
      examples: [{ installer: 'ACME', warrantyUntil: '2028-01-01' }],
    }),
  ),
};

export const DeleteDeviceQuery = Type.Object(
  {
    purge: Type.Optional(Type.Boolean({ default: false, description: 'Also remove its history: property time series, events and command ledger' })),
    children: Type.Optional(
      Type.Union([Type.Literal('delete'), Type.Literal('detach')], {
        description: 'Required for a hub with sub-devices: delete them with it, or keep them as stand-alone devices',
      }),
    ),
  },
  { additionalProperties: false },
);

export const FleetDataSchema = Type.Object({
  disabled: Type.Boolean(),
  tags: Type.Record(Type.String(), Type.String()),
  attributes: Type.Record(Type.String(), Type.Unknown()),
  firmware: Type.Union([Type.String(), Type.Null()], { description: 'The firmware version it last reported (its firmware property)' }),
});
