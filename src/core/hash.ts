/**
 * Small, stable, non-cryptographic string hashes. Every node must compute the same value for the
 * same input (device shards, gray-release lanes, rollout waves), so they live in one place.
 */

/** FNV-1a (32 bit) of a string's UTF-16 code units; `seed` replaces the offset basis to salt it. */
export function fnv1a(s: string, seed = 0x811c9dc5): number {
  let h = seed;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** MurmurHash3's 32-bit finaliser: spreads similar inputs (node-a-…#1, #2) over unrelated values. */
export function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A stable spot in [0, 100) for `key` (two decimals), salted so that different uses do not line up. */
export function percentSpot(key: string, salt: number): number {
  return (mix32(fnv1a(key, salt)) % 10_000) / 100;
}
