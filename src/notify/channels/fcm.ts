import { createSign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Clock } from '../../core/clock.ts';
import { OutboundError, postAttempt, postBody, type Outbound } from '../../core/outbound.ts';
import type { NotificationMessage } from './message.ts';

/** The fields of a Google service-account key file that FCM needs. */
export interface ServiceAccount {
  project_id: string;
  client_email: string;
  private_key: string;
  token_uri: string;
}

const SCOPE = 'https://www.googleapis.com/auth/firebase.messaging';

const b64url = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** Reads and checks a service-account file; throws naming the missing field. */
export function readServiceAccount(file: string): ServiceAccount {
  const sa = JSON.parse(readFileSync(file, 'utf8')) as Partial<ServiceAccount>;
  for (const k of ['project_id', 'client_email', 'private_key', 'token_uri'] as const) {
    if (typeof sa[k] !== 'string' || !sa[k]) throw new Error(`FCM service account ${file}: "${k}" is missing`);
  }
  return sa as ServiceAccount;
}

/**
 * Firebase Cloud Messaging, HTTP v1 API. An OAuth2 access token is obtained by exchanging a JWT
 * signed (RS256) with the service account's key at its `token_uri` (grant type jwt-bearer), kept
 * until shortly before it expires, then each message is POSTed to
 * `{base}/v1/projects/{project}/messages:send`.
 */
export class FcmSender {
  private token: { value: string; until: number } | undefined;

  constructor(private readonly deps: { account: ServiceAccount; baseUrl: string; clock: Clock; outbound: Outbound }) {}

  /** The signed assertion exchanged for an access token. */
  assertion(now: number): string {
    const iat = Math.floor(now / 1000);
    const unsigned = `${b64url({ alg: 'RS256', typ: 'JWT' })}.${b64url({ iss: this.deps.account.client_email, scope: SCOPE, aud: this.deps.account.token_uri, iat, exp: iat + 3600 })}`;
    return `${unsigned}.${createSign('RSA-SHA256').update(unsigned).sign(this.deps.account.private_key, 'base64url')}`;
  }

  /** A cached access token, or a new one from the token endpoint (within the caller's attempt). */
  private async accessToken(signal: AbortSignal): Promise<string> {
    const now = this.deps.clock.now();
    if (this.token && this.token.until > now) return this.token.value;
    const form = new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: this.assertion(now) });
    const res = await postAttempt(
      `${this.deps.outbound.name} token endpoint`,
      this.deps.account.token_uri,
      form.toString(),
      { 'content-type': 'application/x-www-form-urlencoded' },
      signal,
    );
    const answer = JSON.parse(res.text) as { access_token: string; expires_in?: number };
    this.token = { value: answer.access_token, until: now + Math.max(60, (answer.expires_in ?? 3600) - 60) * 1000 };
    return answer.access_token;
  }

  /** Sends to one registration token; `gone` when FCM says the token is no longer valid. */
  async send(token: string, n: NotificationMessage): Promise<'sent' | 'gone'> {
    const url = `${this.deps.baseUrl.replace(/\/$/, '')}/v1/projects/${encodeURIComponent(this.deps.account.project_id)}/messages:send`;
    // FCM data values must be strings.
    const data: Record<string, string> = { notificationId: n.id, homeId: n.homeId, kind: n.kind, severity: n.severity, at: n.at };
    for (const [k, v] of Object.entries(n.data)) if (!(k in data)) data[k] = typeof v === 'string' ? v : JSON.stringify(v);
    const body = JSON.stringify({
      message: {
        token,
        notification: { title: n.title, body: n.body },
        data,
        android: { priority: n.severity === 'info' ? 'NORMAL' : 'HIGH' },
      },
    });
    const headers = async (signal: AbortSignal) => ({ 'content-type': 'application/json', authorization: `Bearer ${await this.accessToken(signal)}` });
    const answer = await postBody(this.deps.outbound, url, body, headers, {
      inspect: (a) => {
        if (a.ok) return;
        // The access token was revoked or expired early: the next attempt gets a new one.
        if (a.status === 401) this.token = undefined;
        if (isUnregistered(a.status, a.text)) return true;
        if (a.status === 401) throw new OutboundError(this.deps.outbound.name, 'status', `${this.deps.outbound.name} answered 401`, true, 401);
      },
    });
    return answer.ok ? 'sent' : 'gone';
  }
}

/** FCM's answer for a token that was unregistered or never valid (error code UNREGISTERED, or 404). */
function isUnregistered(status: number, text: string): boolean {
  if (status === 404) return true;
  try {
    const err = (JSON.parse(text) as { error?: { status?: string; details?: Array<{ errorCode?: string }> } }).error;
    return err?.status === 'UNREGISTERED' || !!err?.details?.some((d) => d.errorCode === 'UNREGISTERED');
  } catch {
    return false;
  }
}
