import { createHmac, timingSafeEqual } from 'node:crypto';
import { sql } from 'kysely';
import type { Db } from '../core/store/db.ts';
import { toJson } from '../core/store/db.ts';
import { HearthError, isHearthError } from '../core/errors.ts';
import { newSecret } from '../core/ids.ts';
import type { Logger } from '../core/logger.ts';
import type { AuditService } from '../audit/audit-service.ts';
import type { DeviceCredentials } from '../devices/device-credentials.ts';
import type { ProductService } from '../products/product-service.ts';
import { HWID_PATTERN, parseFactoryCsv } from './factory-csv.ts';

/** How far a request's timestamp may be from the server's clock (seconds); a nonce is kept twice as long. */
export const PROVISION_WINDOW_SECONDS = 300;

export interface ProvisioningConfig {
  product: string;
  /** Most devices zero-touch provisioning may make for the product (null: no limit). */
  limit: number | null;
  /** Only hardware ids on the product's factory records may provision. */
  allowListOnly: boolean;
  /** Devices made by provisioning so far. */
  provisioned: number;
  createdAt: string;
  updatedAt: string;
}

export interface ProvisionRequest {
  product: string;
  hwid: string;
  /** Seconds since the epoch when the device signed. */
  timestamp: number;
  /** Unique per request (8 to 64 characters): a repeated nonce is a replay. */
  nonce: string;
  /** hex HMAC-SHA256 with the product's provisioning secret of `product\nhwid\ntimestamp\nnonce`. */
  signature: string;
}

export interface ProvisionedIdentity {
  id: string;
  product: string;
  hwid: string;
  /** Shown once. */
  secret: string;
}

/** What a device signs: the product, its hardware id, the timestamp and the nonce, one per line. */
export function provisionSigningString(r: Omit<ProvisionRequest, 'signature'>): string {
  return `${r.product}\n${r.hwid}\n${r.timestamp}\n${r.nonce}`;
}

/** The signature a device computes (hex HMAC-SHA256 of the signing string with the product's provisioning secret). */
export function signProvisionRequest(secret: string, r: Omit<ProvisionRequest, 'signature'>): string {
  return createHmac('sha256', secret).update(provisionSigningString(r)).digest('hex');
}

/**
 * Zero-touch provisioning for factories: a product's provisioning secret (the factory puts it in
 * the firmware) lets a device register itself with a signed request, over HTTP or MQTT, and get
 * its own id and secret once. A wrong signature, a timestamp outside the window, a repeated nonce
 * (a replay), a hardware id already provisioned, off the allow-list or over the product's limit
 * are refused. The allow-list is the product's factory records (CSV import).
 */
export class ProvisioningService {
  private requests = 0;

  constructor(
    private readonly deps: { db: Db; log: Logger; products: ProductService; credentials: DeviceCredentials; audit: AuditService; clock?: () => number },
  ) {}

  private now(): number {
    return this.deps.clock?.() ?? Date.now();
  }

  /** Turns provisioning on for a product or changes it; a new (or rotated) secret is returned once. */
  async configure(
    product: string,
    input: { limit?: number | null; allowListOnly?: boolean; rotateSecret?: boolean },
  ): Promise<ProvisioningConfig & { secret?: string }> {
    await this.deps.products.require(product);
    const now = this.now();
    const existing = await this.deps.db.selectFrom('product_provisioning').selectAll().where('product_key', '=', product).executeTakeFirst();
    const secret = !existing || input.rotateSecret ? newSecret(32) : undefined;
    if (!existing) {
      await this.deps.db
        .insertInto('product_provisioning')
        .values({
          product_key: product,
          secret: secret!,
          device_limit: input.limit ?? null,
          allow_list_only: input.allowListOnly ? 1 : 0,
          created_at: now,
          updated_at: now,
        })
        .onConflict((oc) => oc.column('product_key').doNothing())
        .execute();
    } else {
      await this.deps.db
        .updateTable('product_provisioning')
        .set({
          ...(secret ? { secret } : {}),
          ...(input.limit !== undefined ? { device_limit: input.limit } : {}),
          ...(input.allowListOnly !== undefined ? { allow_list_only: input.allowListOnly ? 1 : 0 } : {}),
          updated_at: now,
        })
        .where('product_key', '=', product)
        .execute();
    }
    return { ...(await this.require(product)), ...(secret ? { secret } : {}) };
  }

  async get(product: string): Promise<ProvisioningConfig | undefined> {
    const row = await this.deps.db.selectFrom('product_provisioning').selectAll().where('product_key', '=', product).executeTakeFirst();
    if (!row) return undefined;
    return {
      product,
      limit: row.device_limit === null ? null : Number(row.device_limit),
      allowListOnly: Number(row.allow_list_only) === 1,
      provisioned: await this.provisionedCount(product),
      createdAt: new Date(Number(row.created_at)).toISOString(),
      updatedAt: new Date(Number(row.updated_at)).toISOString(),
    };
  }

  async require(product: string): Promise<ProvisioningConfig> {
    await this.deps.products.require(product);
    const c = await this.get(product);
    if (!c)
      throw new HearthError('E_NOT_FOUND', `product "${product}" has no zero-touch provisioning: turn it on with PUT /api/v1/products/${product}/provisioning`);
    return c;
  }

  /** Imports factory records from CSV (all or none); a hardware id imported before is updated. */
  async importFactoryRecords(product: string, csv: string): Promise<{ imported: number; total: number }> {
    await this.deps.products.require(product);
    const records = parseFactoryCsv(csv);
    const now = this.now();
    await this.deps.db.transaction().execute(async (trx) => {
      for (let i = 0; i < records.length; i += 200) {
        const rows = records.slice(i, i + 200).map((r) => ({
          product_key: product,
          hwid: r.hwid,
          serial: r.serial,
          mac: r.mac,
          attributes: toJson(r.attributes),
          imported_at: now,
          device_id: null,
          provisioned_at: null,
        }));
        await trx
          .insertInto('factory_records')
          .values(rows)
          .onConflict((oc) =>
            oc.columns(['product_key', 'hwid']).doUpdateSet((eb) => ({
              serial: eb.ref('excluded.serial'),
              mac: eb.ref('excluded.mac'),
              attributes: eb.ref('excluded.attributes'),
              imported_at: eb.ref('excluded.imported_at'),
            })),
          )
          .execute();
      }
    });
    const [{ n }] = await this.deps.db
      .selectFrom('factory_records')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('product_key', '=', product)
      .execute();
    return { imported: records.length, total: Number(n) };
  }

  /**
   * Bulk factory import: the records, and a device with its secret (returned once, for flashing)
   * for every hardware id of the file that has none yet. All or none.
   */
  async importAndProvision(
    product: string,
    csv: string,
  ): Promise<{ imported: number; total: number; devices: Array<{ hwid: string; id: string; secret: string }>; existing: string[] }> {
    await this.deps.products.require(product);
    const records = parseFactoryCsv(csv);
    const { made, existing } = await this.deps.credentials.provisionHwids(
      product,
      records.map((r) => r.hwid),
    );
    const now = this.now();
    const byHwid = new Map(made.map((m) => [m.device.hwid!, m.device.id]));
    await this.deps.db.transaction().execute(async (trx) => {
      for (let i = 0; i < records.length; i += 200) {
        const rows = records.slice(i, i + 200).map((r) => ({
          product_key: product,
          hwid: r.hwid,
          serial: r.serial,
          mac: r.mac,
          attributes: toJson(r.attributes),
          imported_at: now,
          device_id: byHwid.get(r.hwid) ?? null,
          provisioned_at: byHwid.has(r.hwid) ? now : null,
        }));
        await trx
          .insertInto('factory_records')
          .values(rows)
          .onConflict((oc) =>
            oc.columns(['product_key', 'hwid']).doUpdateSet((eb) => ({
              serial: eb.ref('excluded.serial'),
              mac: eb.ref('excluded.mac'),
              attributes: eb.ref('excluded.attributes'),
              imported_at: eb.ref('excluded.imported_at'),
              device_id: sql<string | null>`coalesce(${eb.ref('excluded.device_id')}, ${eb.ref('factory_records.device_id')})`,
              provisioned_at: sql<number | null>`coalesce(${eb.ref('excluded.provisioned_at')}, ${eb.ref('factory_records.provisioned_at')})`,
            })),
          )
          .execute();
      }
    });
    const [{ n }] = await this.deps.db
      .selectFrom('factory_records')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('product_key', '=', product)
      .execute();
    this.deps.audit.record({
      actor: `provisioning:${product}`,
      action: 'device.provision.bulk',
      targetType: 'product',
      targetId: product,
      details: { made: made.length, existing: existing.length },
    });
    return { imported: records.length, total: Number(n), devices: made.map((m) => ({ hwid: m.device.hwid!, id: m.device.id, secret: m.secret })), existing };
  }

  async listFactoryRecords(
    product: string,
    page: { limit: number; offset: number },
  ): Promise<{
    items: Array<{
      hwid: string;
      serial: string | null;
      mac: string | null;
      attributes: Record<string, string>;
      deviceId: string | null;
      provisionedAt: string | null;
    }>;
    total: number;
  }> {
    await this.deps.products.require(product);
    const q = this.deps.db.selectFrom('factory_records').where('product_key', '=', product);
    const [{ n }] = await q.select((eb) => eb.fn.countAll<number>().as('n')).execute();
    const rows = await q.selectAll().orderBy('hwid').limit(page.limit).offset(page.offset).execute();
    return {
      total: Number(n),
      items: rows.map((r) => ({
        hwid: r.hwid,
        serial: r.serial,
        mac: r.mac,
        attributes: JSON.parse(r.attributes) as Record<string, string>,
        deviceId: r.device_id,
        provisionedAt: r.provisioned_at === null ? null : new Date(Number(r.provisioned_at)).toISOString(),
      })),
    };
  }

  /** A device provisions itself (see the class). */
  async provision(r: ProvisionRequest, via: 'http' | 'mqtt'): Promise<ProvisionedIdentity> {
    if (!HWID_PATTERN.test(r.hwid))
      throw new HearthError('E_VALIDATION', 'hwid is not a hardware id (1 to 128 of letters, digits, . _ : @ -)', { field: 'hwid' });
    const row = await this.deps.db.selectFrom('product_provisioning').selectAll().where('product_key', '=', r.product).executeTakeFirst();
    // One answer for an unknown product and a wrong signature: the request proves nothing yet.
    const expected = row ? signProvisionRequest(row.secret, r) : undefined;
    if (!row || !expected || !hexEqual(r.signature, expected))
      throw new HearthError(
        'E_BAD_SIGNATURE',
        'the signature does not match (hex HMAC-SHA256 of "product\\nhwid\\ntimestamp\\nnonce" with the product\'s provisioning secret)',
      );
    const now = this.now();
    if (Math.abs(now / 1000 - r.timestamp) > PROVISION_WINDOW_SECONDS) {
      throw new HearthError(
        'E_BAD_SIGNATURE',
        `the timestamp is more than ${PROVISION_WINDOW_SECONDS} s from the server's time (${Math.floor(now / 1000)}); sign with the current time`,
      );
    }
    if (++this.requests % 100 === 0) await this.deps.db.deleteFrom('provision_nonces').where('expires_at', '<', now).execute();
    const nonce = await this.deps.db
      .insertInto('provision_nonces')
      .values({ product_key: r.product, nonce: r.nonce, expires_at: now + 2 * PROVISION_WINDOW_SECONDS * 1000 })
      .onConflict((oc) => oc.columns(['product_key', 'nonce']).doNothing())
      .executeTakeFirst();
    if (Number(nonce.numInsertedOrUpdatedRows ?? 0n) !== 1)
      throw new HearthError('E_REPLAYED', 'this request (its nonce) was seen before: sign a new one with a fresh nonce');
    const listed = await this.deps.db
      .selectFrom('factory_records')
      .select(['hwid', 'device_id'])
      .where('product_key', '=', r.product)
      .where('hwid', '=', r.hwid)
      .executeTakeFirst();
    if (Number(row.allow_list_only) === 1 && !listed)
      throw new HearthError('E_FORBIDDEN', `hardware id "${r.hwid}" is not on the allow-list of product "${r.product}"`);
    if (await this.deps.credentials.findByHwid(r.product, r.hwid)) {
      throw new HearthError(
        'E_CONFLICT',
        `hardware id "${r.hwid}" of product "${r.product}" is provisioned already: its identity is given once (an operator can rotate its secret)`,
      );
    }
    const limit = row.device_limit === null ? null : Number(row.device_limit);
    if (limit !== null && (await this.provisionedCount(r.product)) >= limit)
      throw new HearthError('E_FORBIDDEN', `product "${r.product}" reached its provisioning limit of ${limit} devices`);
    const made = await this.deps.credentials.provisionHwid(r.product, r.hwid, { withSecret: true });
    if (!made.created || !made.secret)
      throw new HearthError('E_CONFLICT', `hardware id "${r.hwid}" of product "${r.product}" is provisioned already: its identity is given once`);
    await this.deps.db
      .insertInto('factory_records')
      .values({
        product_key: r.product,
        hwid: r.hwid,
        serial: null,
        mac: null,
        attributes: '{}',
        imported_at: now,
        device_id: made.device.id,
        provisioned_at: now,
      })
      .onConflict((oc) => oc.columns(['product_key', 'hwid']).doUpdateSet({ device_id: made.device.id, provisioned_at: now }))
      .execute();
    this.deps.audit.record({
      actor: `provisioning:${r.product}`,
      action: 'device.provision',
      targetType: 'device',
      targetId: made.device.id,
      details: { product: r.product, hwid: r.hwid, via },
    });
    this.deps.log.info({ deviceId: made.device.id, product: r.product, hwid: r.hwid, via }, 'device provisioned itself');
    return { id: made.device.id, product: r.product, hwid: r.hwid, secret: made.secret };
  }

  /**
   * The same over MQTT (`provision/{hwid}/request`): the answer is the identity, or `{error: {code, message}}`.
   */
  async provisionOverMqtt(hwid: string, payload: unknown): Promise<unknown> {
    const p = payload as Partial<ProvisionRequest> | undefined;
    const problem =
      typeof p !== 'object' || p === null
        ? 'the request is not a JSON object'
        : typeof p.product !== 'string'
          ? 'product must be a string'
          : typeof p.timestamp !== 'number' || !Number.isInteger(p.timestamp)
            ? 'timestamp must be an integer (seconds since the epoch)'
            : typeof p.nonce !== 'string' || p.nonce.length < 8 || p.nonce.length > 64
              ? 'nonce must be a string of 8 to 64 characters'
              : typeof p.signature !== 'string'
                ? 'signature must be a hex string'
                : p.hwid !== undefined && p.hwid !== hwid
                  ? `hwid "${String(p.hwid)}" is not the hardware id of the topic ("${hwid}")`
                  : undefined;
    if (problem) return { error: { code: 'E_VALIDATION', message: problem } };
    try {
      const id = await this.provision({ product: p!.product!, hwid, timestamp: p!.timestamp!, nonce: p!.nonce!, signature: p!.signature! }, 'mqtt');
      return { ...id, mqtt: { clientId: id.id, username: id.id } };
    } catch (err) {
      if (isHearthError(err)) return { error: { code: err.code, message: err.message } };
      throw err;
    }
  }

  private async provisionedCount(product: string): Promise<number> {
    const [{ n }] = await this.deps.db
      .selectFrom('factory_records')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('product_key', '=', product)
      .where('device_id', 'is not', null)
      .execute();
    return Number(n);
  }
}

function hexEqual(a: string, b: string): boolean {
  const x = Buffer.from(a.toLowerCase(), 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}
