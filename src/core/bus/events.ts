/**
 * The bus catalogue: every subject Hearth publishes, subscribes or requests on, with the payload
 * it carries (as zigbee2mqtt's EventBusMap). `Bus` (bus.ts) checks publish, subscribe, request,
 * publishDurable and consume against it, so a publisher and a subscriber that disagree on a
 * payload, or a subject missing here, is a compile error. Types, but for `foreignSubject` and the
 * list of the live stream's event kinds.
 *
 * Keys are subject patterns in NATS syntax: `*` stands for one token (a device id, a shard).
 * Parameterised subjects are built with the functions in subjects.ts, whose return types
 * (`device.${string}.reported`) find their key here; a subscription pattern with wildcards
 * (`device.*.reported`, `uplink.>`) gets the payloads of every key it can match.
 *
 * A payload may name a capability's domain types (type-only imports: no runtime edge).
 */
import type { Delivery } from '../../routing/envelope.ts';
import type { ShadowView } from '../../shadow/shadow-state.ts';
import type { Run, TriggerType } from '../../automation/automation-types.ts';
import type { DownlinkMessage, UplinkBatch, UplinkMessage } from './subjects.ts';

/** Every subject that carries events (core publish/subscribe, or durable streams). */
export interface BusEvents {
  /** Device → cloud, durable (stream UPLINK), `uplink.{shard}.{deviceId}.{kind}`. */
  'uplink.*.*.*': UplinkMessage;
  /** Device → cloud, durable: uplinks of one shard received together, `uplink.{shard}.batch`. */
  'uplink.*.batch': UplinkBatch;
  /** Cloud → device, to the node holding its connection. */
  'device.*.down': DownlinkMessage;
  'device.*.presence': PresenceEvent;
  /** Accepted property reports (the shadow is updated). */
  'device.*.reported': ReportedEvent;
  /** Accepted device events. */
  'device.*.event': DeviceEvent;
  /** Command ledger changes. */
  'device.*.command': CommandChange;
  /** A device's answer to a command, for the node awaiting it. */
  'command.*.result': CommandResult;
  /** Events of other features for the live stream of every node. */
  'stream.announce': StreamAnnouncement;
  /** Scene activations of a home. */
  'home.*.scene': SceneActivation;
  /** Delivery jobs, durable (stream DELIVERY), `delivery.{routeId}.{targetIndex}`. */
  'delivery.*.*': Delivery;

  // Cluster broadcasts (core/cluster/broadcast.ts): changes to state every node caches.
  /** A device's placement changed (one device, or all when `deviceId` is absent). */
  'cluster.placement': PlacementChange;
  /** Someone's rights in a home or to a shared device changed: their cached decisions go. */
  'cluster.access': AccessChange;
  /** A session was revoked until `until`. */
  'cluster.auth.revoked': SessionRevoked;
  /** An API key was revoked. */
  'cluster.auth.key-revoked': KeyRevoked;
  /** A checked password's outcome, for every node's login throttle. */
  'cluster.auth.login': LoginOutcome;
  /** The partner registry changed: every node reloads it. */
  'cluster.partners': PartnersChanged;
  /** An automation changed in the store: every node's engine reloads it. */
  'cluster.automations': AutomationChanged;
  /** Timer changes, so every node's schedule follows without reading the store. */
  'cluster.timers': TimerChange;
  /** A new message gateway config version is live. */
  'cluster.gateway.config': GatewayConfigChanged;
  /** A device's command queue may have something to send: the node that owns its shard pumps it. */
  'cluster.commands.queue': CommandQueueKick;
  /** A device resumed its clean=false MQTT session on some node: the others forget their copy. */
  'cluster.mqtt.session': { clientId: string };
  /** A device's secrets changed (rotation): every node forgets them and checks its sessions. */
  'cluster.identity.secret': SecretRotated;
  /** A product CA or a certificate changed (registered, revoked): every node reloads and checks its sessions. */
  'cluster.identity.certificates': CertificatesChanged;
  /** A device was disabled, enabled, deleted or changed by the operator: caches drop it, the node holding its connection closes it. */
  'cluster.devices': DeviceLifecycleChange;
  /** A bulk job was made: the node owning its shard runs it. */
  'cluster.fleet.jobs': FleetJobAnnounced;
  /** A product's name, category or thing model changed: every node drops its cached model. */
  'cluster.products': { key: string };
}

/** Every request/reply subject: what a requester sends and what the responder answers. */
export interface BusRequests {
  /** Shadow operations, answered by the worker that owns the shard. */
  'shard.*.shadow': { request: ShadowRequest; reply: ShadowReply };
  /** Automation runs and firings, answered by the engine that owns the shard. */
  'automation.rpc.*': { request: AutomationRpc; reply: AutomationRpcReply };
}

/** Bus event on `device.{id}.reported`. */
export interface ReportedEvent {
  deviceId: string;
  values: Record<string, unknown>;
  changed: string[];
  version: number;
  at: number;
  /** When the platform received the message (epoch ms): whose event it is is decided as of then. */
  receivedAt?: number;
}

/** Bus event on `device.{id}.event`. */
export interface DeviceEvent {
  id: string;
  deviceId: string;
  event: string;
  params: Record<string, unknown>;
  at: number;
  /** When the platform received the message (epoch ms). */
  receivedAt?: number;
}

/** Why a device's presence changed. */
export type PresenceReason =
  | 'connect'
  | 'disconnect'
  | 'keepalive-timeout'
  | 'connection-lost'
  | 'client-error'
  | 'server-shutdown'
  | 'server-restart'
  | 'hub-reported'
  | 'hub-offline'
  | 'never-connected'
  | 'node-lost'
  /** The credential the session opened with was revoked or rotated out (docs/tls.md). */
  | 'credentials-revoked'
  /** The operator disabled or deleted the device (docs/fleet.md). */
  | 'disabled'
  | 'deleted';

/** Bus event on `device.{id}.presence`. */
export interface PresenceEvent {
  deviceId: string;
  online: boolean;
  reason: PresenceReason;
  session: number;
  at: number;
}

/** A command's status change, on `device.{id}.command` (the live stream's `command` events). */
export interface CommandChange {
  id: string;
  deviceId: string;
  action: string;
  /** `queued`, `failed`, `expired` and `cancelled` only for queued commands (docs/api.md). */
  status: 'sent' | 'timeout' | 'answered' | 'queued' | 'failed' | 'expired' | 'cancelled';
  source?: string;
  /** Queued commands: when an unanswered one expires (epoch ms). */
  expiresAt?: number;
  ok?: boolean;
  result?: Record<string, unknown>;
  error?: string;
  warnings?: string[];
}

/** On `cluster.commands.queue`: a command was queued for this device. */
export interface CommandQueueKick {
  deviceId: string;
}

/** The device's answer as it travels on the bus (`command.{id}.result`). */
export interface CommandResult {
  id: string;
  deviceId: string;
  ok: boolean;
  result?: Record<string, unknown>;
  error?: string;
  warnings?: string[];
  answeredAt: number;
}

/** The kinds of event the live stream carries (and clients may filter on with `types=`). */
export const STREAM_EVENT_TYPES = ['property', 'event', 'presence', 'command', 'automation', 'notification', 'scene', 'ota', 'lifecycle', 'job'] as const;
export type StreamEventType = (typeof STREAM_EVENT_TYPES)[number];

/** What StreamService.publish sends on `stream.announce`, so that every node's clients receive it. */
export interface StreamAnnouncement {
  type: StreamEventType;
  deviceId: string | null;
  homeId: string | null;
  userId?: string;
  at: number;
  data: Record<string, unknown>;
}

/**
 * The outcome of one entry of a scene (a device's state or one action) in an activation:
 * `applied` the device reported the values / answered ok; `offline` the device is not
 * connected (desired state stays set and applies when it returns; an action is not sent);
 * `timeout` no report / answer in time; `failed` refused (not allowed, answered not ok, invalid).
 */
export interface DeviceResult {
  device: string;
  ok: boolean;
  status: 'applied' | 'offline' | 'failed' | 'timeout';
  error?: string;
  ms: number;
  /** Which entry: the device's state or an action. */
  kind: 'state' | 'action';
  /** The action, for `kind: 'action'`. */
  action?: string;
  /** For `offline` states: the desired state is kept and applies when the device is back. */
  note?: string;
}

/** One activation of a scene (`home.{id}.scene`): who or what activated it and every entry's result. */
export interface SceneActivation {
  id: string;
  sceneId: string;
  homeId: string;
  /** `user:u_…`, `key:k_…` or the automation engine's source (e.g. `automation:a_…`). */
  source: string;
  /** When it started (epoch ms, on the service's clock). */
  at: number;
  /** Every entry applied. */
  ok: boolean;
  results: DeviceResult[];
}

export interface PlacementChange {
  deviceId?: string;
}

export interface AccessChange {
  userId: string;
}

export interface SessionRevoked {
  sid: string;
  until: number;
}

export interface KeyRevoked {
  keyId: string;
}

/** The outcome of a checked password, as shared between nodes (and applied with `learn`). */
export interface LoginOutcome {
  /** The normalised e-mail address tried (known or not). */
  account: string;
  /** The client's source, as made by `sourceOf`. */
  source: string;
  ok: boolean;
  /** Epoch ms. */
  at: number;
}

export type PartnersChanged = Record<string, never>;

export interface AutomationChanged {
  id: string;
}

/**
 * A timer set, removed, or every timer under a key prefix removed (`nextAt` null: nothing due;
 * `version`: older notices are ignored).
 */
export type TimerChange = { set: { key: string; shard: number; nextAt: number | null; version: number } } | { removed: string } | { prefix: string };

/**
 * A lifecycle change of devices (`cluster.devices`): every node forgets its cached records of
 * them; `disconnect` asks the node holding a connection of one of them to close it, with that
 * presence reason.
 */
export interface DeviceLifecycleChange {
  deviceIds: string[];
  disconnect?: 'disabled' | 'deleted';
}

export interface FleetJobAnnounced {
  id: string;
  shard: number;
}

/**
 * `data` of the live stream's `job` events (docs/fleet.md): a bulk job was made, started, finished
 * a round (`progress`), finished or was cancelled; with its counts then. Operator only.
 */
export interface FleetJobStreamData {
  job: string;
  change: 'created' | 'started' | 'progress' | 'done' | 'cancelled';
  kind: string;
  status: 'queued' | 'running' | 'done' | 'cancelled';
  total: number;
  progress: Record<'pending' | 'running' | 'ok' | 'failed' | 'cancelled', number>;
  createdBy: string;
}

export interface GatewayConfigChanged {
  version: number;
}

/** A shadow operation sent to the worker that owns the device's shard. */
export type ShadowRequest =
  | { op: 'view'; deviceId: string }
  | { op: 'setDesired'; deviceId: string; values: Record<string, unknown> }
  | { op: 'clearDesired'; deviceId: string }
  /** The device was deleted: its shadow goes from memory and the store. */
  | { op: 'forget'; deviceId: string };

export type ShadowReply = { ok: true; view?: ShadowView } | { ok: false; code: string; message: string; extras?: Record<string, unknown> };

/** A manual run or a firing, sent to the engine that owns the automation's shard. */
export type AutomationRpc =
  | { op: 'run'; id: string; data?: Record<string, unknown>; skipConditions?: boolean; source: string }
  | { op: 'fire'; id: string; type: TriggerType; data: Record<string, unknown> };

export type AutomationRpcReply = { ok: true; run: Run } | { ok: false; code: string; message: string };

// ---- Lookup: from a subject (or pattern) type to its payload. ----

declare const foreign: unique symbol;

/**
 * A subject outside the catalogue, chosen at run time (an operator's NATS delivery target) or by a
 * test: its payload is `unknown`. Make one with `foreignSubject`; nothing else escapes the check.
 */
export type ForeignSubject = string & { readonly [foreign]: true };

/** Marks `subject` as outside the catalogue (see ForeignSubject). */
export function foreignSubject(subject: string): ForeignSubject {
  return subject as ForeignSubject;
}

/**
 * A pattern as a template literal type: each `*` or `>` token stands for any text, and so does a
 * numeric token (shards: `uplink.${number}.>` must still find `uplink.*.*.*`).
 */
type Template<P extends string> = P extends `${infer Head}.${infer Rest}` ? `${Token<Head>}.${Template<Rest>}` : Token<P>;
type Token<T extends string> = T extends '*' | '>' | `${number}` ? string : T;

/** True when some subject can match both `S` and the catalogue key `K`. */
type Overlaps<S extends string, K extends string> = [Template<S>] extends [Template<K>] ? true : [Template<K>] extends [Template<S>] ? true : false;

type Lookup<S extends string, Map> = string extends S ? never : { [K in keyof Map & string]: Overlaps<S, K> extends true ? Map[K] : never }[keyof Map & string];

/** The payload of events on `S` (a subject, or a pattern: the union over the keys it matches). */
export type EventOf<S extends string> = S extends ForeignSubject ? unknown : Lookup<S, BusEvents>;

/** What is sent on the request subject `S`. */
export type RequestOf<S extends string> = S extends ForeignSubject ? unknown : Part<Lookup<S, BusRequests>, 'request'>;

/** What the responder on `S` answers. */
export type ReplyOf<S extends string> = S extends ForeignSubject ? unknown : Part<Lookup<S, BusRequests>, 'reply'>;

/** `E[K]` of each request entry; never for none (an unknown subject). */
type Part<E, K extends 'request' | 'reply'> = [E] extends [never] ? never : E extends { request: unknown; reply: unknown } ? E[K] : never;

/** A subscriber on `P` receives events and requests alike. */
export type MessageOf<P extends string> = EventOf<P> | RequestOf<P>;

/**
 * `S` itself when the catalogue knows it; otherwise a type no string has, so the call does not
 * compile (the message names the fix).
 */
export type Known<S extends string, Payload> = [Payload] extends [never] ? { 'subject not in the bus catalogue (src/core/bus/events.ts)': S } : unknown;

/** The subjects that `broadcast()` carries. */
export type BroadcastSubject = keyof BusEvents & `cluster.${string}`;

/** A device's secret was rotated; the previous one is accepted until `previousValidUntil` (epoch ms; null: not at all). */
export interface SecretRotated {
  deviceId: string;
  previousValidUntil: number | null;
}

/** Product CAs or revoked certificates changed. */
export type CertificatesChanged = Record<string, never>;
