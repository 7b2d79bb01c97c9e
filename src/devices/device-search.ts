import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../core/store/db.ts';
import { HearthError } from '../core/errors.ts';
import { groupTerms, type Expr, type Term } from './fleet-query.ts';
import type { DeviceRecord } from './device-service.ts';
import { firmwareKey } from './device-tags.ts';

/** Sort keys of a fleet search; `-` in front sorts descending. */
export const SORT_FIELDS = ['createdAt', 'id', 'name', 'lastSeen', 'firmware'] as const;
export type SortField = (typeof SORT_FIELDS)[number];

export interface SearchInput {
  /** The parsed query (fleet/fleet-query.ts); undefined: every device. */
  expr?: Expr;
  /** Only these devices (what the caller may see); undefined: all. */
  ids?: readonly string[];
  sort: SortField;
  desc: boolean;
  limit: number;
  cursor?: string;
  /** Count the matching devices by this field (`product`, `firmware`, `online`, `disabled`, `parent`, `tag.<key>`). */
  countBy?: string;
  /** Count every matching device (`total`). */
  total: boolean;
  /**
   * Stop counting at this many matches (`totalLimit`): the store reads at most one match more,
   * `total` is at most this and `totalCapped` says whether there were more. Undefined: exact.
   */
  totalLimit?: number;
  /** Where the query came from, for errors found while searching (an unknown group): `querystring.q` unless given. */
  field?: string;
}

export interface SearchResult {
  items: DeviceRecord[];
  /** The cursor of the next page; null on the last one. */
  nextCursor: string | null;
  total?: number;
  /** With `totalLimit`: true when more devices match than `total` says (it stopped counting there). */
  totalCapped?: boolean;
  counts?: Array<{ value: string | boolean | null; count: number }>;
}

type Sql = RawBuilder<unknown>;

/**
 * What a fleet group stands for in a search (given by the fleet capability, which owns groups):
 * `members` a subquery selecting the device ids of its static members (and its static
 * subgroups'), or null; `exprs` the queries of it or its dynamic subgroups. Undefined: no group
 * by that id or name.
 */
export interface GroupMatch {
  name: string;
  members: Sql | null;
  exprs: Expr[];
}
export type GroupResolver = (ref: string) => Promise<GroupMatch | undefined>;

/** How deep `group:` conditions may refer to groups whose queries name groups. */
const MAX_GROUP_DEPTH = 3;

interface Compiled {
  selective: Set<string>;
  /** Each `group:` term's condition. */
  groups: Map<Term, Sql>;
}

const STRING_COLUMNS: Record<string, string> = { id: 'd.id', name: 'd.name', product: 'd.product_key', parent: 'd.parent_id', hwid: 'd.hwid' };
const SORT_EXPR: Record<SortField, { expr: Sql; kind: 'number' | 'string' }> = {
  createdAt: { expr: sql`d.created_at`, kind: 'number' },
  id: { expr: sql`d.id`, kind: 'string' },
  name: { expr: sql`d.name`, kind: 'string' },
  lastSeen: { expr: sql`coalesce(p.last_seen, 0)`, kind: 'number' },
  firmware: { expr: sql`coalesce(d.firmware_key, '')`, kind: 'string' },
};

/**
 * Fleet search (docs/fleet.md): a parsed query compiled to one SQL statement over the live
 * devices, their presence and tags, with keyset (cursor) pagination, a sort, an optional total and
 * counts by a field. Values are always bound parameters. The same SQL runs on SQLite and
 * PostgreSQL; the indexes of migration 0014 serve the selective conditions (product, firmware,
 * tags, last seen, online) and the default order.
 */
export class DeviceSearch {
  /** `selectiveTags`: how many devices a tag value may hold and still lead the search (default 5000). */
  /**
   * `engine`: on PostgreSQL a page is found without parallel workers: a page walks the sort order
   * and stops at its end, and workers (each walking its own part of the order to the end of the
   * page) read many times more rows than one walk does (EXPLAIN ANALYZE at 1,000,000 devices:
   * 226 ms with two workers, 17 ms without). Counts keep them.
   */
  /**
   * `countSelectiveTags` (SQLite; default 50,000): how many devices a tag value may hold and still
   * lead a count (total, countBy). A count has no order to walk, so leading from the tag's index
   * entries (`d.id IN (…)`) beats checking the tag per device over the other candidates, up to a
   * far larger share of the fleet than for a page: at 1,000,000 devices, a tag of 10,000 and
   * offline counted in 65 ms instead of 1.5 s (bounded to 1,000: 16 ms instead of 240 ms; p50).
   * PostgreSQL plans both forms as the same semi-join, so it needs no hint.
   */
  constructor(
    private readonly deps: {
      db: Db;
      selectiveTags?: number;
      countSelectiveTags?: number;
      groups?: GroupResolver;
      engine?: 'sqlite' | 'postgres';
    },
  ) {}

  async search(input: SearchInput): Promise<SearchResult> {
    const { db } = this.deps;
    if (input.ids && input.ids.length === 0)
      return {
        items: [],
        nextCursor: null,
        ...(input.total ? { total: 0, ...(input.totalLimit !== undefined ? { totalCapped: false } : {}) } : {}),
        ...(input.countBy ? { counts: [] } : {}),
      };
    const conds: Sql[] = [sql`d.deleted_at is null`];
    if (input.ids) conds.push(sql`d.id in (${sql.join([...input.ids])})`);
    // Counts (total, countBy) may take a condition compiled with more tags leading (SQLite).
    const countConds = [...conds];
    if (input.expr) {
      const groups = await this.groupConditions(input.expr, [], input.field ?? 'querystring.q');
      const selective = await this.selectiveTags(input.expr, this.deps.selectiveTags ?? SELECTIVE);
      conds.push(compile(input.expr, { selective, groups }));
      const countLimit = this.deps.countSelectiveTags ?? COUNT_SELECTIVE;
      const counting = (input.total || input.countBy !== undefined) && this.deps.engine !== 'postgres';
      const forCounts = counting ? await this.selectiveTags(input.expr, countLimit, selective) : selective;
      countConds.push(forCounts === selective ? conds[conds.length - 1] : compile(input.expr, { selective: forCounts, groups }));
    }
    const usesPresence = input.sort === 'lastSeen' || input.countBy === 'online';
    const from = usesPresence ? sql`devices d left join presence p on p.device_id = d.id` : sql`devices d`;
    const filter = sql.join(countConds, sql` and `);
    const sort = SORT_EXPR[input.sort];
    const dir = input.desc ? sql`desc` : sql`asc`;
    const page: Sql[] = [...conds];
    if (input.cursor) {
      const c = decodeCursor(input.cursor, input.sort, input.desc, sort.kind);
      const cmp = input.desc ? sql`<` : sql`>`;
      page.push(sql`(${sort.expr} ${cmp} ${c.v} or (${sort.expr} = ${c.v} and d.id ${cmp} ${c.id}))`);
    }
    const pageQuery = sql<Row>`select d.id, d.product_key, d.name, d.parent_id, d.hwid, d.pairing_code, d.created_at, d.disabled_at, ${sort.expr} as sort_value
      from ${from} where ${sql.join(page, sql` and `)} order by ${sort.expr} ${dir}, d.id ${dir} limit ${input.limit + 1}`;
    // The page, the total and the counts are independent: on PostgreSQL they run at once, each on
    // its own connection, so that a request waits for the slowest rather than for their sum.
    const page$ =
      this.deps.engine === 'postgres'
        ? db.transaction().execute(async (trx) => {
            await sql`set local max_parallel_workers_per_gather = 0`.execute(trx);
            return pageQuery.execute(trx);
          })
        : pageQuery.execute(db);
    const total$ = input.total ? this.total(from, filter, input.totalLimit) : undefined;
    const counts$ = input.countBy ? this.counts(input.countBy, from, filter) : undefined;
    const [{ rows }, total, counts] = await Promise.all([page$, total$, counts$]);
    const more = rows.length > input.limit;
    const items = rows.slice(0, input.limit);
    const last = items[items.length - 1];
    const out: SearchResult = {
      items: items.map(toRecord),
      nextCursor:
        more && last ? encodeCursor(input.sort, input.desc, sort.kind === 'number' ? Number(last.sort_value) : String(last.sort_value), last.id) : null,
    };
    if (total) Object.assign(out, total);
    if (counts) out.counts = counts;
    return out;
  }

  /**
   * The condition of each `group:` term: its static members (a subquery on the group capability's
   * table) or a match of its dynamic queries, which may name groups in turn (to MAX_GROUP_DEPTH).
   * An unknown group, or a group whose query leads back to itself, is E_VALIDATION naming the
   * position of the caller's `group:` term (`at`, when the problem is inside a group's query).
   */
  private async groupConditions(e: Expr, path: string[], field: string, at?: number): Promise<Map<Term, Sql>> {
    const out = new Map<Term, Sql>();
    for (const t of groupTerms(e)) {
      if (t.value.type !== 'group') continue;
      const pos = at ?? t.pos;
      const inside = path.length ? ` (in the query of group "${path[path.length - 1]}")` : '';
      const bad = (problem: string) => new HearthError('E_VALIDATION', `${field}: at position ${pos}: ${problem}`, { field, position: pos, problem });
      if (!this.deps.groups) throw bad('fleet groups are not available here');
      const g = await this.deps.groups(t.value.ref);
      if (!g) throw bad(`fleet group "${t.value.ref}"${inside} does not exist (name it by id or by name; quote a name with spaces)`);
      if (path.includes(g.name)) throw bad(`fleet group "${g.name}" is named by its own query (${[...path, g.name].join(' → ')})`);
      if (path.length >= MAX_GROUP_DEPTH) throw bad(`groups name groups in their queries more than ${MAX_GROUP_DEPTH} deep`);
      const parts: Sql[] = [];
      if (g.members) parts.push(sql`d.id in (${g.members})`);
      for (const x of g.exprs) parts.push(compile(x, { selective: new Set(), groups: await this.groupConditions(x, [...path, g.name], field, pos) }));
      const cond = parts.length === 0 ? sql`1 = 0` : parts.length === 1 ? parts[0] : sql`(${sql.join(parts, sql` or `)})`;
      out.set(t, t.op === '!=' ? sql`not (${cond})` : cond);
    }
    return out;
  }

  /**
   * Which exact tag conditions are rare enough to lead the search (at most SELECTIVE devices): those
   * become `d.id IN (…)`, which the store may start from; the others stay per-device checks, so a
   * page is found by walking the sort order and stopping at the limit (a common tag would otherwise
   * make the store collect and sort every match first). The check reads at most `limit`+1 index
   * entries per tag (`limit`: SELECTIVE for a page, COUNT_SELECTIVE for a count on SQLite); `known`:
   * the tags a smaller limit already found rare enough.
   */
  private async selectiveTags(e: Expr, limit: number, known?: Set<string>): Promise<Set<string>> {
    const out = new Set<string>(known);
    const terms: Term[] = [];
    const walk = (x: Expr): void => {
      if (x.kind === 'term') {
        if (x.field === 'tag' && x.value.type === 'string' && !x.value.prefix && x.op === '=') terms.push(x);
      } else if (x.kind === 'not') walk(x.item);
      else x.items.forEach(walk);
    };
    walk(e);
    for (const t of terms.slice(0, 8)) {
      const v = (t.value as { value: string }).value;
      const key = `${t.tag}\u0000${v}`;
      if (out.has(key)) continue;
      const r = await sql<{
        n: number | string;
      }>`select count(*) as n from (select 1 from device_tags where key = ${t.tag!} and value = ${v} limit ${limit + 1}) s`.execute(this.deps.db);
      if (Number(r.rows[0].n) <= limit) out.add(key);
    }
    // The same set when nothing was added, so that the caller can tell.
    return known && out.size === known.size ? known : out;
  }

  /** Every match counted, or (`limit`) the first limit+1 of them, in whatever order the store finds them. */
  private async total(from: Sql, filter: Sql, limit?: number): Promise<Pick<SearchResult, 'total' | 'totalCapped'>> {
    if (limit === undefined) {
      const r = await sql<{ n: number | string }>`select count(*) as n from ${from} where ${filter}`.execute(this.deps.db);
      return { total: Number(r.rows[0].n) };
    }
    const r = await sql<{ n: number | string }>`select count(*) as n from (select 1 from ${from} where ${filter} limit ${limit + 1}) s`.execute(this.deps.db);
    const n = Number(r.rows[0].n);
    return { total: Math.min(n, limit), totalCapped: n > limit };
  }

  private async counts(field: string, from: Sql, filter: Sql): Promise<SearchResult['counts']> {
    let value: Sql;
    let join: Sql = sql``;
    if (field.startsWith('tag.')) {
      value = sql`t.value`;
      join = sql` left join device_tags t on t.device_id = d.id and t.key = ${field.slice(4)}`;
    } else {
      value = (
        {
          product: sql`d.product_key`,
          firmware: sql`d.firmware`,
          parent: sql`d.parent_id`,
          online: sql`coalesce(p.online, 0)`,
          disabled: sql`case when d.disabled_at is null then 0 else 1 end`,
        } as Record<string, Sql>
      )[field];
    }
    const rows = (
      await sql<{ value: string | number | null; n: number | string }>`select ${value} as value, count(*) as n from ${from}${join} where ${filter}
      group by ${value} order by count(*) desc, ${value} limit 100`.execute(this.deps.db)
    ).rows;
    const asBool = field === 'online' || field === 'disabled';
    return rows.map((r) => ({ value: asBool ? Number(r.value) === 1 : r.value === null ? null : String(r.value), count: Number(r.n) }));
  }
}

type Row = {
  id: string;
  product_key: string;
  name: string;
  parent_id: string | null;
  hwid: string | null;
  pairing_code: string | null;
  created_at: number | string;
  disabled_at: number | string | null;
  sort_value: unknown;
};

function toRecord(r: Row): DeviceRecord {
  return {
    id: r.id,
    productKey: r.product_key,
    name: r.name,
    parentId: r.parent_id,
    hwid: r.hwid,
    pairingCode: r.pairing_code,
    createdAt: Number(r.created_at),
    disabledAt: r.disabled_at == null ? null : Number(r.disabled_at),
  };
}

/** A tag value held by at most this many devices leads the search (see `selectiveTags`). */
const SELECTIVE = 5000;
/** A tag value held by at most this many devices leads a count on SQLite (see the constructor). */
const COUNT_SELECTIVE = 50_000;

function compile(e: Expr, c: Compiled): Sql {
  switch (e.kind) {
    case 'and':
      return sql`(${sql.join(
        e.items.map((x) => compile(x, c)),
        sql` and `,
      )})`;
    case 'or':
      return sql`(${sql.join(
        e.items.map((x) => compile(x, c)),
        sql` or `,
      )})`;
    case 'not':
      return sql`not (${compile(e.item, c)})`;
    case 'term':
      if (e.field === 'group') {
        const g = c.groups.get(e);
        if (!g) throw new Error('group condition not resolved');
        return g;
      }
      return term(e, c.selective);
  }
}

/** A condition on the device's presence row, checked per device (a device without one is offline, never seen). */
const presence = (cond: Sql) => sql`exists (select 1 from presence p where p.device_id = d.id and ${cond})`;

const CMP: Record<string, Sql> = { '<': sql`<`, '<=': sql`<=`, '>': sql`>`, '>=': sql`>=` };

/** One condition; comparisons on a column that may be null hold only where it has a value (so NOT takes the rest). */
function term(t: Term, selective: Set<string>): Sql {
  const v = t.value;
  const negate = t.op === '!=';
  const maybeNot = (s: Sql) => (negate ? sql`not (${s})` : s);
  if (t.field === 'tag') {
    const key = t.tag!;
    if (v.type === 'none') return maybeNot(sql`d.id not in (select device_id from device_tags where key = ${key})`);
    if (v.type === 'any') return maybeNot(sql`d.id in (select device_id from device_tags where key = ${key})`);
    if (v.type !== 'string') throw new Error('tag values are strings');
    if (!v.prefix && selective.has(`${key}\u0000${v.value}`))
      return maybeNot(sql`d.id in (select device_id from device_tags where key = ${key} and value = ${v.value})`);
    const match = v.prefix ? sql`substr(t.value, 1, ${v.value.length}) = ${v.value}` : sql`t.value = ${v.value}`;
    return maybeNot(sql`exists (select 1 from device_tags t where t.device_id = d.id and t.key = ${key} and ${match})`);
  }
  if (t.field === 'attr') {
    const key = t.attr!;
    const has = (cond: Sql) => sql`exists (select 1 from device_attributes a where a.device_id = d.id and a.key = ${key} and ${cond})`;
    if (v.type === 'none') return maybeNot(sql`not exists (select 1 from device_attributes a where a.device_id = d.id and a.key = ${key})`);
    if (v.type === 'any') return maybeNot(sql`exists (select 1 from device_attributes a where a.device_id = d.id and a.key = ${key})`);
    if (v.type === 'number') return has(sql`a.num is not null and a.num ${CMP[t.op]} ${v.value}`);
    if (v.type !== 'string') throw new Error('attribute values are strings or numbers');
    return maybeNot(has(v.prefix ? sql`substr(a.value, 1, ${v.value.length}) = ${v.value}` : sql`a.value = ${v.value}`));
  }
  if (t.field in STRING_COLUMNS) {
    const col = sql.raw(STRING_COLUMNS[t.field]);
    if (v.type === 'none') return maybeNot(sql`${col} is null`);
    if (v.type === 'any') return maybeNot(sql`${col} is not null`);
    if (v.type !== 'string') throw new Error('string field');
    return maybeNot(
      v.prefix ? sql`(${col} is not null and substr(${col}, 1, ${v.value.length}) = ${v.value})` : sql`(${col} is not null and ${col} = ${v.value})`,
    );
  }
  switch (t.field) {
    case 'online': {
      if (v.type !== 'bool') throw new Error('bool field');
      const on = presence(sql`p.online = 1`);
      return maybeNot(v.value ? on : sql`not ${on}`);
    }
    case 'disabled': {
      if (v.type !== 'bool') throw new Error('bool field');
      return maybeNot(v.value ? sql`d.disabled_at is not null` : sql`d.disabled_at is null`);
    }
    case 'firmware': {
      if (v.type === 'none') return maybeNot(sql`d.firmware_key is null`);
      if (v.type === 'any') return maybeNot(sql`d.firmware_key is not null`);
      if (v.type !== 'version') throw new Error('version field');
      const key = firmwareKey(v.value);
      const op = t.op === '=' || t.op === '!=' ? sql`=` : CMP[t.op];
      return maybeNot(sql`(d.firmware_key is not null and d.firmware_key ${op} ${key})`);
    }
    case 'lastSeen': {
      const seen = presence(sql`p.last_seen is not null`);
      if (v.type === 'none') return maybeNot(sql`not ${seen}`);
      if (v.type === 'any') return maybeNot(seen);
      if (v.type !== 'time') throw new Error('time field');
      const op = t.op === '=' || t.op === '!=' ? sql`=` : CMP[t.op];
      return maybeNot(presence(sql`p.last_seen ${op} ${v.value}`));
    }
    case 'createdAt': {
      if (v.type !== 'time') throw new Error('time field');
      const op = t.op === '=' || t.op === '!=' ? sql`=` : CMP[t.op];
      return maybeNot(sql`d.created_at ${op} ${v.value}`);
    }
  }
  throw new Error(`unknown field ${t.field}`);
}

function encodeCursor(sort: SortField, desc: boolean, v: number | string, id: string): string {
  return Buffer.from(JSON.stringify({ s: `${desc ? '-' : ''}${sort}`, v, i: id })).toString('base64url');
}

function decodeCursor(cursor: string, sort: SortField, desc: boolean, kind: 'number' | 'string'): { v: number | string; id: string } {
  const bad = (why: string) =>
    new HearthError('E_VALIDATION', `querystring.cursor ${why}: pass the nextCursor of the previous page, with the same sort`, { field: 'querystring.cursor' });
  let c: { s?: unknown; v?: unknown; i?: unknown };
  try {
    c = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw bad('is not a cursor this API gave');
  }
  if (typeof c !== 'object' || c === null || typeof c.i !== 'string' || typeof c.v !== kind) throw bad('is not a cursor this API gave');
  if (c.s !== `${desc ? '-' : ''}${sort}`) throw bad(`was made for sort=${String(c.s)}`);
  return { v: c.v as number | string, id: c.i };
}
