/**
 * The fleet query language (docs/fleet.md), parsed into a tree that the device search compiles to
 * SQL. Pure: no I/O. Every problem is a `QueryError` naming the position (1-based, in characters)
 * and what is wrong, so the API can answer a 400 that says how to fix the query.
 *
 *   query   := or
 *   or      := and ("OR" and)*
 *   and     := unary (["AND"] unary)*          juxtaposition is AND
 *   unary   := "NOT" unary | primary
 *   primary := "(" or ")" | term
 *   term    := field op value                  field: product, tag.site, attr.floor, group, lastSeen, …
 *   op      := ":" | "=" | "!=" | "<" | "<=" | ">" | ">="
 *   value   := bare word | "quoted \" string"   a trailing * on a string value: prefix
 */

export type Op = '=' | '!=' | '<' | '<=' | '>' | '>=';

export type FieldType = 'string' | 'bool' | 'version' | 'time' | 'group';

/** The fields a query may name (tags: `tag.<key>`), with their type and whether they can be missing (`none`). */
export const FIELDS: Readonly<Record<string, { type: FieldType; nullable: boolean; description: string }>> = {
  id: { type: 'string', nullable: false, description: 'device id' },
  name: { type: 'string', nullable: false, description: 'registry name' },
  product: { type: 'string', nullable: false, description: 'product key' },
  parent: { type: 'string', nullable: true, description: "hub's device id (none: not a sub-device)" },
  hwid: { type: 'string', nullable: true, description: 'hardware id of a sub-device' },
  online: { type: 'bool', nullable: false, description: 'connected now' },
  disabled: { type: 'bool', nullable: false, description: 'disabled by the operator' },
  firmware: { type: 'version', nullable: true, description: 'firmware version it last reported, compared part by part (1.10 > 1.2)' },
  lastSeen: { type: 'time', nullable: true, description: 'last message or connection' },
  createdAt: { type: 'time', nullable: false, description: 'when it was provisioned' },
  group: { type: 'group', nullable: false, description: "in a fleet group (by id or name; a dynamic group: matches its query; with its subgroups')" },
};

/** Fields that `countBy` accepts (beside `tag.<key>`). */
export const COUNT_FIELDS = ['product', 'firmware', 'online', 'disabled', 'parent'] as const;

export type Value =
  | { type: 'string'; value: string; prefix: boolean }
  | { type: 'any' }
  | { type: 'none' }
  | { type: 'bool'; value: boolean }
  | { type: 'version'; value: string }
  | { type: 'time'; value: number }
  /** `attr.<key>` compared with `<`, `<=`, `>`, `>=`: the attribute's number. */
  | { type: 'number'; value: number }
  /** `group:<id or name>`. */
  | { type: 'group'; ref: string };

export interface Term {
  kind: 'term';
  field: string;
  /** For `tag.<key>`. */
  tag?: string;
  /** For `attr.<key>`. */
  attr?: string;
  op: Op;
  value: Value;
  pos: number;
}

export type Expr = Term | { kind: 'and'; items: Expr[] } | { kind: 'or'; items: Expr[] } | { kind: 'not'; item: Expr };

export class QueryError extends Error {
  constructor(
    readonly position: number,
    readonly problem: string,
  ) {
    super(`at position ${position}: ${problem}`);
    this.name = 'QueryError';
  }
}

export const MAX_QUERY_LENGTH = 2000;
const MAX_TERMS = 64;
const MAX_DEPTH = 16;
const TAG_KEY = /^[A-Za-z0-9_-]{1,64}$/;
const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

type Tok =
  | { t: 'word'; v: string; pos: number; quoted: boolean }
  | { t: 'op'; v: Op; pos: number }
  | { t: '('; pos: number }
  | { t: ')'; pos: number }
  | { t: 'end'; pos: number };

const WORD_CHAR = /[A-Za-z0-9_.\-*+@/]/;

function tokenize(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    const pos = i + 1;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
      continue;
    }
    if (c === '(' || c === ')') {
      out.push({ t: c, pos });
      i++;
      continue;
    }
    if (c === ':' || c === '=') {
      out.push({ t: 'op', v: '=', pos });
      i++;
      continue;
    }
    if (c === '!') {
      if (src[i + 1] !== '=') throw new QueryError(pos, 'expected "!=" ("!" alone is not an operator; use NOT before a term)');
      out.push({ t: 'op', v: '!=', pos });
      i += 2;
      continue;
    }
    if (c === '<' || c === '>') {
      const eq = src[i + 1] === '=';
      out.push({ t: 'op', v: (eq ? `${c}=` : c) as Op, pos });
      i += eq ? 2 : 1;
      continue;
    }
    if (c === '"') {
      let v = '';
      let j = i + 1;
      for (;;) {
        if (j >= src.length) throw new QueryError(pos, 'the quoted value is not closed (a " is missing)');
        const d = src[j];
        if (d === '\\' && j + 1 < src.length) {
          v += src[j + 1];
          j += 2;
          continue;
        }
        if (d === '"') break;
        v += d;
        j++;
      }
      out.push({ t: 'word', v, pos, quoted: true });
      i = j + 1;
      continue;
    }
    if (WORD_CHAR.test(c)) {
      let j = i;
      while (j < src.length && WORD_CHAR.test(src[j])) j++;
      // A time like 2026-12-01T08:00:00Z has colons: keep them in the value when a word started with a digit and a colon follows a digit.
      while (j < src.length && src[j] === ':' && /\d/.test(src[j - 1]) && /\d/.test(src[j + 1] ?? '') && /^\d{4}-\d\d-\d\dT/.test(src.slice(i, j))) {
        j++;
        while (j < src.length && WORD_CHAR.test(src[j])) j++;
      }
      out.push({ t: 'word', v: src.slice(i, j), pos, quoted: false });
      i = j;
      continue;
    }
    throw new QueryError(pos, `unexpected character ${JSON.stringify(c)}`);
  }
  out.push({ t: 'end', pos: src.length + 1 });
  return out;
}

const isKeyword = (tok: Tok, kw: string) => tok.t === 'word' && !tok.quoted && tok.v.toUpperCase() === kw;

/**
 * Parses a query; `now` (epoch ms) anchors relative times (`lastSeen<-7d`: before 7 days ago).
 * Throws QueryError.
 */
export function parseQuery(src: string, now = Date.now()): Expr {
  if (src.length > MAX_QUERY_LENGTH) throw new QueryError(MAX_QUERY_LENGTH + 1, `the query is longer than ${MAX_QUERY_LENGTH} characters`);
  const toks = tokenize(src);
  let k = 0;
  let terms = 0;
  const peek = () => toks[k];
  const next = () => toks[k++];

  const parseOr = (depth: number): Expr => {
    const items = [parseAnd(depth)];
    while (isKeyword(peek(), 'OR')) {
      next();
      items.push(parseAnd(depth));
    }
    return items.length === 1 ? items[0] : { kind: 'or', items };
  };
  const parseAnd = (depth: number): Expr => {
    const items = [parseUnary(depth)];
    for (;;) {
      const t = peek();
      if (isKeyword(t, 'AND')) {
        next();
        items.push(parseUnary(depth));
        continue;
      }
      if (t.t === 'end' || t.t === ')' || isKeyword(t, 'OR')) break;
      items.push(parseUnary(depth));
    }
    return items.length === 1 ? items[0] : { kind: 'and', items };
  };
  const parseUnary = (depth: number): Expr => {
    const t = peek();
    if (isKeyword(t, 'NOT')) {
      next();
      return { kind: 'not', item: parseUnary(depth) };
    }
    return parsePrimary(depth);
  };
  const parsePrimary = (depth: number): Expr => {
    const t = next();
    if (t.t === '(') {
      if (depth >= MAX_DEPTH) throw new QueryError(t.pos, `parentheses nest deeper than ${MAX_DEPTH} levels`);
      if (peek().t === ')') throw new QueryError(peek().pos, 'empty parentheses: put a condition inside');
      const e = parseOr(depth + 1);
      const close = next();
      if (close.t !== ')')
        throw new QueryError(close.pos, `expected ")" to close the "(" at position ${t.pos}${close.t === 'end' ? ', found the end of the query' : ''}`);
      return e;
    }
    if (t.t === ')') throw new QueryError(t.pos, 'unexpected ")" without an opening "("');
    if (t.t === 'end') throw new QueryError(t.pos, k === 1 ? 'the query is empty' : 'expected a condition (field:value) at the end of the query');
    if (t.t === 'op') throw new QueryError(t.pos, `expected a field name before "${t.v === '=' ? ':' : t.v}"`);
    if (isKeyword(t, 'AND') || isKeyword(t, 'OR')) throw new QueryError(t.pos, `expected a condition before ${t.v.toUpperCase()}`);
    if (++terms > MAX_TERMS) throw new QueryError(t.pos, `more than ${MAX_TERMS} conditions`);
    return parseTerm(t);
  };
  const parseTerm = (f: Extract<Tok, { t: 'word' }>): Term => {
    const { field, tag, attr } = fieldOf(f);
    const op = next();
    if (op.t !== 'op') throw new QueryError(op.pos, `expected an operator (":", "!=", "<", "<=", ">", ">=") after "${f.v}"`);
    const v = next();
    if (v.t !== 'word') throw new QueryError(v.pos, `expected a value after "${f.v}${op.v === '=' ? ':' : op.v}"`);
    return {
      kind: 'term',
      field,
      ...(tag !== undefined ? { tag } : {}),
      ...(attr !== undefined ? { attr } : {}),
      op: op.v,
      value: parseValue(field, op.v, v, now),
      pos: f.pos,
    };
  };

  const e = parseOr(0);
  const rest = peek();
  if (rest.t === ')') throw new QueryError(rest.pos, 'unexpected ")" without an opening "("');
  if (rest.t !== 'end') throw new QueryError(rest.pos, 'unexpected text after the query');
  return e;
}

function fieldOf(f: Extract<Tok, { t: 'word' }>): { field: string; tag?: string; attr?: string } {
  if (f.v.startsWith('tag.')) {
    const key = f.v.slice(4);
    if (!TAG_KEY.test(key)) throw new QueryError(f.pos + 4, `"${key}" is not a tag key (letters, digits, _ and -, at most 64)`);
    return { field: 'tag', tag: key };
  }
  if (f.v.startsWith('attr.')) {
    const key = f.v.slice(5);
    if (!ATTR_KEY.test(key)) throw new QueryError(f.pos + 5, `"${key}" is not a searchable attribute key (letters, digits, _ and -, at most 64)`);
    return { field: 'attr', attr: key };
  }
  const name = f.v === 'parentId' ? 'parent' : f.v;
  if (!Object.hasOwn(FIELDS, name))
    throw new QueryError(f.pos, `unknown field "${f.v}"; fields are ${Object.keys(FIELDS).join(', ')}, tag.<key> and attr.<key>`);
  return { field: name };
}

/** Attribute keys a query can name: as tag keys. */
const ATTR_KEY = TAG_KEY;

function parseValue(field: string, op: Op, v: Extract<Tok, { t: 'word' }>, now: number): Value {
  const isTag = field === 'tag';
  const ordered = op !== '=' && op !== '!=';
  if (field === 'attr') return attrValue(op, v);
  if (field === 'group') {
    if (ordered) throw new QueryError(v.pos - op.length, `"${op}" does not apply to group: it takes ":" or "!="`);
    if (!v.quoted && (v.v === '*' || v.v.endsWith('*')))
      throw new QueryError(v.pos, 'group takes a group id or name (quote a name with spaces), not a pattern');
    if (v.v.length === 0 || v.v.length > 200) throw new QueryError(v.pos, 'group takes a group id or name of 1 to 200 characters');
    return { type: 'group', ref: v.v };
  }
  const spec = isTag ? { type: 'string' as const, nullable: true } : FIELDS[field];
  const shown = `${isTag ? 'tag' : field}`;
  if (!v.quoted && v.v === 'none') {
    if (!spec.nullable) throw new QueryError(v.pos, `"${shown}" always has a value: none does not apply`);
    if (ordered) throw new QueryError(v.pos, 'none goes with ":" or "!=" only');
    return { type: 'none' };
  }
  if (!v.quoted && v.v === '*' && (spec.type === 'string' || spec.nullable)) {
    if (ordered) throw new QueryError(v.pos, '* goes with ":" or "!=" only');
    return { type: 'any' };
  }
  switch (spec.type) {
    case 'string': {
      if (ordered) throw new QueryError(v.pos - op.length, `"${op}" does not apply to ${shown}: it takes ":" or "!="`);
      const prefix = !v.quoted && v.v.endsWith('*');
      const value = prefix ? v.v.slice(0, -1) : v.v;
      if (value.includes('*') && !v.quoted) throw new QueryError(v.pos, 'a * may only end a value (a prefix), e.g. name:Hall*');
      if (value.length > 256) throw new QueryError(v.pos, 'the value is longer than 256 characters');
      return { type: 'string', value, prefix };
    }
    case 'bool': {
      if (ordered) throw new QueryError(v.pos - op.length, `"${op}" does not apply to ${shown}: it is true or false`);
      const b = v.v.toLowerCase();
      if (b !== 'true' && b !== 'false') throw new QueryError(v.pos, `${shown} is true or false, not "${v.v}"`);
      return { type: 'bool', value: b === 'true' };
    }
    case 'version': {
      if (!/^[A-Za-z0-9]+([._+-][A-Za-z0-9]+)*$/.test(v.v) || v.v.length > 64)
        throw new QueryError(v.pos, `"${v.v}" is not a version (e.g. 1.2 or 2.4.1-beta)`);
      return { type: 'version', value: v.v };
    }
    case 'time':
      return { type: 'time', value: timeOf(v, shown, now) };
    case 'group':
      throw new Error('handled above');
  }
}

/**
 * An attribute's value: `:` / `!=` compare its text (a string, or a number or boolean as written:
 * `attr.floor:3`, `attr.active:true`; a trailing * is a prefix); `<`, `<=`, `>`, `>=` take a number
 * and match numeric attributes; `*` (has it) and `none`.
 */
function attrValue(op: Op, v: Extract<Tok, { t: 'word' }>): Value {
  const ordered = op !== '=' && op !== '!=';
  if (!v.quoted && (v.v === 'none' || v.v === '*')) {
    if (ordered) throw new QueryError(v.pos, `${v.v} goes with ":" or "!=" only`);
    return v.v === 'none' ? { type: 'none' } : { type: 'any' };
  }
  if (ordered) {
    const n = Number(v.v);
    if (v.v.trim() === '' || !Number.isFinite(n)) throw new QueryError(v.pos, `"${op}" compares numbers: "${v.v}" is not a number (e.g. attr.floor>2)`);
    return { type: 'number', value: n };
  }
  const prefix = !v.quoted && v.v.endsWith('*');
  const value = prefix ? v.v.slice(0, -1) : v.v;
  if (value.includes('*') && !v.quoted) throw new QueryError(v.pos, 'a * may only end a value (a prefix), e.g. attr.site:ber*');
  if (value.length > 256) throw new QueryError(v.pos, 'the value is longer than 256 characters');
  return { type: 'string', value, prefix };
}

function timeOf(v: Extract<Tok, { t: 'word' }>, field: string, now: number): number {
  if (v.v === 'now') return now;
  const rel = /^([+-])(\d{1,6})([smhdw])$/.exec(v.v);
  if (rel) return now + (rel[1] === '-' ? -1 : 1) * Number(rel[2]) * UNITS[rel[3]];
  if (/^\d{4}-\d\d-\d\d(T\d\d:\d\d(:\d\d(\.\d{1,3})?)?(Z|[+-]\d\d:\d\d)?)?$/.test(v.v)) {
    const t = Date.parse(v.v.length === 10 ? `${v.v}T00:00:00Z` : v.v);
    if (Number.isFinite(t)) return t;
  }
  throw new QueryError(
    v.pos,
    `${field} takes a time: now, a relative time like -7d, -12h, -30m (s, m, h, d, w), or a date like 2026-12-01 or 2026-12-01T08:00:00Z; not "${v.v}"`,
  );
}

/** Checks a `countBy` field: one of COUNT_FIELDS or tag.<key>; returns a problem, or undefined. */
export function countByProblem(field: string): string | undefined {
  if (field.startsWith('tag.') && TAG_KEY.test(field.slice(4))) return undefined;
  if ((COUNT_FIELDS as readonly string[]).includes(field)) return undefined;
  return `countBy "${field}" is not one of ${COUNT_FIELDS.join(', ')}, tag.<key>`;
}

/** Whether the expression names an operator-only field (tags, attributes, fleet groups). */
export function namesTags(e: Expr): boolean {
  if (e.kind === 'term') return e.field === 'tag' || e.field === 'attr' || e.field === 'group';
  if (e.kind === 'not') return namesTags(e.item);
  return e.items.some(namesTags);
}

/** The `group:` conditions of an expression. */
export function groupTerms(e: Expr): Term[] {
  if (e.kind === 'term') return e.field === 'group' ? [e] : [];
  if (e.kind === 'not') return groupTerms(e.item);
  return e.items.flatMap(groupTerms);
}
