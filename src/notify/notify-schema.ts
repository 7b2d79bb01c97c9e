import { Type, type Static, type TLiteral, type TSchema, type TUnion } from 'typebox';
import { HomeId } from '../homes/home-schema.ts';
import { SEVERITIES } from './notify-prefs.ts';
import { HOME_CHANNEL_TYPES } from './channels/home-channels.ts';
import { Pagination } from '../transports/http/http-schemas.ts';

/** Request and response schemas of the inbox, push registration, preferences and home channel routes. */

const Id = (example: string) => Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', examples: [example] });
const nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const DateTime = Type.String({ format: 'date-time' });
/** anyOf the literals of a list the code uses too, typed as their union. */
const oneOf = <T extends string>(values: readonly T[], options?: { description?: string }) =>
  Type.Union(
    values.map((v) => Type.Literal(v)),
    options,
  ) as unknown as TUnion<[TLiteral<T>]>;

export const NotificationId = Id('ni_4k2m9x7p1q8r0t');
export const ChannelId = Id('nc_8m2k9x4p1q8r0t');
export const SubscriptionId = Id('ps_2k9x4p1q8r0m7t');
export const TokenId = Id('pt_9x4p1q8r0m7t2k');

export const NotificationParams = Type.Object({ notificationId: NotificationId });
export const ChannelParams = Type.Object({ channelId: ChannelId });
export const SubscriptionParams = Type.Object({ subscriptionId: SubscriptionId });
export const TokenParams = Type.Object({ tokenId: TokenId });

const Severity = oneOf(SEVERITIES, { description: "'alarm' bypasses quiet hours" });
const Kind = Type.String({ pattern: '^[a-z][a-z0-9_.-]{0,63}$', examples: ['security'], description: 'e.g. automation, security, device, system' });
const ChannelSwitches = Type.Object(
  {
    inbox: Type.Optional(Type.Boolean()),
    push: Type.Optional(Type.Boolean()),
    email: Type.Optional(Type.Boolean()),
    mobile: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
const HHMM = Type.String({ pattern: '^([01]\\d|2[0-3]):[0-5]\\d$', examples: ['22:00'] });

// ---- inbox

const itemExample = {
  id: 'ni_4k2m9x7p1q8r0t',
  notificationId: 'nt_9x2k7m4p1q8r0t',
  homeId: 'h_5t2k9x4p1q8r0m',
  kind: 'security',
  severity: 'alarm',
  title: 'Water leak',
  body: 'The sensor under the sink reports water.',
  data: { deviceId: 'd_9x2k7m4p1q8r0t' },
  source: 'automation:a_2k9x4p1q8r0m7t',
  createdAt: '2026-11-23T08:00:00.000Z',
  readAt: null,
};
export const InboxItemSchema = Type.Object(
  {
    id: Type.String(),
    notificationId: Type.String({ description: 'The same for every recipient of one notification' }),
    homeId: Type.String(),
    kind: Type.String(),
    severity: Severity,
    title: Type.String(),
    body: Type.String(),
    data: Type.Record(Type.String(), Type.Unknown()),
    source: nullable(Type.String()),
    createdAt: DateTime,
    readAt: nullable(DateTime),
  },
  { examples: [itemExample] },
);
export type InboxItem = Static<typeof InboxItemSchema>;

export const InboxQuery = Type.Object({
  unread: Type.Optional(Type.Boolean({ description: 'Only unread items' })),
  homeId: Type.Optional(HomeId),
  ...Pagination,
});
export const InboxListSchema = Type.Object(
  {
    items: Type.Array(InboxItemSchema),
    unread: Type.Integer({ description: "The caller's unread items in all homes" }),
  },
  { examples: [{ items: [itemExample], unread: 1 }] },
);
export const UnreadCountSchema = Type.Object({ count: Type.Integer() }, { examples: [{ count: 3 }] });
export const ReadAllQuery = Type.Object({ homeId: Type.Optional(HomeId) });
export const ReadAllSchema = Type.Object({ updated: Type.Integer() }, { examples: [{ updated: 3 }] });

// ---- sending

export const SendBody = Type.Object(
  {
    kind: Kind,
    severity: Severity,
    title: Type.String({ minLength: 1, maxLength: 200, examples: ['Water leak'] }),
    body: Type.String({ maxLength: 4000, examples: ['The sensor under the sink reports water.'] }),
    users: Type.Optional(Type.Array(Id('u_4k2m9x7p1q8r0t'), { maxItems: 100, uniqueItems: true, description: 'Default: every member except guests' })),
    data: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    dedupeKey: Type.Optional(
      Type.String({ minLength: 1, maxLength: 200, description: 'Repeats with this key within the window are suppressed (default: same kind, title and body)' }),
    ),
  },
  { additionalProperties: false, examples: [{ kind: 'security', severity: 'alarm', title: 'Water leak', body: 'The sensor under the sink reports water.' }] },
);

const resultsExample = {
  id: 'nt_9x2k7m4p1q8r0t',
  results: [
    { userId: 'u_4k2m9x7p1q8r0t', channel: 'inbox', status: 'sent' },
    { userId: 'u_4k2m9x7p1q8r0t', channel: 'push', status: 'skipped', reason: 'no-subscriptions' },
    { userId: 'u_4k2m9x7p1q8r0t', channel: 'email', status: 'sent' },
    { userId: null, channel: 'channel:nc_8m2k9x4p1q8r0t', status: 'failed', reason: 'HTTP 500' },
  ],
};
export const SendResultSchema = Type.Object(
  {
    id: Type.String({ description: 'The notification id (notificationId of the inbox items)' }),
    results: Type.Array(
      Type.Object({
        userId: nullable(Type.String()),
        channel: Type.String({ description: "inbox, push, email, mobile; channel:{id} for a home channel; * for all of a user's" }),
        status: Type.Union([Type.Literal('sent'), Type.Literal('failed'), Type.Literal('skipped')]),
        reason: Type.Optional(Type.String()),
      }),
    ),
  },
  { examples: [resultsExample] },
);

// ---- preferences

const QuietHours = Type.Object({ start: HHMM, end: HHMM }, { additionalProperties: false, description: "Local time in the home's zone; may cross midnight" });
const prefsExample = {
  channels: { inbox: true, push: true, email: false, mobile: true },
  kinds: { automation: { channels: { push: false } }, device: { enabled: false } },
  severities: { alarm: { channels: { email: true } } },
  quietHours: { start: '22:00', end: '07:00' },
};
const PrefsShape = {
  channels: ChannelSwitches,
  kinds: Type.Record(
    Type.String({ pattern: '^[a-z][a-z0-9_.-]{0,63}$' }),
    Type.Object({ enabled: Type.Optional(Type.Boolean()), channels: Type.Optional(ChannelSwitches) }, { additionalProperties: false }),
    { maxProperties: 100 },
  ),
  severities: Type.Object(
    {
      info: Type.Optional(Type.Object({ channels: Type.Optional(ChannelSwitches) }, { additionalProperties: false })),
      warning: Type.Optional(Type.Object({ channels: Type.Optional(ChannelSwitches) }, { additionalProperties: false })),
      alarm: Type.Optional(Type.Object({ channels: Type.Optional(ChannelSwitches) }, { additionalProperties: false })),
    },
    { additionalProperties: false },
  ),
  quietHours: Type.Union([Type.Null(), QuietHours]),
};
export const PreferencesBody = Type.Object(
  {
    channels: Type.Optional(PrefsShape.channels),
    kinds: Type.Optional(PrefsShape.kinds),
    severities: Type.Optional(PrefsShape.severities),
    quietHours: Type.Optional(PrefsShape.quietHours),
  },
  { additionalProperties: false, description: 'Replaces the preferences; what is left out takes its default', examples: [prefsExample] },
);
export const PreferencesSchema = Type.Object(
  {
    channels: Type.Object({ inbox: Type.Boolean(), push: Type.Boolean(), email: Type.Boolean(), mobile: Type.Boolean() }),
    kinds: PrefsShape.kinds,
    severities: PrefsShape.severities,
    quietHours: PrefsShape.quietHours,
  },
  { examples: [prefsExample] },
);

// ---- home channels

const ChannelType = oneOf(HOME_CHANNEL_TYPES);
export const ChannelBody = Type.Object(
  {
    type: ChannelType,
    name: Type.String({ minLength: 1, maxLength: 200, examples: ['Family chat'] }),
    url: Type.String({ pattern: '^https?://', maxLength: 2000, examples: ['https://hooks.slack.com/services/T000/B000/XXXX'] }),
    secret: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 256,
        description: "webhook: signs the body (x-hearth-signature: sha256=<hex HMAC-SHA256>); feishu, dingtalk: the bot's signing secret",
      }),
    ),
    kinds: Type.Optional(Type.Array(Kind, { maxItems: 50, uniqueItems: true, description: 'Only these kinds (default: all)' })),
    minSeverity: Type.Optional(Severity),
  },
  {
    additionalProperties: false,
    examples: [{ type: 'slack', name: 'Family chat', url: 'https://hooks.slack.com/services/T000/B000/XXXX', minSeverity: 'warning' }],
  },
);
const channelExample = {
  id: 'nc_8m2k9x4p1q8r0t',
  homeId: 'h_5t2k9x4p1q8r0m',
  type: 'slack',
  name: 'Family chat',
  url: 'https://hooks.slack.com/services/T000/B000/XXXX',
  hasSecret: false,
  kinds: null,
  minSeverity: 'warning',
  createdAt: '2026-11-23T08:00:00.000Z',
  createdBy: 'user:u_4k2m9x7p1q8r0t',
};
export const ChannelSchema = Type.Object(
  {
    id: Type.String(),
    homeId: Type.String(),
    type: ChannelType,
    name: Type.String(),
    url: Type.String(),
    hasSecret: Type.Boolean({ description: 'The secret itself is never shown again' }),
    kinds: nullable(Type.Array(Type.String())),
    minSeverity: Severity,
    createdAt: DateTime,
    createdBy: Type.String(),
  },
  { examples: [channelExample] },
);
export type HomeChannelView = Static<typeof ChannelSchema>;
export const ChannelListSchema = Type.Object({ items: Type.Array(ChannelSchema) }, { examples: [{ items: [channelExample] }] });

// ---- push registration

export const VapidKeySchema = Type.Object(
  { publicKey: Type.String({ description: 'applicationServerKey for pushManager.subscribe (base64url)' }) },
  {
    examples: [{ publicKey: 'BNc3dQx3w2nqk1Yv6CkQm9rRk0Ff2oD1ax7xH3CkU8L0Vx7G1bXo9yJ0dP2uE4rH2h3d5Gk9dY6aJqLkWm3Zc2o' }],
  },
);
export const SubscriptionBody = Type.Object(
  {
    endpoint: Type.String({ pattern: '^https?://', maxLength: 2000, examples: ['https://fcm.googleapis.com/fcm/send/dpH5lCsTSSM:APA91bHq'] }),
    keys: Type.Object({
      p256dh: Type.String({ pattern: '^[A-Za-z0-9_-]+=*$', maxLength: 200 }),
      auth: Type.String({ pattern: '^[A-Za-z0-9_-]+=*$', maxLength: 100 }),
    }),
    expirationTime: Type.Optional(Type.Union([Type.Null(), Type.Number()])),
  },
  {
    description: 'PushSubscription.toJSON() of the browser',
    examples: [
      {
        endpoint: 'https://fcm.googleapis.com/fcm/send/dpH5lCsTSSM:APA91bHq',
        keys: { p256dh: 'BIPUL12DLfytvTajnryr2PRdAgXS3HGKiLqndGcJGabyhHheJYlNGCeXl1dn18gSJ1WAkAPIxr4gK0_dQds4yiI', auth: 'FPssNDTKnInHVndSTdbKFw' },
      },
    ],
  },
);
const subscriptionExample = {
  id: 'ps_2k9x4p1q8r0m7t',
  endpoint: 'https://fcm.googleapis.com/fcm/send/dpH5lCsTSSM:APA91bHq',
  createdAt: '2026-11-23T08:00:00.000Z',
};
export const SubscriptionSchema = Type.Object({ id: Type.String(), endpoint: Type.String(), createdAt: DateTime }, { examples: [subscriptionExample] });
export type PushSubscriptionView = Static<typeof SubscriptionSchema>;
export const SubscriptionListSchema = Type.Object({ items: Type.Array(SubscriptionSchema) }, { examples: [{ items: [subscriptionExample] }] });

const Platform = Type.Union([Type.Literal('fcm'), Type.Literal('apns')]);
export const TokenBody = Type.Object(
  {
    platform: Platform,
    token: Type.String({ minLength: 1, maxLength: 4096, examples: ['dpH5lCsTSSM:APA91bHqjZxM0VImWWqDRN'] }),
  },
  { additionalProperties: false, examples: [{ platform: 'fcm', token: 'dpH5lCsTSSM:APA91bHqjZxM0VImWWqDRN' }] },
);
const tokenExample = { id: 'pt_9x4p1q8r0m7t2k', platform: 'fcm', createdAt: '2026-11-23T08:00:00.000Z' };
export const TokenSchema = Type.Object({ id: Type.String(), platform: Platform, createdAt: DateTime }, { examples: [tokenExample] });
export type PushTokenView = Static<typeof TokenSchema>;
export const TokenListSchema = Type.Object({ items: Type.Array(TokenSchema) }, { examples: [{ items: [tokenExample] }] });
