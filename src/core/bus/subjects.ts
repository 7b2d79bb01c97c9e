/**
 * Bus subjects and envelopes shared by the transports and the capabilities.
 * Device ids are single subject tokens (see core/ids.ts).
 */

/** Device → cloud message kinds, as they travel on `uplink.{shard}.{id}.{kind}`; `command` is a command sent through the API, routed like the rest. */
export type UplinkKind = 'properties' | 'events' | 'result' | 'join' | 'presence' | 'subscribed' | 'command' | 'ota' | 'reset';

/**
 * The one kind → MQTT topic map for device → cloud messages: the topic after `devices/{id}/` that
 * carries each kind a device may publish. The MQTT edge reads it backwards; messages that come by
 * HTTP or from partners get the topic they would have had.
 */
export const UPLINK_TOPIC_SUFFIX = {
  properties: 'properties',
  events: 'events',
  result: 'commands/result',
  join: 'children/join',
  presence: 'presence',
  ota: 'ota/progress',
  reset: 'reset',
} as const satisfies Partial<Record<UplinkKind, string>>;

/** The MQTT topic a device message of `kind` has (or would have had); `subscribed` and `command` have none of their own, so they keep the kind. */
export function uplinkTopic(deviceId: string, kind: UplinkKind): string {
  return `devices/${deviceId}/${(UPLINK_TOPIC_SUFFIX as Partial<Record<UplinkKind, string>>)[kind] ?? kind}`;
}

/** Cloud → device message kinds; the MQTT topic is `devices/{id}/{kind}`. */
export type DownlinkKind = 'commands' | 'desired' | 'errors' | 'children/joined' | 'ota';

export interface UplinkMessage {
  /** Unique per message (the gateway node's prefix and a counter); redeliveries keep it, so handling can be idempotent. */
  id: string;
  /** The device the message is about (a hub may publish for its sub-devices). */
  deviceId: string;
  /** The authenticated client that sent it. */
  via: string;
  kind: UplinkKind;
  topic: string;
  payload: unknown;
  receivedAt: number;
  /** W3C trace context (`traceparent`, `tracestate`) of the span that received the message. */
  trace?: Record<string, string>;
  /** Where it entered (the message gateway's envelope, src/routing/envelope.ts); `mqtt` when absent. */
  source?: string;
  /** The sender's own message id (partners, device HTTP), for de-duplication. */
  sourceId?: string;
  /** Tags set where it entered (e.g. the API's `lane`). */
  tags?: Record<string, string>;
  /** The user whose API call produced it. */
  userId?: string;
  /**
   * Deliveries it had inside a batch before it was published again alone (a batch is
   * acknowledged whole, so a message of it that must go again goes as a message of its own).
   */
  attempt?: number;
}

/**
 * Uplink messages of one shard that a gateway received together, stored as one durable message
 * (`uplink.{shard}.batch`): one write to the stream and one acknowledgement for all of them.
 */
export interface UplinkBatch {
  batch: UplinkMessage[];
}

export interface DownlinkMessage {
  deviceId: string;
  kind: DownlinkKind;
  payload: unknown;
}

/** The error a device receives on `devices/{id}/errors`. */
export interface DeviceErrorPayload {
  code: string;
  message: string;
  topic?: string;
  ref?: string;
}

/** The durable stream of device uplinks; one consumer per device shard. */
export const UPLINK_STREAM = 'UPLINK';

/**
 * Builders of parameterised subjects. Their return types are template literals
 * (`device.${string}.reported`) that the catalogue in events.ts maps to a payload; pass `'*'` for
 * a wildcard pattern.
 */
export const subjects = {
  /** Device → cloud, durable, partitioned by the device's shard. */
  up: (shard: number, deviceId: string, kind: UplinkKind) => `uplink.${shard}.${deviceId}.${kind}` as const,
  allUp: 'uplink.>',
  shardUp: (shard: number) => `uplink.${shard}.>` as const,
  /** Several uplinks of a shard in one durable message (UplinkBatch). */
  upBatch: (shard: number) => `uplink.${shard}.batch` as const,
  /** Requests to the worker that owns a shard's device state (shadows). */
  shadowRpc: (shard: number) => `shard.${shard}.shadow` as const,
  /** Requests to the automation engine that owns a shard (manual runs, webhook firings). */
  automationRpc: (shard: number) => `automation.rpc.${shard}` as const,
  down: (deviceId: string) => `device.${deviceId}.down` as const,
  allDown: 'device.*.down',
  /** Presence changes (PresenceEvent). */
  presence: (deviceId: string) => `device.${deviceId}.presence` as const,
  /** Accepted property reports (shadow updated). */
  reported: (deviceId: string) => `device.${deviceId}.reported` as const,
  /** Accepted device events. */
  event: (deviceId: string) => `device.${deviceId}.event` as const,
  /** Command ledger changes. */
  command: (deviceId: string) => `device.${deviceId}.command` as const,
  commandResult: (commandId: string) => `command.${commandId}.result` as const,
  allCommandResults: 'command.*.result',
  /** Events of other features for the live stream of every node (StreamService.publish). */
  streamAnnounce: 'stream.announce',
  /** Scene activations of a home (SceneActivation). */
  sceneActivated: (homeId: string) => `home.${homeId}.scene` as const,
  /** Jobs for one external target of one route (the message gateway's delivery stream). */
  delivery: (routeId: string, targetIndex: number | string) => `delivery.${routeId}.${targetIndex}` as const,
  allDelivery: 'delivery.>',
} as const;
