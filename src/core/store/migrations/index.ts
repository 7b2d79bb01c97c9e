import type { Kysely, Migration } from 'kysely';
import { otaMigration } from './0012-ota.ts';
import { fleetMigration } from './0014-fleet.ts';
import { offline } from './0013-offline.ts';
import { identity0015 } from './0015-identity.ts';
import { telemetry } from './0016-telemetry.ts';
import { presenceLog } from './0017-presence-log.ts';
import { fleetSearch0018 } from './0018-fleet-search.ts';
import { exportJobs } from './0019-exports-fleet-rollups.ts';
import { historyPartitions } from './0020-history-partitions.ts';
import { commandsPartialIndexes } from './0021-commands-partial-indexes.ts';

/**
 * The one set of migrations, for SQLite and PostgreSQL alike: only portable column types
 * (text, integer, bigint, double precision) and no dialect-specific SQL.
 */
export const migrations: Record<string, Migration> = {
  '0001-foundation': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('settings')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('value', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('users')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('email', 'text', (c) => c.notNull().unique())
        .addColumn('password_hash', 'text', (c) => c.notNull())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('name', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('products')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('category', 'text', (c) => c.notNull())
        .addColumn('model', 'text', (c) => c.notNull())
        .addColumn('builtin', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('devices')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('product_key', 'text', (c) => c.notNull().references('products.key'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('parent_id', 'text', (c) => c.references('devices.id'))
        .addColumn('hwid', 'text')
        .addColumn('secret_hash', 'text')
        .addColumn('pairing_code', 'text', (c) => c.unique())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('devices_parent_hwid').on('devices').columns(['parent_id', 'hwid']).unique().execute();
      await db.schema
        .createTable('presence')
        .addColumn('device_id', 'text', (c) => c.primaryKey())
        .addColumn('online', 'integer', (c) => c.notNull())
        .addColumn('session', 'bigint', (c) => c.notNull())
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('changed_at', 'bigint', (c) => c.notNull())
        .addColumn('last_seen', 'bigint')
        .addColumn('node', 'text')
        .execute();
      await db.schema
        .createTable('shadows')
        .addColumn('device_id', 'text', (c) => c.primaryKey())
        .addColumn('reported', 'text', (c) => c.notNull())
        .addColumn('desired', 'text', (c) => c.notNull())
        .addColumn('metadata', 'text', (c) => c.notNull())
        .addColumn('version', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('history')
        .addColumn('device_id', 'text', (c) => c.notNull())
        .addColumn('property', 'text', (c) => c.notNull())
        .addColumn('ts', 'bigint', (c) => c.notNull())
        .addColumn('num', 'double precision')
        .addColumn('val', 'text')
        .execute();
      await db.schema.createIndex('history_device_property_ts').on('history').columns(['device_id', 'property', 'ts']).execute();
      await db.schema
        .createTable('device_events')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('device_id', 'text', (c) => c.notNull())
        .addColumn('event', 'text', (c) => c.notNull())
        .addColumn('params', 'text', (c) => c.notNull())
        .addColumn('ts', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('device_events_device_ts').on('device_events').columns(['device_id', 'ts']).execute();
      await db.schema
        .createTable('commands')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('device_id', 'text', (c) => c.notNull())
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('params', 'text', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('accepted_at', 'bigint', (c) => c.notNull())
        .addColumn('sent_at', 'bigint')
        .addColumn('answered_at', 'bigint')
        .addColumn('timed_out_at', 'bigint')
        .addColumn('ok', 'integer')
        .addColumn('result', 'text')
        .addColumn('error', 'text')
        .addColumn('latency_ms', 'double precision')
        .execute();
      await db.schema.createIndex('commands_device_accepted').on('commands').columns(['device_id', 'accepted_at']).execute();
    },
  },
  '0002-homes-and-people': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('refresh_tokens')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
        .addColumn('family_id', 'text', (c) => c.notNull())
        .addColumn('token_hash', 'text', (c) => c.notNull().unique())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('used_at', 'bigint')
        .addColumn('revoked_at', 'bigint')
        .execute();
      await db.schema.createIndex('refresh_tokens_family').on('refresh_tokens').column('family_id').execute();
      await db.schema.createIndex('refresh_tokens_user').on('refresh_tokens').column('user_id').execute();
      await db.schema
        .createTable('password_resets')
        .addColumn('token_hash', 'text', (c) => c.primaryKey())
        .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('used_at', 'bigint')
        .execute();
      await db.schema
        .createTable('api_keys')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('key_hash', 'text', (c) => c.notNull().unique())
        .addColumn('scopes', 'text', (c) => c.notNull())
        .addColumn('home_ids', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('last_used_at', 'bigint')
        .addColumn('revoked_at', 'bigint')
        .execute();
      await db.schema.createIndex('api_keys_user').on('api_keys').column('user_id').execute();
      await db.schema
        .createTable('homes')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('timezone', 'text', (c) => c.notNull())
        .addColumn('latitude', 'double precision')
        .addColumn('longitude', 'double precision')
        .addColumn('owner_id', 'text', (c) => c.notNull().references('users.id'))
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('rooms')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('home_id', 'text', (c) => c.notNull().references('homes.id'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('rooms_home').on('rooms').column('home_id').execute();
      await db.schema
        .createTable('home_members')
        .addColumn('home_id', 'text', (c) => c.notNull().references('homes.id'))
        .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('guest_devices', 'text')
        .addColumn('guest_until', 'bigint')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('home_members_pk', ['home_id', 'user_id'])
        .execute();
      await db.schema.createIndex('home_members_user').on('home_members').column('user_id').execute();
      await db.schema
        .createTable('invitations')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('home_id', 'text', (c) => c.notNull().references('homes.id'))
        .addColumn('email', 'text', (c) => c.notNull())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('token_hash', 'text', (c) => c.notNull().unique())
        .addColumn('guest_devices', 'text')
        .addColumn('guest_until', 'bigint')
        .addColumn('invited_by', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('accepted_at', 'bigint')
        .addColumn('revoked_at', 'bigint')
        .execute();
      await db.schema.createIndex('invitations_home').on('invitations').column('home_id').execute();
      await db.schema
        .createTable('device_bindings')
        .addColumn('device_id', 'text', (c) => c.primaryKey().references('devices.id'))
        .addColumn('home_id', 'text', (c) => c.notNull().references('homes.id'))
        .addColumn('room_id', 'text')
        .addColumn('name', 'text')
        .addColumn('bound_at', 'bigint', (c) => c.notNull())
        .addColumn('bound_by', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('device_bindings_home').on('device_bindings').column('home_id').execute();
      await db.schema
        .createTable('device_shares')
        .addColumn('device_id', 'text', (c) => c.notNull().references('devices.id'))
        .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
        .addColumn('permission', 'text', (c) => c.notNull())
        .addColumn('shared_by', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('device_shares_pk', ['device_id', 'user_id'])
        .execute();
      await db.schema.createIndex('device_shares_user').on('device_shares').column('user_id').execute();
      await db.schema
        .createTable('device_groups')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('home_id', 'text', (c) => c.notNull().references('homes.id'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('device_ids', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('device_groups_home').on('device_groups').column('home_id').execute();
      await db.schema
        .createTable('audit_log')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('actor', 'text', (c) => c.notNull())
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('home_id', 'text')
        .addColumn('target_type', 'text')
        .addColumn('target_id', 'text')
        .addColumn('details', 'text')
        .execute();
      await db.schema.createIndex('audit_log_home_at').on('audit_log').columns(['home_id', 'at']).execute();
      await db.schema.createIndex('audit_log_at').on('audit_log').column('at').execute();
    },
  },
  '0003-cluster': {
    async up(db: Kysely<any>) {
      // Nodes of a cluster announce themselves here; a node whose heartbeat stops is declared lost.
      await db.schema
        .createTable('cluster_nodes')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('roles', 'text', (c) => c.notNull())
        .addColumn('started_at', 'bigint', (c) => c.notNull())
        .addColumn('heartbeat_at', 'bigint', (c) => c.notNull())
        .execute();
      // One row per device shard: the worker that owns it until `expires_at`.
      await db.schema
        .createTable('shard_leases')
        .addColumn('shard', 'integer', (c) => c.primaryKey())
        .addColumn('owner', 'text')
        .addColumn('expires_at', 'bigint', (c) => c.notNull().defaultTo(0))
        .execute();
      // Whether the device (or its hub) subscribed to its desired topic in the current connection.
      await db.schema
        .alterTable('presence')
        .addColumn('listening', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      // History points become idempotent: a redelivered report carries the same message id, so it
      // cannot add a second point (rows written before have none, and NULLs never collide).
      await db.schema.alterTable('history').addColumn('msg_id', 'text').execute();
      await db.schema.dropIndex('history_device_property_ts').execute();
      await db.schema.createIndex('history_point').on('history').columns(['device_id', 'property', 'ts', 'msg_id']).unique().execute();
      await db.schema.createIndex('presence_node_online').on('presence').columns(['node', 'online']).execute();
    },
  },
  '0004-message-gateway': {
    async up(db: Kysely<any>) {
      // Routes, filters and lanes as one versioned document; the highest version is live.
      await db.schema
        .createTable('gateway_config')
        .addColumn('version', 'integer', (c) => c.primaryKey())
        .addColumn('doc', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .execute();
      // Partner clouds that push device messages (HTTP with an HMAC signature, or AMQP queues).
      await db.schema
        .createTable('partners')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('secret', 'text', (c) => c.notNull())
        .addColumn('products', 'text', (c) => c.notNull())
        .addColumn('amqp', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      // Messages whose delivery to a route's target finally failed.
      await db.schema
        .createTable('dead_letters')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('route_id', 'text', (c) => c.notNull())
        .addColumn('route_name', 'text', (c) => c.notNull())
        .addColumn('target_index', 'integer', (c) => c.notNull())
        .addColumn('target', 'text', (c) => c.notNull())
        .addColumn('envelope', 'text', (c) => c.notNull())
        .addColumn('body', 'text', (c) => c.notNull())
        .addColumn('lane', 'text')
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('dead_letters_status_created').on('dead_letters').columns(['status', 'created_at']).execute();
    },
  },
  '0005-timers': {
    async up(db: Kysely<any>) {
      // Persistent timers (schedules, sun times): `next_at` is the next due time, NULL once a timer has
      // no more; a firing is claimed by moving it on (compare-and-set), so it fires once across nodes.
      await db.schema
        .createTable('timers')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('owner', 'text', (c) => c.notNull())
        .addColumn('shard', 'integer', (c) => c.notNull())
        .addColumn('spec', 'text', (c) => c.notNull())
        .addColumn('payload', 'text', (c) => c.notNull())
        .addColumn('grace_ms', 'bigint', (c) => c.notNull())
        .addColumn('next_at', 'bigint')
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addColumn('last_fired_at', 'bigint')
        .execute();
      await db.schema.createIndex('timers_shard_next').on('timers').columns(['shard', 'next_at']).execute();
    },
  },
  '0006-scenes': {
    async up(db: Kysely<any>) {
      // A scene: device states (JSON list of {device, properties}) and actions (JSON list of {device, action, params}).
      await db.schema
        .createTable('scenes')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('home_id', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('states', 'text', (c) => c.notNull())
        .addColumn('actions', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('scenes_home').on('scenes').columns(['home_id', 'created_at']).execute();
      // The recent activations of each scene (the newest 50 are kept), with per-device results;
      // seq orders them (activations within one millisecond, or on a manual clock, share `at`).
      await db.schema
        .createTable('scene_activations')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('scene_id', 'text', (c) => c.notNull())
        .addColumn('seq', 'integer', (c) => c.notNull())
        .addColumn('home_id', 'text', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('ok', 'integer', (c) => c.notNull())
        .addColumn('results', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('scene_activations_scene_seq').on('scene_activations').columns(['scene_id', 'seq']).execute();
    },
  },
  '0007-notifications': {
    async up(db: Kysely<any>) {
      // The in-app inbox: one item per recipient of a notification; read_at null while unread.
      await db.schema
        .createTable('notification_inbox')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('notification_id', 'text', (c) => c.notNull())
        .addColumn('user_id', 'text', (c) => c.notNull())
        .addColumn('home_id', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('severity', 'text', (c) => c.notNull())
        .addColumn('title', 'text', (c) => c.notNull())
        .addColumn('body', 'text', (c) => c.notNull())
        .addColumn('data', 'text')
        .addColumn('source', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('read_at', 'bigint')
        .execute();
      await db.schema.createIndex('notification_inbox_user_created').on('notification_inbox').columns(['user_id', 'created_at']).execute();
      // A user's preferences per home (JSON document); no row: the defaults.
      await db.schema
        .createTable('notification_preferences')
        .addColumn('user_id', 'text', (c) => c.notNull())
        .addColumn('home_id', 'text', (c) => c.notNull())
        .addColumn('prefs', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('notification_preferences_pk', ['user_id', 'home_id'])
        .execute();
      // When a recipient (user id, or '' for the home's channels) last got a notification with this key.
      await db.schema
        .createTable('notification_dedupe')
        .addColumn('recipient', 'text', (c) => c.notNull())
        .addColumn('key', 'text', (c) => c.notNull())
        .addColumn('sent_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('notification_dedupe_pk', ['recipient', 'key'])
        .execute();
      // Per-home integrations: generic webhook and chat bots; secret signs (kept as is: an HMAC needs it).
      await db.schema
        .createTable('notification_channels')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('home_id', 'text', (c) => c.notNull())
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('url', 'text', (c) => c.notNull())
        .addColumn('secret', 'text')
        .addColumn('kinds', 'text')
        .addColumn('min_severity', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('notification_channels_home').on('notification_channels').column('home_id').execute();
      // Web Push subscriptions of browsers; an endpoint belongs to one user.
      await db.schema
        .createTable('push_subscriptions')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('user_id', 'text', (c) => c.notNull())
        .addColumn('endpoint', 'text', (c) => c.notNull().unique())
        .addColumn('p256dh', 'text', (c) => c.notNull())
        .addColumn('auth', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('push_subscriptions_user').on('push_subscriptions').column('user_id').execute();
      // Mobile device tokens (FCM registration tokens, APNs device tokens).
      await db.schema
        .createTable('push_tokens')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('user_id', 'text', (c) => c.notNull())
        .addColumn('platform', 'text', (c) => c.notNull())
        .addColumn('token', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addUniqueConstraint('push_tokens_platform_token', ['platform', 'token'])
        .execute();
      await db.schema.createIndex('push_tokens_user').on('push_tokens').column('user_id').execute();
    },
  },
  '0008-automations': {
    async up(db: Kysely<any>) {
      // Automations of a home: triggers, conditions and actions as JSON; `shard` is shardOf(home_id)
      // (recomputed at start when the shard count changes) so a worker loads only its homes'.
      await db.schema
        .createTable('automations')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('home_id', 'text', (c) => c.notNull())
        .addColumn('shard', 'integer', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('description', 'text')
        .addColumn('enabled', 'integer', (c) => c.notNull())
        .addColumn('mode', 'text', (c) => c.notNull())
        .addColumn('max_runs', 'integer', (c) => c.notNull())
        .addColumn('cooldown_ms', 'bigint', (c) => c.notNull())
        .addColumn('triggers', 'text', (c) => c.notNull())
        .addColumn('conditions', 'text', (c) => c.notNull())
        .addColumn('actions', 'text', (c) => c.notNull())
        .addColumn('webhook_id', 'text')
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('status_reason', 'text')
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('automations_home').on('automations').column('home_id').execute();
      await db.schema.createIndex('automations_shard').on('automations').column('shard').execute();
      await db.schema.createIndex('automations_webhook').on('automations').column('webhook_id').unique().execute();
      // Runs with their traces, newest kept (a bounded number per automation).
      await db.schema
        .createTable('automation_runs')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('automation_id', 'text', (c) => c.notNull())
        .addColumn('home_id', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('reason', 'text')
        .addColumn('trigger_type', 'text', (c) => c.notNull())
        .addColumn('started_at', 'bigint', (c) => c.notNull())
        .addColumn('finished_at', 'bigint')
        .addColumn('trace', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('automation_runs_automation_started').on('automation_runs').columns(['automation_id', 'started_at']).execute();
    },
  },
  '0009-accounts-email-verification': {
    async up(db: Kysely<any>) {
      // When the account proved it holds its address (null: not yet). Accounts made before this
      // migration never did; operators are trusted (their account comes from the configuration).
      await db.schema.alterTable('users').addColumn('email_verified_at', 'bigint').execute();
      await db.updateTable('users').set({ email_verified_at: Date.now() }).where('role', '=', 'operator').execute();
      await db.schema
        .createTable('email_verifications')
        .addColumn('token_hash', 'text', (c) => c.primaryKey())
        .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
        .addColumn('email', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('used_at', 'bigint')
        .execute();
      await db.schema.createIndex('email_verifications_user').on('email_verifications').column('user_id').execute();
    },
  },
  '0010-command-warnings': {
    async up(db: Kysely<any>) {
      // How a device's answer did not fit the model without failing the command (undeclared result fields).
      await db.schema.alterTable('commands').addColumn('warnings', 'text').execute();
    },
  },
  '0011-member-rights-since': {
    async up(db: Kysely<any>) {
      // Since when a member's rights in a home are what they are now: a guest given more devices, a
      // member promoted, an owner by transfer do not replay the home's events from before that.
      await db.schema.alterTable('home_members').addColumn('rights_since', 'bigint').execute();
      await db
        .updateTable('home_members')
        .set((eb: any) => ({ rights_since: eb.ref('created_at') }))
        .execute();
    },
  },
  '0012-ota': otaMigration,
  '0013-offline': offline,
  '0014-fleet': fleetMigration,
  '0015-identity': identity0015,
  '0016-telemetry': telemetry,
  '0017-presence-log': presenceLog,
  '0018-fleet-search': fleetSearch0018,
  '0019-exports-fleet-rollups': exportJobs,
  '0020-history-partitions': historyPartitions,
  '0021-commands-partial-indexes': commandsPartialIndexes,
};
