import { HearthError } from '../core/errors.ts';
import { actorOf, type Principal } from '../access/principal.ts';
import type { DeviceRecord } from '../devices/device-service.ts';
import { type ShareView, shareView } from './home-types.ts';
import { HomesPart } from './homes-part.ts';
import { removeFromHomes } from './home-device-removal.ts';

/**
 * Devices in homes: binding by pairing code (sub-devices follow their hub), the devices of a home,
 * unbinding, naming a device or putting it in a room, and sharing one device with someone outside the home.
 */
export class BindingService extends HomesPart {
  /** Binds a device to a home by the pairing code on its box; its sub-devices follow it. */
  async claim(p: Principal, homeId: string, input: { pairingCode: string; roomId?: string; name?: string }): Promise<DeviceRecord> {
    await this.deps.access.requireHome(p, homeId, 'configure');
    const device = await this.deps.devices.findByPairingCode(input.pairingCode);
    if (!device) throw new HearthError('E_PAIRING_CODE_INVALID', 'no device has this pairing code', { field: 'body.pairingCode' });
    if (device.parentId)
      throw new HearthError('E_CONFLICT', 'this is a sub-device: it joins the home of its hub; claim the hub instead', { field: 'body.pairingCode' });
    if (input.roomId !== undefined) await this.room(homeId, input.roomId);
    const now = Date.now();
    const inserted = await this.deps.db
      .insertInto('device_bindings')
      .values({ device_id: device.id, home_id: homeId, room_id: input.roomId ?? null, name: input.name?.trim() ?? null, bound_at: now, bound_by: actorOf(p) })
      .onConflict((oc) => oc.column('device_id').doNothing())
      .executeTakeFirst();
    if (Number(inserted.numInsertedOrUpdatedRows ?? 0) !== 1)
      throw new HearthError('E_DEVICE_ALREADY_CLAIMED', 'this device belongs to a home already; it must be removed from there first');
    this.audit(p, 'device.claim', homeId, 'device', device.id, { roomId: input.roomId ?? null, name: input.name ?? null });
    // its sub-devices move with it
    for (const id of [device.id, ...(await this.deps.devices.children(device.id)).map((c) => c.id)]) this.deps.onPlacementChange?.(id);
    return device;
  }

  /** The devices of a home the caller may see, sub-devices of its hubs included. */
  async listDevices(p: Principal, homeId: string): Promise<DeviceRecord[]> {
    await this.deps.access.requireHome(p, homeId, 'view');
    const out: DeviceRecord[] = [];
    for (const d of await this.devicesIn(homeId)) if ((await this.deps.access.deviceRight(p, d)) !== 'none') out.push(d);
    return out;
  }

  /**
   * Takes a device (and its sub-devices) out of a home: bindings, shares, group and guest-list
   * entries go, and desired state is cleared so the device does not act on the old home's wishes.
   */
  async unbind(p: Principal, homeId: string, deviceId: string): Promise<string[]> {
    await this.deps.access.requireHome(p, homeId, 'configure');
    const device = await this.deps.devices.get(deviceId);
    if (!device || (await this.deps.access.placement(deviceId))?.homeId !== homeId)
      throw new HearthError('E_DEVICE_NOT_FOUND', `device "${deviceId}" does not exist`);
    if (device.parentId) throw new HearthError('E_CONFLICT', 'a sub-device follows its hub; remove the hub instead');
    const ids = [deviceId, ...(await this.deps.devices.children(deviceId)).map((c) => c.id)];
    await this.deps.db.transaction().execute((trx) => removeFromHomes(trx, ids, [homeId]));
    for (const id of ids) this.deps.onPlacementChange?.(id);
    for (const id of ids) await this.deps.shadow.clearDesired(id);
    this.audit(p, 'device.unbind', homeId, 'device', deviceId, { unbound: ids });
    return ids;
  }

  /**
   * Names a device or puts it in a room of its home. A sub-device gets its own binding row (in its
   * hub's home) to hold these; the operator's registry name is never touched.
   */
  async updateDevice(p: Principal, deviceId: string, patch: { name?: string | null; roomId?: string | null }): Promise<DeviceRecord> {
    const device = await this.deps.access.requireDevice(p, deviceId, 'configure');
    const place = await this.deps.access.placement(deviceId);
    if (!place) throw new HearthError('E_CONFLICT', 'the device is not in a home; claim it first');
    if (patch.roomId != null) await this.room(place.homeId, patch.roomId);
    const values = {
      home_id: place.homeId,
      room_id: patch.roomId !== undefined ? patch.roomId : place.roomId,
      name: patch.name !== undefined ? (patch.name?.trim() ?? null) : place.name,
      // A sub-device's history in the home starts when its hub joined: keep that.
      bound_at: place.boundAt,
    };
    await this.deps.db
      .insertInto('device_bindings')
      .values({ device_id: deviceId, ...values, bound_by: actorOf(p) })
      .onConflict((oc) => oc.column('device_id').doUpdateSet(values))
      .execute();
    this.audit(p, 'device.update', place.homeId, 'device', deviceId, patch);
    this.deps.onPlacementChange?.(deviceId);
    return device;
  }

  async share(p: Principal, deviceId: string, input: { email: string; permission: 'control' | 'view' }): Promise<ShareView> {
    await this.deps.access.requireDevice(p, deviceId, 'configure');
    const place = await this.deps.access.placement(deviceId);
    if (!place) throw new HearthError('E_CONFLICT', 'only a device in a home can be shared');
    const email = input.email.trim().toLowerCase();
    const user = await this.deps.users.userByEmail(email);
    // An account that has not verified its address is not (yet) the person with that address:
    // sharing with it could hand the device to whoever signed up with somebody else's address.
    if (!user?.emailVerified) {
      throw new HearthError(
        'E_USER_NOT_FOUND',
        `no account with a verified address ${email}; once its owner has signed up and confirmed the address, share again`,
        { field: 'body.email' },
      );
    }
    // Full members have every device of the home already; a guest may be given one more.
    const member = await this.deps.access.membership(user.id, place.homeId);
    if (member && member.role !== 'guest') throw new HearthError('E_CONFLICT', `${email} is a member of the device's home already`, { field: 'body.email' });
    const now = Date.now();
    const sharedBy = actorOf(p);
    await this.deps.db
      .insertInto('device_shares')
      .values({ device_id: deviceId, user_id: user.id, permission: input.permission, shared_by: sharedBy, created_at: now })
      .onConflict((oc) => oc.columns(['device_id', 'user_id']).doUpdateSet({ permission: input.permission, shared_by: sharedBy }))
      .execute();
    this.audit(p, 'device.share', place.homeId, 'device', deviceId, { userId: user.id, email, permission: input.permission });
    const row = await this.deps.db
      .selectFrom('device_shares')
      .selectAll()
      .where('device_id', '=', deviceId)
      .where('user_id', '=', user.id)
      .executeTakeFirstOrThrow();
    return shareView(row, user.email);
  }

  async listShares(p: Principal, deviceId: string): Promise<ShareView[]> {
    await this.deps.access.requireDevice(p, deviceId, 'configure');
    const rows = await this.deps.db
      .selectFrom('device_shares')
      .selectAll()
      .where('device_id', '=', deviceId)
      .orderBy('created_at')
      .orderBy('user_id')
      .execute();
    return Promise.all(rows.map(async (r) => shareView(r, (await this.deps.users.userById(r.user_id))?.email ?? '')));
  }

  async unshare(p: Principal, deviceId: string, userId: string): Promise<void> {
    await this.deps.access.requireDevice(p, deviceId, 'configure');
    const r = await this.deps.db.deleteFrom('device_shares').where('device_id', '=', deviceId).where('user_id', '=', userId).executeTakeFirst();
    if (Number(r.numDeletedRows) === 0) throw new HearthError('E_USER_NOT_FOUND', `the device is not shared with user "${userId}"`);
    this.deps.onAccessChange?.(userId);
    this.audit(p, 'device.unshare', (await this.deps.access.placement(deviceId))?.homeId ?? null, 'device', deviceId, { userId });
  }
}
