/**
 * Whether two JSON values are the same: equal primitives, or objects/arrays with the same JSON
 * text. Shadows, automation triggers and conditions and scenes all compare values this one way.
 */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  return JSON.stringify(a) === JSON.stringify(b);
}
