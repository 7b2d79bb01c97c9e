import { verify, type KeyObject } from 'node:crypto';

/**
 * Certificate revocation lists (RFC 5280 §5): a CA's signed list of the serial numbers it revoked.
 * Node's crypto reads certificates but not CRLs, so this reads the few fields Hearth needs from
 * the DER: the signed part (to check its signature with the CA's key), the times, the CRL number
 * and the revoked serials. Pure: no I/O. A malformed list is a `CrlError` saying what is wrong.
 */
export interface Crl {
  /** The DER of the signed part (tbsCertList) and its signature, with the algorithm's OID. */
  tbs: Buffer;
  signature: Buffer;
  algorithm: string;
  thisUpdate: number;
  nextUpdate: number | null;
  /** The cRLNumber extension, as a hex string (null when absent). */
  number: string | null;
  /** Revoked serial numbers, upper-case hex without leading zeros (as X509Certificate.serialNumber, normalised). */
  serials: string[];
}

export class CrlError extends Error {}

interface Tlv {
  tag: number;
  /** Start of the whole element, of its content, and the end of both. */
  start: number;
  body: number;
  end: number;
}

function tlv(buf: Buffer, at: number, limit = buf.length): Tlv {
  if (at + 2 > limit) throw new CrlError('the DER ends early');
  const tag = buf[at];
  let len = buf[at + 1];
  let body = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || body + n > limit) throw new CrlError('a DER length is malformed');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[body + i];
    body += n;
  }
  const end = body + len;
  if (end > limit) throw new CrlError('a DER element runs past its container');
  return { tag, start: at, body, end };
}

/** The elements inside a constructed element. */
function children(buf: Buffer, t: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = t.body; at < t.end; ) {
    const c = tlv(buf, at, t.end);
    out.push(c);
    at = c.end;
  }
  return out;
}

const SEQUENCE = 0x30;
const INTEGER = 0x02;
const OID = 0x06;
const BIT_STRING = 0x03;
const OCTET_STRING = 0x04;
const UTC_TIME = 0x17;
const GENERALIZED_TIME = 0x18;
const CTX0 = 0xa0;
const CRL_NUMBER_OID = '2.5.29.20';

function oid(buf: Buffer, t: Tlv): string {
  if (t.tag !== OID) throw new CrlError('expected an algorithm identifier');
  const b = buf.subarray(t.body, t.end);
  if (b.length === 0) throw new CrlError('an object identifier is empty');
  const parts = [Math.floor(b[0] / 40), b[0] % 40];
  let v = 0;
  for (let i = 1; i < b.length; i++) {
    v = v * 128 + (b[i] & 0x7f);
    if (!(b[i] & 0x80)) {
      parts.push(v);
      v = 0;
    }
  }
  return parts.join('.');
}

function time(buf: Buffer, t: Tlv): number {
  const s = buf.toString('latin1', t.body, t.end);
  let m: RegExpExecArray | null;
  if (t.tag === UTC_TIME && (m = /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s))) {
    const y = Number(m[1]);
    return Date.UTC(y < 50 ? 2000 + y : 1900 + y, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  }
  if (t.tag === GENERALIZED_TIME && (m = /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s)))
    return Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  throw new CrlError(`"${s}" is not a time of a CRL`);
}

const isTime = (t: Tlv) => t.tag === UTC_TIME || t.tag === GENERALIZED_TIME;

/** A serial number as X509Certificate prints it, normalised: upper-case hex without leading zeros. */
export function normalizeSerial(hex: string): string {
  return hex.toUpperCase().replace(/^0+(?=.)/, '');
}

/** Reads a CRL from PEM (`-----BEGIN X509 CRL-----`). Throws CrlError. */
export function parseCrlPem(pem: string): Crl {
  const m = /-----BEGIN X509 CRL-----([\s\S]*?)-----END X509 CRL-----/.exec(pem);
  if (!m) throw new CrlError('it is not a PEM CRL (-----BEGIN X509 CRL----- … -----END X509 CRL-----)');
  const body = m[1].replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) throw new CrlError('its PEM body is not base64');
  return parseCrlDer(Buffer.from(body, 'base64'));
}

export function parseCrlDer(der: Buffer): Crl {
  const outer = tlv(der, 0);
  if (outer.tag !== SEQUENCE || outer.end !== der.length) throw new CrlError('it is not one DER sequence');
  const [tbsT, algT, sigT] = children(der, outer);
  if (!tbsT || !algT || !sigT || tbsT.tag !== SEQUENCE || algT.tag !== SEQUENCE || sigT.tag !== BIT_STRING)
    throw new CrlError('it is not a CertificateList (signed list, algorithm, signature)');
  const algorithm = oid(der, children(der, algT)[0]);
  if (der[sigT.body] !== 0) throw new CrlError('the signature has unused bits');
  const signature = der.subarray(sigT.body + 1, sigT.end);
  const tbs = children(der, tbsT);
  let i = 0;
  if (tbs[i]?.tag === INTEGER) i++; // version
  if (tbs[i]?.tag !== SEQUENCE) throw new CrlError('the signed list has no signature algorithm');
  i++;
  if (tbs[i]?.tag !== SEQUENCE) throw new CrlError('the signed list has no issuer');
  i++;
  if (!tbs[i] || !isTime(tbs[i])) throw new CrlError('the signed list has no thisUpdate time');
  const thisUpdate = time(der, tbs[i++]);
  let nextUpdate: number | null = null;
  if (tbs[i] && isTime(tbs[i])) nextUpdate = time(der, tbs[i++]);
  const serials: string[] = [];
  if (tbs[i]?.tag === SEQUENCE) {
    for (const entry of children(der, tbs[i++])) {
      const serial = children(der, entry)[0];
      if (!serial || serial.tag !== INTEGER) throw new CrlError('a revoked entry has no serial number');
      serials.push(normalizeSerial(der.toString('hex', serial.body, serial.end)));
    }
  }
  let number: string | null = null;
  if (tbs[i]?.tag === CTX0) {
    const exts = children(der, tbs[i++])[0];
    for (const ext of exts ? children(der, exts) : []) {
      const parts = children(der, ext);
      if (parts.length && oid(der, parts[0]) === CRL_NUMBER_OID) {
        const value = parts[parts.length - 1];
        if (value.tag !== OCTET_STRING) continue;
        const n = tlv(der, value.body, value.end);
        if (n.tag === INTEGER) number = normalizeSerial(der.toString('hex', n.body, n.end));
      }
    }
  }
  return { tbs: der.subarray(tbsT.start, tbsT.end), signature, algorithm, thisUpdate, nextUpdate, number, serials };
}

/** Signature algorithms by OID: the digest `crypto.verify` takes (null: the key decides, Ed25519). */
const DIGESTS: Record<string, string | null> = {
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.3.101.112': null,
};

/** Whether `key` (the CA's public key) signed the list. Unknown algorithms: CrlError. */
export function crlSignedBy(crl: Crl, key: KeyObject): boolean {
  if (!Object.hasOwn(DIGESTS, crl.algorithm))
    throw new CrlError(`its signature algorithm ${crl.algorithm} is not supported (RSA or ECDSA with SHA-256/384/512, or Ed25519)`);
  try {
    return verify(DIGESTS[crl.algorithm], crl.tbs, key, crl.signature);
  } catch {
    return false;
  }
}

/** Compares two CRL numbers (hex); -1, 0 or 1. */
export function compareCrlNumbers(a: string, b: string): number {
  const x = BigInt(`0x${a}`);
  const y = BigInt(`0x${b}`);
  return x < y ? -1 : x > y ? 1 : 0;
}
