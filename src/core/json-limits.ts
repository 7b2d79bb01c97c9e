/**
 * Limits on parsed JSON that comes from outside (device payloads). `JSON.parse` itself copes
 * with any nesting, but what runs on the value afterwards (validation, `JSON.stringify` into
 * history and traces, structured clones) recurses and can overflow the stack: bound the depth
 * where the JSON enters.
 */

/** Deepest nesting accepted in a device payload: a top-level object is depth 1. */
export const MAX_JSON_DEPTH = 32;

/**
 * True when `value` nests objects or arrays deeper than `max` (a top-level object or array is
 * depth 1; scalars are depth 0). Iterative, so it is safe on values of any depth, and it stops
 * at the first branch over the limit.
 */
export function jsonDepthExceeds(value: unknown, max: number): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const stack: Array<[object, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (depth > max) return true;
    const children = Array.isArray(node) ? node : Object.values(node);
    for (const child of children) if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
  }
  return false;
}
