import { Type, type Static, type TSchema } from 'typebox';
import { JsonObject } from '../transports/http/http-schemas.ts';
import { DeviceId, DeviceSummarySchema, FleetPatchFields } from '../devices/device-schema.ts';

/** Request and response schemas of the homes, rooms, members, sharing and group routes. */

const Id = (example: string) => Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', examples: [example] });
const nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
/**
 * A request field that may be null to clear it. Not a union: with the server's type coercion
 * the first branch of a union would turn null into 0 or "" before the null branch is tried.
 */
const clearable = <T>(schema: { type: string } & Record<string, unknown>) =>
  Type.Unsafe<T | null>({ ...schema, type: [schema.type, 'null'] } as unknown as TSchema);
const DateTime = Type.String({ format: 'date-time' });

export const HomeId = Id('h_5t2k9x4p1q8r0m');
export const RoomId = Id('r_8m2k9x4p1q8r0t');
export const UserId = Id('u_4k2m9x7p1q8r0t');
export const GroupId = Id('g_2k9x4p1q8r0m7t');
export const InvitationId = Id('i_9x4p1q8r0m7t2k');

export const HomeParams = Type.Object({ homeId: HomeId });
export const RoomParams = Type.Object({ homeId: HomeId, roomId: RoomId });
export const MemberParams = Type.Object({ homeId: HomeId, userId: UserId });
export const InvitationParams = Type.Object({ homeId: HomeId, invitationId: InvitationId });
export const HomeDeviceParams = Type.Object({ homeId: HomeId, deviceId: DeviceId });
export const ShareParams = Type.Object({ id: DeviceId, userId: UserId });
export const GroupParams = Type.Object({ groupId: GroupId });

const Role = Type.Union([Type.Literal('owner'), Type.Literal('admin'), Type.Literal('member'), Type.Literal('guest')]);
const InvitableRole = Type.Union([Type.Literal('admin'), Type.Literal('member'), Type.Literal('guest')], { description: 'Only the owner may make admins' });
const Latitude = Type.Number({ minimum: -90, maximum: 90, examples: [52.52] });
const Longitude = Type.Number({ minimum: -180, maximum: 180, examples: [13.405] });
const Name = (example: string) => Type.String({ minLength: 1, maxLength: 200, examples: [example] });
const DeviceIds = (description?: string) => Type.Array(DeviceId, { maxItems: 500, uniqueItems: true, ...(description ? { description } : {}) });

// ---- homes

export const CreateHomeBody = Type.Object(
  {
    name: Name('Beach house'),
    timezone: Type.String({ minLength: 1, maxLength: 64, description: 'IANA time zone', examples: ['Europe/Berlin'] }),
    latitude: Type.Optional(Latitude),
    longitude: Type.Optional(Longitude),
  },
  { additionalProperties: false, examples: [{ name: 'Beach house', timezone: 'Europe/Berlin', latitude: 54.18, longitude: 12.08 }] },
);

export const UpdateHomeBody = Type.Object(
  {
    name: Type.Optional(Name('Beach house')),
    timezone: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'IANA time zone' })),
    latitude: Type.Optional(clearable<number>({ type: 'number', minimum: -90, maximum: 90 })),
    longitude: Type.Optional(clearable<number>({ type: 'number', minimum: -180, maximum: 180 })),
  },
  { additionalProperties: false, minProperties: 1, examples: [{ name: 'Summer house', timezone: 'Europe/Lisbon' }] },
);

const homeExample = {
  id: 'h_5t2k9x4p1q8r0m',
  name: 'Beach house',
  timezone: 'Europe/Berlin',
  latitude: 54.18,
  longitude: 12.08,
  ownerId: 'u_4k2m9x7p1q8r0t',
  role: 'owner',
  createdAt: '2026-11-23T08:00:00.000Z',
};

export const HomeSchema = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    timezone: Type.String(),
    latitude: nullable(Type.Number()),
    longitude: nullable(Type.Number()),
    ownerId: Type.String(),
    role: Type.Union([Role, Type.Literal('operator')], { description: "The caller's role in the home" }),
    createdAt: DateTime,
  },
  { examples: [homeExample] },
);

export const HomeListSchema = Type.Object({ items: Type.Array(HomeSchema) }, { examples: [{ items: [homeExample] }] });

export const DeletedSchema = Type.Object({ id: Type.String(), deleted: Type.Literal(true) }, { examples: [{ id: 'h_5t2k9x4p1q8r0m', deleted: true }] });

// ---- rooms

export const RoomBody = Type.Object({ name: Name('Kitchen') }, { additionalProperties: false, examples: [{ name: 'Kitchen' }] });

const roomExample = { id: 'r_8m2k9x4p1q8r0t', homeId: 'h_5t2k9x4p1q8r0m', name: 'Kitchen', createdAt: '2026-11-23T08:00:00.000Z' };
export const RoomSchema = Type.Object({ id: Type.String(), homeId: Type.String(), name: Type.String(), createdAt: DateTime }, { examples: [roomExample] });
export const RoomListSchema = Type.Object({ items: Type.Array(RoomSchema) }, { examples: [{ items: [roomExample] }] });

// ---- members and invitations

const memberExample = {
  userId: 'u_4k2m9x7p1q8r0t',
  email: 'ana@example.com',
  role: 'guest',
  guestDevices: ['d_9x2k7m4p1q8r0t'],
  guestUntil: '2026-12-01T12:00:00.000Z',
  joinedAt: '2026-11-23T08:00:00.000Z',
};
export const MemberSchema = Type.Object(
  {
    userId: Type.String(),
    email: Type.String(),
    role: Role,
    guestDevices: nullable(Type.Array(Type.String())),
    guestUntil: nullable(DateTime),
    joinedAt: DateTime,
  },
  { examples: [memberExample] },
);
export const MemberListSchema = Type.Object({ items: Type.Array(MemberSchema) }, { examples: [{ items: [memberExample] }] });

export const InviteBody = Type.Object(
  {
    email: Type.String({ format: 'email', maxLength: 320, examples: ['ana@example.com'] }),
    role: InvitableRole,
    deviceIds: Type.Optional(DeviceIds('Guests only: the devices the guest may use')),
    until: Type.Optional(Type.String({ format: 'date-time', description: 'Guests only: when the access ends' })),
  },
  { additionalProperties: false, examples: [{ email: 'ana@example.com', role: 'guest', deviceIds: ['d_9x2k7m4p1q8r0t'], until: '2026-12-01T12:00:00.000Z' }] },
);

const invitationExample = {
  id: 'i_9x4p1q8r0m7t2k',
  homeId: 'h_5t2k9x4p1q8r0m',
  email: 'ana@example.com',
  role: 'guest',
  guestDevices: ['d_9x2k7m4p1q8r0t'],
  guestUntil: '2026-12-01T12:00:00.000Z',
  status: 'pending',
  invitedBy: 'user:u_4k2m9x7p1q8r0t',
  createdAt: '2026-11-23T08:00:00.000Z',
  expiresAt: '2026-11-30T08:00:00.000Z',
};
export const InvitationSchema = Type.Object(
  {
    id: Type.String(),
    homeId: Type.String(),
    email: Type.String(),
    role: Role,
    guestDevices: nullable(Type.Array(Type.String())),
    guestUntil: nullable(DateTime),
    status: Type.Union([Type.Literal('pending'), Type.Literal('accepted'), Type.Literal('revoked'), Type.Literal('expired')]),
    invitedBy: Type.String(),
    createdAt: DateTime,
    expiresAt: DateTime,
  },
  { examples: [invitationExample] },
);
export const InvitationListSchema = Type.Object({ items: Type.Array(InvitationSchema) }, { examples: [{ items: [invitationExample] }] });

export const AcceptBody = Type.Object(
  {
    token: Type.String({ minLength: 1, maxLength: 200, description: 'The token from the invitation e-mail', examples: ['q3VZ0m1oQ2d3bU8pX1c2V3d4q3VZ0m1o'] }),
  },
  { additionalProperties: false, examples: [{ token: 'q3VZ0m1oQ2d3bU8pX1c2V3d4q3VZ0m1o' }] },
);
export const AcceptedSchema = Type.Object({ homeId: Type.String(), role: Role }, { examples: [{ homeId: 'h_5t2k9x4p1q8r0m', role: 'member' }] });

export const MemberPatchBody = Type.Object(
  {
    role: Type.Optional(InvitableRole),
    deviceIds: Type.Optional(DeviceIds('Guests only: the devices the guest may use')),
    until: Type.Optional(clearable<string>({ type: 'string', format: 'date-time', description: 'Guests only: when the access ends (null: no end)' })),
  },
  { additionalProperties: false, minProperties: 1, examples: [{ role: 'guest', deviceIds: ['d_9x2k7m4p1q8r0t'], until: '2026-12-01T12:00:00.000Z' }] },
);

export const LeftSchema = Type.Object(
  { homeId: Type.String(), userId: Type.String(), removed: Type.Literal(true) },
  { examples: [{ homeId: 'h_5t2k9x4p1q8r0m', userId: 'u_4k2m9x7p1q8r0t', removed: true }] },
);

export const TransferBody = Type.Object({ userId: UserId }, { additionalProperties: false, examples: [{ userId: 'u_4k2m9x7p1q8r0t' }] });

// ---- devices in homes

export const ClaimBody = Type.Object(
  {
    pairingCode: Type.String({ minLength: 1, maxLength: 32, description: 'The code on the box (QR code)', examples: ['K7M4-P1Q8-R2X9'] }),
    roomId: Type.Optional(RoomId),
    name: Type.Optional(Name('Hall light')),
  },
  { additionalProperties: false, examples: [{ pairingCode: 'K7M4-P1Q8-R2X9', roomId: 'r_8m2k9x4p1q8r0t', name: 'Hall light' }] },
);

export const DevicePatchBody = Type.Object(
  {
    name: Type.Optional(
      clearable<string>({ type: 'string', minLength: 1, maxLength: 200, description: "The home's name for the device (null: the registry name)" }),
    ),
    roomId: Type.Optional(clearable<string>({ type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'A room of the home (null: no room)' })),
    ...FleetPatchFields,
  },
  { additionalProperties: false, minProperties: 1, examples: [{ name: 'Reading lamp', roomId: 'r_8m2k9x4p1q8r0t' }] },
);

const deviceExample = {
  id: 'd_9x2k7m4p1q8r0t',
  product: 'light',
  name: 'Hall light',
  parentId: null,
  hwid: null,
  pairingCode: null,
  createdAt: '2026-11-23T08:00:00.000Z',
  homeId: 'h_5t2k9x4p1q8r0m',
  roomId: 'r_8m2k9x4p1q8r0t',
  online: true,
  lastSeen: '2026-11-23T08:05:00.000Z',
};
export const HomeDeviceSchema = Type.Object({ ...DeviceSummarySchema.properties }, { examples: [deviceExample] });
export const HomeDeviceListSchema = Type.Object({ items: Type.Array(HomeDeviceSchema) }, { examples: [{ items: [deviceExample] }] });

export const UnboundSchema = Type.Object(
  {
    deviceId: Type.String(),
    unbound: Type.Array(Type.String(), { description: 'The device and its sub-devices' }),
  },
  { examples: [{ deviceId: 'd_h1b2c3d4e5f6g7', unbound: ['d_h1b2c3d4e5f6g7', 'd_9x2k7m4p1q8r0t'] }] },
);

// ---- sharing

export const ShareBody = Type.Object(
  {
    email: Type.String({ format: 'email', maxLength: 320, examples: ['neighbour@example.com'] }),
    permission: Type.Union([Type.Literal('control'), Type.Literal('view')]),
  },
  { additionalProperties: false, examples: [{ email: 'neighbour@example.com', permission: 'control' }] },
);

const shareExample = {
  deviceId: 'd_9x2k7m4p1q8r0t',
  userId: 'u_7p1q8r0t4k2m9x',
  email: 'neighbour@example.com',
  permission: 'control',
  sharedBy: 'user:u_4k2m9x7p1q8r0t',
  createdAt: '2026-11-23T08:00:00.000Z',
};
export const ShareSchema = Type.Object(
  {
    deviceId: Type.String(),
    userId: Type.String(),
    email: Type.String(),
    permission: Type.Union([Type.Literal('control'), Type.Literal('view')]),
    sharedBy: Type.String(),
    createdAt: DateTime,
  },
  { examples: [shareExample] },
);
export const ShareListSchema = Type.Object({ items: Type.Array(ShareSchema) }, { examples: [{ items: [shareExample] }] });
export const UnsharedSchema = Type.Object(
  { deviceId: Type.String(), userId: Type.String(), removed: Type.Literal(true) },
  { examples: [{ deviceId: 'd_9x2k7m4p1q8r0t', userId: 'u_7p1q8r0t4k2m9x', removed: true }] },
);

// ---- groups

export const GroupBody = Type.Object(
  {
    name: Name('Downstairs lights'),
    deviceIds: DeviceIds('Devices of the home'),
  },
  { additionalProperties: false, examples: [{ name: 'Downstairs lights', deviceIds: ['d_9x2k7m4p1q8r0t', 'd_2k7m4p1q8r0t9x'] }] },
);

export const GroupPatchBody = Type.Object(
  {
    name: Type.Optional(Name('Downstairs lights')),
    deviceIds: Type.Optional(DeviceIds('Devices of the home')),
  },
  { additionalProperties: false, minProperties: 1, examples: [{ deviceIds: ['d_9x2k7m4p1q8r0t'] }] },
);

const groupExample = {
  id: 'g_2k9x4p1q8r0m7t',
  homeId: 'h_5t2k9x4p1q8r0m',
  name: 'Downstairs lights',
  deviceIds: ['d_9x2k7m4p1q8r0t', 'd_2k7m4p1q8r0t9x'],
  createdAt: '2026-11-23T08:00:00.000Z',
};
export const GroupSchema = Type.Object(
  {
    id: Type.String(),
    homeId: Type.String(),
    name: Type.String(),
    deviceIds: Type.Array(Type.String(), { description: 'The members the caller may see' }),
    createdAt: DateTime,
  },
  { examples: [groupExample] },
);
export const GroupListSchema = Type.Object({ items: Type.Array(GroupSchema) }, { examples: [{ items: [groupExample] }] });

export const GroupCommandBody = Type.Object(
  {
    action: Type.String({ minLength: 1, examples: ['toggle'] }),
    params: Type.Optional(JsonObject),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 300000, description: 'How long to wait for each device (default 10000)' })),
  },
  { additionalProperties: false, examples: [{ action: 'blink', params: { times: 2 }, timeoutMs: 5000 }] },
);

export const GroupCommandResultSchema = Type.Object(
  {
    results: Type.Array(
      Type.Object({
        deviceId: Type.String(),
        ok: Type.Boolean({ description: 'The device carried the command out' }),
        status: Type.Integer({
          description: 'HTTP-like outcome: 200 answered, 400 not in the model, 403 not allowed, 404 gone, 409 offline, 504 no answer in time',
        }),
        code: Type.Optional(Type.String({ description: 'Error code (docs/errors.md) when the command could not be delivered' })),
        commandId: Type.Optional(Type.String()),
        result: Type.Optional(JsonObject),
        error: Type.Optional(Type.String()),
        latencyMs: Type.Optional(Type.Number()),
      }),
    ),
  },
  {
    examples: [
      {
        results: [
          { deviceId: 'd_9x2k7m4p1q8r0t', ok: true, status: 200, commandId: 'c_7m2k9x4p1q8r0t', result: {}, latencyMs: 4 },
          { deviceId: 'd_2k7m4p1q8r0t9x', ok: false, status: 409, code: 'E_DEVICE_OFFLINE', error: 'device "d_2k7m4p1q8r0t9x" is offline' },
        ],
      },
    ],
  },
);

// ---- audit

export const AuditQuery = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 1000, default: 50 }),
  before: Type.Optional(Type.String({ format: 'date-time', description: 'Only entries older than this' })),
});

const auditExample = {
  id: 'a_4k2m9x7p1q8r0t',
  at: '2026-11-23T08:00:00.000Z',
  actor: 'user:u_4k2m9x7p1q8r0t',
  action: 'device.claim',
  homeId: 'h_5t2k9x4p1q8r0m',
  targetType: 'device',
  targetId: 'd_9x2k7m4p1q8r0t',
  details: { roomId: 'r_8m2k9x4p1q8r0t' },
};
export const AuditListSchema = Type.Object(
  {
    items: Type.Array(
      Type.Object({
        id: Type.String(),
        at: DateTime,
        actor: Type.String(),
        action: Type.String(),
        homeId: nullable(Type.String()),
        targetType: Type.String(),
        targetId: Type.String(),
        details: nullable(JsonObject),
      }),
    ),
  },
  { examples: [{ items: [auditExample] }] },
);

export type CreateHomeBody = Static<typeof CreateHomeBody>;
export type UpdateHomeBody = Static<typeof UpdateHomeBody>;
export type InviteBody = Static<typeof InviteBody>;
export type MemberPatchBody = Static<typeof MemberPatchBody>;
export type ClaimBody = Static<typeof ClaimBody>;
export type DevicePatchBody = Static<typeof DevicePatchBody>;
export type ShareBody = Static<typeof ShareBody>;
export type GroupBody = Static<typeof GroupBody>;
export type GroupPatchBody = Static<typeof GroupPatchBody>;
export type GroupCommandBody = Static<typeof GroupCommandBody>;
export type HomeDevice = Static<typeof HomeDeviceSchema>;
