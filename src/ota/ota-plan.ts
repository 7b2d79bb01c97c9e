/**
 * The pure rules of a campaign: which wave a device is in, when a wave's gates trip, whether a
 * local hour is inside a window. No clock, no I/O: the campaign service and tests call them.
 */
import { createHash } from 'node:crypto';

export interface Wave {
  /** Cumulative share of the target updated once this wave is done (1..100). */
  percent: number;
  /** How long to watch the wave after its last job ended before the next wave starts. */
  soakMinutes?: number;
}

export interface AbortGates {
  /** Failed / ended jobs of the wave above which the campaign aborts (0..1). */
  maxFailureRate?: number;
  /** Updated devices of the wave that are offline after their update, above which it aborts (0..1). */
  maxOfflineAfterUpdate?: number;
  /** Gates are evaluated only once this many jobs of the wave ended. */
  minDevices?: number;
}

/** One wave of every device: a single wave of 100 %. */
export const ALL_AT_ONCE: Wave[] = [{ percent: 100 }];

/**
 * A device's position in [0, 1) for a campaign's product, stable across runs and campaigns: the
 * first 32 bits of sha256(productKey + '/' + deviceId). Seeded by the product, not the campaign,
 * so the devices of the 1 % canary wave stay the same ones from one release to the next.
 */
export function bucketOf(productKey: string, deviceId: string): number {
  return createHash('sha256').update(`${productKey}/${deviceId}`).digest().readUInt32BE(0) / 0x1_0000_0000;
}

/** The wave index (0-based) of a device: the first wave whose cumulative percent covers its bucket. */
export function waveOf(waves: readonly Wave[], productKey: string, deviceId: string): number {
  const b = bucketOf(productKey, deviceId) * 100;
  for (let i = 0; i < waves.length; i++) if (b < waves[i].percent) return i;
  return waves.length - 1;
}

/** Why the waves cannot be used, or undefined. Percents rise strictly and the last is 100. */
export function wavesProblem(waves: readonly Wave[]): string | undefined {
  if (waves.length === 0) return 'waves: at least one wave';
  let prev = 0;
  for (const [i, w] of waves.entries()) {
    if (!(w.percent > prev) || w.percent > 100) return `waves[${i}].percent must be above the previous wave's (${prev}) and at most 100`;
    prev = w.percent;
  }
  if (prev !== 100) return 'the last wave must reach 100 percent';
  return undefined;
}

export interface WaveCounts {
  /** Jobs of the wave that ended (succeeded or failed). */
  ended: number;
  failed: number;
  succeeded: number;
  /** Succeeded jobs whose device is offline now. */
  offlineAfterUpdate: number;
}

/** The gate that trips for these counts, with its reason, or undefined. */
export function trippedGate(gates: AbortGates | undefined, c: WaveCounts): { gate: 'maxFailureRate' | 'maxOfflineAfterUpdate'; reason: string } | undefined {
  if (!gates) return undefined;
  const min = gates.minDevices ?? 1;
  if (c.ended < Math.max(1, min)) return undefined;
  if (gates.maxFailureRate !== undefined) {
    const rate = c.failed / c.ended;
    if (rate > gates.maxFailureRate)
      return {
        gate: 'maxFailureRate',
        reason: `failure rate ${(rate * 100).toFixed(1)} % (${c.failed} of ${c.ended}) is above ${gates.maxFailureRate * 100} %`,
      };
  }
  if (gates.maxOfflineAfterUpdate !== undefined && c.succeeded > 0) {
    const rate = c.offlineAfterUpdate / c.succeeded;
    if (rate > gates.maxOfflineAfterUpdate)
      return {
        gate: 'maxOfflineAfterUpdate',
        reason: `${(rate * 100).toFixed(1)} % of updated devices (${c.offlineAfterUpdate} of ${c.succeeded}) are offline, above ${gates.maxOfflineAfterUpdate * 100} %`,
      };
  }
  return undefined;
}

/** A window of allowed local hours: from `startHour` (inclusive) to `endHour` (exclusive); it may wrap midnight (22 → 4). */
export interface UpdateWindow {
  startHour: number;
  endHour: number;
}

export function inWindow(w: UpdateWindow | undefined | null, localHour: number): boolean {
  if (!w || w.startHour === w.endHour) return true;
  return w.startHour < w.endHour ? localHour >= w.startHour && localHour < w.endHour : localHour >= w.startHour || localHour < w.endHour;
}
