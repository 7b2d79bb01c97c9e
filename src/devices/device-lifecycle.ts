import { HearthError } from '../core/errors.ts';
import { actorOf, hasScope, type Principal } from '../access/principal.ts';
import type { Logger } from '../core/logger.ts';
import type { DeviceLifecycleChange, StreamEventType } from '../core/bus/events.ts';
import type { AuditEntry } from '../audit/audit-service.ts';
import type { HomeRemoval } from '../homes/home-device-removal.ts';
import type { DeviceRecord, DeviceService } from './device-service.ts';
import type { PresenceService } from './presence-service.ts';
import { MAX_TAGS, type DeviceTags } from './device-tags.ts';

/** What happens to a hub's sub-devices when the hub is deleted. */
export type ChildrenPolicy = 'delete' | 'detach';

export interface DeleteOptions {
  /** Also remove the device's history (time series, events, command ledger). */
  purge?: boolean;
  /** Required when the device is a hub with sub-devices. */
  children?: ChildrenPolicy;
}

export interface DeleteOutcome {
  deleted: string[];
  detached: string[];
}

/**
 * The services of other capabilities the lifecycle drives, each through its public methods (the
 * composition root passes them; only their types are imported here).
 */
export interface LifecycleDeps {
  devices: DeviceService;
  presence: PresenceService;
  tags: DeviceTags;
  shadow: { clearDesired(id: string): Promise<void>; forget(id: string): Promise<void> };
  commands: { forget(id: string, all: boolean): Promise<void> };
  history: { purge(id: string): Promise<void> };
  homes: { remove(ids: readonly string[]): Promise<HomeRemoval> };
  /** The home a device is in now (a sub-device: its hub's). */
  placement(id: string): Promise<{ homeId: string } | undefined>;
  audit: { record(e: AuditEntry): void };
  stream: { publish(type: StreamEventType, deviceId: string | null, homeId: string | null, data: Record<string, unknown>): void };
  /** Tells every node (this one first, awaited): caches drop the devices, the node holding a connection closes it. */
  announce(change: DeviceLifecycleChange): Promise<void>;
  /** The devices' placement or people's rights changed (stream caches, automations). */
  placementChanged(ids: readonly string[]): void;
  accessChanged(userIds: readonly string[]): void;
  /** Other capabilities that keep per-device state (fleet groups, bulk jobs' targets). */
  onDeleted?: (ids: readonly string[]) => Promise<void>;
  log: Logger;
}

/**
 * The fleet lifecycle of a device (docs/fleet.md): disable and enable, delete (with its
 * sub-devices or detaching them, history kept or purged), and the factory reset a device sends
 * itself. Every change is audited and shows on the live stream as a `lifecycle` event.
 */
export class DeviceLifecycle {
  constructor(private readonly deps: LifecycleDeps) {}

  /** True when the principal is the operator (or an operator key with devices:manage, for the whole fleet). */
  isOperator(p: Principal): boolean {
    return p.role === 'operator' && !p.homeIds && hasScope(p, 'devices:manage');
  }

  /** Throws E_FORBIDDEN: for somebody who may see the device but is not the operator. */
  refuse(): never {
    throw new HearthError('E_FORBIDDEN', 'disabling, deleting, tags and attributes are for the operator (an operator key needs devices:manage)');
  }

  /**
   * The operator's fields of `PATCH /api/v1/devices/{id}`: disabled, tags, attributes. Anyone else
   * who may see the device gets E_FORBIDDEN (`requireVisible` answers 404 to the others).
   */
  async patch(
    p: Principal,
    id: string,
    patch: { disabled?: boolean; tags?: Record<string, string | null>; attributes?: Record<string, unknown> },
    requireVisible: (p: Principal, id: string) => Promise<unknown>,
  ): Promise<DeviceRecord> {
    if (!this.isOperator(p)) {
      await requireVisible(p, id);
      this.refuse();
    }
    const actor = actorOf(p);
    await this.deps.devices.require(id);
    if (patch.tags !== undefined) {
      const after = { ...(await this.deps.tags.get(id)).tags, ...patch.tags };
      const n = Object.values(after).filter((v) => v !== null).length;
      if (n > MAX_TAGS) throw new HearthError('E_VALIDATION', `a device has at most ${MAX_TAGS} tags; this would make ${n}`, { field: 'body.tags' });
      await this.deps.tags.setTags(id, patch.tags);
    }
    if (patch.attributes !== undefined) await this.deps.tags.setAttributes(id, patch.attributes);
    if (patch.tags !== undefined || patch.attributes !== undefined) {
      this.deps.audit.record({
        actor,
        action: 'device.tags',
        targetType: 'device',
        targetId: id,
        details: { ...(patch.tags ? { tags: patch.tags } : {}), ...(patch.attributes ? { attributes: Object.keys(patch.attributes) } : {}) },
      });
    }
    if (patch.disabled !== undefined) return this.setDisabled(actor, id, patch.disabled);
    return this.deps.devices.require(id);
  }

  /**
   * Disables or enables a device. Disabling closes its connection at once on whichever node holds
   * it and refuses it from then on (CONNACK 5; commands and desired state 409); a hub's
   * sub-devices follow it. Returns the device; a repeated call changes nothing and records nothing.
   */
  async setDisabled(actor: string, id: string, disabled: boolean): Promise<DeviceRecord> {
    const { devices } = this.deps;
    await devices.require(id);
    const changed = await devices.setDisabled([id], disabled);
    if (changed.length) {
      const children = (await devices.children(id)).map((c) => c.id);
      await this.deps.announce({ deviceIds: [id, ...children], ...(disabled ? { disconnect: 'disabled' as const } : {}) });
      const homeId = (await this.deps.placement(id))?.homeId ?? null;
      const change = disabled ? 'disabled' : 'enabled';
      this.deps.audit.record({
        actor,
        action: `device.${disabled ? 'disable' : 'enable'}`,
        homeId,
        targetType: 'device',
        targetId: id,
        details: children.length ? { children } : undefined,
      });
      this.deps.stream.publish('lifecycle', id, homeId, { deviceId: id, change, ...(children.length ? { children } : {}) });
    }
    return devices.require(id);
  }

  /**
   * Deletes a device: its connection is closed, it leaves its home (shares, home groups, guest
   * lists), its shadow, pending commands, tags and fleet-group memberships go, and with `purge`
   * its history too. Its id is never reused (the row stays as a tombstone). A hub with
   * sub-devices needs `children`: `delete` deletes them with it, `detach` keeps them as
   * stand-alone devices (out of the home, without a secret until one is issued).
   */
  async delete(actor: string, id: string, opts: DeleteOptions = {}): Promise<DeleteOutcome> {
    const { devices } = this.deps;
    await devices.require(id);
    const kids = (await devices.children(id)).map((c) => c.id);
    if (kids.length && !opts.children) {
      throw new HearthError(
        'E_CONFLICT',
        `device "${id}" is a hub with ${kids.length} sub-device(s): say what happens to them with ?children=delete or ?children=detach`,
        { field: 'querystring.children', children: kids.length },
      );
    }
    const doomed = opts.children === 'delete' ? [id, ...kids] : [id];
    const detached = opts.children === 'detach' ? kids : [];
    const former = await this.formerHomes([id, ...kids]);
    // Refused from now on (credentials gone), then the live session is closed wherever it is.
    await devices.markDeleted(doomed);
    await this.deps.announce({ deviceIds: [id, ...kids], disconnect: 'deleted' });
    const removal = await this.deps.homes.remove([id, ...kids]);
    this.deps.accessChanged(removal.users);
    if (detached.length) {
      await devices.detach(detached);
      await this.deps.announce({ deviceIds: detached });
      for (const k of detached) {
        await this.deps.presence.setChild(k, false, 'hub-offline');
        await this.deps.shadow.clearDesired(k);
      }
    }
    for (const d of doomed) {
      await this.deps.shadow.forget(d);
      await this.deps.commands.forget(d, opts.purge === true);
      if (opts.purge) await this.deps.history.purge(d);
      if (opts.purge) await this.deps.presence.purge(d);
    }
    await this.deps.tags.removeAll(doomed);
    await this.deps.onDeleted?.(doomed);
    this.deps.placementChanged([id, ...kids]);
    const homeId = former.get(id) ?? null;
    this.deps.audit.record({
      actor,
      action: 'device.delete',
      homeId,
      targetType: 'device',
      targetId: id,
      details: { purge: opts.purge === true, ...(kids.length ? { children: opts.children, deleted: doomed, detached } : {}) },
    });
    for (const d of doomed) this.deps.stream.publish('lifecycle', null, former.get(d) ?? null, { deviceId: d, change: 'deleted', purge: opts.purge === true });
    for (const d of detached) this.deps.stream.publish('lifecycle', null, former.get(d) ?? null, { deviceId: d, change: 'detached', hubId: id });
    return { deleted: doomed, detached };
  }

  /**
   * A factory reset sent by the device (or its hub, for a sub-device): it leaves its home (a hub
   * with its sub-devices), its desired state is cleared, its identity stays.
   */
  async reset(id: string, via: string): Promise<void> {
    const { devices } = this.deps;
    const d = await devices.require(id);
    const ids = d.parentId === null ? [id, ...(await devices.children(id)).map((c) => c.id)] : [id];
    const homeId = (await this.deps.placement(id))?.homeId ?? null;
    const removal = await this.deps.homes.remove(ids);
    this.deps.accessChanged(removal.users);
    this.deps.placementChanged(ids);
    for (const x of ids) await this.deps.shadow.clearDesired(x);
    this.deps.audit.record({
      actor: `device:${via}`,
      action: 'device.reset',
      homeId,
      targetType: 'device',
      targetId: id,
      details: ids.length > 1 ? { children: ids.slice(1) } : undefined,
    });
    // The home's people hear it; the device is no longer theirs, so the event names the home only.
    this.deps.stream.publish('lifecycle', null, homeId, { deviceId: id, change: 'reset' });
    if (homeId === null) this.deps.log.info({ deviceId: id }, 'factory reset of a device that belonged to no home');
  }

  private async formerHomes(ids: readonly string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const id of ids) {
      const home = (await this.deps.placement(id))?.homeId;
      if (home) out.set(id, home);
    }
    return out;
  }
}
