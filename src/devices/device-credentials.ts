import type { Db } from '../core/store/db.ts';
import { HearthError } from '../core/errors.ts';
import { newId, newPairingCode, newSecret } from '../core/ids.ts';
import { digestToken, safeEqual } from '../core/secrets.ts';
import type { DeviceRecord, DeviceService } from './device-service.ts';
import { BatchReads } from './batch-reads.ts';

/** A device's accepted secrets: the current one and, for a while after a rotation, the one before. */
interface Secrets {
  current: string | null;
  previous?: { hash: string; until: number };
}

export interface RotatedSecret {
  /** Shown once; only its digest is stored. */
  secret: string;
  /** Until when the replaced secret is still accepted (null: it was refused at once). */
  previousValidUntil: number | null;
}

/** Longest grace a rotation may give the old secret: 30 days. */
export const MAX_GRACE_SECONDS = 30 * 86400;

/**
 * Device credentials beside the registry (devices/device-service.ts): which secrets a device may
 * connect with, their rotation with a grace period for the old one, and top-level devices known
 * by product and hardware id (certificates and zero-touch provisioning make them). Accepted
 * secrets are cached per device: a rotation changes them here at once, and on other nodes when
 * they hear it (`forget`, called by the composition root's broadcast).
 */
export class DeviceCredentials {
  private readonly cache = new Map<string, Secrets>();

  constructor(
    private readonly deps: {
      db: Db;
      devices: DeviceService;
      clock?: () => number;
      onRotated?: (deviceId: string, previousValidUntil: number | null) => Promise<void> | void;
    },
  ) {}

  private now(): number {
    return this.deps.clock?.() ?? Date.now();
  }

  /** Which secret `secret` is of the device: `current`, `previous` (in its grace period), or false. */
  async check(id: string, secret: string): Promise<'current' | 'previous' | false> {
    return this.checkDigest(id, digestToken(secret));
  }

  /** The same for a secret's digest (what a connection keeps to be checked again later). */
  async checkDigest(id: string, digest: string): Promise<'current' | 'previous' | false> {
    const s = await this.secrets(id);
    if (!s) return false;
    if (s.current && safeEqual(digest, s.current)) return 'current';
    if (s.previous && s.previous.until > this.now() && safeEqual(digest, s.previous.hash)) return 'previous';
    return false;
  }

  /**
   * A new secret for a device (shown once); the old one keeps working for `graceSeconds`
   * (0: refused at once), so that a device can be told the new one over its open session.
   */
  async rotate(id: string, graceSeconds = 0): Promise<RotatedSecret> {
    if (!Number.isInteger(graceSeconds) || graceSeconds < 0 || graceSeconds > MAX_GRACE_SECONDS) {
      throw new HearthError('E_VALIDATION', `graceSeconds must be an integer from 0 to ${MAX_GRACE_SECONDS}`, { field: 'body.graceSeconds' });
    }
    const device = await this.deps.devices.require(id);
    if (device.parentId !== null)
      throw new HearthError('E_VALIDATION', `device "${id}" is a sub-device: it connects through its hub and has no secret of its own`, { field: 'id' });
    const secret = newSecret();
    const hash = digestToken(secret);
    const until = graceSeconds > 0 ? this.now() + graceSeconds * 1000 : null;
    await this.deps.db.transaction().execute(async (trx) => {
      const row = await trx.selectFrom('devices').select('secret_hash').where('id', '=', id).executeTakeFirst();
      await trx.updateTable('devices').set({ secret_hash: hash }).where('id', '=', id).execute();
      await trx.deleteFrom('device_secret_grace').where('device_id', '=', id).execute();
      if (until !== null && row?.secret_hash)
        await trx.insertInto('device_secret_grace').values({ device_id: id, secret_hash: row.secret_hash, until }).execute();
    });
    this.forget(id);
    await this.deps.onRotated?.(id, until);
    return { secret, previousValidUntil: until };
  }

  /** Drops the cached secrets of a device (its credentials changed, here or on another node). */
  forget(id: string): void {
    this.cache.delete(id);
  }

  private async secrets(id: string): Promise<Secrets | undefined> {
    return this.cache.get(id) ?? this.reads.get(id);
  }

  /** Cache misses of one turn (a reconnect storm), read in one query. */
  private readonly reads = new BatchReads<Secrets>(async (ids) => {
    const rows = await this.deps.db
      .selectFrom('devices')
      .leftJoin('device_secret_grace', 'device_secret_grace.device_id', 'devices.id')
      .select(['devices.id', 'devices.secret_hash', 'device_secret_grace.secret_hash as previous_hash', 'device_secret_grace.until'])
      .where('devices.id', 'in', ids)
      .execute();
    const out = new Map<string, Secrets>();
    for (const row of rows) {
      const s: Secrets = {
        current: row.secret_hash,
        ...(row.previous_hash && row.until !== null ? { previous: { hash: row.previous_hash, until: Number(row.until) } } : {}),
      };
      this.cache.set(row.id, s);
      out.set(row.id, s);
    }
    return out;
  });

  /** The top-level device of a product with this hardware id. */
  async findByHwid(product: string, hwid: string): Promise<DeviceRecord | undefined> {
    const row = await this.deps.db
      .selectFrom('devices')
      .select('id')
      .where('product_key', '=', product)
      .where('hwid', '=', hwid)
      .where('parent_id', 'is', null)
      .executeTakeFirst();
    return row ? this.deps.devices.get(row.id) : undefined;
  }

  /**
   * Makes top-level devices of a product for many hardware ids at once (a factory's batch), each
   * with a secret returned once; hardware ids that already have a device are left out (`existing`).
   * One transaction: all made, or none.
   */
  async provisionHwids(product: string, hwids: readonly string[]): Promise<{ made: Array<{ device: DeviceRecord; secret: string }>; existing: string[] }> {
    const now = this.now();
    const made: Array<{
      row: { id: string; product_key: string; name: string; parent_id: null; hwid: string; secret_hash: string; pairing_code: string; created_at: number };
      secret: string;
    }> = [];
    const existing: string[] = [];
    await this.deps.db.transaction().execute(async (trx) => {
      const known = new Set<string>();
      for (let i = 0; i < hwids.length; i += 500) {
        const rows = await trx
          .selectFrom('devices')
          .select('hwid')
          .where('product_key', '=', product)
          .where('parent_id', 'is', null)
          .where('hwid', 'in', hwids.slice(i, i + 500))
          .execute();
        for (const r of rows) if (r.hwid) known.add(r.hwid);
      }
      for (const hwid of hwids) {
        if (known.has(hwid)) {
          existing.push(hwid);
          continue;
        }
        const secret = newSecret();
        made.push({
          secret,
          row: {
            id: newId('d'),
            product_key: product,
            name: `${product} ${hwid}`,
            parent_id: null,
            hwid,
            secret_hash: digestToken(secret),
            pairing_code: newPairingCode(),
            created_at: now,
          },
        });
      }
      // A device made meanwhile for one of them (zero-touch on another node) fails the batch: retry it.
      for (let i = 0; i < made.length; i += 200)
        await trx
          .insertInto('devices')
          .values(made.slice(i, i + 200).map((m) => m.row))
          .execute();
    });
    const out: Array<{ device: DeviceRecord; secret: string }> = [];
    for (const m of made) out.push({ device: await this.deps.devices.require(m.row.id), secret: m.secret });
    return { made: out, existing };
  }

  /**
   * Makes the top-level device of a product with a hardware id, or finds the one made by a
   * concurrent request (one device per product and hwid, across nodes): `created` says which.
   * `withSecret`: a secret is made and returned once (a certificate-only device has none).
   */
  async provisionHwid(
    product: string,
    hwid: string,
    opts: { name?: string; withSecret: boolean },
  ): Promise<{ device: DeviceRecord; secret?: string; created: boolean }> {
    const secret = opts.withSecret ? newSecret() : undefined;
    const id = newId('d');
    const inserted = await this.deps.db
      .insertInto('devices')
      .values({
        id,
        product_key: product,
        name: opts.name ?? `${product} ${hwid}`,
        parent_id: null,
        hwid,
        secret_hash: secret ? digestToken(secret) : null,
        pairing_code: newPairingCode(),
        created_at: this.now(),
      })
      .onConflict((oc) => oc.columns(['product_key', 'hwid']).where('parent_id', 'is', null).doNothing())
      .executeTakeFirst();
    if (Number(inserted.numInsertedOrUpdatedRows ?? 0n) === 1) return { device: await this.deps.devices.require(id), secret, created: true };
    const existing = await this.findByHwid(product, hwid);
    if (!existing) throw new HearthError('E_CONFLICT', `hardware id "${hwid}" of product "${product}" could not be provisioned; retry`);
    return { device: existing, created: false };
  }
}
