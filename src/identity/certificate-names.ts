import { X509Certificate } from 'node:crypto';
import { HearthError } from '../core/errors.ts';

/** The names a device certificate may bind to a device: its subject CN and its SANs (DNS, URI, e-mail, IP). */
export function certificateNames(cert: X509Certificate): string[] {
  const names: string[] = [];
  for (const line of cert.subject.split('\n')) if (line.startsWith('CN=')) names.push(line.slice(3));
  for (const entry of splitSan(cert.subjectAltName ?? '')) {
    const m = /^(DNS|URI|email|IP Address):(.*)$/.exec(entry);
    if (m) names.push(m[2]);
  }
  return [...new Set(names.filter(Boolean))];
}

/** `DNS:a, URI:b` → entries; values that hold `, ` are quoted by Node ("…"). */
function splitSan(san: string): string[] {
  const out: string[] = [];
  for (const m of san.matchAll(/([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g)) {
    const v = m[2].startsWith('"') ? (JSON.parse(m[2]) as string) : m[2];
    out.push(`${m[1]}:${v}`);
  }
  return out;
}

/** A SHA-256 fingerprint as Node prints it (`AB:CD:…`), from that form or plain hex. */
export function normalizeFingerprint(input: string, field = 'fingerprint'): string {
  const hex = input.trim().replace(/:/g, '').toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) throw new HearthError('E_VALIDATION', `${field} must be a SHA-256 fingerprint: 64 hex digits, colons allowed`, { field });
  return hex.match(/../g)!.join(':');
}

/** Parses one PEM certificate, with a 400 that says what is wrong. */
export function parseCertificatePem(pem: string, field = 'body.pem'): X509Certificate {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  const [block] = blocks;
  if (block === undefined)
    throw new HearthError('E_VALIDATION', `${field} is not a PEM certificate (expected a "-----BEGIN CERTIFICATE-----" block)`, { field });
  if (blocks.length > 1) throw new HearthError('E_VALIDATION', `${field} holds ${blocks.length} certificates: register one CA at a time`, { field });
  try {
    return new X509Certificate(block);
  } catch (err) {
    throw new HearthError('E_VALIDATION', `${field} could not be read as an X.509 certificate: ${(err as Error).message}`, { field });
  }
}
