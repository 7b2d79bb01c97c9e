/**
 * Semantic versions (semver.org 2.0.0) as firmware versions: parse and compare. Pure.
 * Build metadata (`+…`) is kept in the string but ignored for ordering, as the spec says.
 */
export interface SemVer {
  major: number;
  minor: number;
  patch: number;
  /** Pre-release identifiers (`1.2.0-rc.1` → ['rc', 1]); empty for a release. */
  pre: Array<string | number>;
}

const RE =
  /^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$/;

/** The version, or undefined when `s` is not a semantic version (at most 64 characters). */
export function parseSemVer(s: string): SemVer | undefined {
  if (typeof s !== 'string' || s.length > 64) return undefined;
  const m = RE.exec(s);
  if (!m) return undefined;
  const pre = m[4] === undefined ? [] : m[4].split('.').map((p) => (/^\d+$/.test(p) ? Number(p) : p));
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]), pre };
}

export function isSemVer(s: string): boolean {
  return parseSemVer(s) !== undefined;
}

/** Negative when a < b, 0 when equal in precedence, positive when a > b. Throws on a non-version. */
export function compareSemVer(a: string, b: string): number {
  const x = parseSemVer(a);
  const y = parseSemVer(b);
  if (!x || !y) throw new Error(`not a semantic version: ${!x ? a : b}`);
  if (x.major !== y.major) return x.major - y.major;
  if (x.minor !== y.minor) return x.minor - y.minor;
  if (x.patch !== y.patch) return x.patch - y.patch;
  // A pre-release sorts before its release.
  if (x.pre.length === 0 || y.pre.length === 0) return y.pre.length - x.pre.length;
  for (let i = 0; i < Math.max(x.pre.length, y.pre.length); i++) {
    if (i >= x.pre.length) return -1;
    if (i >= y.pre.length) return 1;
    const p = x.pre[i];
    const q = y.pre[i];
    if (p === q) continue;
    if (typeof p === 'number' && typeof q === 'number') return p - q;
    if (typeof p === 'number') return -1;
    if (typeof q === 'number') return 1;
    return p < q ? -1 : 1;
  }
  return 0;
}

/** Whether `v` is within the optional bounds (inclusive `min`, exclusive `below`); a non-version never is. */
export function inRange(v: string | null | undefined, range: { min?: string; below?: string }): boolean {
  if (v == null || !isSemVer(v)) return range.min === undefined && range.below === undefined;
  if (range.min !== undefined && compareSemVer(v, range.min) < 0) return false;
  if (range.below !== undefined && compareSemVer(v, range.below) >= 0) return false;
  return true;
}
