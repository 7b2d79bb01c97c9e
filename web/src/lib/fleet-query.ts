/** Small pure helpers of the fleet search box (docs/fleet.md's query language). */

/** A value as the query language wants it: bare when it is a plain word, else quoted. */
export function quoteValue(v: string): string {
  return /^[A-Za-z0-9_.-]+$/.test(v) ? v : `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** The query narrowed by one more condition (`field:value`), e.g. from a count the API gave. */
export function narrow(q: string | undefined, field: string, value: string | boolean | null): string {
  const cond = value === null ? `${field}:none` : `${field}:${quoteValue(String(value))}`;
  const base = (q ?? '').trim();
  if (!base) return cond;
  return /\bOR\b/.test(base) ? `(${base}) AND ${cond}` : `${base} AND ${cond}`;
}

/** What the search box holds taken as a device ID to open (d_…), rather than a query. */
export function asDeviceId(text: string): string | undefined {
  const s = text.trim();
  return /^d_[A-Za-z0-9]{6,62}$/.test(s) ? s : undefined;
}

/** Tag edits as the API's PATCH wants them: changed and new keys with their value, removed keys null. */
export function tagChanges(before: Record<string, string>, after: Record<string, string>): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  for (const [k, v] of Object.entries(after)) if (before[k] !== v) out[k] = v;
  for (const k of Object.keys(before)) if (!(k in after)) out[k] = null;
  return out;
}

/** "site=berlin, batch=b7" as tags; undefined when empty, an error text when a pair is not key=value. */
export function parseTags(text: string | undefined): Record<string, string> | undefined | Error {
  const pairs = (text ?? '')
    .split(/[,\n]/)
    .map((s) => s.trim())
    .filter(Boolean);
  if (pairs.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i <= 0) return new Error(p);
    out[p.slice(0, i).trim()] = p.slice(i + 1).trim();
  }
  return out;
}
