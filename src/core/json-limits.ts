/**
 * Limits on JSON that comes from outside (device payloads, HTTP bodies). `JSON.parse` itself copes
 * with any nesting, but what runs on the value afterwards (validation, `JSON.stringify` into
 * history and traces, structured clones) recurses and can overflow the stack: bound the depth
 * where the JSON enters.
 */

/** Deepest nesting accepted in a device payload (MQTT, device HTTP, partners): a top-level object is depth 1. */
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

/** How deeply a JSON body may nest objects and arrays. Automations and gateway configs stay far below. */
export const MAX_BODY_JSON_DEPTH = 64;

/**
 * The nesting depth at which `text` (JSON) first goes deeper than `max`, or undefined when it
 * never does. One pass over the characters, without recursion, before anything parses it: a
 * body 10,000 levels deep is refused without building it or walking it recursively.
 */
export function jsonDepthExceeded(text: string, max: number = MAX_BODY_JSON_DEPTH): number | undefined {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: the next character is escaped
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return depth;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return undefined;
}
