import { createPrivateKey, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, constants, type ClientHttp2Session } from 'node:http2';
import type { Clock } from '../../core/clock.ts';
import { OutboundError, type Outbound } from '../../core/outbound.ts';
import type { NotificationMessage } from './message.ts';

export interface ApnsOptions {
  /** The .p8 auth key (PEM, P-256). */
  keyFile: string;
  keyId: string;
  teamId: string;
  /** The app's bundle id. */
  topic: string;
  /** https://api.push.apple.com, the sandbox, or an http:// fake (HTTP/2 without TLS). */
  baseUrl: string;
}

const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
/** Apple refuses provider tokens older than an hour and asks not to make new ones more often than every 20 minutes. */
const TOKEN_REUSE_MS = 40 * 60_000;

/**
 * Apple Push Notification service: one HTTP/2 connection, a POST to `/3/device/{token}` per
 * message, authenticated with an ES256 provider token (JWT: `kid` = key id, `iss` = team id)
 * renewed every 40 minutes.
 */
export class ApnsSender {
  private readonly key: KeyObject;
  private session: ClientHttp2Session | undefined;
  private jwt: { value: string; until: number } | undefined;

  constructor(private readonly deps: { options: ApnsOptions; clock: Clock; outbound: Outbound }) {
    this.key = createPrivateKey(readFileSync(deps.options.keyFile, 'utf8'));
  }

  /** The provider token (ES256 with the raw r||s signature JWTs need). */
  providerToken(): string {
    const now = this.deps.clock.now();
    if (this.jwt && this.jwt.until > now) return this.jwt.value;
    const unsigned = `${b64url({ alg: 'ES256', kid: this.deps.options.keyId })}.${b64url({ iss: this.deps.options.teamId, iat: Math.floor(now / 1000) })}`;
    const sig = sign('sha256', Buffer.from(unsigned), { key: this.key, dsaEncoding: 'ieee-p1363' }).toString('base64url');
    this.jwt = { value: `${unsigned}.${sig}`, until: now + TOKEN_REUSE_MS };
    return this.jwt.value;
  }

  private connection(): ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    const s = connect(this.deps.options.baseUrl);
    s.on('error', () => undefined);
    s.on('close', () => {
      if (this.session === s) this.session = undefined;
    });
    s.unref();
    this.session = s;
    return s;
  }

  /** Sends to one device token; `gone` when APNs says the token is bad or unregistered. */
  async send(token: string, n: NotificationMessage): Promise<'sent' | 'gone'> {
    const { options } = this.deps;
    const payload = JSON.stringify({
      aps: { alert: { title: n.title, body: n.body }, sound: 'default', ...(n.severity === 'alarm' ? { 'interruption-level': 'time-sensitive' } : {}) },
      notificationId: n.id,
      homeId: n.homeId,
      kind: n.kind,
      severity: n.severity,
      data: n.data,
    });
    return this.deps.outbound.execute(async (signal) => {
      const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = this.connection().request(
          {
            [constants.HTTP2_HEADER_METHOD]: 'POST',
            [constants.HTTP2_HEADER_PATH]: `/3/device/${encodeURIComponent(token)}`,
            authorization: `bearer ${this.providerToken()}`,
            'apns-topic': options.topic,
            'apns-push-type': 'alert',
            'apns-priority': n.severity === 'info' ? '5' : '10',
            'apns-id': toUuid(n.id),
            'content-type': 'application/json',
          },
          { signal },
        );
        let status = 0;
        const chunks: Buffer[] = [];
        req.on('response', (h) => (status = Number(h[constants.HTTP2_HEADER_STATUS])));
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => resolve({ status, body: Buffer.concat(chunks).toString('utf8') }));
        req.on('error', reject);
        req.end(payload);
      });
      if (status === 200) return 'sent' as const;
      let reason = '';
      try {
        reason = (JSON.parse(body) as { reason?: string }).reason ?? '';
      } catch {
        /* no JSON */
      }
      if (status === 410 || reason === 'BadDeviceToken' || reason === 'Unregistered' || reason === 'DeviceTokenNotForTopic') return 'gone' as const;
      if (reason === 'ExpiredProviderToken') this.jwt = undefined;
      throw new OutboundError(
        this.deps.outbound.name,
        'status',
        `APNs answered ${status}${reason ? ` ${reason}` : ''}`,
        status >= 500 || status === 429 || reason === 'ExpiredProviderToken',
        status,
      );
    });
  }

  close(): void {
    this.session?.close();
    this.session = undefined;
  }
}

/** APNs wants a UUID in apns-id; derived from the notification id so a retry carries the same one. */
function toUuid(id: string): string {
  const hex = Buffer.from(id).toString('hex').padEnd(32, '0').slice(0, 32);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}
