import type { Db } from '../core/store/db.ts';
import { fromJson } from '../core/store/db.ts';
import type { Selectable } from 'kysely';
import type { Database } from '../core/store/schema.ts';
import { prepared } from '../core/store/prepared-query.ts';
import type { HomeRole, Membership, Placement } from '../access/access-service.ts';

/** Asked on every request about a device (src/core/prepared-query.ts). */
const bindingOf = prepared<Database, Selectable<Database['device_bindings']>>((db, p) =>
  db.selectFrom('device_bindings').selectAll().where('device_id', '=', p('deviceId')),
);
const membershipOfUser = prepared<Database, Selectable<Database['home_members']>>((db, p) =>
  db.selectFrom('home_members').selectAll().where('home_id', '=', p('homeId')).where('user_id', '=', p('userId')),
);
const sharesOfOne = prepared<Database, { permission: string; created_at: number | string }>((db, p) =>
  db.selectFrom('device_shares').select(['permission', 'created_at']).where('user_id', '=', p('userId')).where('device_id', '=', p('a')),
);
const sharesOfTwo = prepared<Database, { permission: string; created_at: number | string }>((db, p) =>
  db
    .selectFrom('device_shares')
    .select(['permission', 'created_at'])
    .where('user_id', '=', p('userId'))
    .where('device_id', 'in', [p('a'), p('b')]),
);

/** A membership with the time since when the member's rights are what they are. */
export type MembershipSince = Membership & { since: number };

/**
 * The homes capability's tables as the access policy reads them: memberships, bindings and
 * shares, no decisions. The AccessService (src/access/) owns the rules and asks this; nothing
 * else outside src/homes/ reads these tables.
 */
export class HomeDirectory {
  constructor(private readonly db: Db) {}

  async homeExists(homeId: string): Promise<boolean> {
    return (await this.db.selectFrom('homes').select('id').where('id', '=', homeId).executeTakeFirst()) !== undefined;
  }

  /** A device's own binding row (a sub-device's places it in a room or names it; its hub's decides the home). */
  async binding(deviceId: string): Promise<Placement | undefined> {
    const row = (await bindingOf.run(this.db, { deviceId })).rows[0];
    return row ? { homeId: row.home_id, roomId: row.room_id, name: row.name, boundAt: Number(row.bound_at) } : undefined;
  }

  /** The binding rows of many devices, by device id. */
  async bindings(deviceIds: readonly string[]): Promise<Map<string, Placement>> {
    if (!deviceIds.length) return new Map();
    const rows = await this.db
      .selectFrom('device_bindings')
      .selectAll()
      .where('device_id', 'in', [...deviceIds])
      .execute();
    return new Map(rows.map((r) => [r.device_id, { homeId: r.home_id, roomId: r.room_id, name: r.name, boundAt: Number(r.bound_at) }]));
  }

  async membership(userId: string, homeId: string): Promise<MembershipSince | undefined> {
    const row = (await membershipOfUser.run(this.db, { homeId, userId })).rows[0];
    return row ? membershipOf(row) : undefined;
  }

  /** Every membership of a user, by home. */
  async membershipsOf(userId: string): Promise<Array<MembershipSince & { homeId: string }>> {
    const rows = await this.db.selectFrom('home_members').selectAll().where('user_id', '=', userId).execute();
    return rows.map((r) => ({ ...membershipOf(r), homeId: r.home_id }));
  }

  /** The members of a home, by user. */
  async members(homeId: string): Promise<Array<MembershipSince & { userId: string }>> {
    const rows = await this.db.selectFrom('home_members').selectAll().where('home_id', '=', homeId).execute();
    return rows.map((r) => ({ ...membershipOf(r), userId: r.user_id }));
  }

  /** Ids of the devices bound (by their own binding row) to any of the homes. */
  async boundDeviceIds(homeIds: readonly string[]): Promise<string[]> {
    if (!homeIds.length) return [];
    const rows = await this.db
      .selectFrom('device_bindings')
      .select('device_id')
      .where('home_id', 'in', [...homeIds])
      .execute();
    return rows.map((r) => r.device_id);
  }

  /** The user's shares of any of the devices. */
  async shares(userId: string, deviceIds: readonly string[]): Promise<Array<{ permission: 'control' | 'view'; createdAt: number }>> {
    // A device, or a sub-device and its hub: the usual lists have a statement of their own.
    const rows =
      deviceIds.length === 1
        ? (await sharesOfOne.run(this.db, { userId, a: deviceIds[0] })).rows
        : deviceIds.length === 2
          ? (await sharesOfTwo.run(this.db, { userId, a: deviceIds[0], b: deviceIds[1] })).rows
          : await this.db
              .selectFrom('device_shares')
              .select(['permission', 'created_at'])
              .where('user_id', '=', userId)
              .where('device_id', 'in', [...deviceIds])
              .execute();
    return rows.map((r) => ({ permission: r.permission === 'control' ? 'control' : 'view', createdAt: Number(r.created_at) }));
  }

  /** Ids of the devices shared with the user. */
  async sharedDeviceIds(userId: string): Promise<string[]> {
    return (await this.db.selectFrom('device_shares').select('device_id').where('user_id', '=', userId).execute()).map((r) => r.device_id);
  }
}

function membershipOf(row: {
  role: string;
  guest_devices: string | null;
  guest_until: number | string | null;
  rights_since: number | string | null;
  created_at: number | string;
}): MembershipSince {
  return {
    role: row.role as HomeRole,
    guestDevices: fromJson<string[] | null>(row.guest_devices),
    guestUntil: row.guest_until == null ? null : Number(row.guest_until),
    since: Number(row.rights_since ?? row.created_at),
  };
}
