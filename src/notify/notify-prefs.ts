/**
 * A user's notification preferences in one home, and the pure rules that turn them into the
 * channels a notification goes out on. Stored as one JSON document per user and home.
 */

import { zonedFields } from '../core/zoned-time.ts';

export type Severity = 'info' | 'warning' | 'alarm';
export const SEVERITIES: readonly Severity[] = ['info', 'warning', 'alarm'];

/** The personal channels (the home's webhook and chat-bot channels are configured per home). */
export type UserChannel = 'inbox' | 'push' | 'email' | 'mobile';
export const USER_CHANNELS: readonly UserChannel[] = ['inbox', 'push', 'email', 'mobile'];

export type ChannelSwitches = Partial<Record<UserChannel, boolean>>;

export interface NotificationPreferences {
  /** The channels for every kind, unless a kind or a severity says otherwise. */
  channels: Record<UserChannel, boolean>;
  /** Per kind of message: off altogether, or other channels. Wins over `severities`. */
  kinds: Record<string, { enabled?: boolean; channels?: ChannelSwitches }>;
  /** Per severity: other channels (the default sends alarms by e-mail too). */
  severities: Partial<Record<Severity, { channels?: ChannelSwitches }>>;
  /** Local time in the home's zone; push, e-mail and mobile stay silent in between except for alarms. */
  quietHours: { start: string; end: string } | null;
}

export const DEFAULT_PREFERENCES: NotificationPreferences = Object.freeze({
  channels: { inbox: true, push: true, email: false, mobile: true },
  kinds: {},
  severities: { alarm: { channels: { email: true } } },
  quietHours: null,
}) as NotificationPreferences;

/** Preferences as a client sends them: anything left out takes its default. */
export type PreferencesInput = Partial<Omit<NotificationPreferences, 'channels'>> & { channels?: ChannelSwitches };

/** Fills what a stored (or PUT) document leaves out from the defaults. */
export function withDefaults(p: PreferencesInput | null | undefined): NotificationPreferences {
  return {
    channels: { ...DEFAULT_PREFERENCES.channels, ...(p?.channels ?? {}) },
    kinds: p?.kinds ?? {},
    severities: p?.severities ?? structuredClone(DEFAULT_PREFERENCES.severities),
    quietHours: p?.quietHours ?? null,
  };
}

/** Whether the user wants this kind at all. */
export function kindEnabled(p: NotificationPreferences, kind: string): boolean {
  return p.kinds[kind]?.enabled !== false;
}

/** Whether a channel is on for this kind and severity: kind, then severity, then the general switch. */
export function channelEnabled(p: NotificationPreferences, kind: string, severity: Severity, channel: UserChannel): boolean {
  return p.kinds[kind]?.channels?.[channel] ?? p.severities[severity]?.channels?.[channel] ?? p.channels[channel];
}

const HHMM = /^([01]\d|2[0-3]):([0-5]\d)$/;

/** Minutes after local midnight of `at` in `timeZone`. */
export function localMinutes(at: number, timeZone: string): number {
  const { h, mi } = zonedFields(at, timeZone);
  return h * 60 + mi;
}

/**
 * Whether `at` falls in the quiet hours, read in the home's zone. The span may cross midnight
 * (22:00–07:00); the start is inside, the end is not; equal start and end mean no quiet hours.
 */
export function inQuietHours(q: { start: string; end: string } | null, at: number, timeZone: string): boolean {
  if (!q) return false;
  const s = HHMM.exec(q.start);
  const e = HHMM.exec(q.end);
  if (!s || !e) return false;
  const start = Number(s[1]) * 60 + Number(s[2]);
  const end = Number(e[1]) * 60 + Number(e[2]);
  if (start === end) return false;
  const now = localMinutes(at, timeZone);
  return start < end ? now >= start && now < end : now >= start || now < end;
}

/** The order of severities, for a channel's `minSeverity`. */
export function severityAtLeast(s: Severity, min: Severity): boolean {
  return SEVERITIES.indexOf(s) >= SEVERITIES.indexOf(min);
}
