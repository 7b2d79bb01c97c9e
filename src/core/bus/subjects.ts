/**
 * Bus subjects and envelopes shared by the transports and the capabilities.
 * Device ids are single subject tokens (see core/ids.ts).
 */

/** Device → cloud message kinds, as they travel on `device.{id}.up.{kind}`. */
export type UplinkKind = 'properties' | 'events' | 'result' | 'join' | 'presence' | 'subscribed';

/** Cloud → device message kinds; the MQTT topic is `devices/{id}/{kind}`. */
export type DownlinkKind = 'commands' | 'desired' | 'errors' | 'children/joined';

export interface UplinkMessage {
  /** The device the message is about (a hub may publish for its sub-devices). */
  deviceId: string;
  /** The authenticated client that sent it. */
  via: string;
  kind: UplinkKind;
  topic: string;
  payload: unknown;
  receivedAt: number;
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

export const subjects = {
  up: (deviceId: string, kind: UplinkKind) => `device.${deviceId}.up.${kind}`,
  allUp: 'device.*.up.*',
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
} as const;
