/**
 * Bus subjects and envelopes shared by the transports and the capabilities.
 * Device ids are single subject tokens (see core/ids.ts).
 */

/** Device → cloud message kinds, as they travel on `uplink.{shard}.{id}.{kind}`; `command` is a command sent through the API, routed like the rest. */
export type UplinkKind = 'properties' | 'events' | 'result' | 'join' | 'presence' | 'subscribed' | 'command';

/** Cloud → device message kinds; the MQTT topic is `devices/{id}/{kind}`. */
export type DownlinkKind = 'commands' | 'desired' | 'errors' | 'children/joined';

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
  /** Where it entered (the message gateway's envelope, src/gateway/envelope.ts); `mqtt` when absent. */
  source?: string;
  /** The sender's own message id (partners, device HTTP), for de-duplication. */
  sourceId?: string;
  /** Tags set where it entered (e.g. the API's `lane`). */
  tags?: Record<string, string>;
  /** The user whose API call produced it. */
  userId?: string;
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

export const subjects = {
  /** Device → cloud, durable, partitioned by the device's shard. */
  up: (shard: number, deviceId: string, kind: UplinkKind) => `uplink.${shard}.${deviceId}.${kind}`,
  allUp: 'uplink.>',
  shardUp: (shard: number) => `uplink.${shard}.>`,
  /** Requests to the worker that owns a shard's device state (shadows). */
  shadowRpc: (shard: number) => `shard.${shard}.shadow`,
  down: (deviceId: string) => `device.${deviceId}.down`,
  allDown: 'device.*.down',
  /** Presence changes (PresenceEvent). */
  presence: (deviceId: string) => `device.${deviceId}.presence`,
  /** Accepted property reports (shadow updated). */
  reported: (deviceId: string) => `device.${deviceId}.reported`,
  /** Accepted device events. */
  event: (deviceId: string) => `device.${deviceId}.event`,
  /** Command ledger changes. */
  command: (deviceId: string) => `device.${deviceId}.command`,
  commandResult: (commandId: string) => `command.${commandId}.result`,
  allCommandResults: 'command.*.result',
  /** Events of other features for the live stream of every node (StreamService.publish). */
  streamAnnounce: 'stream.announce',
  /** Scene activations of a home (SceneActivation, src/scenes/scene-service.ts). */
  sceneActivated: (homeId: string) => `home.${homeId}.scene`,
} as const;
