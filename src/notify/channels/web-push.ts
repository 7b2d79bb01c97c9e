import { createECDH } from 'node:crypto';
import type { UrlPolicy } from '../../core/url-policy.ts';
import type { SettingsStore } from '../../core/settings-store.ts';
import { OutboundError, postBody, type Outbound } from '../../core/outbound.ts';
import type { NotificationMessage } from './message.ts';

export interface VapidKeys {
  publicKey: string;
  privateKey: string;
}

export interface WebPushTarget {
  endpoint: string;
  keys: { p256dh: string; auth: string };
}

const SETTINGS_KEY = 'notify.vapidKeys';

/**
 * Web Push (RFC 8030) with VAPID (RFC 8292) and aes128gcm payloads (RFC 8291). The VAPID key pair
 * is made on first start and kept in the settings store, so every node signs with the same one
 * and browsers' subscriptions stay valid across restarts. The `web-push` package encrypts and
 * signs; the request goes through the channel's Outbound (timeout, retries, breaker).
 */
export class WebPushSender {
  private keys: VapidKeys | undefined;

  constructor(private readonly deps: { settings: SettingsStore; subject: string; outbound: Outbound; urls: UrlPolicy }) {}

  async start(): Promise<void> {
    const raw = await this.deps.settings.getOrCreate(SETTINGS_KEY, () => JSON.stringify(vapidKeys()));
    this.keys = JSON.parse(raw) as VapidKeys;
  }

  /** The application server key browsers pass to `pushManager.subscribe` (base64url, uncompressed P-256 point). */
  get publicKey(): string {
    if (!this.keys) throw new Error('WebPushSender not started');
    return this.keys.publicKey;
  }

  /**
   * Sends one message to one subscription. Resolves `gone` when the push service says the
   * subscription no longer exists (404/410), so the caller forgets it; throws other failures.
   */
  async send(sub: WebPushTarget, n: NotificationMessage): Promise<'sent' | 'gone'> {
    if (!this.keys) throw new Error('WebPushSender not started');
    const payload = JSON.stringify({ id: n.id, homeId: n.homeId, kind: n.kind, severity: n.severity, title: n.title, body: n.body, data: n.data, at: n.at });
    // Loaded at the first push: a node that never sends one does not hold the package.
    const { default: webpush } = await import('web-push');
    const details = webpush.generateRequestDetails(sub, payload, {
      vapidDetails: { subject: this.deps.subject, publicKey: this.keys.publicKey, privateKey: this.keys.privateKey },
      TTL: n.severity === 'alarm' ? 24 * 3600 : 4 * 3600,
      urgency: n.severity === 'alarm' ? 'high' : 'normal',
    });
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(details.headers)) if (k.toLowerCase() !== 'content-length') headers[k] = String(v);
    try {
      await postBody(this.deps.outbound, details.endpoint, details.body, headers, { urls: this.deps.urls });
      return 'sent';
    } catch (err) {
      if (err instanceof OutboundError && (err.status === 404 || err.status === 410)) return 'gone';
      throw err;
    }
  }
}

/** A VAPID key pair as the `web-push` package makes it: a P-256 key, base64url (public key uncompressed, private key 32 bytes). */
export function vapidKeys(): VapidKeys {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  const priv = ecdh.getPrivateKey();
  return { publicKey: ecdh.getPublicKey().toString('base64url'), privateKey: Buffer.concat([Buffer.alloc(32 - priv.length), priv]).toString('base64url') };
}
