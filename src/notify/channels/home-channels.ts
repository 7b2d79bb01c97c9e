import { createHmac } from 'node:crypto';
import { signBody } from '../../core/signing.ts';
import type { NotificationMessage } from './message.ts';

/** The kinds of channel a home's owners and admins can add. */
export type HomeChannelType = 'webhook' | 'slack' | 'feishu' | 'dingtalk' | 'wecom';
export const HOME_CHANNEL_TYPES: readonly HomeChannelType[] = ['webhook', 'slack', 'feishu', 'dingtalk', 'wecom'];

/** One HTTP POST to make: the exact body (signatures are over these bytes), headers, URL. */
export interface OutgoingRequest {
  url: string;
  body: string;
  headers: Record<string, string>;
}

/** The one-line-title-then-body text of chat messages; alarms and warnings say so first. */
export function chatText(n: NotificationMessage): string {
  const tag = n.severity === 'alarm' ? '[ALARM] ' : n.severity === 'warning' ? '[Warning] ' : '';
  return `${tag}${n.title}\n${n.body}`;
}

/**
 * Feishu/Lark custom bot signature: base64 of an HMAC-SHA256 keyed with `"{timestamp}\n{secret}"`
 * over an empty message (timestamp in seconds), sent in the body as `timestamp` and `sign`.
 */
export function feishuSign(secret: string, timestampSeconds: number): string {
  return createHmac('sha256', `${timestampSeconds}\n${secret}`).update('').digest('base64');
}

/**
 * DingTalk custom robot signature: base64 of an HMAC-SHA256 keyed with the secret over
 * `"{timestamp}\n{secret}"` (timestamp in ms), added to the URL as `timestamp` and `sign`.
 */
export function dingtalkSign(secret: string, timestampMs: number): string {
  return createHmac('sha256', secret).update(`${timestampMs}\n${secret}`).digest('base64');
}

/**
 * The request a channel makes for a notification, at `now` (epoch ms, for the signatures that
 * carry a time stamp). Pure: the caller sends it.
 */
export function buildRequest(ch: { type: HomeChannelType; url: string; secret: string | null }, n: NotificationMessage, now: number): OutgoingRequest {
  const json = (v: unknown, headers: Record<string, string> = {}, url = ch.url): OutgoingRequest => ({ url, body: JSON.stringify(v), headers });
  switch (ch.type) {
    case 'webhook': {
      const body = JSON.stringify(n);
      return { url: ch.url, body, headers: ch.secret ? { 'x-hearth-signature': signBody(ch.secret, body) } : {} };
    }
    case 'slack':
      return json({ text: chatText(n) });
    case 'feishu': {
      const msg = { msg_type: 'text', content: { text: chatText(n) } };
      if (!ch.secret) return json(msg);
      const timestamp = Math.floor(now / 1000);
      return json({ timestamp: String(timestamp), sign: feishuSign(ch.secret, timestamp), ...msg });
    }
    case 'dingtalk': {
      const msg = { msgtype: 'text', text: { content: chatText(n) } };
      if (!ch.secret) return json(msg);
      const u = new URL(ch.url);
      u.searchParams.set('timestamp', String(now));
      u.searchParams.set('sign', dingtalkSign(ch.secret, now));
      return json(msg, {}, u.toString());
    }
    case 'wecom':
      return json({ msgtype: 'text', text: { content: chatText(n) } });
  }
}

/**
 * Chat bots answer HTTP 200 with an error code in the body when they refuse a message (a wrong
 * signature, a bad key); returns that refusal (`errcode 310000`), or undefined when the bot took
 * it. Only the numeric code, never the bot's text: the answer is not echoed into results (the
 * codes are in each vendor's documentation).
 */
export function botRefusal(type: HomeChannelType, body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const b = body as Record<string, unknown>;
  if (type === 'dingtalk' || type === 'wecom') return b.errcode !== undefined && b.errcode !== 0 ? `errcode ${codeOf(b.errcode)}` : undefined;
  if (type === 'feishu') {
    const code = b.code ?? b.StatusCode;
    return code !== undefined && code !== 0 ? `code ${codeOf(code)}` : undefined;
  }
  return undefined;
}

/** A vendor's error code as a number, or `(not a number)`: nothing else of the answer is shown. */
function codeOf(v: unknown): string {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^-?\d{1,12}$/.test(v) ? Number(v) : NaN;
  return Number.isFinite(n) ? String(n) : '(not a number)';
}
