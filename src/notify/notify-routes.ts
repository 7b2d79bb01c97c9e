import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { principal } from '../transports/http/http-server.ts';
import { AuthHeader, problems } from '../transports/http/http-schemas.ts';
import { DeletedSchema, HomeParams } from '../homes/home-schema.ts';
import type { NotificationService } from './notify-service.ts';
import {
  ChannelBody,
  ChannelListSchema,
  ChannelParams,
  ChannelSchema,
  InboxItemSchema,
  InboxListSchema,
  InboxQuery,
  NotificationParams,
  PreferencesBody,
  PreferencesSchema,
  ReadAllQuery,
  ReadAllSchema,
  SendBody,
  SendResultSchema,
  SubscriptionBody,
  SubscriptionListSchema,
  SubscriptionParams,
  SubscriptionSchema,
  TokenBody,
  TokenListSchema,
  TokenParams,
  TokenSchema,
  UnreadCountSchema,
  VapidKeySchema,
} from './notify-schema.ts';

const A = '/api/v1';

/**
 * Routes of notifications: the caller's inbox, Web Push subscriptions and mobile push tokens,
 * preferences per home, the home's webhook and chat-bot channels, and sending to a home. Every
 * check is the NotificationService's (through the AccessService).
 */
export async function notifyRoutes(app: HttpApp, deps: { notify: NotificationService }): Promise<void> {
  const { notify } = deps;

  // ---------------------------------------------------------------- inbox

  app.get(
    `${A}/notifications`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['notifications'],
        summary: "The caller's inbox, newest first",
        ...AuthHeader,
        querystring: InboxQuery,
        response: { 200: InboxListSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED') },
      },
    },
    async (req) => notify.listInbox(principal(req), req.query),
  );

  app.get(
    `${A}/notifications/unread-count`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['notifications'],
        summary: "How many of the caller's inbox items are unread",
        ...AuthHeader,
        response: { 200: UnreadCountSchema, ...problems('E_UNAUTHENTICATED') },
      },
    },
    async (req) => ({ count: await notify.unreadCount(principal(req)) }),
  );

  app.post(
    `${A}/notifications/:notificationId/read`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['notifications'],
        summary: 'Mark an inbox item read',
        ...AuthHeader,
        params: NotificationParams,
        response: { 200: InboxItemSchema, ...problems('E_UNAUTHENTICATED', 'E_NOTIFICATION_NOT_FOUND') },
      },
    },
    async (req) => notify.markRead(principal(req), req.params.notificationId),
  );

  app.post(
    `${A}/notifications/read-all`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['notifications'],
        summary: "Mark all the caller's inbox items read (of one home, if given)",
        ...AuthHeader,
        querystring: ReadAllQuery,
        response: { 200: ReadAllSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED') },
      },
    },
    async (req) => ({ updated: await notify.markAllRead(principal(req), req.query.homeId) }),
  );

  // ---------------------------------------------------------------- sending, preferences, home channels

  app.post(
    `${A}/homes/:homeId/notifications`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['notifications'],
        summary: "Send a notification to the home's people and channels (owner, admin); answers what each channel did",
        ...AuthHeader,
        params: HomeParams,
        body: SendBody,
        response: { 200: SendResultSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND') },
      },
    },
    async (req) => notify.sendAs(principal(req), req.params.homeId, req.body),
  );

  app.get(
    `${A}/homes/:homeId/notification-preferences`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['notifications'],
        summary: "The caller's notification preferences in a home (defaults until set)",
        ...AuthHeader,
        params: HomeParams,
        response: { 200: PreferencesSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND') },
      },
    },
    async (req) => notify.getPreferences(principal(req), req.params.homeId),
  );

  app.put(
    `${A}/homes/:homeId/notification-preferences`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['notifications'],
        summary: "Replace the caller's notification preferences in a home (not guests)",
        ...AuthHeader,
        params: HomeParams,
        body: PreferencesBody,
        response: { 200: PreferencesSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND') },
      },
    },
    async (req) => notify.setPreferences(principal(req), req.params.homeId, req.body),
  );

  app.post(
    `${A}/homes/:homeId/notification-channels`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['notifications'],
        summary: 'Add a webhook or chat-bot channel to a home (owner, admin)',
        ...AuthHeader,
        params: HomeParams,
        body: ChannelBody,
        response: { 201: ChannelSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND') },
      },
    },
    async (req, reply) => reply.status(201).send(await notify.createChannel(principal(req), req.params.homeId, req.body)),
  );

  app.get(
    `${A}/homes/:homeId/notification-channels`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['notifications'],
        summary: "The home's notification channels (owner, admin); secrets are not shown",
        ...AuthHeader,
        params: HomeParams,
        response: { 200: ChannelListSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND') },
      },
    },
    async (req) => ({ items: await notify.listChannels(principal(req), req.params.homeId) }),
  );

  app.delete(
    `${A}/notification-channels/:channelId`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['notifications'],
        summary: "Remove a home's notification channel (owner, admin)",
        ...AuthHeader,
        params: ChannelParams,
        response: { 200: DeletedSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_NOTIFICATION_CHANNEL_NOT_FOUND') },
      },
    },
    async (req) => {
      await notify.deleteChannel(principal(req), req.params.channelId);
      return { id: req.params.channelId, deleted: true as const };
    },
  );

  // ---------------------------------------------------------------- push registration

  app.get(
    `${A}/push/vapid-public-key`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['notifications'],
        summary: 'The VAPID public key for Web Push subscriptions',
        ...AuthHeader,
        response: { 200: VapidKeySchema, ...problems('E_UNAUTHENTICATED') },
      },
    },
    async () => ({ publicKey: notify.vapidPublicKey() }),
  );

  app.post(
    `${A}/push/subscriptions`,
    {
      config: { auth: Auth.password },
      schema: {
        tags: ['notifications'],
        summary: "Register a browser's Web Push subscription for the caller",
        ...AuthHeader,
        body: SubscriptionBody,
        response: { 201: SubscriptionSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED') },
      },
    },
    async (req, reply) => reply.status(201).send(await notify.subscribe(principal(req), req.body)),
  );

  app.get(
    `${A}/push/subscriptions`,
    {
      config: { auth: Auth.password },
      schema: {
        tags: ['notifications'],
        summary: "The caller's Web Push subscriptions",
        ...AuthHeader,
        response: { 200: SubscriptionListSchema, ...problems('E_UNAUTHENTICATED') },
      },
    },
    async (req) => ({ items: await notify.listSubscriptions(principal(req)) }),
  );

  app.delete(
    `${A}/push/subscriptions/:subscriptionId`,
    {
      config: { auth: Auth.password },
      schema: {
        tags: ['notifications'],
        summary: 'Remove a Web Push subscription',
        ...AuthHeader,
        params: SubscriptionParams,
        response: { 200: DeletedSchema, ...problems('E_UNAUTHENTICATED', 'E_PUSH_SUBSCRIPTION_NOT_FOUND') },
      },
    },
    async (req) => {
      await notify.unsubscribe(principal(req), req.params.subscriptionId);
      return { id: req.params.subscriptionId, deleted: true as const };
    },
  );

  app.post(
    `${A}/push/tokens`,
    {
      config: { auth: Auth.password },
      schema: {
        tags: ['notifications'],
        summary: "Register a mobile device's push token (FCM or APNs) for the caller",
        ...AuthHeader,
        body: TokenBody,
        response: { 201: TokenSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED') },
      },
    },
    async (req, reply) => reply.status(201).send(await notify.registerToken(principal(req), req.body)),
  );

  app.get(
    `${A}/push/tokens`,
    {
      config: { auth: Auth.password },
      schema: {
        tags: ['notifications'],
        summary: "The caller's mobile push tokens",
        ...AuthHeader,
        response: { 200: TokenListSchema, ...problems('E_UNAUTHENTICATED') },
      },
    },
    async (req) => ({ items: await notify.listTokens(principal(req)) }),
  );

  app.delete(
    `${A}/push/tokens/:tokenId`,
    {
      config: { auth: Auth.password },
      schema: {
        tags: ['notifications'],
        summary: 'Remove a mobile push token',
        ...AuthHeader,
        params: TokenParams,
        response: { 200: DeletedSchema, ...problems('E_UNAUTHENTICATED', 'E_PUSH_TOKEN_NOT_FOUND') },
      },
    },
    async (req) => {
      await notify.unregisterToken(principal(req), req.params.tokenId);
      return { id: req.params.tokenId, deleted: true as const };
    },
  );
}
