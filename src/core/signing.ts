import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * `sha256=<hex>`: the signature of a body Hearth sends (webhook targets, automation webhooks,
 * webhook notification channels: the `x-hearth-signature` header), an HMAC-SHA256 of its exact
 * bytes with the shared secret. Partners sign what they push to Hearth the same way.
 */
export function signBody(secret: string, body: string | Buffer): string {
  return 'sha256=' + createHmac('sha256', secret).update(body).digest('hex');
}

/** Whether `signature` is `sha256=<hex>` of `body` under `secret` (constant time). */
export function bodySignatureMatches(secret: string, body: string | Buffer, signature: string | undefined): boolean {
  const m = /^sha256=([0-9a-fA-F]{64})$/.exec(signature?.trim() ?? '');
  if (!m) return false;
  return timingSafeEqual(createHmac('sha256', secret).update(body).digest(), Buffer.from(m[1], 'hex'));
}
