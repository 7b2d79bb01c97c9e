import { randomBytes, randomFillSync, randomInt } from 'node:crypto';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';

/**
 * Ids are lowercase Crockford-style base32 with a kind prefix, e.g. `d_9x2k7m4p1q8r`.
 * They are valid MQTT topic levels and NATS subject tokens (no dots, no wildcards).
 */
export function newId(prefix: string, length = 14): string {
  const bytes = randomPool(length);
  let out = '';
  for (let i = 0; i < length; i++) out += ALPHABET[bytes[pooled + i] & 31];
  pooled += length;
  return `${prefix}_${out}`;
}

/**
 * Random bytes for ids, taken from a 4 KB buffer refilled from the CSPRNG when used up: one
 * system call per few hundred ids instead of one per id (commands, events and jobs make one each).
 */
const POOL = Buffer.alloc(4096);
let pooled = POOL.length;
function randomPool(length: number): Buffer {
  if (pooled + length > POOL.length) {
    randomFillSync(POOL);
    pooled = 0;
  }
  return POOL;
}

/** A secret for a device or token signing key: 32 random bytes, base64url. */
export function newSecret(bytes = 24): string {
  return randomBytes(bytes).toString('base64url');
}

/** A human-friendly pairing code like `K7M4-P1Q8-R2X9` (what a QR code on the box carries). */
export function newPairingCode(): string {
  const upper = ALPHABET.toUpperCase();
  const groups: string[] = [];
  for (let g = 0; g < 3; g++) {
    let s = '';
    for (let i = 0; i < 4; i++) s += upper[randomInt(upper.length)];
    groups.push(s);
  }
  return groups.join('-');
}

/**
 * Message ids: a node's prefix, a token of this process start, the issuer's letter and a counter, unique across a cluster (node
 * ids are) and cheap. Every issuer on a node needs its own letter: two counters under one prefix
 * would hand out the same ids, and the bus drops a repeated id as a duplicate.
 */
const PROCESS_START = randomBytes(3).toString('hex');

export class MessageIds {
  private seq = 0;
  private readonly prefix: string;

  constructor(nodeId: string, issuer: string) {
    // The start token keeps ids unique across restarts too (the embedded node's id never changes).
    this.prefix = `${nodeId}.${issuer}${PROCESS_START}.`;
  }

  next(): string {
    return this.prefix + (++this.seq).toString(36);
  }
}
