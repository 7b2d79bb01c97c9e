import { HearthError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { hasScope, type Principal } from '../access/principal.ts';
import type { AuditRecord } from '../audit/audit-service.ts';
import type { HomeRole } from '../access/access-service.ts';
import { type HomeInfo, type HomeView, type RoomView, type HomeRow, checkTimezone, homeView, roomView } from './home-types.ts';
import { HomesPart } from './homes-part.ts';

/**
 * Homes and their rooms: create, list, rename, relocate, delete, and a home's audit trail.
 */
export class HomeService extends HomesPart {
  async createHome(p: Principal, input: { name: string; timezone: string; latitude?: number; longitude?: number }): Promise<HomeView> {
    if (!hasScope(p, 'homes:manage') || p.homeIds) throw new HearthError('E_FORBIDDEN', 'creating a home needs the homes:manage scope on all homes');
    const row: HomeRow = {
      id: newId('h'),
      name: input.name.trim(),
      timezone: checkTimezone(input.timezone),
      latitude: input.latitude ?? null,
      longitude: input.longitude ?? null,
      owner_id: p.userId,
      created_at: Date.now(),
    };
    await this.deps.db.transaction().execute(async (trx) => {
      await trx.insertInto('homes').values(row).execute();
      await trx
        .insertInto('home_members')
        .values({
          home_id: row.id,
          user_id: p.userId,
          role: 'owner',
          guest_devices: null,
          guest_until: null,
          created_at: row.created_at,
          rights_since: row.created_at,
        })
        .execute();
    });
    this.audit(p, 'home.create', row.id, 'home', row.id, { name: row.name, timezone: row.timezone });
    return homeView(row, 'owner');
  }

  /** The caller's own homes (operators too: their memberships only), with their role in each. */
  async listHomes(p: Principal): Promise<HomeView[]> {
    const rows = await this.deps.db
      .selectFrom('home_members')
      .innerJoin('homes', 'homes.id', 'home_members.home_id')
      .select(['homes.id', 'homes.name', 'homes.timezone', 'homes.latitude', 'homes.longitude', 'homes.owner_id', 'homes.created_at', 'home_members.role'])
      .where('home_members.user_id', '=', p.userId)
      .orderBy('homes.created_at')
      .orderBy('homes.id')
      .execute();
    const out: HomeView[] = [];
    for (const r of rows) {
      // The policy decides what counts (expired guests, API keys restricted to other homes).
      if (!(await this.allowed(p, r.id, 'view'))) continue;
      out.push(homeView(r, r.role as HomeRole));
    }
    return out;
  }

  /** A home's place and owner, for the platform's own work (no access check); undefined when it does not exist. */
  async info(homeId: string): Promise<HomeInfo | undefined> {
    const row = await this.deps.db
      .selectFrom('homes')
      .select(['id', 'name', 'timezone', 'latitude', 'longitude', 'owner_id'])
      .where('id', '=', homeId)
      .executeTakeFirst();
    return (
      row && {
        id: row.id,
        name: row.name,
        timezone: row.timezone,
        ownerId: row.owner_id,
        latitude: row.latitude == null ? null : Number(row.latitude),
        longitude: row.longitude == null ? null : Number(row.longitude),
      }
    );
  }

  async getHome(p: Principal, homeId: string): Promise<HomeView> {
    await this.deps.access.requireHome(p, homeId, 'view');
    return homeView(await this.homeRow(homeId), await this.roleOf(p, homeId));
  }

  async updateHome(
    p: Principal,
    homeId: string,
    patch: { name?: string; timezone?: string; latitude?: number | null; longitude?: number | null },
  ): Promise<HomeView> {
    await this.deps.access.requireHome(p, homeId, 'configure');
    const set: Partial<HomeRow> = {};
    if (patch.name !== undefined) set.name = patch.name.trim();
    if (patch.timezone !== undefined) set.timezone = checkTimezone(patch.timezone);
    if (patch.latitude !== undefined) set.latitude = patch.latitude;
    if (patch.longitude !== undefined) set.longitude = patch.longitude;
    if (Object.keys(set).length) await this.deps.db.updateTable('homes').set(set).where('id', '=', homeId).execute();
    this.audit(p, 'home.update', homeId, 'home', homeId, set);
    if (set.timezone !== undefined || set.latitude !== undefined || set.longitude !== undefined) await this.deps.onLocationChange?.(homeId);
    return this.getHome(p, homeId);
  }

  /** Deletes a home: its devices are unbound (desired state cleared), rooms, members, groups and invitations go. */
  async deleteHome(p: Principal, homeId: string): Promise<void> {
    await this.deps.access.requireHome(p, homeId, 'own');
    const db = this.deps.db;
    const bound = await db.selectFrom('device_bindings').select('device_id').where('home_id', '=', homeId).execute();
    const ids = new Set<string>();
    for (const b of bound) {
      ids.add(b.device_id);
      for (const c of await this.deps.devices.children(b.device_id)) ids.add(c.id);
    }
    // Only what is really in this home: a stale room/name row of a sub-device whose hub moved away is not.
    const placed: string[] = [];
    for (const id of ids) if ((await this.deps.access.placement(id))?.homeId === homeId) placed.push(id);
    await db.transaction().execute(async (trx) => {
      await trx.deleteFrom('device_bindings').where('home_id', '=', homeId).execute();
      if (placed.length) {
        await trx.deleteFrom('device_bindings').where('device_id', 'in', placed).execute();
        await trx.deleteFrom('device_shares').where('device_id', 'in', placed).execute();
      }
      await trx.deleteFrom('device_groups').where('home_id', '=', homeId).execute();
      await trx.deleteFrom('invitations').where('home_id', '=', homeId).execute();
      await trx.deleteFrom('home_members').where('home_id', '=', homeId).execute();
      await trx.deleteFrom('rooms').where('home_id', '=', homeId).execute();
      await trx.deleteFrom('homes').where('id', '=', homeId).execute();
    });
    for (const id of placed) this.deps.onPlacementChange?.(id);
    for (const id of placed) await this.deps.shadow.clearDesired(id);
    await this.deps.onHomeDeleted?.(homeId);
    this.audit(p, 'home.delete', homeId, 'home', homeId, { unbound: placed });
  }

  async createRoom(p: Principal, homeId: string, name: string): Promise<RoomView> {
    await this.deps.access.requireHome(p, homeId, 'configure');
    const row = { id: newId('r'), home_id: homeId, name: name.trim(), created_at: Date.now() };
    await this.deps.db.insertInto('rooms').values(row).execute();
    this.audit(p, 'room.create', homeId, 'room', row.id, { name: row.name });
    return roomView(row);
  }

  async listRooms(p: Principal, homeId: string): Promise<RoomView[]> {
    await this.deps.access.requireHome(p, homeId, 'view');
    const rows = await this.deps.db.selectFrom('rooms').selectAll().where('home_id', '=', homeId).orderBy('created_at').orderBy('id').execute();
    return rows.map(roomView);
  }

  async updateRoom(p: Principal, homeId: string, roomId: string, name: string): Promise<RoomView> {
    await this.deps.access.requireHome(p, homeId, 'configure');
    const room = await this.room(homeId, roomId);
    await this.deps.db.updateTable('rooms').set({ name: name.trim() }).where('id', '=', roomId).where('home_id', '=', homeId).execute();
    this.audit(p, 'room.update', homeId, 'room', roomId, { name: name.trim() });
    return roomView({ ...room, name: name.trim() });
  }

  /** Deletes a room; its devices stay in the home without a room. */
  async deleteRoom(p: Principal, homeId: string, roomId: string): Promise<void> {
    await this.deps.access.requireHome(p, homeId, 'configure');
    await this.room(homeId, roomId);
    await this.deps.db.transaction().execute(async (trx) => {
      await trx.updateTable('device_bindings').set({ room_id: null }).where('room_id', '=', roomId).where('home_id', '=', homeId).execute();
      await trx.deleteFrom('rooms').where('id', '=', roomId).where('home_id', '=', homeId).execute();
    });
    this.audit(p, 'room.delete', homeId, 'room', roomId);
  }

  /** The home's audit trail, newest first; for its owner only. */
  async auditLog(p: Principal, homeId: string, q: { limit: number; before?: number }): Promise<AuditRecord[]> {
    await this.deps.access.requireHome(p, homeId, 'own');
    return this.deps.audit.list({ homeId, limit: q.limit, ...(q.before !== undefined ? { before: q.before } : {}) });
  }
}
