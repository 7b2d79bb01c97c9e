import type { Db } from '../core/store/db.ts';
import { HearthError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { AuditEntry } from '../audit/audit-service.ts';
import type { DeviceRecord } from '../devices/device-service.ts';
import { sql } from 'kysely';
import type { GroupMatch, SearchInput, SearchResult } from '../devices/device-search.ts';
import { parseQuery, QueryError, type Expr } from '../devices/fleet-query.ts';

/** A group as the API shows it. */
export interface FleetGroupView {
  id: string;
  name: string;
  description: string | null;
  /** static: members added by id; dynamic: the devices its query matches, now. */
  type: 'static' | 'dynamic';
  query: string | null;
  parentId: string | null;
  createdAt: string;
  updatedAt: string;
}

type Row = { id: string; name: string; description: string | null; parent_id: string | null; query: string | null; created_at: number; updated_at: number };

/** What a group stands for when a search or a bulk job targets it: device ids, a query, or both (OR). */
export interface GroupTarget {
  ids: string[];
  exprs: Expr[];
}

/** The largest static group. */
export const MAX_GROUP_MEMBERS = 100_000;

/** Parses a stored or given query; a bad one is E_VALIDATION naming the field. */
export function queryOf(q: string, field: string): Expr {
  try {
    return parseQuery(q);
  } catch (err) {
    if (err instanceof QueryError) throw new HearthError('E_VALIDATION', `${field}: ${err.message}`, { field, position: err.position, problem: err.problem });
    throw err;
  }
}

/**
 * The operator's fleet groups (docs/fleet.md): static groups (named, their devices added by id,
 * a device in any number of them) and dynamic groups (a saved query: their devices are whatever
 * matches it now). A group may sit in one static parent group (one level): the parent's devices
 * are its own and its subgroups'.
 */
export class FleetGroups {
  constructor(
    private readonly deps: {
      db: Db;
      audit: { record(e: AuditEntry): void };
      devices: { get(id: string): Promise<DeviceRecord | undefined> };
      search: { search(input: SearchInput): Promise<SearchResult> };
    },
  ) {}

  async create(actor: string, input: { name: string; description?: string; parentId?: string; query?: string }): Promise<FleetGroupView> {
    if (input.query !== undefined) queryOf(input.query, 'body.query');
    if (input.parentId !== undefined) await this.checkParent(input.parentId);
    await this.checkName(input.name.trim());
    const now = Date.now();
    const row: Row = {
      id: newId('fg'),
      name: input.name.trim(),
      description: input.description ?? null,
      parent_id: input.parentId ?? null,
      query: input.query ?? null,
      created_at: now,
      updated_at: now,
    };
    await this.deps.db.insertInto('fleet_groups').values(row).execute();
    this.deps.audit.record({
      actor,
      action: 'fleet.group.create',
      targetType: 'fleet-group',
      targetId: row.id,
      details: { name: row.name, parentId: row.parent_id, query: row.query },
    });
    return view(row);
  }

  async list(): Promise<FleetGroupView[]> {
    return (await this.deps.db.selectFrom('fleet_groups').selectAll().orderBy('name').execute()).map(view);
  }

  async get(id: string): Promise<FleetGroupView> {
    return view(await this.row(id));
  }

  async update(
    actor: string,
    id: string,
    patch: { name?: string; description?: string | null; parentId?: string | null; query?: string },
  ): Promise<FleetGroupView> {
    const row = await this.row(id);
    if (patch.query !== undefined) {
      if (row.query === null) throw new HearthError('E_CONFLICT', 'a static group has no query: make a dynamic group instead', { field: 'body.query' });
      queryOf(patch.query, 'body.query');
    }
    if (patch.parentId) {
      if (patch.parentId === id) throw new HearthError('E_VALIDATION', 'a group cannot be its own parent', { field: 'body.parentId' });
      await this.checkParent(patch.parentId);
      const kids = await this.deps.db.selectFrom('fleet_groups').select('id').where('parent_id', '=', id).executeTakeFirst();
      if (kids) throw new HearthError('E_VALIDATION', 'this group has subgroups: groups nest one level only', { field: 'body.parentId' });
    }
    if (patch.name !== undefined && patch.name.trim() !== row.name) await this.checkName(patch.name.trim());
    const set: Partial<Row> = { updated_at: Date.now() };
    if (patch.name !== undefined) set.name = patch.name.trim();
    if (patch.description !== undefined) set.description = patch.description;
    if (patch.parentId !== undefined) set.parent_id = patch.parentId;
    if (patch.query !== undefined) set.query = patch.query;
    await this.deps.db.updateTable('fleet_groups').set(set).where('id', '=', id).execute();
    this.deps.audit.record({ actor, action: 'fleet.group.update', targetType: 'fleet-group', targetId: id, details: patch });
    return view({ ...row, ...set });
  }

  /** Deletes a group and its memberships (the devices stay); a group with subgroups must lose them first. */
  async delete(actor: string, id: string): Promise<void> {
    const row = await this.row(id);
    const kid = await this.deps.db.selectFrom('fleet_groups').select('name').where('parent_id', '=', id).executeTakeFirst();
    if (kid) throw new HearthError('E_CONFLICT', `group "${row.name}" has subgroups (e.g. "${kid.name}"): delete them or move them out first`);
    await this.deps.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('fleet_group_members').where('group_id', '=', id).execute();
      await trx.deleteFrom('fleet_groups').where('id', '=', id).execute();
    });
    this.deps.audit.record({ actor, action: 'fleet.group.delete', targetType: 'fleet-group', targetId: id, details: { name: row.name } });
  }

  /** Adds devices to a static group (already there: nothing happens). Unknown ids: 404 naming the first, and nothing changes. */
  async addDevices(actor: string, id: string, deviceIds: string[]): Promise<{ added: number }> {
    const row = await this.row(id);
    if (row.query !== null) throw new HearthError('E_CONFLICT', 'a dynamic group holds the devices its query matches: devices cannot be added to it');
    const unique = [...new Set(deviceIds)];
    for (const d of unique)
      if (!(await this.deps.devices.get(d)))
        throw new HearthError('E_DEVICE_NOT_FOUND', `device "${d}" does not exist; nothing was added`, { field: 'body.deviceIds' });
    const [{ n }] = await this.deps.db
      .selectFrom('fleet_group_members')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('group_id', '=', id)
      .execute();
    if (Number(n) + unique.length > MAX_GROUP_MEMBERS)
      throw new HearthError('E_VALIDATION', `a static group holds at most ${MAX_GROUP_MEMBERS} devices`, { field: 'body.deviceIds' });
    const now = Date.now();
    let added = 0;
    await this.deps.db.transaction().execute(async (trx) => {
      for (let i = 0; i < unique.length; i += 200) {
        const r = await trx
          .insertInto('fleet_group_members')
          .values(unique.slice(i, i + 200).map((d) => ({ group_id: id, device_id: d, added_at: now })))
          .onConflict((oc) => oc.columns(['group_id', 'device_id']).doNothing())
          .executeTakeFirst();
        added += Number(r.numInsertedOrUpdatedRows ?? 0);
      }
    });
    this.deps.audit.record({ actor, action: 'fleet.group.add', targetType: 'fleet-group', targetId: id, details: { deviceIds: unique } });
    return { added };
  }

  async removeDevice(actor: string, id: string, deviceId: string): Promise<void> {
    await this.row(id);
    const r = await this.deps.db.deleteFrom('fleet_group_members').where('group_id', '=', id).where('device_id', '=', deviceId).executeTakeFirst();
    if (Number(r.numDeletedRows) === 0) throw new HearthError('E_DEVICE_NOT_FOUND', `device "${deviceId}" is not in this group`);
    this.deps.audit.record({ actor, action: 'fleet.group.remove', targetType: 'fleet-group', targetId: id, details: { deviceId } });
  }

  /** The static groups a device is in (its dynamic ones depend on the moment). */
  async groupsOf(deviceId: string): Promise<string[]> {
    return (await this.deps.db.selectFrom('fleet_group_members').select('group_id').where('device_id', '=', deviceId).execute()).map((r) => r.group_id);
  }

  /** What a group stands for: its own members or query, and its subgroups'. */
  async target(id: string): Promise<GroupTarget> {
    const row = await this.row(id);
    const rows = [row, ...(await this.deps.db.selectFrom('fleet_groups').selectAll().where('parent_id', '=', id).execute())];
    const staticIds = rows.filter((r) => r.query === null).map((r) => r.id);
    const ids = staticIds.length
      ? [
          ...new Set(
            (await this.deps.db.selectFrom('fleet_group_members').select('device_id').where('group_id', 'in', staticIds).execute()).map((r) => r.device_id),
          ),
        ]
      : [];
    return { ids, exprs: rows.filter((r) => r.query !== null).map((r) => queryOf(r.query!, `group ${r.id} query`)) };
  }

  /**
   * A page of the group's devices, by id. A dynamic group's page is a search; a static group's
   * members (with its subgroups', and the matches of dynamic subgroups) are paged in id order.
   * `totalLimit` bounds the total as in fleet search (a dynamic group's count stops there).
   */
  async devices(
    id: string,
    page: { limit: number; cursor?: string; totalLimit?: number },
  ): Promise<{ items: DeviceRecord[]; nextCursor: string | null; total: number; totalCapped?: boolean }> {
    const t = await this.target(id);
    if (t.ids.length === 0 && t.exprs.length > 0) {
      const r = await this.deps.search.search({
        expr: t.exprs.length === 1 ? t.exprs[0] : { kind: 'or', items: t.exprs },
        sort: 'id',
        desc: false,
        limit: page.limit,
        cursor: page.cursor,
        total: true,
        totalLimit: page.totalLimit,
      });
      return { items: r.items, nextCursor: r.nextCursor, total: r.total ?? 0, ...(r.totalCapped !== undefined ? { totalCapped: r.totalCapped } : {}) };
    }
    const all = [...new Set([...t.ids, ...(await this.collect(t.exprs))])].sort();
    let after = '';
    if (page.cursor !== undefined) {
      after = Buffer.from(page.cursor, 'base64url').toString('utf8');
      if (!/^[A-Za-z0-9_-]{1,64}$/.test(after))
        throw new HearthError('E_VALIDATION', 'querystring.cursor is not a cursor this API gave: pass the nextCursor of the previous page', {
          field: 'querystring.cursor',
        });
    }
    const items: DeviceRecord[] = [];
    let i = after ? all.findIndex((x) => x > after) : 0;
    if (i < 0) i = all.length;
    for (; i < all.length && items.length < page.limit; i++) {
      const d = await this.deps.devices.get(all[i]);
      if (d) items.push(d);
    }
    const next = i < all.length && items.length ? Buffer.from(items[items.length - 1].id).toString('base64url') : null;
    if (page.totalLimit === undefined) return { items, nextCursor: next, total: all.length };
    return { items, nextCursor: next, total: Math.min(all.length, page.totalLimit), totalCapped: all.length > page.totalLimit };
  }

  /**
   * A group named in a fleet query (`group:<id or name>`): the device ids of its static members
   * and its static subgroups' as a subquery the search runs in the store (indexed by group), and the
   * queries of it or its dynamic subgroups. Undefined when there is no such group.
   */
  async forSearch(ref: string): Promise<GroupMatch | undefined> {
    const row =
      (await this.deps.db.selectFrom('fleet_groups').selectAll().where('id', '=', ref).executeTakeFirst()) ??
      (await this.deps.db.selectFrom('fleet_groups').selectAll().where('name', '=', ref).executeTakeFirst());
    if (!row) return undefined;
    const rows = [row, ...(await this.deps.db.selectFrom('fleet_groups').selectAll().where('parent_id', '=', row.id).execute())];
    const staticIds = rows.filter((r) => r.query === null).map((r) => r.id);
    return {
      name: row.name,
      members: staticIds.length ? sql`select device_id from fleet_group_members where group_id in (${sql.join(staticIds)})` : null,
      exprs: rows.filter((r) => r.query !== null).map((r) => queryOf(r.query!, `group ${r.id} query`)),
    };
  }

  /** Every device id a group stands for (bulk jobs), up to `max`. */
  async allIds(id: string, max: number): Promise<string[]> {
    const t = await this.target(id);
    const out = new Set(t.ids);
    for (const d of await this.collect(t.exprs, max)) out.add(d);
    return [...out].slice(0, max + 1);
  }

  /** Every device matching any of the queries, walking the search by cursor. */
  async collect(exprs: Expr[], max = MAX_GROUP_MEMBERS, field?: string): Promise<string[]> {
    if (exprs.length === 0) return [];
    const expr: Expr = exprs.length === 1 ? exprs[0] : { kind: 'or', items: exprs };
    const out: string[] = [];
    let cursor: string | undefined;
    do {
      const r = await this.deps.search.search({ expr, sort: 'id', desc: false, limit: 1000, cursor, total: false, ...(field ? { field } : {}) });
      out.push(...r.items.map((d) => d.id));
      cursor = r.nextCursor ?? undefined;
    } while (cursor && out.length <= max);
    return out;
  }

  /** Deleted devices leave every group. */
  async forgetDevices(ids: readonly string[]): Promise<void> {
    if (ids.length)
      await this.deps.db
        .deleteFrom('fleet_group_members')
        .where('device_id', 'in', [...ids])
        .execute();
  }

  private async row(id: string): Promise<Row> {
    const row = await this.deps.db.selectFrom('fleet_groups').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new HearthError('E_FLEET_GROUP_NOT_FOUND', `fleet group "${id}" does not exist`);
    return row;
  }

  private async checkParent(parentId: string): Promise<void> {
    const parent = await this.deps.db.selectFrom('fleet_groups').selectAll().where('id', '=', parentId).executeTakeFirst();
    if (!parent) throw new HearthError('E_VALIDATION', `parent group "${parentId}" does not exist`, { field: 'body.parentId' });
    if (parent.parent_id !== null)
      throw new HearthError('E_VALIDATION', `group "${parent.name}" is itself a subgroup: groups nest one level only`, { field: 'body.parentId' });
    if (parent.query !== null)
      throw new HearthError('E_VALIDATION', `group "${parent.name}" is dynamic: only a static group has subgroups`, { field: 'body.parentId' });
  }

  private async checkName(name: string): Promise<void> {
    const taken = await this.deps.db.selectFrom('fleet_groups').select('id').where('name', '=', name).executeTakeFirst();
    if (taken) throw new HearthError('E_CONFLICT', `a fleet group named "${name}" exists already`, { field: 'body.name' });
  }
}

function view(r: Row): FleetGroupView {
  return {
    id: r.id,
    name: r.name,
    description: r.description,
    type: r.query === null ? 'static' : 'dynamic',
    query: r.query,
    parentId: r.parent_id,
    createdAt: new Date(Number(r.created_at)).toISOString(),
    updatedAt: new Date(Number(r.updated_at)).toISOString(),
  };
}
