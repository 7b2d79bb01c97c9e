import { hasScope, type Principal } from '../access/principal.ts';
import type { AccessService, Placement } from '../access/access-service.ts';
import type { ShadowService } from '../shadow/shadow-service.ts';
import type { DeviceRecord } from './device-service.ts';
import type { Presence, PresenceService } from './presence-service.ts';
import type { DeviceTags } from './device-tags.ts';

const iso = (n: number | null) => (n == null ? null : new Date(n).toISOString());

/**
 * How a device looks through the API, for one caller. End users see the name their home gave
 * it and where it is; provisioning data (pairing code, hardware id) stays the operator's (and its
 * keys that may provision the whole fleet).
 */
/** A device's firmware as the OTA capability knows it (src/ota/, given by the composition root). */
export interface DeviceFirmware {
  version: string | null;
  reportedAt: string | null;
  lastJob: { id: string; campaign: string; state: string; progress: number | null; error: string | null; updatedAt: string } | null;
}

export class DeviceViews {
  constructor(
    private readonly deps: {
      presence: PresenceService;
      shadow: ShadowService;
      access: AccessService;
      tags?: DeviceTags;
      isDisabled?: (id: string) => Promise<boolean>;
      /** Hubs by id (a page's sub-devices are disabled with their hub), read at once. */
      hubs?: (ids: readonly string[]) => Promise<Map<string, DeviceRecord>>;
      /** The firmware version and last OTA job, shown in the full view. */
      firmware?: (deviceId: string) => Promise<DeviceFirmware>;
    },
  ) {}

  /**
   * The summaries of a page of devices in a constant number of queries, whatever its size: their
   * placements, presence and the hubs of sub-devices (for `disabled`) are read for the whole page.
   * Each summary is the one `summary` gives for the device alone.
   */
  async summaries(ds: readonly DeviceRecord[], p: Principal) {
    if (ds.length === 0) return [];
    const hubIds = [...new Set(ds.flatMap((d) => (d.parentId !== null && d.disabledAt == null ? [d.parentId] : [])))];
    const [places, presence, hubs] = await Promise.all([
      this.deps.access.placements(ds),
      this.deps.presence.many(ds.map((d) => d.id)),
      hubIds.length && this.deps.hubs ? this.deps.hubs(hubIds) : Promise.resolve(new Map<string, DeviceRecord>()),
    ]);
    const out = [];
    for (const d of ds) {
      const pres = presence.get(d.id) ?? (await this.deps.presence.get(d.id));
      let disabled = d.disabledAt != null;
      if (!disabled && d.parentId !== null)
        disabled = this.deps.hubs ? hubs.get(d.parentId)?.disabledAt != null : (await this.deps.isDisabled?.(d.id)) === true;
      out.push(this.build(d, p, places.get(d.id) ?? null, pres, disabled));
    }
    return out;
  }

  /** `place`: the device's placement when the caller read it already (null: in no home). */
  async summary(d: DeviceRecord, p: Principal, place?: Placement | null) {
    const [presence, placement] = await Promise.all([this.deps.presence.get(d.id), place !== undefined ? place : this.deps.access.placement(d.id)]);
    const disabled = d.disabledAt != null || (d.parentId !== null && (await this.deps.isDisabled?.(d.id)) === true);
    return this.build(d, p, placement ?? null, presence, disabled);
  }

  private build(d: DeviceRecord, p: Principal, place: Placement | null, presence: Presence, disabled: boolean) {
    // A pairing code is a claim secret: the operator signed in, or an operator key that may provision the whole fleet.
    const operator = p.role === 'operator' && (p.keyId === undefined || (hasScope(p, 'devices:manage') && p.homeIds === undefined));
    return {
      id: d.id,
      product: d.productKey,
      name: place?.name ?? d.name,
      parentId: d.parentId,
      hwid: operator ? d.hwid : null,
      pairingCode: operator ? d.pairingCode : null,
      createdAt: new Date(d.createdAt).toISOString(),
      homeId: place?.homeId ?? null,
      roomId: place?.roomId ?? null,
      online: presence.online,
      lastSeen: iso(presence.lastSeen),
      disabled,
    };
  }

  async full(d: DeviceRecord, p: Principal) {
    const [summary, presence, shadow, firmware] = await Promise.all([
      this.summary(d, p),
      this.deps.presence.get(d.id),
      this.deps.shadow.view(d.id),
      this.deps.firmware?.(d.id),
    ]);
    const fleet = p.role === 'operator' && !p.homeIds && this.deps.tags ? await this.deps.tags.get(d.id) : undefined;
    return {
      ...summary,
      presence: { reason: presence.reason, changedAt: iso(presence.changedAt), session: presence.session },
      shadow,
      ...(firmware ? { firmware } : {}),
      ...(fleet ? { tags: fleet.tags, attributes: fleet.attributes } : {}),
    };
  }
}
