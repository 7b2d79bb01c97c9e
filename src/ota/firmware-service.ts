import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Db } from '../core/store/db.ts';
import type { Logger } from '../core/logger.ts';
import { HearthError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { hmac, safeEqual } from '../core/secrets.ts';
import type { ProductService } from '../products/product-service.ts';
import type { FirmwareStorage } from './firmware-storage.ts';
import { compareSemVer, isSemVer } from './semver.ts';

/** A firmware package as the API shows it. */
export interface Firmware {
  id: string;
  product: string;
  version: string;
  size: number;
  /** Hex SHA-256 of the image. */
  sha256: string;
  /** Base64 Ed25519 signature by the product's key over the 32 bytes of the SHA-256 digest. */
  signature: string;
  /** The maker's own detached signature, as uploaded (base64), or null. */
  makerSignature: string | null;
  notes: string | null;
  /** Devices below this version cannot take this package (null: any). */
  minVersion: string | null;
  createdBy: string;
  createdAt: string;
}

export interface UploadInput {
  product: string;
  version: string;
  notes?: string;
  minVersion?: string;
  /** The maker's detached signature (base64), kept and sent to devices beside Hearth's. */
  makerSignature?: string;
  /** When given, the upload is refused unless the image has this SHA-256 (hex): a transfer check. */
  sha256?: string;
}

type FirmwareRow = {
  id: string;
  product_key: string;
  version: string;
  size: number;
  sha256: string;
  signature: string;
  maker_signature: string | null;
  notes: string | null;
  min_version: string | null;
  created_by: string;
  created_at: number;
};

const toFirmware = (r: FirmwareRow): Firmware => ({
  id: r.id,
  product: r.product_key,
  version: r.version,
  size: Number(r.size),
  sha256: r.sha256,
  signature: r.signature,
  makerSignature: r.maker_signature,
  notes: r.notes,
  minVersion: r.min_version,
  createdBy: r.created_by,
  createdAt: new Date(Number(r.created_at)).toISOString(),
});

/** A download token's claims: the package, the device, and when it stops working (epoch s). */
interface DownloadClaims {
  f: string;
  d: string;
  e: number;
}

/**
 * Firmware packages: upload (streamed to a FirmwareStorage, hashed on the way, size-bounded),
 * Ed25519 signing with one key pair per product (made on first use; the private key never
 * leaves the store), listing, deletion while no campaign uses it, and short-lived per-device
 * download URLs (an HMAC token in the URL: small firmware HTTP clients cannot set headers).
 */
export class FirmwareService {
  private tokenKey: string | undefined;
  private downloads = 0;

  constructor(
    private readonly deps: {
      db: Db;
      log: Logger;
      storage: FirmwareStorage;
      products: ProductService;
      /** The key download tokens are signed with (shared by every node: from the settings store). */
      tokenSecret: () => Promise<string>;
      /** Where devices fetch firmware from (e.g. http://hearth.example.com). */
      baseUrl: () => string;
      maxBytes: number;
      downloadTtlSeconds: number;
      maxConcurrentDownloads: number;
    },
  ) {}

  /** Stores a package: the version is checked, the image streamed to storage, hashed and signed. */
  async upload(input: UploadInput, body: AsyncIterable<Buffer> | Iterable<Buffer>, actor: string): Promise<Firmware> {
    const { db, storage } = this.deps;
    await this.deps.products.require(input.product);
    if (!isSemVer(input.version))
      throw new HearthError('E_VALIDATION', `version "${input.version}" is not a semantic version (e.g. 1.2.0)`, { field: 'querystring.version' });
    if (input.minVersion !== undefined && !isSemVer(input.minVersion))
      throw new HearthError('E_VALIDATION', `minVersion "${input.minVersion}" is not a semantic version`, { field: 'querystring.minVersion' });
    if (input.minVersion !== undefined && compareSemVer(input.minVersion, input.version) > 0)
      throw new HearthError('E_VALIDATION', 'minVersion is above the version itself', { field: 'querystring.minVersion' });
    if (input.makerSignature !== undefined && !/^[A-Za-z0-9+/=_-]{1,1024}$/.test(input.makerSignature))
      throw new HearthError('E_VALIDATION', 'signature must be base64 (at most 1024 characters)', { field: 'querystring.signature' });
    await this.requireVersionFree(input.product, input.version);
    const id = newId('fw');
    const hash = createHash('sha256');
    const max = this.deps.maxBytes;
    let size = 0;
    async function* counted(): AsyncGenerator<Buffer> {
      for await (const chunk of body) {
        const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
        size += buf.length;
        if (size > max) throw new HearthError('E_PAYLOAD_TOO_LARGE', `the image is larger than the limit of ${max} bytes (HEARTH_OTA_MAX_FIRMWARE_BYTES)`);
        hash.update(buf);
        yield buf;
      }
    }
    await storage.write(id, counted());
    const digest = hash.digest();
    const sha256 = digest.toString('hex');
    try {
      if (size === 0) throw new HearthError('E_VALIDATION', 'the image is empty: send it as the request body (application/octet-stream)');
      if (input.sha256 !== undefined && input.sha256.toLowerCase() !== sha256) {
        throw new HearthError('E_VALIDATION', `the image's SHA-256 is ${sha256}, not ${input.sha256}: it was changed or cut short on the way`, {
          field: 'querystring.sha256',
        });
      }
      const key = await this.keyOf(input.product);
      const signature = sign(null, digest, createPrivateKey(key.privateKey)).toString('base64');
      const row: FirmwareRow = {
        id,
        product_key: input.product,
        version: input.version,
        size,
        sha256,
        signature,
        maker_signature: input.makerSignature ?? null,
        notes: input.notes ?? null,
        min_version: input.minVersion ?? null,
        created_by: actor,
        created_at: Date.now(),
      };
      // Two uploads of one version at once: the unique key lets one in.
      const inserted = await db
        .insertInto('firmware')
        .values(row)
        .onConflict((oc) => oc.columns(['product_key', 'version']).doNothing())
        .executeTakeFirst();
      if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 0)
        throw new HearthError('E_CONFLICT', `product "${input.product}" already has firmware ${input.version}`);
      return toFirmware(row);
    } catch (err) {
      await storage.remove(id).catch(() => undefined);
      throw err;
    }
  }

  private async requireVersionFree(product: string, version: string): Promise<void> {
    const same = await this.deps.db.selectFrom('firmware').select('id').where('product_key', '=', product).where('version', '=', version).executeTakeFirst();
    if (same) throw new HearthError('E_CONFLICT', `product "${product}" already has firmware ${version} (${same.id})`);
  }

  async get(id: string): Promise<Firmware | undefined> {
    const row = await this.deps.db.selectFrom('firmware').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toFirmware(row) : undefined;
  }

  async require(id: string): Promise<Firmware> {
    const f = await this.get(id);
    if (!f) throw new HearthError('E_FIRMWARE_NOT_FOUND', `firmware "${id}" does not exist`);
    return f;
  }

  /** A product's packages, newest version first. */
  async list(product: string): Promise<Firmware[]> {
    await this.deps.products.require(product);
    const rows = await this.deps.db.selectFrom('firmware').selectAll().where('product_key', '=', product).execute();
    return rows.map(toFirmware).sort((a, b) => compareSemVer(b.version, a.version));
  }

  /** Deletes a package that no live campaign uses (409 otherwise); its image goes with it. */
  async remove(id: string): Promise<Firmware> {
    const f = await this.require(id);
    const used = await this.deps.db
      .selectFrom('ota_campaigns')
      .select(['id', 'state'])
      .where('firmware_id', '=', id)
      .where('state', 'in', ['scheduled', 'running', 'paused'])
      .executeTakeFirst();
    if (used) throw new HearthError('E_CONFLICT', `firmware ${id} is used by campaign ${used.id} (${used.state}); cancel it first`, { campaign: used.id });
    await this.deps.db.deleteFrom('firmware').where('id', '=', id).execute();
    await this.deps.storage.remove(id);
    return f;
  }

  /** The product's public key (PEM, SPKI) devices verify signatures with; the pair is made on first use. */
  async publicKey(product: string): Promise<{ product: string; algorithm: 'Ed25519'; publicKey: string; publicKeyRaw: string }> {
    await this.deps.products.require(product);
    const k = await this.keyOf(product);
    // The raw 32-byte key (base64) is what small verifiers (e.g. TweetNaCl, Monocypher) take.
    const raw = createPublicKey(k.publicKey).export({ format: 'der', type: 'spki' }).subarray(-32).toString('base64');
    return { product, algorithm: 'Ed25519', publicKey: k.publicKey, publicKeyRaw: raw };
  }

  private async keyOf(product: string): Promise<{ publicKey: string; privateKey: string }> {
    const { db } = this.deps;
    const row = await db.selectFrom('ota_keys').select(['public_key', 'private_key']).where('product_key', '=', product).executeTakeFirst();
    if (row) return { publicKey: row.public_key, privateKey: row.private_key };
    const pair = generateKeyPairSync('ed25519');
    // Two nodes making the first key at once: one insert wins and both read it back.
    await db
      .insertInto('ota_keys')
      .values({
        product_key: product,
        public_key: pair.publicKey.export({ format: 'pem', type: 'spki' }).toString(),
        private_key: pair.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
        created_at: Date.now(),
      })
      .onConflict((oc) => oc.column('product_key').doNothing())
      .execute();
    const made = await db.selectFrom('ota_keys').select(['public_key', 'private_key']).where('product_key', '=', product).executeTakeFirstOrThrow();
    return { publicKey: made.public_key, privateKey: made.private_key };
  }

  /** Checks a signature over an image digest with the product's key (for tests and tools). */
  async verifySignature(product: string, sha256Hex: string, signature: string): Promise<boolean> {
    const k = await this.keyOf(product);
    return verify(null, Buffer.from(sha256Hex, 'hex'), createPublicKey(k.publicKey), Buffer.from(signature, 'base64'));
  }

  // ── downloads ──────────────────────────────────────────────────────────────────────────

  /** A URL that lets one device fetch one package for `downloadTtlSeconds`, without headers. */
  async downloadUrl(firmwareId: string, deviceId: string, now = Date.now()): Promise<string> {
    const claims: DownloadClaims = { f: firmwareId, d: deviceId, e: Math.floor(now / 1000) + this.deps.downloadTtlSeconds };
    const body = Buffer.from(JSON.stringify(claims)).toString('base64url');
    const token = `${body}.${hmac(await this.secret(), body)}`;
    return `${this.deps.baseUrl()}/api/v1/firmware/${firmwareId}/download?token=${token}`;
  }

  /** The device a download token was made for; E_UNAUTHENTICATED when it is forged, for another package, or expired. */
  async checkToken(firmwareId: string, token: string, now = Date.now()): Promise<string> {
    const [body, mac] = token.split('.');
    const bad = (why: string) => new HearthError('E_UNAUTHENTICATED', `download token ${why}: ask for the job again`);
    if (!body || !mac || !safeEqual(mac, hmac(await this.secret(), body))) throw bad('is not valid');
    let claims: DownloadClaims;
    try {
      claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as DownloadClaims;
    } catch {
      throw bad('is not valid');
    }
    if (claims.f !== firmwareId) throw bad('is for another package');
    if (!(claims.e * 1000 > now)) throw bad('has expired');
    return claims.d;
  }

  private async secret(): Promise<string> {
    this.tokenKey ??= await this.deps.tokenSecret();
    return this.tokenKey;
  }

  /**
   * Takes one of the node's download slots; undefined when all `maxConcurrentDownloads` are in
   * use (the caller answers 503 with Retry-After). Call the returned function once the transfer ended.
   */
  takeDownloadSlot(): (() => void) | undefined {
    if (this.downloads >= this.deps.maxConcurrentDownloads) return undefined;
    this.downloads++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.downloads--;
    };
  }

  /** Downloads this node is serving now. */
  get activeDownloads(): number {
    return this.downloads;
  }

  /** Bytes `start`..`end` (inclusive) of a package's image. */
  open(id: string, start: number, end: number): Readable {
    return this.deps.storage.read(id, start, end);
  }
}
