import { Type, type Static } from 'typebox';
import type { FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';
import type { ServerResponse } from 'node:http';
import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { AuthHeader, JsonObject, problems } from '../transports/http/http-schemas.ts';
import { HearthError, isHearthError } from '../core/errors.ts';
import type { Principal } from '../access/principal.ts';
import {
  STREAM_EVENT_TYPES,
  type StreamCloseReason,
  type StreamConnection,
  type StreamEventType,
  type StreamFilter,
  type StreamService,
} from './stream-service.ts';

export interface StreamRouteDeps {
  stream: StreamService;
  /** Establishes the caller from a bearer token or API key (throws E_UNAUTHENTICATED). */
  verifyPrincipal: (token: string) => Principal | Promise<Principal>;
  /** The per-caller request limit every authenticated route has: the seconds to wait when over it. */
  rateLimit?: (p: Principal) => number | undefined;
  /** Tuning, for tests: WebSocket ping and SSE heartbeat periods, the per-client buffer limit. */
  options?: { wsPingMs?: number; ssePingMs?: number; maxBufferedBytes?: number };
}

const WS_PING_MS = 30_000;
const SSE_PING_MS = 15_000;
const MAX_BUFFERED_BYTES = 1024 * 1024;
const SSE_RETRY_MS = 2_000;

/**
 * WebSocket close codes (4000–4999 are the application's): 4001 the credentials the stream was
 * opened with ended (the reason says which: session-ended, key-revoked, token-expired), 4029 too
 * many streams.
 */
export const WS_CLOSE = { credentialsEnded: 4001, tooMany: 4029 } as const;

const list = (description: string, example: string) =>
  Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 2000 }), { maxItems: 100, description, examples: [[example]] }));
/** Ids or types a filter may name in all, after comma-separated values are split. */
const MAX_FILTER_VALUES = 200;

const StreamQuery = Type.Object({
  access_token: Type.Optional(
    Type.String({
      maxLength: 4096,
      description:
        'The access token (or API key), for clients that cannot send an Authorization header, such as browsers opening a WebSocket or an EventSource',
    }),
  ),
  lastEventId: Type.Optional(
    Type.String({
      maxLength: 64,
      description: 'Resume after this event id. A Last-Event-ID header (what EventSource sends when it reconnects) takes precedence',
    }),
  ),
  homeId: list('Only events of these homes (repeat or comma-separate)', 'h_5t2k9x4p1q8r0m'),
  deviceId: list('Only events of these devices (repeat or comma-separate)', 'd_9x2k7m4p1q8r0t'),
  types: list(`Only these kinds of event (repeat or comma-separate): ${STREAM_EVENT_TYPES.join(', ')}`, 'property,event'),
});
type StreamQuery = Static<typeof StreamQuery>;

/** One event of the stream, as a WebSocket text frame or the `data:` of an SSE event. */
const StreamEventSchema = Type.Object(
  {
    id: Type.String({ description: 'Increasing event id; send the last one back (lastEventId / Last-Event-ID) to resume' }),
    type: Type.String({
      description: `${STREAM_EVENT_TYPES.join(', ')}; and for the connection itself: hello (live from here; its id is the position), reset (events after your last id are gone: reload the state), end (the stream ends because its credentials did: data.reason is session-ended, key-revoked or token-expired)`,
    }),
    deviceId: Type.Union([Type.String(), Type.Null()]),
    homeId: Type.Union([Type.String(), Type.Null()], { description: 'The home the device was in when the event happened' }),
    at: Type.String({ format: 'date-time' }),
    data: JsonObject,
  },
  {
    description:
      'property: {values, changed, version}; event: {eventId, event, params}; presence: {online, reason}; command: {commandId, action, status, ok?, result?, error?}',
    examples: [
      {
        id: '1763884800000000',
        type: 'property',
        deviceId: 'd_9x2k7m4p1q8r0t',
        homeId: 'h_5t2k9x4p1q8r0m',
        at: '2026-11-23T08:00:00.000Z',
        data: { values: { on: true, brightness: 80 }, changed: ['on'], version: 7 },
      },
      {
        id: '1763884800000001',
        type: 'command',
        deviceId: 'd_9x2k7m4p1q8r0t',
        homeId: 'h_5t2k9x4p1q8r0m',
        at: '2026-11-23T08:00:00.004Z',
        data: { commandId: 'c_7m2k9x4p1q8r0t', action: 'toggle', status: 'answered', ok: true, result: {} },
      },
    ],
  },
);

const DESCRIPTION = [
  'Live events of the homes the caller may see: property changes, device events, presence, command status (and later automation runs), as JSON with an event id.',
  '',
  '**WebSocket**: open this URL with an Upgrade; each text frame is one event. **Server-Sent Events** otherwise: `text/event-stream`, each event as `id:`, `event:` (the type) and `data:` (the JSON).',
  '',
  'Authenticate with `Authorization: Bearer <token>` (or `X-Api-Key`), or with `?access_token=` where headers cannot be set. To resume, send the last id you received as `?lastEventId=` (SSE: the `Last-Event-ID` header, which EventSource sends by itself): the buffered events after it are replayed, then live ones follow. When some of them are no longer buffered the stream starts with a `reset` event: load the current state again. A `hello` event marks the start of live delivery.',
  '',
  'Clients that fall more than about 1 MB behind are disconnected. WebSocket clients get a ping every 30 s, SSE clients a `: ping` comment every 15 s.',
  '',
  "Each event is shown to those who could see it when it happened: a device's events to the people of the home it was in then (never to its next home, nor the other way round), a home's to its members at the time. This holds for replayed events too.",
  '',
  "A stream lives no longer than its credentials: when its session ends (sign-out, revocation, password change, on any node), its API key is revoked or its access token expires, it gets an `end` event (`data.reason`: `session-ended`, `key-revoked`, `token-expired`) and is closed at once (WebSocket close code 4001 with the reason). After `token-expired`, reconnect with a fresh token and your last event id; nothing is lost. A user holds at most `HEARTH_STREAM_MAX_PER_USER` (10) streams per node, API keys' included: more are refused with 429 `E_TOO_MANY_STREAMS`.",
].join('\n');

/** Splits repeated and comma-separated query values; undefined when none. */
function values(v: readonly string[] | string | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  const out = (Array.isArray(v) ? v : [v])
    .flatMap((x) => x.split(','))
    .map((x) => x.trim())
    .filter((x) => x.length > 0);
  return out.length ? [...new Set(out)] : undefined;
}

function parseFilter(q: StreamQuery): StreamFilter {
  const types = values(q.types);
  for (const t of types ?? []) {
    if (!(STREAM_EVENT_TYPES as readonly string[]).includes(t)) {
      throw new HearthError('E_VALIDATION', `querystring.types "${t}" is not one of ${STREAM_EVENT_TYPES.join(', ')}`, { field: 'querystring.types' });
    }
  }
  const filter = { homeIds: values(q.homeId), deviceIds: values(q.deviceId), types: types as StreamEventType[] | undefined };
  const named = (filter.homeIds?.length ?? 0) + (filter.deviceIds?.length ?? 0) + (filter.types?.length ?? 0);
  if (named > MAX_FILTER_VALUES)
    throw new HearthError('E_VALIDATION', `a stream filter names at most ${MAX_FILTER_VALUES} homes, devices and types; this one names ${named}`, {
      field: 'querystring',
    });
  return filter;
}

interface Ctx {
  principal: Principal;
  filter: StreamFilter;
  lastEventId: string | undefined;
}

/**
 * `GET /api/v1/stream`: live events over WebSocket (on an Upgrade) or Server-Sent Events. The
 * route authenticates by itself (header first, then `?access_token=`) because browsers cannot set
 * headers on a WebSocket or an EventSource.
 */
export async function streamRoutes(app: HttpApp, deps: StreamRouteDeps): Promise<void> {
  const wsPingMs = deps.options?.wsPingMs ?? WS_PING_MS;
  const ssePingMs = deps.options?.ssePingMs ?? SSE_PING_MS;
  const maxBuffered = deps.options?.maxBufferedBytes ?? MAX_BUFFERED_BYTES;
  const contexts = new WeakMap<FastifyRequest, Ctx>();
  const sse = new Set<ServerResponse>();

  async function authenticate(req: FastifyRequest): Promise<Principal> {
    const header = req.headers.authorization;
    const apiKey = req.headers['x-api-key'];
    const query = (req.query ?? {}) as { access_token?: unknown };
    let token: string | undefined;
    if (header) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (!m) throw new HearthError('E_UNAUTHENTICATED', 'send "Authorization: Bearer <token>"');
      token = m[1];
    } else if (typeof apiKey === 'string' && apiKey) token = apiKey;
    else if (typeof query.access_token === 'string' && query.access_token) token = query.access_token;
    else if (Array.isArray(query.access_token) && typeof query.access_token[0] === 'string') token = query.access_token[0] as string;
    if (!token) throw new HearthError('E_UNAUTHENTICATED', 'send "Authorization: Bearer <token>", or ?access_token=<token> where headers cannot be set');
    try {
      return await deps.verifyPrincipal(token);
    } catch (err) {
      if (isHearthError(err)) throw err;
      throw new HearthError('E_UNAUTHENTICATED', 'invalid access token');
    }
  }

  app.addHook('preClose', (done) => {
    // Hijacked SSE responses would keep the server from closing; end them (clients reconnect).
    for (const res of sse) res.end();
    sse.clear();
    done();
  });

  app.route({
    method: 'GET',
    url: '/api/v1/stream',
    exposeHeadRoute: false,
    config: { auth: Auth.self('Authorization: Bearer, X-Api-Key, or ?access_token= (browsers)') },
    schema: {
      tags: ['stream'],
      summary: 'Live events (WebSocket or Server-Sent Events), resumable',
      description: DESCRIPTION,
      ...AuthHeader,
      querystring: StreamQuery,
      response: {
        200: {
          description: 'A stream of events: Server-Sent Events (text/event-stream) or, on a WebSocket upgrade, one JSON text frame per event',
          content: {
            'application/json': { schema: StreamEventSchema },
            'text/event-stream': {
              schema: Type.String({
                description: 'id: <id>\\nevent: <type>\\ndata: <one event as JSON>\\n\\n',
                examples: [
                  'retry: 2000\n\nid: 1763884800000000\nevent: property\ndata: {"id":"1763884800000000","type":"property","deviceId":"d_9x2k7m4p1q8r0t","homeId":"h_5t2k9x4p1q8r0m","at":"2026-11-23T08:00:00.000Z","data":{"values":{"on":true},"changed":["on"],"version":7}}\n\n',
                ],
              }),
            },
          },
        },
        ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_HOME_NOT_FOUND', 'E_DEVICE_NOT_FOUND', 'E_TOO_MANY_STREAMS'),
      },
    },
    onRequest: async (req) => {
      req.principal = await authenticate(req);
      // Opening a stream costs more than a request (a replay checks up to the whole buffer): same limit.
      const wait = deps.rateLimit?.(req.principal);
      if (wait !== undefined) throw new HearthError('E_RATE_LIMITED', `too many requests; retry in ${wait} s`, { retryAfter: wait });
    },
    preHandler: async (req) => {
      const q = req.query as StreamQuery;
      const filter = parseFilter(q);
      await deps.stream.authorize(req.principal!, filter);
      // Refused here with a 429; connect() holds the limit again for upgrades racing past this.
      deps.stream.admit(req.principal!);
      const header = req.headers['last-event-id'];
      // The header wins: EventSource sends it on its own reconnects, with the URL it was opened with.
      const lastEventId = (typeof header === 'string' && header.trim() ? header.trim() : undefined) ?? q.lastEventId;
      contexts.set(req, { principal: req.principal!, filter, lastEventId });
    },

    // Server-Sent Events.
    handler: (req, reply) => {
      const ctx = contexts.get(req)!;
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      res.write(`retry: ${SSE_RETRY_MS}\n\n`);
      sse.add(res);
      let conn: StreamConnection | undefined;
      let ended = false;
      const end = () => {
        if (ended) return;
        ended = true;
        clearInterval(ping);
        sse.delete(res);
        conn?.close();
      };
      const fits = () => res.writableLength <= maxBuffered;
      const ping = setInterval(() => {
        if (!fits()) {
          req.log.warn({ userId: ctx.principal.userId }, 'stream client fell behind; connection dropped');
          res.destroy();
          return;
        }
        res.write(': ping\n\n');
      }, ssePingMs);
      ping.unref();
      conn = deps.stream.connect({
        principal: ctx.principal,
        filter: ctx.filter,
        lastEventId: ctx.lastEventId,
        label: `sse ${req.ip}`,
        sink: {
          write: (ev, json) => {
            if (ended || res.destroyed) return true;
            if (!fits()) return false;
            res.write(`id: ${ev.id}\nevent: ${ev.type}\ndata: ${json}\n\n`);
            return true;
          },
          close: (reason: StreamCloseReason) => {
            if (reason === 'slow') res.destroy();
            else res.end();
            end();
          },
        },
      });
      res.on('close', end);
      res.on('error', end);
      if (ended) conn.close();
    },

    // WebSocket.
    wsHandler: (socket: WebSocket, req) => {
      const ctx = contexts.get(req)!;
      let alive = true;
      let conn: StreamConnection | undefined;
      let ended = false;
      const end = () => {
        if (ended) return;
        ended = true;
        clearInterval(ping);
        conn?.close();
      };
      const ping = setInterval(() => {
        if (!alive) {
          req.log.info({ userId: ctx.principal.userId }, 'stream client did not answer a ping; connection closed');
          socket.terminate();
          return;
        }
        alive = false;
        socket.ping();
      }, wsPingMs);
      ping.unref();
      socket.on('pong', () => {
        alive = true;
      });
      socket.on('message', () => {
        // The stream is one-way; anything from the client only shows it is alive.
        alive = true;
      });
      conn = deps.stream.connect({
        principal: ctx.principal,
        filter: ctx.filter,
        lastEventId: ctx.lastEventId,
        label: `ws ${req.ip}`,
        sink: {
          write: (_ev, json) => {
            if (ended || socket.readyState !== socket.OPEN) return true;
            if (socket.bufferedAmount > maxBuffered) return false;
            socket.send(json);
            return true;
          },
          close: (reason: StreamCloseReason) => {
            if (reason === 'slow') socket.terminate();
            else if (reason === 'shutdown') socket.close(1001, 'server shutting down');
            else if (reason === 'too-many') socket.close(WS_CLOSE.tooMany, 'too many streams');
            else socket.close(WS_CLOSE.credentialsEnded, reason);
            end();
          },
        },
      });
      socket.on('close', end);
      socket.on('error', end);
      if (ended) conn.close();
    },
  });
}
