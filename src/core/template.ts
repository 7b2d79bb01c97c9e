/** A template compiled once per configuration version: renders the body a target gets from an envelope. */
export type CompiledTemplate = (env: object) => unknown;

const WHOLE = /^\{\{\s*([A-Za-z0-9_$.-]+)\s*\}\}$/;
const PLACEHOLDER = /\{\{\s*([A-Za-z0-9_$.-]+)\s*\}\}/g;

/** The value at a dotted path (`payload.temperature`, `tags.lane`); own properties only, so no path reaches a prototype. */
function getter(path: string): (env: object) => unknown {
  const keys = path.split('.');
  return (env) => {
    let v: unknown = env;
    for (const k of keys) {
      if (typeof v !== 'object' || v === null || !Object.hasOwn(v, k)) return undefined;
      v = (v as Record<string, unknown>)[k];
    }
    return v;
  };
}

function text(v: unknown): string {
  if (v === undefined || v === null) return '';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

function compileNode(node: unknown): CompiledTemplate {
  if (typeof node === 'string') {
    const whole = WHOLE.exec(node);
    if (whole) return getter(whole[1]);
    if (!node.includes('{{')) return () => node;
    // Alternating literal text and getters: "t={{payload.t}} at {{receivedAt}}".
    const literals: string[] = [];
    const gets: Array<(env: object) => unknown> = [];
    let last = 0;
    for (const m of node.matchAll(PLACEHOLDER)) {
      literals.push(node.slice(last, m.index));
      gets.push(getter(m[1]));
      last = m.index + m[0].length;
    }
    literals.push(node.slice(last));
    return (env) => {
      let out = literals[0];
      for (let i = 0; i < gets.length; i++) out += text(gets[i](env)) + literals[i + 1];
      return out;
    };
  }
  if (Array.isArray(node)) {
    const items = node.map(compileNode);
    return (env) => items.map((f) => f(env));
  }
  if (typeof node === 'object' && node !== null) {
    const entries = Object.entries(node).map(([k, v]) => [k, compileNode(v)] as const);
    return (env) => {
      const out: Record<string, unknown> = {};
      for (const [k, f] of entries) out[k] = f(env);
      return out;
    };
  }
  return () => node;
}

/**
 * Compiles a payload template, any JSON value: a string that is exactly `"{{path}}"` becomes the
 * value at that path of the envelope, keeping its type (a number stays a number, an object an
 * object; a missing path leaves the key out); `{{path}}` inside a longer string is replaced by
 * the value's text (objects as JSON, missing as nothing). Everything else is copied as it is.
 */
export function compileTemplate(template: unknown): CompiledTemplate {
  return compileNode(template);
}
