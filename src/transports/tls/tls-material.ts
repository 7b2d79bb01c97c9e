import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, unwatchFile, watchFile, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../../core/logger.ts';
import { StartupError } from '../../core/startup-error.ts';
import { makeSelfSigned } from './self-signed.ts';

/** The least TLS version every TLS listener accepts. */
export const TLS_MIN_VERSION = 'TLSv1.2' as const;

export interface TlsMaterialConfig {
  /** PEM files: the certificate (a chain allowed, leaf first) and its private key. */
  certFile?: string;
  keyFile?: string;
  /** Without files: make (once, kept in `<dataDir>/tls/`) a self-signed development certificate. */
  selfSigned: boolean;
  dataDir: string;
  /** How often the files are checked for a change (cert-manager swaps them in place). */
  watchIntervalMs: number;
}

export interface ServedCertificate {
  cert: string;
  key: string;
  /** SHA-256 fingerprint of the leaf certificate (colon-separated hex). */
  fingerprint: string;
  subject: string;
  validTo: string;
  selfSigned: boolean;
}

/**
 * The certificate the TLS listeners (MQTT over TLS, HTTPS/WSS) serve. Loaded at start; then the
 * files are watched, and a new pair that loads (the key matches the certificate) is handed to
 * every listener (`onChange`) for the connections that come after: no restart, no dropped
 * session. A half-written rotation (the certificate changed, its key not yet) is logged and the
 * old pair kept until the next change.
 */
export class TlsMaterial {
  private current: ServedCertificate | undefined;
  private readonly listeners = new Set<(c: ServedCertificate) => void>();
  private watching: string[] = [];

  constructor(
    private readonly config: TlsMaterialConfig,
    private readonly log: Logger,
  ) {}

  /** True when TLS is configured at all (files or the self-signed certificate). */
  static configured(c: { certFile?: string; keyFile?: string; selfSigned: boolean }): boolean {
    return c.certFile !== undefined || c.keyFile !== undefined || c.selfSigned;
  }

  /** Reads (or makes) the certificate and starts watching its files; a bad pair refuses the start. */
  start(): ServedCertificate {
    const { certFile, keyFile } = this.config;
    if (certFile !== undefined || keyFile !== undefined) {
      if (certFile === undefined)
        throw new StartupError('HEARTH_TLS_KEY_FILE is set without HEARTH_TLS_CERT_FILE; set both (PEM files)', 'HEARTH_TLS_CERT_FILE');
      if (keyFile === undefined) throw new StartupError('HEARTH_TLS_CERT_FILE is set without HEARTH_TLS_KEY_FILE; set both (PEM files)', 'HEARTH_TLS_KEY_FILE');
      try {
        this.current = load(certFile, keyFile, false);
      } catch (err) {
        throw new StartupError(
          `the TLS certificate cannot be used (HEARTH_TLS_CERT_FILE ${certFile}, HEARTH_TLS_KEY_FILE ${keyFile}): ${(err as Error).message}`,
          'HEARTH_TLS_CERT_FILE',
        );
      }
      this.watch(certFile, keyFile);
    } else {
      this.current = this.selfSigned();
    }
    return this.current;
  }

  get served(): ServedCertificate {
    if (!this.current) throw new Error('TLS material not loaded: start() first');
    return this.current;
  }

  /** Options for `tls.createServer`/`https.createServer` (TLS 1.2 at least) with the current pair. */
  serverOptions(): SecureContextOptions & { minVersion: typeof TLS_MIN_VERSION } {
    return { cert: this.served.cert, key: this.served.key, minVersion: TLS_MIN_VERSION };
  }

  /** Called with each reloaded pair; returns the undo. */
  onChange(fn: (c: ServedCertificate) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  stop(): void {
    for (const f of this.watching) unwatchFile(f);
    this.watching = [];
  }

  /** Polling (stat) rather than fs.watch: it follows the symlinks a Kubernetes Secret mount swaps. */
  private watch(certFile: string, keyFile: string): void {
    const changed = (now: { mtimeMs: number; ino: number; size: number }, before: { mtimeMs: number; ino: number; size: number }) => {
      if (now.mtimeMs === before.mtimeMs && now.ino === before.ino && now.size === before.size) return;
      this.reload(certFile, keyFile);
    };
    for (const f of new Set([certFile, keyFile])) {
      watchFile(f, { interval: this.config.watchIntervalMs, persistent: false }, changed);
      this.watching.push(f);
    }
  }

  private reload(certFile: string, keyFile: string): void {
    let next: ServedCertificate;
    try {
      next = load(certFile, keyFile, false);
    } catch (err) {
      this.log.warn(
        { err: (err as Error).message, certFile, keyFile },
        'TLS certificate files changed but do not load (yet); still serving the previous certificate',
      );
      return;
    }
    if (next.fingerprint === this.current?.fingerprint) return;
    this.current = next;
    this.log.info({ fingerprint: next.fingerprint, subject: next.subject, validTo: next.validTo }, 'TLS certificate reloaded');
    for (const fn of this.listeners) {
      try {
        fn(next);
      } catch (err) {
        this.log.error({ err }, 'a TLS listener could not take the new certificate');
      }
    }
  }

  /** The development certificate, made once and kept (so its fingerprint stays) in `<dataDir>/tls/`. */
  private selfSigned(): ServedCertificate {
    const dir = join(this.config.dataDir, 'tls');
    const certFile = join(dir, 'self-signed.crt');
    const keyFile = join(dir, 'self-signed.key');
    if (existsSync(certFile) && existsSync(keyFile)) {
      try {
        const c = load(certFile, keyFile, true);
        if (new Date(c.validTo).getTime() > Date.now() + 86400_000) return c;
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'the kept self-signed certificate does not load; making a new one');
      }
    }
    const made = makeSelfSigned();
    mkdirSync(dir, { recursive: true });
    writeFileSync(keyFile, made.keyPem, { mode: 0o600 });
    chmodSync(keyFile, 0o600);
    writeFileSync(certFile, made.certPem);
    return load(certFile, keyFile, true);
  }
}

/** Loads a pair, proving the key belongs to the certificate (createSecureContext refuses a mismatch). */
function load(certFile: string, keyFile: string, selfSigned: boolean): ServedCertificate {
  const cert = readFileSync(certFile, 'utf8');
  const key = readFileSync(keyFile, 'utf8');
  if (!cert.includes('-----BEGIN CERTIFICATE-----')) throw new Error(`${certFile} holds no PEM certificate`);
  const leaf = new X509Certificate(cert);
  createSecureContext({ cert, key, minVersion: TLS_MIN_VERSION });
  return { cert, key, fingerprint: leaf.fingerprint256, subject: leaf.subject.replace(/\n/g, ', '), validTo: new Date(leaf.validTo).toISOString(), selfSigned };
}

/** The path of the self-signed certificate kept in a data directory (for the banner and `--cafile`). */
export function selfSignedCertPath(dataDir: string): string {
  return join(dataDir, 'tls', 'self-signed.crt');
}
