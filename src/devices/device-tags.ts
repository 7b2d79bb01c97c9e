import type { Db } from '../core/store/db.ts';
import { fromJson, toJson } from '../core/store/db.ts';
import type { Bus, Unsubscribe } from '../core/bus/bus.ts';
import { subjects } from '../core/bus/subjects.ts';
import type { Logger } from '../core/logger.ts';

/** Tag keys and values: what the query language can name without quoting. */
export const TAG_KEY_PATTERN = '^[A-Za-z0-9_-]{1,64}$';
export const MAX_TAGS = 50;

/** The operator's data on a device (docs/fleet.md). */
export interface FleetData {
  tags: Record<string, string>;
  attributes: Record<string, unknown>;
  /** The firmware version it last reported (its `firmware` property), or null. */
  firmware: string | null;
  disabled: boolean;
}

/**
 * A version as a key that sorts like the version: numeric parts zero-padded to 10 digits, other
 * parts as they are (`1.10` after `1.2`; `2.4.1-beta` → 0000000002.0000000004.0000000001.beta).
 */
export function firmwareKey(version: string): string {
  return version
    .split(/[^A-Za-z0-9]+/)
    .filter((p) => p !== '')
    .map((p) => (/^\d+$/.test(p) ? p.replace(/^0+(?=\d)/, '').padStart(10, '0') : p.toLowerCase()))
    .join('.');
}

/** Attribute keys that are searchable (`attr.<key>`): as tag keys. */
const SEARCHABLE_KEY = new RegExp(TAG_KEY_PATTERN);

/** The longest attribute string that is searchable. */
export const MAX_SEARCHABLE_ATTRIBUTE = 256;

/**
 * How an attribute value is indexed for search (`device_attributes`): a string as it is (up to
 * MAX_SEARCHABLE_ATTRIBUTE characters), a number or boolean as its text (a number also as a
 * number, for `<`, `>`); other values (objects, arrays, longer strings) are kept but not searchable.
 */
export function attributeRow(v: unknown): { value: string; num: number | null } | undefined {
  if (typeof v === 'string') return v.length <= MAX_SEARCHABLE_ATTRIBUTE ? { value: v, num: null } : undefined;
  if (typeof v === 'number' && Number.isFinite(v)) return { value: String(v), num: v };
  if (typeof v === 'boolean') return { value: String(v), num: null };
  return undefined;
}

/**
 * The operator's tags and attributes on devices, and the firmware version each reported (kept in
 * an indexed column so fleet search can compare versions). Tags are searchable
 * (`tag.site:berlin`); attributes are free JSON kept with the device, and their scalar values are
 * searchable too (`attr.floor>2`: a row each in `device_attributes`, written with the JSON).
 */
export class DeviceTags {
  private unsub: Unsubscribe | undefined;

  constructor(private readonly deps: { db: Db; bus: Bus; log: Logger; ownsDevice: (id: string) => boolean }) {}

  /** Follows the firmware versions devices report (on the node that owns each device's shard). */
  start(): void {
    this.unsub = this.deps.bus.subscribe(
      subjects.reported('*'),
      (msg) => {
        const ev = msg.data;
        const fw = ev.values.firmware;
        if (typeof fw !== 'string' || !ev.changed.includes('firmware') || !this.deps.ownsDevice(ev.deviceId)) return;
        this.noteFirmware(ev.deviceId, fw).catch((err) => this.deps.log.warn({ err, deviceId: ev.deviceId }, 'firmware version not indexed'));
      },
      { name: 'devices.firmware' },
    );
  }

  stop(): void {
    this.unsub?.();
  }

  async noteFirmware(id: string, version: string): Promise<void> {
    const v = version.slice(0, 64);
    await this.deps.db
      .updateTable('devices')
      .set({ firmware: v, firmware_key: firmwareKey(v) })
      .where('id', '=', id)
      .where((eb) => eb.or([eb('firmware', 'is', null), eb('firmware', '<>', v)]))
      .execute();
  }

  async get(id: string): Promise<FleetData> {
    return (await this.many([id])).get(id) ?? { tags: {}, attributes: {}, firmware: null, disabled: false };
  }

  /** The fleet data of many devices in two queries (a page of search results). */
  async many(ids: readonly string[]): Promise<Map<string, FleetData>> {
    const out = new Map<string, FleetData>();
    if (ids.length === 0) return out;
    const rows = await this.deps.db
      .selectFrom('devices')
      .select(['id', 'attributes', 'firmware', 'disabled_at'])
      .where('id', 'in', [...ids])
      .execute();
    for (const r of rows)
      out.set(r.id, {
        tags: {},
        attributes: fromJson<Record<string, unknown> | null>(r.attributes) ?? {},
        firmware: r.firmware,
        disabled: r.disabled_at != null,
      });
    const tags = await this.deps.db
      .selectFrom('device_tags')
      .selectAll()
      .where('device_id', 'in', [...ids])
      .orderBy('key')
      .execute();
    for (const t of tags) {
      const d = out.get(t.device_id);
      if (d) d.tags[t.key] = t.value;
    }
    return out;
  }

  /** The value of one tag on each of these devices that has it (fleet analytics group by it). */
  async valuesOf(ids: readonly string[], key: string): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (let i = 0; i < ids.length; i += 500) {
      const rows = await this.deps.db
        .selectFrom('device_tags')
        .select(['device_id', 'value'])
        .where('key', '=', key)
        .where('device_id', 'in', ids.slice(i, i + 500))
        .execute();
      for (const r of rows) out.set(r.device_id, r.value);
    }
    return out;
  }

  /**
   * Changes tags: a key with a string sets it, with null removes it; with `replace`, the given
   * tags become all of them. At most MAX_TAGS per device.
   */
  async setTags(id: string, tags: Record<string, string | null>, replace = false): Promise<void> {
    await this.deps.db.transaction().execute(async (trx) => {
      if (replace) await trx.deleteFrom('device_tags').where('device_id', '=', id).execute();
      for (const [key, value] of Object.entries(tags)) {
        if (value === null) await trx.deleteFrom('device_tags').where('device_id', '=', id).where('key', '=', key).execute();
        else
          await trx
            .insertInto('device_tags')
            .values({ device_id: id, key, value })
            .onConflict((oc) => oc.columns(['device_id', 'key']).doUpdateSet({ value }))
            .execute();
      }
    });
  }

  /** Tag changes for many devices (bulk jobs): one transaction. */
  async setTagsMany(ids: readonly string[], tags: Record<string, string | null>): Promise<void> {
    if (ids.length === 0) return;
    await this.deps.db.transaction().execute(async (trx) => {
      for (const [key, value] of Object.entries(tags)) {
        if (value === null)
          await trx
            .deleteFrom('device_tags')
            .where('device_id', 'in', [...ids])
            .where('key', '=', key)
            .execute();
        else
          for (const id of ids)
            await trx
              .insertInto('device_tags')
              .values({ device_id: id, key, value })
              .onConflict((oc) => oc.columns(['device_id', 'key']).doUpdateSet({ value }))
              .execute();
      }
    });
  }

  /** Replaces or merges attributes (a key with null removes it). */
  async setAttributes(id: string, attributes: Record<string, unknown>, replace = false): Promise<void> {
    await this.deps.db.transaction().execute(async (trx) => {
      const row = await trx.selectFrom('devices').select('attributes').where('id', '=', id).executeTakeFirst();
      const cur = replace ? {} : (fromJson<Record<string, unknown> | null>(row?.attributes ?? null) ?? {});
      for (const [k, v] of Object.entries(attributes)) {
        if (v === null) delete cur[k];
        else cur[k] = v;
      }
      await trx
        .updateTable('devices')
        .set({ attributes: Object.keys(cur).length ? toJson(cur) : null })
        .where('id', '=', id)
        .execute();
      // The searchable copy: rewritten for the device from the merged JSON.
      await trx.deleteFrom('device_attributes').where('device_id', '=', id).execute();
      const rows = Object.entries(cur).flatMap(([key, v]) => {
        const r = SEARCHABLE_KEY.test(key) ? attributeRow(v) : undefined;
        return r ? [{ device_id: id, key, ...r }] : [];
      });
      if (rows.length) await trx.insertInto('device_attributes').values(rows).execute();
    });
  }

  /** A deleted device's tags go (its attributes stay on the tombstone only until a purge). */
  async removeAll(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.deps.db
      .deleteFrom('device_tags')
      .where('device_id', 'in', [...ids])
      .execute();
    await this.deps.db
      .updateTable('devices')
      .set({ attributes: null })
      .where('id', 'in', [...ids])
      .execute();
    await this.deps.db
      .deleteFrom('device_attributes')
      .where('device_id', 'in', [...ids])
      .execute();
  }
}
