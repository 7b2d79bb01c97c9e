import {
  BrokenCircuitError,
  CircuitState,
  ConsecutiveBreaker,
  ExponentialBackoff,
  TaskCancelledError,
  TimeoutStrategy,
  circuitBreaker,
  handleWhen,
  retry,
  timeout,
  wrap,
} from 'cockatiel';
import type { BreakerState, Metrics } from './observability/metrics.ts';
import { SpanKind, withSpan } from './observability/tracing.ts';
import { request as httpRequest, STATUS_CODES, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { UrlRefused, type CheckedLookup, type UrlPolicy } from './url-policy.ts';

export interface OutboundOptions {
  /** The service called (`hearth_*{target}` label, error messages): one name per partner or channel. */
  name: string;
  metrics?: Metrics;
  /** Each attempt is aborted after this long. */
  timeoutMs: number;
  /** Attempts after the first one; failures that another attempt cannot fix are not retried. */
  retries: number;
  /** Delays between attempts: exponential with jitter from `initialMs` up to `maxMs` (default 200 ms … 10 s). */
  backoff?: { initialMs?: number; maxMs?: number };
  breaker: {
    /** The circuit opens after this many failed attempts in a row… */
    consecutiveFailures: number;
    /** …and lets one trial call through after this long; its success closes it again. */
    halfOpenAfterMs: number;
  };
}

/** Calls to one outside service, with a timeout per attempt, retries and a circuit breaker. */
export interface Outbound {
  readonly name: string;
  /**
   * Runs `fn` until it succeeds, a failure is permanent, the retries are used up or the circuit
   * is open. `fn` must give up when `signal` aborts (pass it to fetch). Throws the last failure,
   * or an OutboundError for a timeout or an open circuit.
   */
  execute<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T>;
  state(): BreakerState;
}

/**
 * Why a call to an outside service failed. Throw one with `retryable: false` from an `execute`
 * function for an answer that another attempt will not change (a 4xx): it is neither retried nor
 * held against the service by the breaker.
 */
export class OutboundError extends Error {
  override readonly name = 'OutboundError';
  constructor(
    readonly target: string,
    /**
     * timeout: no answer in time; open: refused by the breaker without trying; status: an HTTP
     * error answer; refused: the URL policy does not let the call reach that address.
     */
    readonly reason: 'timeout' | 'open' | 'status' | 'refused',
    message: string,
    readonly retryable: boolean,
    /** The HTTP status, for reason `status`. */
    readonly status?: number,
  ) {
    super(message);
  }
}

const isPermanent = (err: Error) => err instanceof OutboundError && !err.retryable;

function breakerState(s: CircuitState): BreakerState {
  if (s === CircuitState.Closed) return 'closed';
  if (s === CircuitState.HalfOpen) return 'half-open';
  return 'open';
}

/**
 * Resilience for calls to webhooks, partner APIs and notification channels, so that a slow or
 * failing service costs Hearth bounded time and is left alone while it is down. Feeds
 * `hearth_outbound_requests_total{target,outcome}` (one per attempt) and
 * `hearth_circuit_breaker_state{target}`.
 */
export function createOutbound(opts: OutboundOptions): Outbound {
  const { name, metrics } = opts;
  const perAttempt = timeout(opts.timeoutMs, { strategy: TimeoutStrategy.Aggressive, abortOnReturn: false });
  const breaker = circuitBreaker(
    handleWhen((err) => !isPermanent(err)),
    {
      halfOpenAfter: opts.breaker.halfOpenAfterMs,
      breaker: new ConsecutiveBreaker(opts.breaker.consecutiveFailures),
    },
  );
  const retries = retry(
    handleWhen((err) => !isPermanent(err) && !(err instanceof BrokenCircuitError)),
    {
      maxAttempts: opts.retries,
      backoff: new ExponentialBackoff({ initialDelay: opts.backoff?.initialMs ?? 200, maxDelay: opts.backoff?.maxMs ?? 10_000 }),
    },
  );
  // Retries outermost: every attempt passes the breaker and has its own timeout.
  const policy = wrap(retries, breaker, perAttempt);
  perAttempt.onTimeout(() => metrics?.outboundRequest(name, 'timeout'));
  metrics?.breakerState(name, 'closed');
  breaker.onStateChange((s) => metrics?.breakerState(name, breakerState(s)));

  return {
    name,
    execute<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
      return withSpan(
        `outbound ${name}`,
        { 'hearth.outbound.target': name },
        async () => {
          try {
            return await policy.execute(async ({ signal }) => {
              try {
                const r = await fn(signal);
                if (!signal.aborted) metrics?.outboundRequest(name, 'ok');
                return r;
              } catch (err) {
                // An aborted attempt was counted as a timeout already.
                if (!signal.aborted) metrics?.outboundRequest(name, 'error');
                throw err;
              }
            });
          } catch (err) {
            if (err instanceof BrokenCircuitError) {
              metrics?.outboundRequest(name, 'rejected');
              throw new OutboundError(name, 'open', `${name} is failing; calls are paused for up to ${opts.breaker.halfOpenAfterMs} ms`, true);
            }
            if (err instanceof TaskCancelledError) throw new OutboundError(name, 'timeout', `${name} did not answer within ${opts.timeoutMs} ms`, true);
            throw err;
          }
        },
        undefined,
        SpanKind.CLIENT,
      );
    },
    state: () => breakerState(breaker.state),
  };
}

/** How much of an answer is read; the rest is not downloaded (a large answer can't fill the memory). */
const MAX_ANSWER_BYTES = 256 * 1024;

async function readCapped(res: Response, max: number): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (size + value.byteLength > max) {
      chunks.push(value.subarray(0, max - size));
      await reader.cancel().catch(() => undefined);
      break;
    }
    chunks.push(value);
    size += value.byteLength;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** A delivered answer is never a reason to send again, even when its JSON is broken. */
function parseOr(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** An answer to a POST: its status, content type and (up to 256 KiB of) text. */
export interface PostAnswer {
  status: number;
  /** 2xx */
  ok: boolean;
  contentType: string;
  text: string;
}

export interface PostOptions {
  /**
   * For URLs that people configure: the host is checked (names resolved) once before the
   * attempts, and redirects are followed only as the policy allows. Without it, redirects are followed.
   */
  urls?: UrlPolicy;
  /**
   * Looks at each answer within its attempt, before the status check. It may throw (an
   * OutboundError, retryable or not, for an answer the status alone does not judge rightly), or
   * return true to take a non-2xx answer as it is instead of failing.
   */
  inspect?: (answer: PostAnswer) => boolean | void;
}

/**
 * POSTs `body` to `url` through `outbound` and returns the answer. 5xx and 429 answers are
 * failures worth retrying; other non-2xx answers are permanent (OutboundError with
 * `retryable: false`). The answer is read within the attempt, so the timeout covers it, and
 * at most 256 KiB of it. `headers` may be made per attempt (e.g. with a fresh access token).
 *
 * A failure's message never carries the answer's body, only its status line (`… answered 500
 * Internal Server Error`, the standard phrase, not the remote's): failures end up where the
 * person who configured the URL reads them (run traces, notification results), and an answer
 * from a service they could not otherwise reach must not be read back that way. With a URL
 * policy that denies private networks, the request connects only to addresses its own lookup
 * checked (no DNS rebinding between check and connection) and redirects are not followed.
 */
export async function postBody(
  outbound: Outbound,
  url: string,
  body: string | Uint8Array,
  headers: Record<string, string> | ((signal: AbortSignal) => Promise<Record<string, string>>),
  opts: PostOptions = {},
): Promise<PostAnswer> {
  const { urls, inspect } = opts;
  try {
    await urls?.check(url);
  } catch (err) {
    throw refused(outbound.name, err);
  }
  return outbound.execute(async (signal) =>
    attempt(
      outbound.name,
      url,
      body,
      typeof headers === 'function' ? await headers(signal) : headers,
      signal,
      urls?.redirect ?? 'follow',
      inspect,
      urls?.lookup,
    ),
  );
}

/**
 * One attempt of postBody, for a request made within the attempt of another (`signal`), such
 * as fetching the access token the other needs; `target` names the service in errors. Only for
 * URLs the operator configures: no URL policy applies.
 */
export function postAttempt(
  target: string,
  url: string,
  body: string | Uint8Array,
  headers: Record<string, string>,
  signal: AbortSignal,
  opts: Pick<PostOptions, 'inspect'> = {},
): Promise<PostAnswer> {
  return attempt(target, url, body, headers, signal, 'follow', opts.inspect);
}

async function attempt(
  target: string,
  url: string,
  body: string | Uint8Array,
  headers: Record<string, string>,
  signal: AbortSignal,
  redirect: 'follow' | 'error' | 'manual',
  inspect: PostOptions['inspect'],
  lookup?: CheckedLookup,
): Promise<PostAnswer> {
  let answer: PostAnswer;
  if (lookup) {
    try {
      answer = await pinnedPost(url, body, headers, signal, lookup);
    } catch (err) {
      if (err instanceof UrlRefused) throw refused(target, err);
      // node:http's errors name the address it connected to (`connect ECONNREFUSED 10.0.0.7:443`):
      // keep only the code, as fetch's errors do (`cause.code`), for whoever reads the result.
      const code = (err as { code?: unknown }).code;
      if (typeof code === 'string' && (err as Error).name !== 'AbortError') throw new Error(`${target}: connection failed: ${code}`, { cause: { code } });
      throw err;
    }
  } else {
    const res = await fetch(url, { method: 'POST', headers, body, signal, redirect });
    answer = { status: res.status, ok: res.ok, contentType: res.headers.get('content-type') ?? '', text: await readCapped(res, MAX_ANSWER_BYTES) };
  }
  if (inspect?.(answer) === true || answer.ok) return answer;
  const retryable = answer.status >= 500 || answer.status === 429;
  // Neither the URL (webhook URLs often carry their secret) nor the body (see postBody).
  const note = answer.status >= 300 && answer.status < 400 ? ' (redirects are not followed)' : '';
  throw new OutboundError(target, 'status', `${target} answered ${statusLine(answer.status)}${note}`, retryable, answer.status);
}

/** `500 Internal Server Error`: the standard reason phrase, never the one the remote sent. */
export function statusLine(status: number): string {
  const phrase = STATUS_CODES[status];
  return phrase ? `${status} ${phrase}` : String(status);
}

function refused(target: string, err: unknown): unknown {
  return err instanceof UrlRefused ? new OutboundError(target, 'refused', err.message, false) : err;
}

/**
 * One POST over node:http(s) that connects only where `lookup` allows (it checks every address a
 * name resolves to, and the connection uses what it returned). Redirects are answers, not followed.
 */
async function pinnedPost(
  url: string,
  body: string | Uint8Array,
  headers: Record<string, string>,
  signal: AbortSignal,
  lookup: CheckedLookup,
): Promise<PostAnswer> {
  const u = new URL(url);
  const send = u.protocol === 'https:' ? httpsRequest : u.protocol === 'http:' ? httpRequest : undefined;
  if (!send) throw new TypeError(`unsupported protocol ${u.protocol}`);
  const payload = typeof body === 'string' ? Buffer.from(body) : body;
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = send(u, { method: 'POST', headers: { ...headers, 'content-length': String(payload.byteLength) }, signal, lookup: lookup as never }, resolve);
    req.once('error', reject);
    req.end(payload);
  });
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    if (size + chunk.byteLength > MAX_ANSWER_BYTES) {
      chunks.push(chunk.subarray(0, MAX_ANSWER_BYTES - size));
      break;
    }
    chunks.push(chunk);
    size += chunk.byteLength;
  }
  const status = res.statusCode ?? 0;
  const type = res.headers['content-type'];
  return { status, ok: status >= 200 && status < 300, contentType: typeof type === 'string' ? type : '', text: Buffer.concat(chunks).toString('utf8') };
}

/**
 * POSTs `body` as JSON (see postBody) and returns the answer, parsed when it is JSON.
 */
export async function postJson(
  outbound: Outbound,
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
  opts: PostOptions = {},
): Promise<{ status: number; body: unknown }> {
  const a = await postBody(outbound, url, JSON.stringify(body), { 'content-type': 'application/json', ...headers }, opts);
  return { status: a.status, body: a.contentType.includes('json') ? parseOr(a.text) : a.text };
}
