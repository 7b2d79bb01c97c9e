import { X509Certificate } from 'node:crypto';
import type { Db } from '../core/store/db.ts';
import { HearthError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { Logger } from '../core/logger.ts';
import type { DeviceService } from '../devices/device-service.ts';
import type { DeviceCredentials } from '../devices/device-credentials.ts';
import type { ProductService } from '../products/product-service.ts';
import { certificateNames, normalizeFingerprint, parseCertificatePem } from './certificate-names.ts';
import { compareCrlNumbers, crlSignedBy, CrlError, normalizeSerial, parseCrlPem } from './crl.ts';

/** The revocation list of a product CA, as the API shows it. */
export interface CaCrl {
  caId: string;
  /** cRLNumber (hex), when the list carries one. */
  number: string | null;
  thisUpdate: string;
  nextUpdate: string | null;
  /** Revoked serial numbers (upper-case hex). */
  serials: string[];
  uploadedAt: string;
}

/** How far in the future a CRL's thisUpdate may be (clock skew). */
const CRL_SKEW_MS = 5 * 60_000;

export interface ProductCa {
  id: string;
  product: string;
  fingerprint: string;
  subject: string;
  notAfter: string;
  /** Just-in-time registration: an unknown hardware id with a certificate of this CA becomes a device on its first connect. */
  jit: boolean;
  createdAt: string;
  revokedAt: string | null;
}

export interface DeviceCertificate {
  fingerprint: string;
  deviceId: string;
  caId: string;
  subject: string;
  notAfter: string;
  firstSeenAt: string;
  revoked: boolean;
}

/** How a certificate connection came out: the device it is, or why it is refused. */
export type CertificateOutcome = { ok: true; deviceId: string; fingerprint: string; caId: string; created: boolean } | { ok: false; reason: string };

/** `ca_id` of a certificate registered for one device by an operator (issued by no registered CA). */
export const REGISTERED = 'registered';

interface CaEntry {
  row: ProductCa;
  cert: X509Certificate;
}

/**
 * Device certificates (mutual TLS): CAs registered per product, the certificates devices
 * authenticated with (bound to their device on first use), revocation of a CA or of one
 * certificate by fingerprint, and just-in-time registration. Active CAs and revoked fingerprints
 * are cached on every node (they are few, and every certificate connection reads them); a change
 * reloads them here and, through the composition root's broadcast, on every node, which also
 * closes the sessions it no longer allows.
 */
export class IdentityService {
  private cas: CaEntry[] | undefined;
  private revoked: Set<string> | undefined;
  /** CA id → serials its CRL revokes; and the fingerprints of known certificates they are. */
  private crls: Promise<{ serials: Map<string, Set<string>>; fingerprints: Set<string> }> | undefined;

  constructor(
    private readonly deps: {
      db: Db;
      log: Logger;
      products: ProductService;
      devices: DeviceService;
      credentials: DeviceCredentials;
      /** A CA or revocation changed here: tell every node (which calls `reload`). */
      onChange?: () => Promise<void> | void;
    },
  ) {}

  /** Forgets the cached CAs and revocations (they are read again on the next use). */
  reload(): void {
    this.cas = undefined;
    this.revoked = undefined;
    this.crls = undefined;
  }

  /**
   * Sets the certificate revocation list of a product CA (PEM, signed by that CA): the certificates
   * it lists (by serial) are refused from now on, and their sessions closed on every node. A list
   * older than the current one (a lower cRLNumber, or an earlier thisUpdate) is refused, so an old
   * list cannot be replayed to un-revoke a certificate.
   */
  async setCrl(product: string, caId: string, pem: string): Promise<CaCrl> {
    const row = await this.deps.db.selectFrom('product_cas').selectAll().where('product_key', '=', product).where('id', '=', caId).executeTakeFirst();
    if (!row) throw new HearthError('E_NOT_FOUND', `product "${product}" has no CA "${caId}"`);
    let crl: ReturnType<typeof parseCrlPem>;
    try {
      crl = parseCrlPem(pem);
      if (!crlSignedBy(crl, new X509Certificate(row.pem).publicKey))
        throw new CrlError(`it is not signed by this CA (${oneLine(row.subject)}): upload the CRL that CA issues`);
    } catch (err) {
      if (err instanceof CrlError) throw new HearthError('E_VALIDATION', `body.pem: ${err.message}`, { field: 'body.pem' });
      throw err;
    }
    if (crl.thisUpdate > Date.now() + CRL_SKEW_MS)
      throw new HearthError('E_VALIDATION', `body.pem: the list is not valid before ${new Date(crl.thisUpdate).toISOString()}`, { field: 'body.pem' });
    const cur = await this.deps.db.selectFrom('product_ca_crls').selectAll().where('ca_id', '=', caId).executeTakeFirst();
    if (cur) {
      const older = crl.number !== null && cur.number !== null ? compareCrlNumbers(crl.number, cur.number) < 0 : crl.thisUpdate < Number(cur.this_update);
      if (older)
        throw new HearthError(
          'E_CONFLICT',
          `the list is older than the CA's current one (${cur.number !== null ? `number ${cur.number}, ` : ''}of ${new Date(Number(cur.this_update)).toISOString()}): upload a newer one`,
        );
    }
    const serials = [...new Set(crl.serials)];
    const values = {
      ca_id: caId,
      pem: pem.trim(),
      serials: JSON.stringify(serials),
      number: crl.number,
      this_update: crl.thisUpdate,
      next_update: crl.nextUpdate,
      uploaded_at: Date.now(),
    };
    await this.deps.db
      .insertInto('product_ca_crls')
      .values(values)
      .onConflict((oc) =>
        oc.column('ca_id').doUpdateSet({
          pem: values.pem,
          serials: values.serials,
          number: values.number,
          this_update: values.this_update,
          next_update: values.next_update,
          uploaded_at: values.uploaded_at,
        }),
      )
      .execute();
    await this.changed();
    return toCrl(values);
  }

  /** The CA's revocation list, or E_NOT_FOUND when it has none. */
  async getCrl(product: string, caId: string): Promise<CaCrl> {
    const ca = await this.deps.db.selectFrom('product_cas').select('id').where('product_key', '=', product).where('id', '=', caId).executeTakeFirst();
    if (!ca) throw new HearthError('E_NOT_FOUND', `product "${product}" has no CA "${caId}"`);
    const row = await this.deps.db.selectFrom('product_ca_crls').selectAll().where('ca_id', '=', caId).executeTakeFirst();
    if (!row) throw new HearthError('E_NOT_FOUND', `CA "${caId}" has no revocation list: upload one with PUT …/cas/${caId}/crl`);
    return toCrl(row);
  }

  async addCa(product: string, input: { pem: string; jit?: boolean }): Promise<ProductCa> {
    await this.deps.products.require(product);
    const cert = parseCertificatePem(input.pem);
    if (!cert.ca)
      throw new HearthError(
        'E_VALIDATION',
        `body.pem is not a CA certificate (its basicConstraints do not say CA:TRUE): register the CA that issues the device certificates, not a device certificate`,
        { field: 'body.pem' },
      );
    if (new Date(cert.validTo).getTime() <= Date.now())
      throw new HearthError('E_VALIDATION', `body.pem expired on ${new Date(cert.validTo).toISOString()}`, { field: 'body.pem' });
    const existing = await this.deps.db
      .selectFrom('product_cas')
      .select(['id', 'revoked_at'])
      .where('product_key', '=', product)
      .where('fingerprint', '=', cert.fingerprint256)
      .executeTakeFirst();
    if (existing)
      throw new HearthError(
        'E_CONFLICT',
        `this CA is registered for product "${product}" already (id ${existing.id}${existing.revoked_at ? ', revoked' : ''})`,
      );
    const row = {
      id: newId('ca'),
      product_key: product,
      fingerprint: cert.fingerprint256,
      subject: oneLine(cert.subject),
      pem: cert.toString(),
      not_after: new Date(cert.validTo).getTime(),
      jit: input.jit ? 1 : 0,
      created_at: Date.now(),
      revoked_at: null,
    };
    await this.deps.db.insertInto('product_cas').values(row).execute();
    await this.changed();
    return toCa(row);
  }

  async listCas(product: string): Promise<ProductCa[]> {
    await this.deps.products.require(product);
    const rows = await this.deps.db.selectFrom('product_cas').selectAll().where('product_key', '=', product).orderBy('created_at').execute();
    return rows.map(toCa);
  }

  /** Revokes a CA: certificates it issued are refused, and their sessions closed, on every node. */
  async revokeCa(product: string, id: string): Promise<ProductCa> {
    const row = await this.deps.db.selectFrom('product_cas').selectAll().where('product_key', '=', product).where('id', '=', id).executeTakeFirst();
    if (!row) throw new HearthError('E_NOT_FOUND', `product "${product}" has no CA "${id}"`);
    if (row.revoked_at === null) {
      row.revoked_at = Date.now();
      await this.deps.db.updateTable('product_cas').set({ revoked_at: row.revoked_at }).where('id', '=', id).execute();
      await this.changed();
    }
    return toCa(row);
  }

  /** Revokes one certificate by its SHA-256 fingerprint (seen or not yet). */
  async revokeCertificate(
    fingerprint: string,
    reason?: string,
  ): Promise<{ fingerprint: string; reason: string | null; revokedAt: string; deviceId: string | null }> {
    const fp = normalizeFingerprint(fingerprint, 'body.fingerprint');
    const now = Date.now();
    await this.deps.db
      .insertInto('revoked_certificates')
      .values({ fingerprint: fp, reason: reason ?? null, revoked_at: now })
      .onConflict((oc) => oc.column('fingerprint').doNothing())
      .execute();
    const row = await this.deps.db.selectFrom('revoked_certificates').selectAll().where('fingerprint', '=', fp).executeTakeFirstOrThrow();
    const bound = await this.deps.db.selectFrom('device_certificates').select('device_id').where('fingerprint', '=', fp).executeTakeFirst();
    await this.changed();
    return { fingerprint: fp, reason: row.reason, revokedAt: new Date(Number(row.revoked_at)).toISOString(), deviceId: bound?.device_id ?? null };
  }

  async listRevoked(): Promise<Array<{ fingerprint: string; reason: string | null; revokedAt: string }>> {
    const rows = await this.deps.db.selectFrom('revoked_certificates').selectAll().orderBy('revoked_at').execute();
    return rows.map((r) => ({ fingerprint: r.fingerprint, reason: r.reason, revokedAt: new Date(Number(r.revoked_at)).toISOString() }));
  }

  /**
   * Registers one certificate for one device (issued by any CA, or self-signed, as AWS IoT's
   * "register without a CA"): it must not be a CA, must be valid now, and must carry the device's
   * id or hardware id as its CN or a SAN. It then authenticates that device only.
   */
  async registerDeviceCertificate(deviceId: string, pem: string): Promise<DeviceCertificate> {
    const device = await this.deps.devices.require(deviceId);
    if (device.parentId !== null) throw new HearthError('E_VALIDATION', `device "${deviceId}" is a sub-device: it connects through its hub`, { field: 'id' });
    const cert = parseCertificatePem(pem);
    if (cert.ca)
      throw new HearthError('E_VALIDATION', 'body.pem is a CA certificate: register CAs with POST /api/v1/products/{key}/cas, and device certificates here', {
        field: 'body.pem',
      });
    const now = Date.now();
    if (new Date(cert.validTo).getTime() <= now)
      throw new HearthError('E_VALIDATION', `body.pem expired on ${new Date(cert.validTo).toISOString()}`, { field: 'body.pem' });
    if (new Date(cert.validFrom).getTime() > now)
      throw new HearthError('E_VALIDATION', `body.pem is not valid before ${new Date(cert.validFrom).toISOString()}`, { field: 'body.pem' });
    const names = certificateNames(cert);
    const expected = [device.id, ...(device.hwid ? [device.hwid] : [])];
    if (!names.some((n) => expected.includes(n))) {
      throw new HearthError(
        'E_VALIDATION',
        `body.pem names ${names.length ? names.map((n) => `"${n}"`).join(', ') : 'nobody (no CN, no SAN)'}; it must carry the device id "${device.id}"${device.hwid ? ` or its hardware id "${device.hwid}"` : ''} as its CN or a SAN`,
        { field: 'body.pem' },
      );
    }
    const fp = cert.fingerprint256;
    if ((await this.revokedSet()).has(fp)) throw new HearthError('E_CONFLICT', `the certificate ${fp} is revoked`);
    await this.deps.db
      .insertInto('device_certificates')
      .values({
        fingerprint: fp,
        device_id: device.id,
        ca_id: REGISTERED,
        subject: oneLine(cert.subject),
        not_after: new Date(cert.validTo).getTime(),
        first_seen_at: now,
        serial: normalizeSerial(cert.serialNumber),
      })
      .onConflict((oc) => oc.column('fingerprint').doNothing())
      .execute();
    const bound = await this.deps.db.selectFrom('device_certificates').selectAll().where('fingerprint', '=', fp).executeTakeFirstOrThrow();
    if (bound.device_id !== device.id) throw new HearthError('E_CONFLICT', 'the certificate is bound to another device');
    return (await this.deviceCertificates(device.id)).find((c) => c.fingerprint === fp)!;
  }

  /** The certificates a device authenticated with (or that were registered for it). */
  async deviceCertificates(deviceId: string): Promise<DeviceCertificate[]> {
    const revoked = await this.revokedSet();
    const byCrl = (await this.crlState()).fingerprints;
    const rows = await this.deps.db.selectFrom('device_certificates').selectAll().where('device_id', '=', deviceId).orderBy('first_seen_at').execute();
    return rows.map((r) => ({
      fingerprint: r.fingerprint,
      deviceId: r.device_id,
      caId: r.ca_id,
      subject: r.subject,
      notAfter: new Date(Number(r.not_after)).toISOString(),
      firstSeenAt: new Date(Number(r.first_seen_at)).toISOString(),
      revoked: revoked.has(r.fingerprint) || byCrl.has(r.fingerprint),
    }));
  }

  /**
   * Who a TLS client certificate is. `name` (the MQTT client id) must be one of the certificate's
   * names (subject CN or a SAN); the certificate must be in its validity period, issued by an
   * active CA of a product (checked by signature), and neither it nor its CA revoked. The name is
   * a device id of that product, or a hardware id: the product's device with it, or, when the CA
   * has just-in-time registration, a new device made for it. A certificate is bound to the first
   * device it authenticated; another device cannot use it.
   */
  async authenticateCertificate(name: string, cert: X509Certificate): Promise<CertificateOutcome> {
    const now = Date.now();
    const fp = cert.fingerprint256;
    if ((await this.revokedSet()).has(fp)) return { ok: false, reason: 'the certificate is revoked' };
    if (new Date(cert.validFrom).getTime() > now || new Date(cert.validTo).getTime() < now) return { ok: false, reason: 'the certificate is not valid now' };
    const ca = (await this.activeCas()).find((c) => cert.checkIssued(c.cert) && cert.verify(c.cert.publicKey));
    if (!ca) return this.authenticateRegistered(name, cert);
    if (new Date(ca.cert.validTo).getTime() < now) return { ok: false, reason: 'the CA has expired' };
    const serial = normalizeSerial(cert.serialNumber);
    if ((await this.crlState()).serials.get(ca.row.id)?.has(serial)) return { ok: false, reason: "the certificate is revoked by its CA's revocation list" };
    const names = certificateNames(cert);
    if (!names.includes(name)) return { ok: false, reason: `the client id "${name}" is not a name of the certificate (${names.join(', ') || 'it has none'})` };
    const product = ca.row.product;
    let deviceId: string | undefined;
    let created = false;
    const byId = await this.deps.devices.get(name);
    if (byId && byId.productKey === product && byId.parentId === null) deviceId = byId.id;
    else {
      const byHwid = await this.deps.credentials.findByHwid(product, name);
      if (byHwid) deviceId = byHwid.id;
      else if (ca.row.jit) {
        const made = await this.deps.credentials.provisionHwid(product, name, { withSecret: false });
        deviceId = made.device.id;
        created = made.created;
        if (created) this.deps.log.info({ deviceId, product, hwid: name, ca: ca.row.id }, 'device registered just in time by its certificate');
      } else return { ok: false, reason: `no device of product "${product}" has the id or hardware id "${name}" (the CA has no just-in-time registration)` };
    }
    await this.deps.db
      .insertInto('device_certificates')
      .values({
        fingerprint: fp,
        device_id: deviceId,
        ca_id: ca.row.id,
        subject: oneLine(cert.subject),
        not_after: new Date(cert.validTo).getTime(),
        first_seen_at: now,
        serial,
      })
      // A certificate first seen before its serial was kept (migration 0018) gets it now, for CRLs.
      .onConflict((oc) => oc.column('fingerprint').doUpdateSet({ serial }).where('device_certificates.serial', 'is', null))
      .execute();
    const bound = await this.deps.db.selectFrom('device_certificates').select('device_id').where('fingerprint', '=', fp).executeTakeFirstOrThrow();
    if (bound.device_id !== deviceId) return { ok: false, reason: `the certificate is bound to another device` };
    return { ok: true, deviceId, fingerprint: fp, caId: ca.row.id, created };
  }

  /** A certificate of no registered CA: only one registered for the device its name says. */
  private async authenticateRegistered(name: string, cert: X509Certificate): Promise<CertificateOutcome> {
    const fp = cert.fingerprint256;
    const row = await this.deps.db.selectFrom('device_certificates').select(['device_id', 'ca_id']).where('fingerprint', '=', fp).executeTakeFirst();
    if (!row || row.ca_id !== REGISTERED) return { ok: false, reason: 'the certificate is not issued by a registered CA, nor registered for a device' };
    if (!certificateNames(cert).includes(name)) return { ok: false, reason: `the client id "${name}" is not a name of the certificate` };
    const device = await this.deps.devices.get(row.device_id);
    if (!device || (device.id !== name && device.hwid !== name))
      return { ok: false, reason: `the certificate is registered for another device than "${name}"` };
    return { ok: true, deviceId: device.id, fingerprint: fp, caId: REGISTERED, created: false };
  }

  /** Whether a session opened with this certificate is still allowed (neither it nor its CA revoked since). */
  async certificateStillValid(fingerprint: string, caId: string): Promise<boolean> {
    if ((await this.revokedSet()).has(fingerprint)) return false;
    if (caId === REGISTERED) return true;
    if ((await this.crlState()).fingerprints.has(fingerprint)) return false;
    return (await this.activeCas()).some((c) => c.row.id === caId);
  }

  private async changed(): Promise<void> {
    this.reload();
    await this.deps.onChange?.();
  }

  private async activeCas(): Promise<CaEntry[]> {
    if (this.cas) return this.cas;
    const rows = await this.deps.db.selectFrom('product_cas').selectAll().where('revoked_at', 'is', null).execute();
    const cas = rows.map((r) => ({ row: toCa(r), cert: new X509Certificate(r.pem) }));
    this.cas = cas;
    return cas;
  }

  /** The CAs' revocation lists, and which known certificates they revoke (for open sessions). */
  private crlState(): Promise<{ serials: Map<string, Set<string>>; fingerprints: Set<string> }> {
    this.crls ??= (async () => {
      const serials = new Map<string, Set<string>>();
      const fingerprints = new Set<string>();
      for (const r of await this.deps.db.selectFrom('product_ca_crls').select(['ca_id', 'serials']).execute()) {
        const list = JSON.parse(r.serials) as string[];
        serials.set(r.ca_id, new Set(list));
        for (let i = 0; i < list.length; i += 500) {
          const rows = await this.deps.db
            .selectFrom('device_certificates')
            .select('fingerprint')
            .where('ca_id', '=', r.ca_id)
            .where('serial', 'in', list.slice(i, i + 500))
            .execute();
          for (const x of rows) fingerprints.add(x.fingerprint);
        }
      }
      return { serials, fingerprints };
    })().catch((err) => {
      this.crls = undefined;
      throw err;
    });
    return this.crls;
  }

  private async revokedSet(): Promise<Set<string>> {
    if (this.revoked) return this.revoked;
    const rows = await this.deps.db.selectFrom('revoked_certificates').select('fingerprint').execute();
    const set = new Set(rows.map((r) => r.fingerprint));
    this.revoked = set;
    return set;
  }
}

function oneLine(subject: string): string {
  return subject.split('\n').join(', ');
}

function toCa(r: {
  id: string;
  product_key: string;
  fingerprint: string;
  subject: string;
  not_after: number;
  jit: number;
  created_at: number;
  revoked_at: number | null;
}): ProductCa {
  return {
    id: r.id,
    product: r.product_key,
    fingerprint: r.fingerprint,
    subject: r.subject,
    notAfter: new Date(Number(r.not_after)).toISOString(),
    jit: Number(r.jit) === 1,
    createdAt: new Date(Number(r.created_at)).toISOString(),
    revokedAt: r.revoked_at === null ? null : new Date(Number(r.revoked_at)).toISOString(),
  };
}

function toCrl(r: { ca_id: string; serials: string; number: string | null; this_update: number; next_update: number | null; uploaded_at: number }): CaCrl {
  return {
    caId: r.ca_id,
    number: r.number,
    thisUpdate: new Date(Number(r.this_update)).toISOString(),
    nextUpdate: r.next_update === null ? null : new Date(Number(r.next_update)).toISOString(),
    serials: JSON.parse(r.serials) as string[],
    uploadedAt: new Date(Number(r.uploaded_at)).toISOString(),
  };
}
