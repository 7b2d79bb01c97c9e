/**
 * The device side of firmware updates (docs/ota.md), shared by the simulated devices and hub:
 * download with resume (HTTP Range), check the SHA-256 and the Ed25519 signature against the
 * product's public key, and the order of progress reports. No Hearth internals: only the
 * protocol, as a device maker would write it.
 */
import { createHash, createPublicKey, verify } from 'node:crypto';

/** The job as it arrives on `devices/{id}/ota`. */
export interface OtaJob {
  job: string;
  version: string;
  url: string;
  size: number;
  sha256: string;
  signature: string;
  makerSignature?: string;
  /** Through a hub: the sub-device to update. */
  child?: string;
}

export type ProgressState = 'downloading' | 'verifying' | 'installing' | 'rebooting' | 'succeeded' | 'failed';

export function isOtaJob(v: unknown): v is OtaJob {
  const j = v as Record<string, unknown>;
  return (
    typeof j === 'object' &&
    j !== null &&
    typeof j.job === 'string' &&
    typeof j.version === 'string' &&
    typeof j.url === 'string' &&
    typeof j.size === 'number' &&
    typeof j.sha256 === 'string' &&
    typeof j.signature === 'string'
  );
}

/**
 * Downloads the image; a dropped transfer resumes with `Range: bytes=<received>-` (up to
 * `attempts` times), checking with `If-Range` that the image did not change meanwhile.
 */
export async function downloadFirmware(
  job: OtaJob,
  opts: { attempts?: number; onProgress?: (pct: number) => void; signal?: AbortSignal } = {},
): Promise<Buffer> {
  const parts: Buffer[] = [];
  let received = 0;
  let etag: string | undefined;
  let lastPct = -1;
  let busy = 0;
  for (let attempt = 0; attempt < (opts.attempts ?? 6); attempt++) {
    try {
      const headers: Record<string, string> = {};
      if (received > 0) {
        headers.range = `bytes=${received}-`;
        if (etag) headers['if-range'] = etag;
      }
      // A transfer that stalls is given up after a while and resumed (the next attempt asks for the rest).
      const stall = AbortSignal.timeout(120_000);
      const res = await fetch(job.url, { headers, signal: opts.signal ? AbortSignal.any([opts.signal, stall]) : stall });
      if (res.status === 503 && busy++ < 200) {
        // The server is busy, not broken: wait (a simulator waits at most 2 s, with jitter) and try again, without using up an attempt.
        await res.arrayBuffer().catch(() => undefined);
        const wait = Math.min(2, Number(res.headers.get('retry-after') ?? 1)) * 1000 * (0.5 + Math.random() / 2);
        await new Promise((r) => setTimeout(r, wait));
        attempt--;
        continue;
      }
      if (res.status !== 200 && res.status !== 206) throw new Error(`download failed: HTTP ${res.status}`);
      if (res.status === 200 && received > 0) {
        parts.length = 0;
        received = 0;
      }
      etag = res.headers.get('etag') ?? undefined;
      const reader = res.body!.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parts.push(Buffer.from(value));
        received += value.length;
        const pct = Math.floor((received / Math.max(1, job.size)) * 100);
        if (pct >= lastPct + 25) {
          lastPct = pct;
          opts.onProgress?.(Math.min(100, pct));
        }
      }
      if (received >= job.size) return Buffer.concat(parts);
    } catch (err) {
      if (opts.signal?.aborted || attempt + 1 >= (opts.attempts ?? 6)) throw err;
      // A link that failed (refused, reset, timed out: fetch's TypeError) is tried again after a
      // growing, jittered wait, as device firmware does: 1, 2, 4, 8, 16 s. Thousands of devices
      // retrying at once would otherwise hit a busy server again together. An HTTP answer is
      // tried again at once.
      if (err instanceof TypeError) await new Promise((r) => setTimeout(r, 1000 * 2 ** attempt * (0.5 + Math.random() / 2)));
    }
  }
  throw new Error(`download incomplete: ${received} of ${job.size} bytes`);
}

/** Why the image must not be installed, or undefined: its SHA-256, then Hearth's signature over the digest. */
export function verifyFirmware(image: Buffer, job: OtaJob, publicKeyPem: string): string | undefined {
  if (image.length !== job.size) return `size ${image.length} is not ${job.size}`;
  const digest = createHash('sha256').update(image).digest();
  if (digest.toString('hex') !== job.sha256.toLowerCase()) return 'sha256 mismatch: the image is not the one the job names';
  const ok = verify(null, digest, createPublicKey(publicKeyPem), Buffer.from(job.signature, 'base64'));
  return ok ? undefined : 'signature does not verify with the product key';
}

/** The product's public key, from `GET /api/v1/products/{key}/firmware-key` of the server the job's URL names. */
export async function fetchProductKey(job: OtaJob, product: string, attempts = 5): Promise<string> {
  for (let i = 1; ; i++) {
    try {
      const res = await fetch(new URL(`/api/v1/products/${encodeURIComponent(product)}/firmware-key`, job.url));
      if (!res.ok) throw new Error(`firmware key: HTTP ${res.status}`);
      return ((await res.json()) as { publicKey: string }).publicKey;
    } catch (err) {
      if (i >= attempts) throw err;
      await new Promise((r) => setTimeout(r, 200 * i));
    }
  }
}
