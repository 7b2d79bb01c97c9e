import type { UrlPolicy } from '../core/url-policy.ts';
import { createOutbound, postJson, type Outbound } from '../core/outbound.ts';
import type { Metrics } from '../core/observability/metrics.ts';

/**
 * Calls automations' outgoing webhooks: one outbound policy (timeout, retries, circuit breaker)
 * per origin, so that one person's broken endpoint pauses calls to it only.
 */
export function webhookCaller(
  metrics: Metrics | undefined,
  urls: UrlPolicy,
): (url: string, body: unknown, headers: Record<string, string>) => Promise<{ status: number }> {
  const byOrigin = new Map<string, Outbound>();
  return async (url, body, headers) => {
    const origin = new URL(url).origin;
    let o = byOrigin.get(origin);
    if (!o) {
      if (byOrigin.size > 1000) byOrigin.clear();
      o = createOutbound({
        name: `automation-webhook`,
        metrics,
        timeoutMs: 5000,
        retries: 2,
        backoff: { initialMs: 200, maxMs: 2000 },
        breaker: { consecutiveFailures: 5, halfOpenAfterMs: 30_000 },
      });
      byOrigin.set(origin, o);
    }
    const r = await postJson(o, url, body, headers, { urls });
    return { status: r.status };
  };
}
