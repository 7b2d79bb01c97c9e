import { sameValue } from '../core/values.ts';
/**
 * Device shadow semantics (like AWS IoT Device Shadow), as pure functions over one state.
 *   reported: last value of every property the device reported
 *   desired:  values someone asked for and the device has not reached yet
 *   delta:    desired entries that differ from reported
 * A desired entry ends when the device reports the same value (fulfilled) or, once it was
 * delivered, a different one (stale: overridden at the device, e.g. a lock turned by hand).
 */
export interface DesiredMeta {
  /** When the value was set (epoch ms). */
  at: number;
  /** When it was last sent to the device; undefined while the device has not received it. */
  deliveredAt?: number;
}

export interface ShadowState {
  reported: Record<string, unknown>;
  desired: Record<string, unknown>;
  metadata: {
    reported: Record<string, { at: number }>;
    desired: Record<string, DesiredMeta>;
  };
  version: number;
  updatedAt: number;
}

/** What the API shows of a shadow. */
export interface ShadowView {
  reported: Record<string, unknown>;
  desired: Record<string, unknown>;
  delta: Record<string, unknown>;
  version: number;
  metadata: ShadowState['metadata'];
  updatedAt: string | null;
}

export function emptyShadow(): ShadowState {
  return { reported: {}, desired: {}, metadata: { reported: {}, desired: {} }, version: 0, updatedAt: 0 };
}

export function delta(s: ShadowState): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k in s.desired) if (!sameValue(s.desired[k], s.reported[k])) out[k] = s.desired[k];
  return out;
}

export interface ReportOutcome {
  /** Keys whose reported value changed. */
  changed: string[];
  /** Desired keys that the report fulfilled. */
  fulfilled: string[];
  /** Desired keys dropped because the device reported another value after delivery. */
  stale: string[];
  /** Shadow version after the report. */
  version: number;
}

/**
 * Applies a property report (already validated) in place. A value older than the one the shadow
 * holds (a device's buffered reading, a message delivered again after a newer one) or the very
 * same report again is left out: the shadow keeps the latest state, and handling a message twice
 * changes nothing. A report that applies nothing leaves the version as it is.
 */
export function applyReport(s: ShadowState, values: Record<string, unknown>, at: number): ReportOutcome {
  const out: ReportOutcome = { changed: [], fulfilled: [], stale: [], version: s.version };
  let applied = false;
  for (const k in values) {
    const v = values[k];
    const prev = s.metadata.reported[k]?.at;
    if (prev !== undefined && (at < prev || (at === prev && sameValue(s.reported[k], v)))) continue;
    applied = true;
    if (!sameValue(s.reported[k], v)) out.changed.push(k);
    s.reported[k] = v;
    s.metadata.reported[k] = { at };
    if (k in s.desired) {
      const meta = s.metadata.desired[k];
      if (sameValue(s.desired[k], v)) {
        out.fulfilled.push(k);
        delete s.desired[k];
        delete s.metadata.desired[k];
      } else if (meta?.deliveredAt !== undefined && at >= meta.deliveredAt) {
        out.stale.push(k);
        delete s.desired[k];
        delete s.metadata.desired[k];
      }
    }
  }
  if (!applied) return out;
  out.version = ++s.version;
  s.updatedAt = Math.max(s.updatedAt, at);
  return out;
}

/** Merges desired values in place; `null` removes a key. */
export function applyDesired(s: ShadowState, values: Record<string, unknown>, at: number): void {
  for (const k in values) {
    if (values[k] === null) {
      delete s.desired[k];
      delete s.metadata.desired[k];
    } else {
      s.desired[k] = values[k];
      s.metadata.desired[k] = { at };
    }
  }
  s.version++;
  s.updatedAt = at;
}

/** Marks the current delta as sent to the device. */
export function markDelivered(s: ShadowState, keys: string[], at: number): void {
  for (const k of keys) if (s.metadata.desired[k]) s.metadata.desired[k].deliveredAt = at;
}
