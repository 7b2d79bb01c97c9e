import type { InboxItem } from '../notify-schema.ts';

/**
 * A notification as channels send it: the body of generic webhooks, the payload of Web Push and
 * the `data` of mobile pushes. Its fields are an inbox item's, but for these.
 */
export type NotificationMessage = Pick<InboxItem, 'homeId' | 'kind' | 'severity' | 'title' | 'body' | 'data' | 'source'> & {
  /** The notification's id (the inbox items' `notificationId`). */
  id: string;
  homeName: string;
  /** ISO 8601 */
  at: string;
};

/** What a personal channel did for one user. */
export interface Delivery {
  status: 'sent' | 'failed' | 'skipped';
  reason?: string;
}

/** Why an HTTP call failed, in words for a result (never the URL: it may carry a secret). */
export function describeError(err: unknown): string {
  const e = err as Error & { status?: number; reason?: string; cause?: { code?: string } };
  if (e?.name === 'OutboundError') {
    if (e.status !== undefined) return `HTTP ${e.status}`;
    return e.message;
  }
  if (e?.cause?.code) return `connection failed: ${e.cause.code}`;
  return e?.message ?? String(err);
}
