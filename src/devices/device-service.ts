import type { Db } from '../core/store/db.ts';
import { HearthError } from '../core/errors.ts';
import { newId, newPairingCode, newSecret } from '../core/ids.ts';
import { digestToken, safeEqual, verifyToken } from '../core/secrets.ts';
import type { ProductService } from '../products/product-service.ts';
import { BatchReads } from './batch-reads.ts';

/** What the hot paths (ACL, ingest) need to know about a device; cached. */
export interface DeviceRecord {
  id: string;
  productKey: string;
  name: string;
  parentId: string | null;
  hwid: string | null;
  pairingCode: string | null;
  createdAt: number;
  /** When the operator disabled it (epoch ms); null: enabled. A hub's sub-devices follow it (see `isDisabled`). */
  disabledAt?: number | null;
}

export interface ProvisionInput {
  product: string;
  name: string;
  parentId?: string;
}

export interface ProvisionedDevice extends DeviceRecord {
  /** Shown once; only its digest is stored. */
  secret: string;
}

export interface ListFilter {
  product?: string;
  parentId?: string;
  /** Only these devices (what the caller may see); undefined: all. */
  ids?: readonly string[];
  limit: number;
  offset: number;
}

/** Which of a device's secrets a secret (or its digest) is: `current`, `previous` (in its grace period), or false. */
export interface DeviceSecretCheck {
  check(id: string, secret: string): Promise<'current' | 'previous' | false>;
  checkDigest(id: string, digest: string): Promise<'current' | 'previous' | false>;
}

/** The product category of hubs: devices that connect for sub-devices. */
export const HUB_CATEGORY = 'gateway';

type DeviceRow = {
  id: string;
  product_key: string;
  name: string;
  parent_id: string | null;
  hwid: string | null;
  pairing_code: string | null;
  created_at: number;
  secret_hash: string | null;
  disabled_at?: number | null;
};

/**
 * The device registry: provisioning, credentials, hub/sub-device relations.
 * Records change only through the fleet lifecycle (disable, delete: device-lifecycle.ts), which
 * drops them from this cache on every node (`forget`). A deleted device stays as a tombstone row
 * (`deleted_at`), so its id is never reused, and reads as not existing.
 */
export class DeviceService {
  private readonly cache = new Map<string, DeviceRecord & { secretHash: string | null }>();

  constructor(private readonly deps: { db: Db; products: ProductService }) {}

  async provision(input: ProvisionInput): Promise<ProvisionedDevice> {
    return (await this.provisionMany([input]))[0];
  }

  /** Provisions devices in one transaction: all or none. */
  async provisionMany(inputs: ProvisionInput[]): Promise<ProvisionedDevice[]> {
    const now = Date.now();
    const out: ProvisionedDevice[] = [];
    const rows: DeviceRow[] = [];
    for (const [i, input] of inputs.entries()) {
      const where = inputs.length > 1 ? ` (item ${i})` : '';
      if (!(await this.deps.products.get(input.product)))
        throw new HearthError('E_PRODUCT_NOT_FOUND', `product "${input.product}" does not exist${where}`, {
          field: `${inputs.length > 1 ? `items[${i}].` : ''}product`,
        });
      if (input.parentId) {
        const parent = await this.get(input.parentId);
        if (!parent) throw new HearthError('E_DEVICE_NOT_FOUND', `parent device "${input.parentId}" does not exist${where}`, { field: 'parentId' });
        const refusal = await this.hubRefusal(parent);
        if (refusal) throw new HearthError('E_VALIDATION', `${refusal}${where}`, { field: `${inputs.length > 1 ? `items[${i}].` : ''}parentId` });
      }
      const secret = newSecret();
      const row: DeviceRow = {
        id: newId('d'),
        product_key: input.product,
        name: input.name,
        parent_id: input.parentId ?? null,
        hwid: null,
        secret_hash: digestToken(secret),
        pairing_code: newPairingCode(),
        created_at: now,
      };
      rows.push(row);
      out.push({ ...toRecord(row), secret });
    }
    await this.deps.db.transaction().execute(async (trx) => {
      for (let i = 0; i < rows.length; i += 200)
        await trx
          .insertInto('devices')
          .values(rows.slice(i, i + 200))
          .execute();
    });
    return out;
  }

  /** Cached lookup; undefined when the device does not exist. Misses of one turn are read in one query. */
  async get(id: string): Promise<DeviceRecord | undefined> {
    return this.cache.get(id) ?? this.reads.get(id);
  }

  /** Cache misses asked for in the same turn (a reconnect storm authenticating thousands of devices), read together. */
  private readonly reads = new BatchReads((ids) => this.readMany(ids));

  /** `get` of many devices: the cached ones as they are, the others read in one query; absent ones are left out. */
  async getMany(ids: readonly string[]): Promise<Map<string, DeviceRecord>> {
    const out = new Map<string, DeviceRecord>();
    const missing: string[] = [];
    for (const id of new Set(ids)) {
      const hit = this.cache.get(id);
      if (hit) out.set(id, hit);
      else missing.push(id);
    }
    for (let i = 0; i < missing.length; i += 1000) for (const [id, rec] of await this.readMany(missing.slice(i, i + 1000))) out.set(id, rec);
    return out;
  }

  /** Reads these devices (not deleted) into the cache; a record cached meanwhile wins. */
  private async readMany(ids: string[]): Promise<Map<string, DeviceRecord & { secretHash: string | null }>> {
    const out = new Map<string, DeviceRecord & { secretHash: string | null }>();
    const rows = await this.deps.db.selectFrom('devices').selectAll().where('id', 'in', ids).where('deleted_at', 'is', null).execute();
    for (const row of rows) {
      if (!this.cache.has(row.id)) this.cache.set(row.id, { ...toRecord(row), secretHash: row.secret_hash });
      out.set(row.id, this.cache.get(row.id)!);
    }
    return out;
  }

  /** Synchronous cache peek for hot paths that already loaded the device (e.g. ACL checks after connect). */
  peek(id: string): DeviceRecord | undefined {
    return this.cache.get(id);
  }

  async require(id: string): Promise<DeviceRecord> {
    const d = await this.get(id);
    if (!d) throw new HearthError('E_DEVICE_NOT_FOUND', `device "${id}" does not exist`);
    return d;
  }

  /** Whether `secret` is the device's (and it is enabled); `digest`: the secret's `digestToken`, when the caller has it already. */
  async authenticate(id: string, secret: string, digest = digestToken(secret)): Promise<boolean> {
    await this.get(id);
    const rec = this.cache.get(id);
    if (this.credentials) return !!rec && (await this.credentials.checkDigest(id, digest)) !== false && !(await this.isDisabled(id));
    return !!rec?.secretHash && safeEqual(digest, rec.secretHash) && !(await this.isDisabled(id));
  }

  /** Secrets change (rotation with a grace period): they are checked by the credentials (device-credentials.ts). */
  private credentials: DeviceSecretCheck | undefined;

  attachCredentials(credentials: DeviceSecretCheck): void {
    this.credentials = credentials;
  }

  async list(filter: ListFilter): Promise<{ items: DeviceRecord[]; total: number }> {
    let q = this.deps.db.selectFrom('devices').where('deleted_at', 'is', null);
    if (filter.product) q = q.where('product_key', '=', filter.product);
    if (filter.parentId) q = q.where('parent_id', '=', filter.parentId);
    if (filter.ids) {
      if (filter.ids.length === 0) return { items: [], total: 0 };
      q = q.where('id', 'in', [...filter.ids]);
    }
    const [{ n }] = await q.select((eb) => eb.fn.countAll<number>().as('n')).execute();
    const rows = await q.selectAll().orderBy('created_at').orderBy('id').limit(filter.limit).offset(filter.offset).execute();
    return { items: rows.map(toRecord), total: Number(n) };
  }

  /** Ids of a product's devices after `afterId` (in id order), for walking a whole fleet in pages. */
  async idsOfProduct(product: string, afterId: string, limit: number): Promise<string[]> {
    const rows = await this.deps.db
      .selectFrom('devices')
      .select('id')
      .where('product_key', '=', product)
      .where('id', '>', afterId)
      .orderBy('id')
      .limit(limit)
      .execute();
    return rows.map((r) => r.id);
  }

  /** The device a pairing code (the QR code on its box) belongs to. */
  async findByPairingCode(code: string): Promise<DeviceRecord | undefined> {
    const row = await this.deps.db
      .selectFrom('devices')
      .selectAll()
      .where('pairing_code', '=', code.trim().toUpperCase())
      .where('deleted_at', 'is', null)
      .executeTakeFirst();
    return row ? toRecord(row) : undefined;
  }

  async children(parentId: string): Promise<DeviceRecord[]> {
    const rows = await this.deps.db
      .selectFrom('devices')
      .selectAll()
      .where('parent_id', '=', parentId)
      .where('deleted_at', 'is', null)
      .orderBy('created_at')
      .execute();
    return rows.map(toRecord);
  }

  /** Ids of the sub-devices of any of the hubs. */
  async childIds(parentIds: readonly string[]): Promise<string[]> {
    if (!parentIds.length) return [];
    const rows = await this.deps.db
      .selectFrom('devices')
      .select('id')
      .where('parent_id', 'in', [...parentIds])
      .execute();
    return rows.map((r) => r.id);
  }

  /** True when `actorId` may act for `deviceId`: itself, or its parent hub. */
  async mayActFor(actorId: string, deviceId: string): Promise<boolean> {
    if (actorId === deviceId) return true;
    const d = await this.get(deviceId);
    if (d) return d.parentId === actorId;
    // A sub-device the operator deleted: its hub may still speak for it, and hears E_DEVICE_NOT_FOUND
    // on its errors topic instead of losing its connection.
    const gone = await this.deps.db.selectFrom('devices').select('parent_id').where('id', '=', deviceId).where('deleted_at', 'is not', null).executeTakeFirst();
    return gone?.parent_id === actorId;
  }

  /** True when the product is a hub's: its category is `gateway` (the catalog's `hub`). Only hubs have sub-devices. */
  async isHubProduct(productKey: string): Promise<boolean> {
    return (await this.deps.products.get(productKey))?.category === HUB_CATEGORY;
  }

  /** Why `parent` may not have sub-devices (it is not a hub, or is itself a sub-device), or undefined when it may. */
  private async hubRefusal(parent: DeviceRecord): Promise<string | undefined> {
    if (parent.parentId !== null) return `device "${parent.id}" is a sub-device: sub-devices cannot have sub-devices`;
    if (!(await this.isHubProduct(parent.productKey)))
      return `device "${parent.id}" is not a hub (product "${parent.productKey}" is not of category "${HUB_CATEGORY}"): only hubs have sub-devices`;
    return undefined;
  }

  /**
   * A hub pairs a sub-device by hardware id. Joining the same hwid again returns the same
   * device, so a hub can re-announce its children after every reconnect.
   */
  async join(hubId: string, product: string, hwid: string): Promise<DeviceRecord> {
    const hub = await this.require(hubId);
    const refusal = await this.hubRefusal(hub);
    if (refusal) throw new HearthError('E_FORBIDDEN', refusal);
    const existing = await this.deps.db.selectFrom('devices').selectAll().where('parent_id', '=', hubId).where('hwid', '=', hwid).executeTakeFirst();
    if (existing) return toRecord(existing);
    if (!(await this.deps.products.get(product))) throw new HearthError('E_PRODUCT_NOT_FOUND', `product "${product}" does not exist`);
    const row: DeviceRow = {
      id: newId('d'),
      product_key: product,
      name: `${product} ${hwid}`,
      parent_id: hubId,
      hwid,
      secret_hash: null,
      pairing_code: newPairingCode(),
      created_at: Date.now(),
    };
    await this.deps.db
      .insertInto('devices')
      .values(row)
      .onConflict((oc) => oc.columns(['parent_id', 'hwid']).doNothing())
      .execute();
    const stored = await this.deps.db.selectFrom('devices').selectAll().where('parent_id', '=', hubId).where('hwid', '=', hwid).executeTakeFirstOrThrow();
    return toRecord(stored);
  }

  // ------------------------------------------------------------------ fleet lifecycle (docs/fleet.md)

  /** True when the operator disabled the device or, for a sub-device, its hub. */
  async isDisabled(id: string): Promise<boolean> {
    const d = await this.get(id);
    if (!d) return false;
    if (d.disabledAt != null) return true;
    return d.parentId !== null && (await this.get(d.parentId))?.disabledAt != null;
  }

  /** True when `secret` is the device's secret, whether it is disabled or not (to tell a disabled device why it is refused). */
  async secretMatches(id: string, secret: string): Promise<boolean> {
    await this.get(id);
    const rec = this.cache.get(id);
    if (this.credentials) return !!rec && (await this.credentials.check(id, secret)) !== false;
    return !!rec?.secretHash && verifyToken(secret, rec.secretHash);
  }

  /** The device, or E_DEVICE_NOT_FOUND; E_DEVICE_DISABLED when it (or its hub) is disabled. For commands and desired state. */
  async requireEnabled(id: string): Promise<DeviceRecord> {
    const d = await this.require(id);
    if (await this.isDisabled(id))
      throw new HearthError(
        'E_DEVICE_DISABLED',
        `device "${id}"${d.disabledAt == null ? "'s hub" : ''} is disabled; enable it with PATCH /api/v1/devices/${d.disabledAt == null ? d.parentId : id} {"disabled": false}`,
      );
    return d;
  }

  /** Disables or enables devices; returns the ids whose state changed. The caller announces it (`forget` on every node). */
  async setDisabled(ids: readonly string[], disabled: boolean, at = Date.now()): Promise<string[]> {
    if (ids.length === 0) return [];
    const rows = await this.deps.db
      .updateTable('devices')
      .set({ disabled_at: disabled ? at : null })
      .where('id', 'in', [...ids])
      .where('deleted_at', 'is', null)
      .where('disabled_at', disabled ? 'is' : 'is not', null)
      .returning('id')
      .execute();
    for (const id of ids) this.cache.delete(id);
    return rows.map((r) => r.id);
  }

  /**
   * Deletes devices: the row stays as a tombstone (the id is never reused) without credentials,
   * pairing code or hardware id (so a hub may join the same hardware again as a new device).
   */
  async markDeleted(ids: readonly string[], at = Date.now()): Promise<void> {
    if (ids.length === 0) return;
    await this.deps.db
      .updateTable('devices')
      .set({ deleted_at: at, secret_hash: null, pairing_code: null, hwid: null })
      .where('id', 'in', [...ids])
      .where('deleted_at', 'is', null)
      .execute();
    for (const id of ids) this.cache.delete(id);
  }

  /**
   * Sub-devices of a hub deleted with `?children=detach` become stand-alone devices. They have no
   * secret of their own (their hub spoke for them): they keep their id, history and tags, and
   * connect once the operator gives them one.
   */
  async detach(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.deps.db
      .updateTable('devices')
      .set({ parent_id: null })
      .where('id', 'in', [...ids])
      .execute();
    for (const id of ids) this.cache.delete(id);
  }

  /** Drops cached records (a lifecycle change on this or another node). */
  forget(ids: readonly string[]): void {
    for (const id of ids) this.cache.delete(id);
  }
}

function toRecord(row: DeviceRow): DeviceRecord {
  return {
    id: row.id,
    productKey: row.product_key,
    name: row.name,
    parentId: row.parent_id,
    hwid: row.hwid,
    pairingCode: row.pairing_code,
    createdAt: Number(row.created_at),
    disabledAt: row.disabled_at == null ? null : Number(row.disabled_at),
  };
}
