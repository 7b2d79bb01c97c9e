import { HearthError, isHearthError } from '../core/errors.ts';
import type { DeviceRecord, DeviceService } from '../devices/device-service.ts';
import { hasScope, type Principal, type Scope } from './principal.ts';
import type { HomeDirectory } from '../homes/home-directory.ts';

/** What a principal may do with a device, in increasing order. */
export type DeviceRight = 'none' | 'view' | 'control' | 'configure';
/** A member's role in a home, in increasing order of power. */
export type HomeRole = 'guest' | 'member' | 'admin' | 'owner';
/** What an action on a home needs. */
export type HomeNeed = 'view' | 'control' | 'configure' | 'own';

const RIGHTS: readonly DeviceRight[] = ['none', 'view', 'control', 'configure'];
const rank = (r: DeviceRight) => RIGHTS.indexOf(r);
const max = (a: DeviceRight, b: DeviceRight) => (rank(a) >= rank(b) ? a : b);
const min = (a: DeviceRight, b: DeviceRight) => (rank(a) <= rank(b) ? a : b);

/** Which home a device is in, through its own binding or, for a sub-device, its hub's. */
export interface Placement {
  homeId: string;
  roomId: string | null;
  /** The name the home's people gave the device, if any. */
  name: string | null;
  /** When the device joined this home; history before it is not the home's to see. */
  boundAt: number;
}

export interface Membership {
  role: HomeRole;
  guestDevices: string[] | null;
  guestUntil: number | null;
}

/**
 * The one rule for a guest's stay: a guest's access ends at `guestUntil` (inclusive of that
 * millisecond); other roles never expire. Every decision about memberships goes through it.
 */
export function membershipActive(m: Pick<Membership, 'role' | 'guestUntil'>, now = Date.now()): boolean {
  return m.role !== 'guest' || m.guestUntil === null || m.guestUntil >= now;
}

/** Whether a guest stay that ends at `until` (null: open-ended) has ended by `now`. */
export function guestStayEnded(until: number | null, now = Date.now()): boolean {
  return until !== null && until < now;
}

/**
 * The one authorization policy for homes and devices. Every route asks it; nobody else reads
 * memberships, bindings or shares to decide access. Anything a caller may not see is answered
 * as not found, so ids of other homes never leak; a caller who may see a thing but not change
 * it gets E_FORBIDDEN.
 */
export class AccessService {
  constructor(private readonly deps: { directory: HomeDirectory; devices: DeviceService }) {}

  async placement(deviceId: string): Promise<Placement | undefined> {
    const device = await this.deps.devices.get(deviceId);
    if (!device) return undefined;
    const own = await this.binding(deviceId);
    if (device.parentId) {
      const hub = await this.binding(device.parentId);
      if (!hub) return undefined;
      // A sub-device follows its hub's home; its own binding only places it in a room or names it.
      return own && own.homeId === hub.homeId ? { ...own, boundAt: Math.max(own.boundAt, hub.boundAt) } : { ...hub, roomId: null, name: null };
    }
    return own;
  }

  async membership(userId: string, homeId: string): Promise<Membership | undefined> {
    const m = await this.deps.directory.membership(userId, homeId);
    return m && { role: m.role, guestDevices: m.guestDevices, guestUntil: m.guestUntil };
  }

  /**
   * Who a home's notifications may reach: the members whose membership is active (guests while
   * their stay lasts), with their roles, by user id.
   */
  async activeMembers(homeId: string, now = Date.now()): Promise<Array<{ userId: string; role: HomeRole }>> {
    return (await this.deps.directory.members(homeId)).filter((m) => membershipActive(m, now)).map((m) => ({ userId: m.userId, role: m.role }));
  }

  /** The principal's right on a device (operator: configure on every device). */
  async deviceRight(p: Principal, device: DeviceRecord, known?: { placement: Placement | undefined }): Promise<DeviceRight> {
    let right: DeviceRight = 'none';
    if (p.role === 'operator' && !p.homeIds) return min('configure', this.scopeCap(p));
    const place = known ? known.placement : await this.placement(device.id);
    if (place && this.keyAllowsHome(p, place.homeId)) {
      const m = await this.membership(p.userId, place.homeId);
      if (m) right = max(right, this.memberRight(m, device));
    }
    if (!p.homeIds) {
      for (const s of await this.deps.directory.shares(p.userId, device.parentId ? [device.id, device.parentId] : [device.id]))
        right = max(right, s.permission);
    }
    return min(right, this.scopeCap(p));
  }

  /**
   * Loads a device the principal may use as `need` requires. Throws E_DEVICE_NOT_FOUND when the
   * device does not exist or the caller may not see it, E_FORBIDDEN when they may see it only.
   */
  async requireDevice(p: Principal, deviceId: string, need: Exclude<DeviceRight, 'none'>): Promise<DeviceRecord> {
    const device = await this.deps.devices.get(deviceId);
    const right = device ? await this.deviceRight(p, device) : 'none';
    return this.allowed(deviceId, device, right, need);
  }

  /** `requireDevice`, and where the device is (its home, for the audit log): one placement lookup for both. */
  async requirePlacedDevice(
    p: Principal,
    deviceId: string,
    need: Exclude<DeviceRight, 'none'>,
  ): Promise<{ device: DeviceRecord; placement: Placement | undefined }> {
    const device = await this.deps.devices.get(deviceId);
    const known = { placement: device ? await this.placement(deviceId) : undefined };
    const right = device ? await this.deviceRight(p, device, known) : 'none';
    return { device: this.allowed(deviceId, device, right, need), placement: known.placement };
  }

  private allowed(deviceId: string, device: DeviceRecord | undefined, right: DeviceRight, need: Exclude<DeviceRight, 'none'>): DeviceRecord {
    if (!device || right === 'none') throw new HearthError('E_DEVICE_NOT_FOUND', `device "${deviceId}" does not exist`);
    if (rank(right) < rank(need)) throw new HearthError('E_FORBIDDEN', `${need} on this device needs more than your ${right} access`);
    return device;
  }

  /**
   * Checks the principal's role in a home. Throws E_HOME_NOT_FOUND to non-members (and to API
   * keys restricted to other homes), E_FORBIDDEN to members whose role is not enough.
   * `alsoScope`: an API key scope that allows here what homes:read and homes:manage allow (e.g.
   * automations:manage for a home's automations); the role in the home still decides.
   */
  async requireHome(p: Principal, homeId: string, need: HomeNeed, alsoScope?: Scope): Promise<HomeRole | 'operator'> {
    if (!(await this.deps.directory.homeExists(homeId)) || !this.keyAllowsHome(p, homeId))
      throw new HearthError('E_HOME_NOT_FOUND', `home "${homeId}" does not exist`);
    if (p.role === 'operator' && !p.keyId) return 'operator';
    const m = await this.membership(p.userId, homeId);
    if (!m || !membershipActive(m)) throw new HearthError('E_HOME_NOT_FOUND', `home "${homeId}" does not exist`);
    const homeScope = (s: Scope) => hasScope(p, s) || (alsoScope !== undefined && hasScope(p, alsoScope));
    const scopeOk =
      need === 'view'
        ? homeScope('homes:read') || hasScope(p, 'devices:read')
        : need === 'control'
          ? hasScope(p, 'devices:control')
          : homeScope('homes:manage');
    const roleOk = need === 'view' || need === 'control' ? true : need === 'configure' ? m.role === 'admin' || m.role === 'owner' : m.role === 'owner';
    if (!scopeOk || !roleOk)
      throw new HearthError(
        'E_FORBIDDEN',
        `this needs ${need === 'own' ? 'the owner' : need === 'configure' ? 'an owner or admin' : `${need} access`} of the home`,
      );
    return m.role;
  }

  /**
   * requireHome for something that belongs to a home (a scene, a group, a channel): to a caller
   * who may not see the home, it does not exist, so they get `notFound()` rather than a home error.
   */
  async requireHomeOf(p: Principal, homeId: string, need: HomeNeed, notFound: () => HearthError, alsoScope?: Scope): Promise<HomeRole | 'operator'> {
    try {
      return await this.requireHome(p, homeId, need, alsoScope);
    } catch (err) {
      if (isHearthError(err) && err.code === 'E_HOME_NOT_FOUND') throw notFound();
      throw err;
    }
  }

  /**
   * Ids of the devices a principal may see, for listings; undefined means every device (operator).
   * Sub-devices of visible hubs are included.
   */
  async visibleDeviceIds(p: Principal): Promise<string[] | undefined> {
    if (p.role === 'operator' && !p.homeIds) return undefined;
    if (!hasScope(p, 'devices:read') && !hasScope(p, 'devices:control')) return [];
    const { directory } = this.deps;
    const ids = new Set<string>();
    const now = Date.now();
    const fullHomes: string[] = [];
    for (const m of await directory.membershipsOf(p.userId)) {
      if (!this.keyAllowsHome(p, m.homeId) || !membershipActive(m, now)) continue;
      if (m.role !== 'guest') fullHomes.push(m.homeId);
      else for (const id of m.guestDevices ?? []) ids.add(id);
    }
    for (const id of await directory.boundDeviceIds(fullHomes)) ids.add(id);
    if (!p.homeIds) for (const id of await directory.sharedDeviceIds(p.userId)) ids.add(id);
    for (const id of await this.deps.devices.childIds([...ids])) ids.add(id);
    // A binding whose hub moved elsewhere is not enough: check each against the policy.
    const out: string[] = [];
    for (const id of ids) {
      const d = await this.deps.devices.get(id);
      if (d && (await this.deviceRight(p, d)) !== 'none') out.push(id);
    }
    return out;
  }

  /**
   * The principal's right on an event of `device` that happened while the device was in `homeId`
   * (null: in no home), and since when that right holds: the live stream decides by the home an
   * event belonged to when it happened, never by where the device is now, so a device's next home
   * does not see its previous home's events (nor the other way round). Through membership of
   * that home, since the member's rights became what they are (joining, or a later change of role,
   * devices or stay); through a share, only while the device is still in that
   * home (unbinding deletes shares), since the share was made and the device bound.
   */
  async deviceEventRight(p: Principal, device: DeviceRecord, homeId: string | null): Promise<{ right: DeviceRight; since: number }> {
    const cap = this.scopeCap(p);
    if (p.role === 'operator' && !p.homeIds) return { right: cap, since: 0 };
    let right: DeviceRight = 'none';
    let since = Infinity;
    if (homeId === null) return { right, since };
    if (this.keyAllowsHome(p, homeId)) {
      const m = await this.deps.directory.membership(p.userId, homeId);
      if (m) {
        right = this.memberRight(m, device);
        since = m.since;
      }
    }
    if (!p.homeIds) {
      const place = await this.placement(device.id);
      if (place?.homeId === homeId) {
        for (const s of await this.deps.directory.shares(p.userId, device.parentId ? [device.id, device.parentId] : [device.id])) {
          right = max(right, s.permission);
          since = Math.min(since, Math.max(s.createdAt, place.boundAt));
        }
      }
    }
    right = min(right, cap);
    return { right, since: right === 'none' ? Infinity : since };
  }

  /**
   * The principal's role in a home for events of the home itself (automation runs, scenes,
   * notifications), as `requireHome(p, homeId, 'view')` decides it, and since when they have been a
   * member; undefined when they may not view the home.
   */
  async homeEventRole(p: Principal, homeId: string): Promise<{ role: HomeRole | 'operator'; since: number } | undefined> {
    if (!this.keyAllowsHome(p, homeId)) return undefined;
    if (p.role === 'operator' && !p.keyId) return { role: 'operator', since: 0 };
    if (!hasScope(p, 'homes:read') && !hasScope(p, 'devices:read')) return undefined;
    const m = await this.deps.directory.membership(p.userId, homeId);
    if (!m || !membershipActive(m)) return undefined;
    return { role: m.role, since: m.since };
  }

  private memberRight(m: Membership, device: DeviceRecord): DeviceRight {
    switch (m.role) {
      case 'owner':
      case 'admin':
        return 'configure';
      case 'member':
        return 'control';
      case 'guest': {
        if (!membershipActive(m)) return 'none';
        const list = m.guestDevices ?? [];
        return list.includes(device.id) || (device.parentId !== null && list.includes(device.parentId)) ? 'control' : 'none';
      }
    }
  }

  private keyAllowsHome(p: Principal, homeId: string): boolean {
    return !p.homeIds || p.homeIds.includes(homeId);
  }

  /** The most an API key's scopes allow on a device. */
  private scopeCap(p: Principal): DeviceRight {
    if (!p.scopes) return 'configure';
    if (p.scopes.includes('homes:manage')) return 'configure';
    if (p.scopes.includes('devices:control')) return 'control';
    if (p.scopes.includes('devices:read')) return 'view';
    return 'none';
  }
  /**
   * `placement` of many devices in one query (a page of fleet search results): the same rules,
   * for devices already loaded.
   */
  async placements(devices: readonly DeviceRecord[]): Promise<Map<string, Placement>> {
    const out = new Map<string, Placement>();
    const ids = [...new Set(devices.flatMap((d) => (d.parentId ? [d.id, d.parentId] : [d.id])))];
    if (ids.length === 0) return out;
    const bound = await this.deps.directory.bindings(ids);
    for (const d of devices) {
      const own = bound.get(d.id);
      if (!d.parentId) {
        if (own) out.set(d.id, own);
        continue;
      }
      const hub = bound.get(d.parentId);
      if (hub) out.set(d.id, own && own.homeId === hub.homeId ? { ...own, boundAt: Math.max(own.boundAt, hub.boundAt) } : { ...hub, roomId: null, name: null });
    }
    return out;
  }

  private binding(deviceId: string): Promise<Placement | undefined> {
    return this.deps.directory.binding(deviceId);
  }
}
