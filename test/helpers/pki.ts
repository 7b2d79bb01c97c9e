import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';

/** A certificate made with the machine's `openssl`: its files, PEM and SHA-256 fingerprint. */
export interface Issued {
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
  fingerprint: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function read(dir: string, base: string): Issued {
  const certFile = join(dir, `${base}.crt`);
  const keyFile = join(dir, `${base}.key`);
  const cert = readFileSync(certFile, 'utf8');
  return { certFile, keyFile, cert, key: readFileSync(keyFile, 'utf8'), fingerprint: new X509Certificate(cert).fingerprint256 };
}

/**
 * A throwaway PKI in a temp directory: a CA (`ca()`), and certificates it issues for servers
 * (`server()`, SAN localhost and 127.0.0.1) and devices (`client()`, with a CN and SANs).
 */
export class TestPki {
  readonly dir = mkdtempSync(join(tmpdir(), 'hearth-pki-'));
  private n = 0;

  /** A self-signed CA (EC P-256). */
  ca(name = 'Test CA'): Issued {
    const base = `ca${++this.n}`;
    openssl(
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        `${base}.key`,
        '-out',
        `${base}.crt`,
        '-days',
        '30',
        '-subj',
        `/CN=${name}`,
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ],
      this.dir,
    );
    return read(this.dir, base);
  }

  private issue(ca: Issued, subject: string, ext: string): Issued {
    const base = `c${++this.n}`;
    writeFileSync(join(this.dir, `${base}.ext`), ext);
    openssl(
      ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', subject],
      this.dir,
    );
    openssl(
      [
        'x509',
        '-req',
        '-in',
        `${base}.csr`,
        '-CA',
        ca.certFile,
        '-CAkey',
        ca.keyFile,
        '-CAcreateserial',
        '-out',
        `${base}.crt`,
        '-days',
        '30',
        '-extfile',
        `${base}.ext`,
      ],
      this.dir,
    );
    return read(this.dir, base);
  }

  /** A server certificate for localhost / 127.0.0.1. */
  server(ca: Issued, cn = 'localhost'): Issued {
    return this.issue(
      ca,
      `/CN=${cn}`,
      'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n',
    );
  }

  /** A device (client) certificate: subject CN `cn` (empty: none), and SANs such as `DNS:x`, `URI:urn:x`. */
  client(ca: Issued, cn: string, sans: string[] = []): Issued {
    const san = sans.length ? `subjectAltName=${sans.join(',')}\n` : '';
    return this.issue(ca, cn ? `/CN=${cn}` : '/O=Hearth test', `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n${san}`);
  }
}

/** A JSON request over HTTPS trusting `ca` (fetch cannot be given a CA). */
export function httpsJson<T = any>(
  url: string,
  method: string,
  opts: { ca: string; body?: unknown; token?: string; headers?: Record<string, string>; rawBody?: string } = { ca: '' },
): Promise<{ status: number; body: T; peerFingerprint?: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    const payload = opts.rawBody ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    const req = httpsRequest(url, { method, headers, ca: opts.ca, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      const peerFingerprint = (res.socket as import('node:tls').TLSSocket).getPeerX509Certificate?.()?.fingerprint256;
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text;
        try {
          body = text ? JSON.parse(text) : undefined;
        } catch {
          /* keep text */
        }
        resolve({ status: res.statusCode ?? 0, body: body as T, peerFingerprint });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** The certificate a TLS server presents to a new connection (its SHA-256 fingerprint), trusting `ca`. */
export function servedFingerprint(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => {
      const fp = s.getPeerX509Certificate()?.fingerprint256 ?? '';
      s.destroy();
      resolve(fp);
    });
    s.on('error', reject);
  });
}

/**
 * A CRL of `ca` revoking `revoked` (made with `openssl ca -gencrl`), PEM. `number`: its cRLNumber;
 * `hours`: how long until its nextUpdate.
 */
export function makeCrl(pki: TestPki, ca: Issued, revoked: Issued[], opts: { number?: number; hours?: number } = {}): string {
  const base = join(pki.dir, `crl-${Date.now()}-${Math.random().toString(36).slice(2)}`);
  const ts = (d: Date) => d.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z';
  const lines = revoked.map((c) => {
    const x = new X509Certificate(c.cert);
    return ['R', ts(new Date(x.validTo)), ts(new Date(Date.now() - 60_000)), x.serialNumber, 'unknown', x.subject.replace(/\n/g, '/')].join('\t');
  });
  writeFileSync(`${base}.index`, lines.length ? `${lines.join('\n')}\n` : '');
  writeFileSync(`${base}.number`, `${(opts.number ?? 1).toString(16).padStart(2, '0').toUpperCase()}\n`);
  writeFileSync(
    `${base}.cnf`,
    `[ca]\ndefault_ca = c\n[c]\ndatabase = ${base}.index\ncrlnumber = ${base}.number\ndefault_md = sha256\ndefault_crl_hours = ${opts.hours ?? 24}\n`,
  );
  openssl(['ca', '-gencrl', '-config', `${base}.cnf`, '-cert', ca.certFile, '-keyfile', ca.keyFile, '-out', `${base}.pem`], pki.dir);
  return readFileSync(`${base}.pem`, 'utf8');
}
