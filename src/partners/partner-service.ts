import { bodySignatureMatches } from '../core/signing.ts';
import type { Db } from '../core/store/db.ts';
import { fromJson, toJson } from '../core/store/db.ts';
import { HearthError } from '../core/errors.ts';
import { newId, newSecret } from '../core/ids.ts';
import type { DeviceService } from '../devices/device-service.ts';
import type { ProductService } from '../products/product-service.ts';
import type { Submission } from '../ingress/ingress.ts';
import { checkReport, type ReportKind } from '../ingress/source-check.ts';

/** Where a partner's AMQP messages wait for Hearth: a queue the partner (or the operator) declared. */
export interface PartnerAmqp {
  /** `amqp://user:password@host:5672/vhost` (or `amqps://`). */
  url: string;
  queue: string;
  /** Unacknowledged messages Hearth holds at once (AMQP prefetch); default 50. */
  prefetch?: number;
}

/** A partner cloud that pushes messages about devices of its products. */
export interface Partner {
  id: string;
  name: string;
  /** Product keys whose devices the partner may send messages for. */
  products: string[];
  amqp: PartnerAmqp | null;
  createdAt: number;
}

/** One message a partner sends, over HTTP push (an item of `messages`) or as an AMQP message body. */
export interface PartnerMessage {
  deviceId: string;
  kind: ReportKind;
  payload: unknown;
  /** The partner's own message id: a repeat is stored once (within the de-duplication window). */
  id?: string;
}

type Stored = Partner & { secret: string };
type Row = { id: string; name: string; secret: string; products: string; amqp: string | null; created_at: number };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** An AMQP URL with its password replaced, for logs and API answers. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(invalid URL)';
  }
}

/**
 * The partners: clouds that send messages about devices of their products, signed with a
 * per-partner secret (HTTP push) or through their AMQP queue. The secret is stored as it is,
 * because verifying an HMAC needs it. Partners are read on every push, so they are cached;
 * every change is announced through `onChange` so that all nodes drop their caches and
 * re-read their AMQP consumers.
 */
export class PartnerService {
  private readonly cache = new Map<string, Stored>();

  constructor(private readonly deps: { db: Db; devices: DeviceService; products: ProductService; onChange?: () => void }) {}

  async create(input: { name: string; products: string[]; amqp?: PartnerAmqp }): Promise<Partner & { secret: string }> {
    for (const [i, key] of input.products.entries()) {
      if (!(await this.deps.products.get(key))) throw new HearthError('E_PRODUCT_NOT_FOUND', `product "${key}" does not exist`, { field: `products[${i}]` });
    }
    if (input.amqp) checkAmqp(input.amqp);
    const row: Row = {
      id: newId('pt'),
      name: input.name,
      secret: newSecret(),
      products: toJson([...new Set(input.products)]),
      amqp: input.amqp ? toJson(input.amqp) : null,
      created_at: Date.now(),
    };
    await this.deps.db.insertInto('partners').values(row).execute();
    this.deps.onChange?.();
    return toStored(row);
  }

  async list(): Promise<Partner[]> {
    const rows = await this.deps.db.selectFrom('partners').selectAll().orderBy('created_at').orderBy('id').execute();
    return rows.map((r) => withoutSecret(toStored(r)));
  }

  /** The partners that have an AMQP queue configured. */
  async withAmqp(): Promise<Partner[]> {
    return (await this.list()).filter((p) => p.amqp !== null);
  }

  async get(id: string): Promise<Partner | undefined> {
    const s = await this.stored(id);
    return s && withoutSecret(s);
  }

  async require(id: string): Promise<Partner> {
    const p = await this.get(id);
    if (!p) throw new HearthError('E_PARTNER_NOT_FOUND', `partner "${id}" does not exist`);
    return p;
  }

  async delete(id: string): Promise<void> {
    const r = await this.deps.db.deleteFrom('partners').where('id', '=', id).executeTakeFirst();
    if (Number(r.numDeletedRows) === 0) throw new HearthError('E_PARTNER_NOT_FOUND', `partner "${id}" does not exist`);
    this.invalidate(id);
    this.deps.onChange?.();
  }

  /** A new secret; the old one stops working at once. */
  async rotateSecret(id: string): Promise<string> {
    const secret = newSecret();
    const r = await this.deps.db.updateTable('partners').set({ secret }).where('id', '=', id).executeTakeFirst();
    if (Number(r.numUpdatedRows) === 0) throw new HearthError('E_PARTNER_NOT_FOUND', `partner "${id}" does not exist`);
    this.invalidate(id);
    this.deps.onChange?.();
    return secret;
  }

  /** Drops cached partners (all, or one): another node changed them. */
  invalidate(id?: string): void {
    if (id === undefined) this.cache.clear();
    else this.cache.delete(id);
  }

  /**
   * The partner whose secret signed `body`: `signature` must be `sha256=<hex HMAC-SHA256 of the
   * raw body>`. An unknown partner gets the same answer as a wrong signature, so ids do not leak.
   */
  async verify(id: string, body: Buffer, signature: string | undefined): Promise<Partner> {
    const p = await this.stored(id);
    if (p && bodySignatureMatches(p.secret, body, signature)) return withoutSecret(p);
    throw new HearthError(
      'E_BAD_SIGNATURE',
      signature
        ? 'the x-hearth-signature does not match the body'
        : 'the x-hearth-signature header is missing: sha256=<hex HMAC-SHA256 of the body with the partner secret>',
    );
  }

  /**
   * Checks one message of a partner and turns it into a submission for the pipeline: the shape,
   * the device (it must exist and be of one of the partner's products) and the thing model, so
   * that the partner hears at once what is wrong. Throws a HearthError naming the problem.
   */
  async admit(partner: Partner, msg: unknown, source: `partner:${string}` | `amqp:${string}`): Promise<Submission> {
    if (!isObject(msg)) throw new HearthError('E_VALIDATION', 'a message is {"deviceId", "kind": "properties"|"events", "payload", "id"?}');
    const { deviceId, kind, payload, id } = msg;
    if (typeof deviceId !== 'string' || deviceId.length === 0) throw new HearthError('E_VALIDATION', '"deviceId" must be a device id', { field: 'deviceId' });
    if (kind !== 'properties' && kind !== 'events') throw new HearthError('E_VALIDATION', '"kind" must be "properties" or "events"', { field: 'kind' });
    if (id !== undefined && (typeof id !== 'string' || id.length === 0 || id.length > 128))
      throw new HearthError('E_VALIDATION', '"id" must be a string of 1 to 128 characters', { field: 'id' });
    const device = await this.deps.devices.get(deviceId);
    if (!device) throw new HearthError('E_DEVICE_NOT_FOUND', `device "${deviceId}" does not exist`, { field: 'deviceId' });
    if (!partner.products.includes(device.productKey)) {
      throw new HearthError(
        'E_FORBIDDEN',
        `device "${deviceId}" is a "${device.productKey}", not one of the partner's products (${partner.products.join(', ')})`,
        { field: 'deviceId' },
      );
    }
    const problem = await checkReport(this.deps.products, device, kind, payload);
    if (problem) throw new HearthError(problem.code, problem.problems.join('; '), { field: 'payload', problems: problem.problems });
    return { source, deviceId, kind, payload, ...(id !== undefined ? { sourceId: id } : {}) };
  }

  private async stored(id: string): Promise<Stored | undefined> {
    const hit = this.cache.get(id);
    if (hit) return hit;
    const row = await this.deps.db.selectFrom('partners').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) return undefined;
    const s = toStored(row);
    this.cache.set(id, s);
    return s;
  }
}

function checkAmqp(a: PartnerAmqp): void {
  let u: URL;
  try {
    u = new URL(a.url);
  } catch {
    throw new HearthError('E_VALIDATION', `amqp.url is not a URL: "${redactUrl(a.url)}"`, { field: 'amqp.url' });
  }
  if (u.protocol !== 'amqp:' && u.protocol !== 'amqps:')
    throw new HearthError('E_VALIDATION', 'amqp.url must start with amqp:// or amqps://', { field: 'amqp.url' });
}

function toStored(row: Row): Stored {
  return {
    id: row.id,
    name: row.name,
    secret: row.secret,
    products: fromJson<string[]>(row.products),
    amqp: fromJson<PartnerAmqp | null>(row.amqp),
    createdAt: Number(row.created_at),
  };
}

function withoutSecret(s: Stored): Partner {
  const { secret: _secret, ...p } = s;
  return p;
}
