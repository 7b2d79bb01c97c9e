import type { DownlinkKind, UplinkKind } from '../../core/bus/subjects.ts';

/** MQTT topic suffix (after `devices/{id}/`) → uplink kind, for what devices may publish. */
const UP: Record<string, UplinkKind> = {
  properties: 'properties',
  events: 'events',
  'commands/result': 'result',
  'children/join': 'join',
  presence: 'presence',
  reset: 'reset',
};

/** What devices may subscribe to (cloud → device). */
const DOWN = new Set<DownlinkKind>(['commands', 'desired', 'errors', 'children/joined']);

const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

export interface ParsedTopic {
  deviceId: string;
  suffix: string;
}

/** Splits `devices/{id}/{suffix}`; undefined for anything else. */
export function parseDeviceTopic(topic: string): ParsedTopic | undefined {
  if (!topic.startsWith('devices/')) return undefined;
  const slash = topic.indexOf('/', 8);
  if (slash < 0) return undefined;
  const deviceId = topic.slice(8, slash);
  if (!ID_RE.test(deviceId)) return undefined;
  return { deviceId, suffix: topic.slice(slash + 1) };
}

export function uplinkKind(suffix: string): UplinkKind | undefined {
  return UP[suffix];
}

export function downlinkTopic(deviceId: string, kind: DownlinkKind): string {
  return `devices/${deviceId}/${kind}`;
}

/**
 * Whether a subscription filter's part after `devices/{id}/` only reaches cloud → device
 * topics of that device: an exact downlink topic, `#`, `+`, or `commands/#`-style filters.
 */
export function isAllowedSubscriptionSuffix(suffix: string): boolean {
  if (DOWN.has(suffix as DownlinkKind)) return true;
  if (suffix === '#' || suffix === '+' || suffix === '+/+') return true;
  if (suffix === 'children/#' || suffix === 'children/+' || suffix === 'commands/#') return true;
  return false;
}

/** True when a granted filter (within one device's prefix) receives the device's desired topic. */
export function filterCoversDesired(suffix: string): boolean {
  return suffix === 'desired' || suffix === '#' || suffix === '+';
}
