import type { Transaction } from 'kysely';
import type { Db } from '../core/store/db.ts';
import { fromJson, toJson } from '../core/store/db.ts';
import type { Database } from '../core/store/schema.ts';

/**
 * Takes devices out of homes inside the caller's transaction: their bindings and shares go, and
 * they leave the device groups, guest lists and guest invitations of `homeIds`. The one way it is
 * done, for an unbind by the home's people and for the fleet lifecycle alike.
 */
export async function removeFromHomes(trx: Transaction<Database>, ids: readonly string[], homeIds: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  const gone = new Set(ids);
  const without = (json: string | null) => {
    const list = fromJson<string[] | null>(json);
    if (!list) return undefined;
    const kept = list.filter((id) => !gone.has(id));
    return kept.length === list.length ? undefined : kept;
  };
  await trx
    .deleteFrom('device_bindings')
    .where('device_id', 'in', [...ids])
    .execute();
  await trx
    .deleteFrom('device_shares')
    .where('device_id', 'in', [...ids])
    .execute();
  if (homeIds.length === 0) return;
  const homes = [...homeIds];
  for (const g of await trx.selectFrom('device_groups').select(['id', 'device_ids']).where('home_id', 'in', homes).execute()) {
    const kept = without(g.device_ids);
    if (kept)
      await trx
        .updateTable('device_groups')
        .set({ device_ids: toJson(kept) })
        .where('id', '=', g.id)
        .execute();
  }
  const guests = await trx
    .selectFrom('home_members')
    .select(['home_id', 'user_id', 'guest_devices'])
    .where('home_id', 'in', homes)
    .where('guest_devices', 'is not', null)
    .execute();
  for (const m of guests) {
    const kept = without(m.guest_devices);
    if (kept)
      await trx
        .updateTable('home_members')
        .set({ guest_devices: toJson(kept) })
        .where('home_id', '=', m.home_id)
        .where('user_id', '=', m.user_id)
        .execute();
  }
  const invited = await trx
    .selectFrom('invitations')
    .select(['id', 'guest_devices'])
    .where('home_id', 'in', homes)
    .where('guest_devices', 'is not', null)
    .execute();
  for (const i of invited) {
    const kept = without(i.guest_devices);
    if (kept)
      await trx
        .updateTable('invitations')
        .set({ guest_devices: toJson(kept) })
        .where('id', '=', i.id)
        .execute();
  }
}

/** What taking devices out of their homes changed, for the caches and the audit log. */
export interface HomeRemoval {
  /** Device → the home it was bound to (its own binding: hubs and stand-alone devices, or a sub-device's room row). */
  homes: Map<string, string>;
  /** Users whose shares of these devices went (their cached rights must go). */
  users: string[];
}

/**
 * Takes devices out of homes without a caller's permission check: the fleet lifecycle's side of
 * `BindingService.unbind` (a device deleted by the operator, a factory reset sent by the device
 * itself), through the same `removeFromHomes`. Callers clear desired state and announce the
 * placement change.
 */
export class HomeDeviceRemoval {
  constructor(private readonly deps: { db: Db }) {}

  /** Which home each device is bound to by its own binding row. */
  async boundHomes(ids: readonly string[]): Promise<Map<string, string>> {
    if (ids.length === 0) return new Map();
    const rows = await this.deps.db
      .selectFrom('device_bindings')
      .select(['device_id', 'home_id'])
      .where('device_id', 'in', [...ids])
      .execute();
    return new Map(rows.map((r) => [r.device_id, r.home_id]));
  }

  async remove(ids: readonly string[]): Promise<HomeRemoval> {
    if (ids.length === 0) return { homes: new Map(), users: [] };
    return this.deps.db.transaction().execute(async (trx) => {
      const bindings = await trx
        .selectFrom('device_bindings')
        .select(['device_id', 'home_id'])
        .where('device_id', 'in', [...ids])
        .execute();
      const shares = await trx
        .selectFrom('device_shares')
        .select('user_id')
        .where('device_id', 'in', [...ids])
        .execute();
      await removeFromHomes(trx, ids, [...new Set(bindings.map((b) => b.home_id))]);
      return { homes: new Map(bindings.map((b) => [b.device_id, b.home_id])), users: [...new Set(shares.map((s) => s.user_id))] };
    });
  }
}
