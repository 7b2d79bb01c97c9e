import type { Database } from '../core/store/schema.ts';
import { HearthError, isHearthError } from '../core/errors.ts';
import { actorOf, type Principal } from '../access/principal.ts';
import type { DeviceRecord } from '../devices/device-service.ts';
import type { HomeNeed, HomeRole } from '../access/access-service.ts';
import type { HomesDeps, HomeRow } from './home-types.ts';

/**
 * What the homes services share: their dependencies and the lookups they all make (a home, a room,
 * the devices in a home, what the caller may see). Every check asks the AccessService; no homes
 * service decides access on its own. Whatever a caller may not see is answered as not found.
 */
export abstract class HomesPart {
  constructor(protected readonly deps: HomesDeps) {}

  protected audit(p: Principal, action: string, homeId: string | null, targetType: string, targetId: string, details?: Record<string, unknown>): void {
    this.deps.audit.record({ actor: actorOf(p), action, homeId, targetType, targetId, ...(details ? { details } : {}) });
  }

  protected async allowed(p: Principal, homeId: string, need: HomeNeed): Promise<boolean> {
    try {
      await this.deps.access.requireHome(p, homeId, need);
      return true;
    } catch (err) {
      if (isHearthError(err) && (err.code === 'E_HOME_NOT_FOUND' || err.code === 'E_FORBIDDEN')) return false;
      throw err;
    }
  }

  /** The caller's role to show: their membership, or `operator` for an operator who has none. */
  protected async roleOf(p: Principal, homeId: string): Promise<HomeRole | 'operator'> {
    return (await this.deps.access.membership(p.userId, homeId))?.role ?? 'operator';
  }

  protected async homeRow(homeId: string): Promise<HomeRow> {
    const row = await this.deps.db.selectFrom('homes').selectAll().where('id', '=', homeId).executeTakeFirst();
    if (!row) throw new HearthError('E_HOME_NOT_FOUND', `home "${homeId}" does not exist`);
    return row;
  }

  /** A room of this home; rooms of other homes do not exist here. */
  protected async room(homeId: string, roomId: string): Promise<Database['rooms']> {
    const row = await this.deps.db.selectFrom('rooms').selectAll().where('id', '=', roomId).where('home_id', '=', homeId).executeTakeFirst();
    if (!row) throw new HearthError('E_ROOM_NOT_FOUND', `room "${roomId}" does not exist`);
    return row;
  }

  /** The ids (in order) of devices the caller has any right on. */
  protected async visible(p: Principal, ids: string[]): Promise<string[]> {
    const out: string[] = [];
    for (const id of ids) {
      const d = await this.deps.devices.get(id);
      if (d && (await this.deps.access.deviceRight(p, d)) !== 'none') out.push(id);
    }
    return out;
  }

  /** Every device placed in the home: bound devices and the sub-devices of bound hubs, oldest first. */
  protected async devicesIn(homeId: string): Promise<DeviceRecord[]> {
    const bound = await this.deps.db.selectFrom('device_bindings').select('device_id').where('home_id', '=', homeId).execute();
    const seen = new Map<string, DeviceRecord>();
    const consider = async (d: DeviceRecord | undefined) => {
      if (!d || seen.has(d.id)) return;
      if ((await this.deps.access.placement(d.id))?.homeId === homeId) seen.set(d.id, d);
    };
    for (const b of bound) {
      const d = await this.deps.devices.get(b.device_id);
      await consider(d);
      if (d && !d.parentId) for (const c of await this.deps.devices.children(d.id)) await consider(c);
    }
    return [...seen.values()].sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Deduplicates and checks that every device is in the home; 400 naming the first that is not. */
  protected async checkInHome(homeId: string, ids: readonly string[]): Promise<string[]> {
    const out = [...new Set(ids)];
    for (const id of out) {
      if ((await this.deps.access.placement(id))?.homeId !== homeId) {
        throw new HearthError('E_VALIDATION', `device "${id}" is not in this home`, { field: `body.deviceIds.${ids.indexOf(id)}`, deviceId: id });
      }
    }
    return out;
  }

  /** Validates a guest's devices and end of access; both are for guests only. */
  protected async guestTerms(
    homeId: string,
    role: HomeRole,
    deviceIds: string[] | undefined,
    until: string | undefined,
  ): Promise<{ devices?: string[]; until?: number }> {
    if (role !== 'guest') {
      if (deviceIds !== undefined) throw new HearthError('E_VALIDATION', 'deviceIds are for guests only', { field: 'body.deviceIds' });
      if (until !== undefined) throw new HearthError('E_VALIDATION', 'until is for guests only', { field: 'body.until' });
      return {};
    }
    const out: { devices?: string[]; until?: number } = {};
    if (deviceIds !== undefined) out.devices = await this.checkInHome(homeId, deviceIds);
    if (until !== undefined) {
      const at = Date.parse(until);
      if (!Number.isFinite(at) || at <= Date.now()) throw new HearthError('E_VALIDATION', 'until must be a time in the future', { field: 'body.until' });
      out.until = at;
    }
    return out;
  }

  /** The caller's account, when its address is verified; E_EMAIL_NOT_VERIFIED otherwise. */
  protected async requireVerified(p: Principal, what: string): Promise<{ id: string; email: string }> {
    const me = await this.deps.users.userById(p.userId);
    if (!me) throw new HearthError('E_UNAUTHENTICATED', 'the account no longer exists');
    if (!me.emailVerified) {
      throw new HearthError(
        'E_EMAIL_NOT_VERIFIED',
        `confirm your e-mail address ${me.email} to ${what}: open the link in the verification e-mail (a new one: POST /api/v1/auth/verify-email/resend)`,
      );
    }
    return me;
  }
}
