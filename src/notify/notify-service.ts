import type { UrlPolicy } from '../core/url-policy.ts';
import type { HomeService } from '../homes/home-service.ts';
import { createHash } from 'node:crypto';
import type { ExpressionBuilder, Transaction } from 'kysely';
import type { Static } from 'typebox';
import type { Db } from '../core/store/db.ts';
import { fromJson, toJson } from '../core/store/db.ts';
import type { Database } from '../core/store/schema.ts';
import type { Clock } from '../core/clock.ts';
import type { Logger } from '../core/logger.ts';
import type { Mailer } from '../core/mailer.ts';
import type { Metrics } from '../core/observability/metrics.ts';
import type { SettingsStore } from '../core/settings-store.ts';
import { createOutbound, OutboundError, postBody, type Outbound } from '../core/outbound.ts';
import { HearthError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Principal } from '../access/principal.ts';
import type { AccessService } from '../access/access-service.ts';
import type { StreamEventType } from '../stream/stream-service.ts';
import {
  USER_CHANNELS,
  channelEnabled,
  inQuietHours,
  kindEnabled,
  severityAtLeast,
  withDefaults,
  type NotificationPreferences,
  type PreferencesInput,
  type Severity,
  type UserChannel,
} from './notify-prefs.ts';
import { botRefusal, buildRequest, type HomeChannelType } from './channels/home-channels.ts';
import { describeError, type Delivery, type NotificationMessage } from './channels/message.ts';
import { WebPushSender } from './channels/web-push.ts';
import { FcmSender, readServiceAccount } from './channels/fcm.ts';
import { ApnsSender, type ApnsOptions } from './channels/apns.ts';
import type { ChannelBody, HomeChannelView, InboxItem, PushSubscriptionView, PushTokenView } from './notify-schema.ts';

/** Bounds on a notification's fan-out: web push subscriptions and phone tokens per user (each kind), channels per home. */
export const MAX_PUSH_TARGETS_PER_USER = 20;
export const MAX_CHANNELS_PER_HOME = 20;

/**
 * Removes a user's push targets (browsers and phones) inside the caller's transaction: an account
 * that changed hands (a password reset reclaimed it) must not notify its previous holder's devices.
 */
export async function forgetPushTargets(trx: Transaction<Database>, userId: string): Promise<void> {
  await trx.deleteFrom('push_subscriptions').where('user_id', '=', userId).execute();
  await trx.deleteFrom('push_tokens').where('user_id', '=', userId).execute();
}

/** What a feature asks to tell people. */
export interface NotifyRequest {
  homeId: string;
  /** e.g. 'automation', 'security', 'device', 'system'; preferences are per kind. */
  kind: string;
  /** 'alarm' bypasses quiet hours. */
  severity: Severity;
  title: string;
  body: string;
  /** Default: every member of the home except guests. */
  users?: string[];
  data?: Record<string, unknown>;
  /** Repeats with the same key (per user) within the window are suppressed. */
  dedupeKey?: string;
  /** e.g. 'automation:{id}' */
  source?: string;
}

/**
 * What one channel did: `userId` null for the home's channels (`channel` is then
 * `channel:{channelId}`). Channel `*` stands for all of a user's channels (duplicate, kind off).
 */
export interface ChannelResult {
  userId: string | null;
  channel: string;
  status: 'sent' | 'failed' | 'skipped';
  reason?: string;
}

type HomeChannelInput = Static<typeof ChannelBody>;

/** Where the service publishes inbox changes (the StreamService). */
export interface NotificationStream {
  publish(type: StreamEventType, deviceId: string | null, homeId: string | null, data: Record<string, unknown>, at?: number, opts?: { userId?: string }): void;
}

export interface NotificationServiceDeps {
  db: Db;
  clock: Clock;
  log: Logger;
  stream: NotificationStream;
  mailer: Mailer;
  settings: SettingsStore;
  access: AccessService;
  homes: Pick<HomeService, 'info'>;
  /** Where home channels and Web Push endpoints may point (default: anywhere). */
  /** Where people's URLs (channels, push endpoints) may point; required, so that nothing fails open. */
  urls: UrlPolicy;
  users: { userById(id: string): Promise<{ id: string; email: string; emailVerified: boolean } | undefined> };
  metrics?: Metrics;
  config: {
    /** Repeats within this window are suppressed (0: never). */
    dedupeWindowMs: number;
    /** VAPID `sub`: mailto: or https: URL; by default mailto: the address of `mailFrom`. */
    vapidSubject?: string;
    /** The sender of e-mails (`Name <address>` or an address): the VAPID contact by default. */
    mailFrom: string;
    /** Links in e-mails point here. */
    publicUrl: string;
    fcm?: { serviceAccountFile: string; baseUrl: string };
    apns?: ApnsOptions;
  };
}

/** Push services want a contact in the VAPID token: the operator's sender address will do. */
function defaultVapidSubject(mailFrom: string): string {
  return `mailto:${/<([^>]+)>/.exec(mailFrom)?.[1] ?? mailFrom}`;
}

type ChannelRow = Database['notification_channels'];
/** Where a user's Web Push and mobile pushes go. */
interface UserDevices {
  subscriptions: Array<Database['push_subscriptions']>;
  tokens: Array<Database['push_tokens']>;
}

const OUTBOUND = { timeoutMs: 10_000, retries: 2, backoff: { initialMs: 200, maxMs: 2_000 }, breaker: { consecutiveFailures: 5, halfOpenAfterMs: 30_000 } };
const iso = (n: number | string) => new Date(Number(n)).toISOString();

/**
 * Tells the people of a home: an in-app inbox (with live stream events), Web Push, e-mail,
 * mobile push (FCM, APNs) and the home's own webhook and chat-bot channels. Each user's
 * preferences for the home and the kind decide the channels; quiet hours (in the home's time
 * zone) silence everything but the inbox unless the severity is `alarm`; a repeat within the
 * de-duplication window reaches nobody. `send` reports what happened per user and channel and
 * never throws for a failed delivery.
 *
 * Recipients are read from the homes capability's membership table (read only): resolving who
 * lives in a home is not an access decision, and `send` runs without a principal. A home's name
 * and zone come from HomeService.
 */
export class NotificationService {
  private readonly webPush: WebPushSender;
  private fcm: FcmSender | undefined;
  private apns: ApnsSender | undefined;
  private readonly outbounds = new Map<string, Outbound>();
  private lastPrune = 0;
  private readonly urls: UrlPolicy;

  constructor(private readonly deps: NotificationServiceDeps) {
    this.urls = deps.urls;
    this.webPush = new WebPushSender({
      settings: deps.settings,
      subject: deps.config.vapidSubject ?? defaultVapidSubject(deps.config.mailFrom),
      outbound: this.outbound('web-push', true),
      urls: this.urls,
    });
  }

  /** Loads (or makes) the VAPID keys; reads the FCM and APNs credentials when configured. */
  async start(): Promise<void> {
    await this.webPush.start();
    const { fcm, apns } = this.deps.config;
    if (fcm)
      this.fcm = new FcmSender({
        account: readServiceAccount(fcm.serviceAccountFile),
        baseUrl: fcm.baseUrl,
        clock: this.deps.clock,
        outbound: this.outbound('fcm', true),
      });
    if (apns) this.apns = new ApnsSender({ options: apns, clock: this.deps.clock, outbound: this.outbound('apns', true) });
  }

  stop(): void {
    this.apns?.close();
  }

  // ------------------------------------------------------------------ sending

  /**
   * Sends a notification to the home's people and channels. Resolves with the notification id
   * and one result per user and channel; delivery failures are results, never exceptions.
   */
  async send(req: NotifyRequest): Promise<{ id: string; results: ChannelResult[] }> {
    const id = newId('nt');
    const now = this.deps.clock.now();
    const home = await this.deps.homes.info(req.homeId);
    if (!home) return { id, results: [{ userId: null, channel: '*', status: 'skipped', reason: 'home-not-found' }] };
    const msg: NotificationMessage = {
      id,
      homeId: home.id,
      homeName: home.name,
      kind: req.kind,
      severity: req.severity,
      title: req.title,
      body: req.body,
      data: req.data ?? {},
      source: req.source ?? null,
      at: iso(now),
    };
    const dedupe = this.dedupeKey(req);
    const results: ChannelResult[] = [];
    const { recipients, refused } = await this.recipients(req.homeId, req.users, now);
    for (const u of refused) results.push({ userId: u, channel: '*', status: 'skipped', reason: 'not-a-member' });
    const [prefs, devices] = await Promise.all([this.preferencesOf(req.homeId, recipients), this.devicesOf(recipients)]);
    const perUser = await Promise.all(
      recipients.map((userId) =>
        this.sendToUser(userId, prefs.get(userId)!, devices.get(userId)!, msg, home.timezone, dedupe, now).catch((err): ChannelResult[] => {
          this.deps.log.error({ err, userId, notificationId: id }, 'notification to a user failed');
          return [{ userId, channel: '*', status: 'failed', reason: 'internal error' }];
        }),
      ),
    );
    for (const r of perUser) results.push(...r);
    results.push(
      ...(await this.sendToHomeChannels(msg, dedupe, now).catch((err): ChannelResult[] => {
        this.deps.log.error({ err, notificationId: id }, "notification to the home's channels failed");
        return [{ userId: null, channel: '*', status: 'failed', reason: 'internal error' }];
      })),
    );
    void this.prune(now);
    return { id, results };
  }

  private async sendToUser(
    userId: string,
    prefs: NotificationPreferences,
    devices: UserDevices,
    msg: NotificationMessage,
    timeZone: string,
    dedupe: string,
    now: number,
  ): Promise<ChannelResult[]> {
    if (!kindEnabled(prefs, msg.kind)) return [{ userId, channel: '*', status: 'skipped', reason: 'kind-disabled' }];
    const wanted = USER_CHANNELS.filter((c) => channelEnabled(prefs, msg.kind, msg.severity, c));
    if (!wanted.length) return [{ userId, channel: '*', status: 'skipped', reason: 'preferences' }];
    if (!(await this.claim(userId, dedupe, now))) return [{ userId, channel: '*', status: 'skipped', reason: 'duplicate' }];
    const quiet = msg.severity !== 'alarm' && inQuietHours(prefs.quietHours, now, timeZone);
    return Promise.all(
      USER_CHANNELS.map(async (channel): Promise<ChannelResult> => {
        if (!wanted.includes(channel)) return { userId, channel, status: 'skipped', reason: 'preferences' };
        if (quiet && channel !== 'inbox') return { userId, channel, status: 'skipped', reason: 'quiet-hours' };
        try {
          return { userId, channel, ...(await this.deliver(channel, userId, devices, msg, now)) };
        } catch (err) {
          this.deps.log.warn({ err, userId, channel, notificationId: msg.id }, 'notification delivery failed');
          return { userId, channel, status: 'failed', reason: describeError(err) };
        }
      }),
    );
  }

  private deliver(channel: UserChannel, userId: string, devices: UserDevices, msg: NotificationMessage, now: number): Promise<Delivery> {
    switch (channel) {
      case 'inbox':
        return this.toInbox(userId, msg, now);
      case 'email':
        return this.toEmail(userId, msg);
      case 'push':
        return this.toWebPush(devices.subscriptions, msg);
      case 'mobile':
        return this.toMobile(devices.tokens, msg);
    }
  }

  private async toInbox(userId: string, msg: NotificationMessage, now: number): Promise<Delivery> {
    const row: Database['notification_inbox'] = {
      id: newId('ni'),
      notification_id: msg.id,
      user_id: userId,
      home_id: msg.homeId,
      kind: msg.kind,
      severity: msg.severity,
      title: msg.title,
      body: msg.body,
      data: toJson(msg.data),
      source: msg.source,
      created_at: now,
      read_at: null,
    };
    await this.deps.db.insertInto('notification_inbox').values(row).execute();
    this.deps.stream.publish(
      'notification',
      null,
      msg.homeId,
      { action: 'created', notification: inboxItem(row), unread: await this.unreadCount({ userId }) },
      now,
      { userId },
    );
    return { status: 'sent' };
  }

  private async toEmail(userId: string, msg: NotificationMessage): Promise<Delivery> {
    const user = await this.deps.users.userById(userId);
    if (!user) return { status: 'skipped', reason: 'no-email' };
    // Whoever signed up with an address they do not hold must not reach its owner's mailbox.
    if (!user.emailVerified) return { status: 'skipped', reason: 'email-not-verified' };
    const tag = msg.severity === 'alarm' ? 'ALARM: ' : '';
    await this.deps.mailer.send({
      to: user.email,
      subject: `[${msg.homeName}] ${tag}${msg.title}`,
      text: `${msg.body}\n\n${msg.homeName} · ${msg.kind} · ${msg.severity} · ${msg.at}\n${this.deps.config.publicUrl}/notifications\n`,
    });
    return { status: 'sent' };
  }

  private async toWebPush(subs: Array<Database['push_subscriptions']>, msg: NotificationMessage): Promise<Delivery> {
    if (!subs.length) return { status: 'skipped', reason: 'no-subscriptions' };
    return this.fanOut(subs, async (s) => {
      const r = await this.webPush.send({ endpoint: s.endpoint, keys: { p256dh: s.p256dh, auth: s.auth } }, msg);
      if (r === 'gone') await this.deps.db.deleteFrom('push_subscriptions').where('id', '=', s.id).execute();
      return r;
    });
  }

  private async toMobile(tokens: Array<Database['push_tokens']>, msg: NotificationMessage): Promise<Delivery> {
    const usable = tokens.filter((t) => (t.platform === 'fcm' ? this.fcm : this.apns) !== undefined);
    if (!tokens.length) return { status: 'skipped', reason: 'no-devices' };
    if (!usable.length) return { status: 'skipped', reason: 'not-configured' };
    return this.fanOut(usable, async (t) => {
      const r = t.platform === 'fcm' ? await this.fcm!.send(t.token, msg) : await this.apns!.send(t.token, msg);
      if (r === 'gone') await this.deps.db.deleteFrom('push_tokens').where('id', '=', t.id).execute();
      return r;
    });
  }

  /** Sends to each of a user's subscriptions or devices: sent when any took it. */
  private async fanOut<T>(targets: T[], one: (t: T) => Promise<'sent' | 'gone'>): Promise<Delivery> {
    const outcomes = await Promise.all(
      targets.map((t) =>
        one(t).then(
          (r) => ({ r, err: undefined as unknown }),
          (err: unknown) => ({ r: 'failed' as const, err }),
        ),
      ),
    );
    const sent = outcomes.filter((o) => o.r === 'sent').length;
    if (sent) return { status: 'sent', ...(sent < targets.length ? { reason: `${sent} of ${targets.length}` } : {}) };
    const failed = outcomes.find((o) => o.r === 'failed');
    if (failed) return { status: 'failed', reason: describeError(failed.err) };
    return { status: 'skipped', reason: 'expired' };
  }

  private async sendToHomeChannels(msg: NotificationMessage, dedupe: string, now: number): Promise<ChannelResult[]> {
    const rows = await this.deps.db.selectFrom('notification_channels').selectAll().where('home_id', '=', msg.homeId).orderBy('created_at').execute();
    const matching = rows.filter((c) => {
      const kinds = fromJson<string[] | null>(c.kinds);
      return (!kinds || kinds.includes(msg.kind)) && severityAtLeast(msg.severity, c.min_severity as Severity);
    });
    const results: ChannelResult[] = rows
      .filter((c) => !matching.includes(c))
      .map((c) => ({ userId: null, channel: `channel:${c.id}`, status: 'skipped' as const, reason: 'filtered' }));
    if (!matching.length) return results;
    if (!(await this.claim('', `${msg.homeId}:${dedupe}`, now)))
      return [...results, ...matching.map((c) => ({ userId: null, channel: `channel:${c.id}`, status: 'skipped' as const, reason: 'duplicate' }))];
    results.push(
      ...(await Promise.all(
        matching.map(async (c): Promise<ChannelResult> => {
          const channel = `channel:${c.id}`;
          try {
            await this.post(c, msg);
            return { userId: null, channel, status: 'sent' };
          } catch (err) {
            this.deps.log.warn({ err: describeError(err), channelId: c.id, type: c.type, notificationId: msg.id }, 'notification channel delivery failed');
            return { userId: null, channel, status: 'failed', reason: describeError(err) };
          }
        }),
      )),
    );
    return results;
  }

  /** One POST to a home channel, through the channel's own breaker. */
  private async post(c: ChannelRow, msg: NotificationMessage): Promise<void> {
    const type = c.type as HomeChannelType;
    const outbound = this.outbound(`channel:${c.id}`, false, `notify-${type}`);
    // Made once for all attempts: the bots accept signed time stamps up to an hour old.
    const r = buildRequest({ type, url: c.url, secret: c.secret }, msg, this.deps.clock.now());
    await postBody(
      outbound,
      r.url,
      r.body,
      { 'content-type': 'application/json', ...r.headers },
      {
        urls: this.urls,
        inspect: (a) => {
          const refused = a.ok ? botRefusal(type, parseJson(a.text)) : undefined;
          if (refused) throw new OutboundError(outbound.name, 'status', `${type} refused the message: ${refused}`, false);
        },
      },
    );
  }

  private outbound(key: string, metered: boolean, name = key): Outbound {
    let o = this.outbounds.get(key);
    if (!o) {
      // Home channels are many: their breakers are kept apart but not labelled one by one in metrics.
      o = createOutbound({ name, ...(metered ? { metrics: this.deps.metrics } : {}), ...OUTBOUND });
      this.outbounds.set(key, o);
    }
    return o;
  }

  /** Who gets it: the named users that are members (guests included when named), or every non-guest member. */
  private async recipients(homeId: string, users: string[] | undefined, now: number): Promise<{ recipients: string[]; refused: string[] }> {
    const active = await this.deps.access.activeMembers(homeId, now);
    if (!users)
      return {
        recipients: active
          .filter((m) => m.role !== 'guest')
          .map((m) => m.userId)
          .sort(),
        refused: [],
      };
    const ids = new Set(active.map((m) => m.userId));
    const named = [...new Set(users)];
    return { recipients: named.filter((u) => ids.has(u)), refused: named.filter((u) => !ids.has(u)) };
  }

  private async preferencesOf(homeId: string, users: string[]): Promise<Map<string, NotificationPreferences>> {
    const out = new Map<string, NotificationPreferences>();
    if (!users.length) return out;
    const rows = await this.deps.db
      .selectFrom('notification_preferences')
      .select(['user_id', 'prefs'])
      .where('home_id', '=', homeId)
      .where('user_id', 'in', users)
      .execute();
    const stored = new Map(rows.map((r) => [r.user_id, fromJson<PreferencesInput>(r.prefs)]));
    for (const u of users) out.set(u, withDefaults(stored.get(u)));
    return out;
  }

  /** The recipients' Web Push subscriptions and mobile push tokens, in two queries for all. */
  private async devicesOf(users: string[]): Promise<Map<string, UserDevices>> {
    const out = new Map<string, UserDevices>(users.map((u) => [u, { subscriptions: [], tokens: [] }]));
    if (!users.length) return out;
    const { db } = this.deps;
    const [subs, tokens] = await Promise.all([
      db.selectFrom('push_subscriptions').selectAll().where('user_id', 'in', users).execute(),
      db.selectFrom('push_tokens').selectAll().where('user_id', 'in', users).execute(),
    ]);
    for (const s of subs) out.get(s.user_id)?.subscriptions.push(s);
    for (const t of tokens) out.get(t.user_id)?.tokens.push(t);
    return out;
  }

  private dedupeKey(req: NotifyRequest): string {
    const basis = req.dedupeKey !== undefined ? `k:${req.dedupeKey}` : `c:${req.kind}\n${req.title}\n${req.body}`;
    return createHash('sha256').update(`${req.homeId}\n${basis}`).digest('base64url');
  }

  /**
   * Claims a delivery for a recipient and key: true when nothing with the key went to them
   * within the window. A compare-and-set in the store, so two nodes sending the same alert at
   * once deliver it once. Suppressed repeats do not extend the window.
   */
  private async claim(recipient: string, key: string, now: number): Promise<boolean> {
    const window = this.deps.config.dedupeWindowMs;
    if (window <= 0) return true;
    const r = await this.deps.db
      .insertInto('notification_dedupe')
      .values({ recipient, key, sent_at: now })
      .onConflict((oc) =>
        oc
          .columns(['recipient', 'key'])
          .doUpdateSet({ sent_at: now })
          .where('notification_dedupe.sent_at', '<=', now - window),
      )
      .executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0) > 0;
  }

  /** Forgets de-duplication keys older than the window, at most once per window. */
  private async prune(now: number): Promise<void> {
    const window = this.deps.config.dedupeWindowMs;
    if (window <= 0 || now - this.lastPrune < window) return;
    this.lastPrune = now;
    try {
      await this.deps.db
        .deleteFrom('notification_dedupe')
        .where('sent_at', '<', now - window)
        .execute();
    } catch (err) {
      this.deps.log.warn({ err }, 'pruning notification de-duplication keys failed');
    }
  }

  // ------------------------------------------------------------------ user-facing

  /** An owner or admin sends a notification to the home (or to some of its people). */
  async sendAs(p: Principal, homeId: string, input: Omit<NotifyRequest, 'homeId' | 'source'>): Promise<{ id: string; results: ChannelResult[] }> {
    await this.deps.access.requireHome(p, homeId, 'configure');
    return this.send({ ...input, homeId, source: p.keyId ? `key:${p.keyId}` : `user:${p.userId}` });
  }

  /** The caller's inbox, newest first. */
  async listInbox(p: Principal, q: { unread?: boolean; homeId?: string; limit: number; offset: number }): Promise<{ items: InboxItem[]; unread: number }> {
    let query = this.mine(p).selectAll();
    if (q.unread) query = query.where('read_at', 'is', null);
    if (q.homeId) query = query.where('home_id', '=', q.homeId);
    const rows = await query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(q.limit).offset(q.offset).execute();
    return { items: rows.map(inboxItem), unread: await this.unreadCount(p) };
  }

  /** How many of the user's items are unread (of the homes of an API key restricted to some). */
  async unreadCount(p: Pick<Principal, 'userId' | 'homeIds'>): Promise<number> {
    const r = await this.mine(p)
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('read_at', 'is', null)
      .executeTakeFirst();
    return Number(r?.n ?? 0);
  }

  /** The caller's inbox; an API key restricted to homes sees only theirs. */
  private mine(p: Pick<Principal, 'userId' | 'homeIds'>) {
    return this.deps.db.selectFrom('notification_inbox').where(ownedBy(p));
  }

  /** Marks one of the caller's items read (again: no change). */
  async markRead(p: Principal, itemId: string): Promise<InboxItem> {
    const { db, clock } = this.deps;
    const row = await this.mine(p).selectAll().where('id', '=', itemId).executeTakeFirst();
    if (!row) throw new HearthError('E_NOTIFICATION_NOT_FOUND', `notification "${itemId}" does not exist`);
    if (row.read_at != null) return inboxItem(row);
    const now = clock.now();
    await db.updateTable('notification_inbox').set({ read_at: now }).where('id', '=', itemId).where('read_at', 'is', null).execute();
    const item = inboxItem({ ...row, read_at: now });
    this.deps.stream.publish('notification', null, row.home_id, { action: 'read', ids: [itemId], unread: await this.unreadCount({ userId: p.userId }) }, now, {
      userId: p.userId,
    });
    return item;
  }

  /**
   * Marks all of the caller's unread items read (of one home, if given); returns how many changed.
   * The stream hears it once per home (a stream event without a home reaches only the operator).
   */
  async markAllRead(p: Principal, homeId?: string): Promise<number> {
    const { db, clock } = this.deps;
    const now = clock.now();
    let unread = this.mine(p)
      .select((eb) => ['home_id', eb.fn.countAll<number>().as('n')])
      .where('read_at', 'is', null)
      .groupBy('home_id');
    if (homeId) unread = unread.where('home_id', '=', homeId);
    const byHome = await unread.execute();
    if (!byHome.length) return 0;
    let update = db.updateTable('notification_inbox').set({ read_at: now }).where(ownedBy(p)).where('read_at', 'is', null);
    if (homeId) update = update.where('home_id', '=', homeId);
    const r = await update.executeTakeFirst();
    const left = await this.unreadCount({ userId: p.userId });
    for (const h of byHome)
      this.deps.stream.publish('notification', null, h.home_id, { action: 'read-all', count: Number(h.n), unread: left }, now, { userId: p.userId });
    return Number(r.numUpdatedRows ?? 0);
  }

  async getPreferences(p: Principal, homeId: string): Promise<NotificationPreferences> {
    await this.deps.access.requireHome(p, homeId, 'view');
    return (await this.preferencesOf(homeId, [p.userId])).get(p.userId)!;
  }

  /** Replaces the caller's preferences for a home; omitted parts take their defaults. Guests have none. */
  async setPreferences(p: Principal, homeId: string, input: PreferencesInput): Promise<NotificationPreferences> {
    const role = await this.deps.access.requireHome(p, homeId, 'control');
    if (role === 'guest') throw new HearthError('E_FORBIDDEN', 'guests get only the notifications sent to them by name, with the default preferences');
    const prefs = withDefaults(input);
    const now = this.deps.clock.now();
    await this.deps.db
      .insertInto('notification_preferences')
      .values({ user_id: p.userId, home_id: homeId, prefs: toJson(prefs), updated_at: now })
      .onConflict((oc) => oc.columns(['user_id', 'home_id']).doUpdateSet({ prefs: toJson(prefs), updated_at: now }))
      .execute();
    return prefs;
  }

  async createChannel(p: Principal, homeId: string, input: HomeChannelInput): Promise<HomeChannelView> {
    await this.deps.access.requireHome(p, homeId, 'configure');
    checkUrl(input.url, this.urls);
    // Every notification of the home goes to each channel: their number bounds the fan-out.
    const { n } = await this.deps.db
      .selectFrom('notification_channels')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('home_id', '=', homeId)
      .executeTakeFirstOrThrow();
    if (Number(n) >= MAX_CHANNELS_PER_HOME)
      throw new HearthError('E_CONFLICT', `a home has at most ${MAX_CHANNELS_PER_HOME} notification channels; delete one first`);
    const row: ChannelRow = {
      id: newId('nc'),
      home_id: homeId,
      type: input.type,
      name: input.name,
      url: input.url,
      secret: input.secret ?? null,
      kinds: input.kinds ? toJson([...new Set(input.kinds)]) : null,
      min_severity: input.minSeverity ?? 'info',
      created_at: this.deps.clock.now(),
      created_by: p.keyId ? `key:${p.keyId}` : `user:${p.userId}`,
    };
    await this.deps.db.insertInto('notification_channels').values(row).execute();
    return channelView(row);
  }

  async listChannels(p: Principal, homeId: string): Promise<HomeChannelView[]> {
    await this.deps.access.requireHome(p, homeId, 'configure');
    const rows = await this.deps.db.selectFrom('notification_channels').selectAll().where('home_id', '=', homeId).orderBy('created_at').execute();
    return rows.map(channelView);
  }

  /** The home was deleted: its channels, people's preferences for it and their inbox items about it go. */
  async homeDeleted(homeId: string): Promise<void> {
    const { db } = this.deps;
    const channels = await db.selectFrom('notification_channels').select('id').where('home_id', '=', homeId).execute();
    await db.transaction().execute(async (trx) => {
      await trx.deleteFrom('notification_channels').where('home_id', '=', homeId).execute();
      await trx.deleteFrom('notification_preferences').where('home_id', '=', homeId).execute();
      await trx.deleteFrom('notification_inbox').where('home_id', '=', homeId).execute();
    });
    for (const c of channels) this.outbounds.delete(`channel:${c.id}`);
  }

  async deleteChannel(p: Principal, channelId: string): Promise<void> {
    const row = await this.deps.db.selectFrom('notification_channels').selectAll().where('id', '=', channelId).executeTakeFirst();
    const notFound = () => new HearthError('E_NOTIFICATION_CHANNEL_NOT_FOUND', `notification channel "${channelId}" does not exist`);
    if (!row) throw notFound();
    await this.deps.access.requireHomeOf(p, row.home_id, 'configure', notFound);
    await this.deps.db.deleteFrom('notification_channels').where('id', '=', channelId).execute();
    this.outbounds.delete(`channel:${channelId}`);
  }

  vapidPublicKey(): string {
    return this.webPush.publicKey;
  }

  /** Registers a browser's push subscription for the caller; the same endpoint again updates it. */
  async subscribe(p: Principal, sub: { endpoint: string; keys: { p256dh: string; auth: string } }): Promise<PushSubscriptionView> {
    checkUrl(sub.endpoint, this.urls, 'body.endpoint');
    const key = Buffer.from(sub.keys.p256dh, 'base64url');
    if (key.length !== 65 || key[0] !== 4)
      throw new HearthError('E_VALIDATION', 'keys.p256dh must be an uncompressed P-256 public key (65 bytes, base64url)', { field: 'body.keys.p256dh' });
    if (Buffer.from(sub.keys.auth, 'base64url').length !== 16)
      throw new HearthError('E_VALIDATION', 'keys.auth must be 16 bytes, base64url', { field: 'body.keys.auth' });
    const now = this.deps.clock.now();
    const row = await this.deps.db
      .insertInto('push_subscriptions')
      .values({ id: newId('ps'), user_id: p.userId, endpoint: sub.endpoint, p256dh: sub.keys.p256dh, auth: sub.keys.auth, created_at: now })
      .onConflict((oc) => oc.column('endpoint').doUpdateSet({ user_id: p.userId, p256dh: sub.keys.p256dh, auth: sub.keys.auth }))
      .returning(['id', 'endpoint', 'created_at'])
      .executeTakeFirstOrThrow();
    await this.keepNewest('push_subscriptions', p.userId);
    return { id: row.id, endpoint: row.endpoint, createdAt: iso(row.created_at) };
  }

  async listSubscriptions(p: Principal): Promise<PushSubscriptionView[]> {
    const rows = await this.deps.db.selectFrom('push_subscriptions').selectAll().where('user_id', '=', p.userId).orderBy('created_at').execute();
    return rows.map((r) => ({ id: r.id, endpoint: r.endpoint, createdAt: iso(r.created_at) }));
  }

  async unsubscribe(p: Principal, id: string): Promise<void> {
    const r = await this.deps.db.deleteFrom('push_subscriptions').where('id', '=', id).where('user_id', '=', p.userId).executeTakeFirst();
    if (!Number(r.numDeletedRows)) throw new HearthError('E_PUSH_SUBSCRIPTION_NOT_FOUND', `push subscription "${id}" does not exist`);
  }

  /** Registers a mobile device token for the caller; a token known for another user moves to the caller. */
  async registerToken(p: Principal, input: { platform: 'fcm' | 'apns'; token: string }): Promise<PushTokenView> {
    const now = this.deps.clock.now();
    const row = await this.deps.db
      .insertInto('push_tokens')
      .values({ id: newId('pt'), user_id: p.userId, platform: input.platform, token: input.token, created_at: now })
      .onConflict((oc) => oc.columns(['platform', 'token']).doUpdateSet({ user_id: p.userId }))
      .returning(['id', 'platform', 'created_at'])
      .executeTakeFirstOrThrow();
    await this.keepNewest('push_tokens', p.userId);
    return { id: row.id, platform: row.platform as 'fcm' | 'apns', createdAt: iso(row.created_at) };
  }

  /**
   * A user keeps their newest MAX_PUSH_TARGETS_PER_USER browsers (or phones): each notification goes to
   * every one, so their number bounds the fan-out; the oldest are usually stale anyway.
   */
  private async keepNewest(table: 'push_subscriptions' | 'push_tokens', userId: string): Promise<void> {
    const old = await this.deps.db
      .selectFrom(table)
      .select('id')
      .where('user_id', '=', userId)
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .limit(1000)
      .offset(MAX_PUSH_TARGETS_PER_USER)
      .execute();
    if (old.length)
      await this.deps.db
        .deleteFrom(table)
        .where(
          'id',
          'in',
          old.map((r) => r.id),
        )
        .execute();
  }

  async listTokens(p: Principal): Promise<PushTokenView[]> {
    const rows = await this.deps.db.selectFrom('push_tokens').selectAll().where('user_id', '=', p.userId).orderBy('created_at').execute();
    return rows.map((r) => ({ id: r.id, platform: r.platform as 'fcm' | 'apns', createdAt: iso(r.created_at) }));
  }

  async unregisterToken(p: Principal, id: string): Promise<void> {
    const r = await this.deps.db.deleteFrom('push_tokens').where('id', '=', id).where('user_id', '=', p.userId).executeTakeFirst();
    if (!Number(r.numDeletedRows)) throw new HearthError('E_PUSH_TOKEN_NOT_FOUND', `push token "${id}" does not exist`);
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function checkUrl(url: string, urls: UrlPolicy, field = 'body.url'): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new HearthError('E_VALIDATION', `"${field.replace(/^body\./, '')}" is not a URL`, { field });
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new HearthError('E_VALIDATION', 'only http and https URLs are allowed', { field });
  const problem = urls.problem(url);
  if (problem) throw new HearthError('E_VALIDATION', `"${field.replace(/^body\./, '')}" ${problem}`, { field });
}

/** The user's items; of an API key restricted to homes, theirs only. */
function ownedBy(p: Pick<Principal, 'userId' | 'homeIds'>) {
  return (eb: ExpressionBuilder<Database, 'notification_inbox'>) => {
    const user = eb('user_id', '=', p.userId);
    return p.homeIds ? eb.and([user, eb('home_id', 'in', p.homeIds.length ? [...p.homeIds] : [''])]) : user;
  };
}

function inboxItem(r: Database['notification_inbox']): InboxItem {
  return {
    id: r.id,
    notificationId: r.notification_id,
    homeId: r.home_id,
    kind: r.kind,
    severity: r.severity as Severity,
    title: r.title,
    body: r.body,
    data: fromJson<Record<string, unknown> | null>(r.data) ?? {},
    source: r.source,
    createdAt: iso(r.created_at),
    readAt: r.read_at == null ? null : iso(r.read_at),
  };
}

function channelView(r: ChannelRow): HomeChannelView {
  return {
    id: r.id,
    homeId: r.home_id,
    type: r.type as HomeChannelType,
    name: r.name,
    url: r.url,
    hasSecret: r.secret != null,
    kinds: fromJson<string[] | null>(r.kinds),
    minSeverity: r.min_severity as Severity,
    createdAt: iso(r.created_at),
    createdBy: r.created_by,
  };
}
