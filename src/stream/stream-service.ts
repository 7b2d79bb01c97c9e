import type { Bus, BusMessage, Unsubscribe } from '../core/bus/bus.ts';
import { subjects } from '../core/bus/subjects.ts';
import type { Logger } from '../core/logger.ts';
import { HearthError } from '../core/errors.ts';
import type { AccessService } from '../access/access-service.ts';
import type { DeviceService } from '../devices/device-service.ts';
import type { Principal } from '../access/principal.ts';
import { STREAM_EVENT_TYPES, type StreamAnnouncement as Announcement, type StreamEventType } from '../core/bus/events.ts';

/** The kinds of event the stream carries (declared with the bus catalogue, where announcements name them). */
export { STREAM_EVENT_TYPES, type StreamEventType };

/**
 * Messages about the connection itself, never buffered: `hello` when the client is live (its id
 * is the position to resume from), `reset` when events after the client's last id were lost,
 * `end` just before the service ends the connection because its credentials ended (`data.reason`).
 */
export type StreamControlType = 'hello' | 'reset' | 'end';

/**
 * Why the service ends a connection. `session-ended` (signed out, session revoked, password
 * changed), `key-revoked` and `token-expired` mean the credentials it was opened with no longer
 * work: the client gets an `end` event first and must not reconnect with them (after
 * `token-expired`, it resumes with a fresh token and its last id). `too-many`: the user has
 * `maxPerUser` streams open already.
 */
export type StreamCloseReason = 'slow' | 'shutdown' | 'session-ended' | 'key-revoked' | 'token-expired' | 'too-many';

/** Reasons that end a connection because its credentials ended. */
const CREDENTIALS_ENDED: ReadonlySet<StreamCloseReason> = new Set(['session-ended', 'key-revoked', 'token-expired']);
const END_MESSAGES: Record<string, string> = {
  'session-ended': 'the session this stream was opened with has ended (signed out, revoked or password changed); sign in again',
  'key-revoked': 'the API key this stream was opened with was revoked',
  'token-expired': 'the access token this stream was opened with has expired; reconnect with a fresh token and your last event id',
};

/** One message of the live stream, as clients receive it (a WebSocket text frame or an SSE `data:`). */
export interface StreamEvent {
  /** Increasing; send the last one back as `lastEventId` to resume. Opaque decimal string. */
  id: string;
  type: StreamEventType | StreamControlType;
  deviceId: string | null;
  homeId: string | null;
  /** When it happened (ISO 8601). */
  at: string;
  data: Record<string, unknown>;
}

/** What a connection asked for; every list is "any of". Absent means everything it may see. */
export interface StreamFilter {
  homeIds?: readonly string[];
  deviceIds?: readonly string[];
  types?: readonly StreamEventType[];
}

/** The transport side of one connection. */
export interface StreamSink {
  /**
   * Writes one event (`json` is `ev` serialised, shared by every connection). Returns false when
   * the client cannot keep up; the service then drops the connection through `close('slow')`.
   */
  write(ev: StreamEvent, json: string): boolean;
  /**
   * The service ends the connection: it fell behind, the service is stopping, its credentials
   * ended (after an `end` event was written) or the user has too many streams.
   */
  close(reason: StreamCloseReason): void;
}

export interface StreamConnectOptions {
  principal: Principal;
  filter?: StreamFilter;
  /** Resume after this id: buffered events after it are replayed before live ones. */
  lastEventId?: string;
  sink: StreamSink;
  /** Names the connection in logs (e.g. `ws` / `sse` and the remote address). */
  label?: string;
}

/** One live connection; `close()` when the client leaves. */
export interface StreamConnection {
  close(): void;
}

interface Entry {
  n: number;
  /**
   * When this node learnt of the event (server time, never a device's time stamp): the audience
   * is decided as of then (a member who joined later, a share made later, does not see it).
   */
  when: number;
  ev: StreamEvent;
  /** Serialised on first delivery, once for all connections; most events reach none. */
  json?: string;
  /** Control messages skip the filters and access checks. */
  control?: boolean;
  /** A personal event (an inbox item): only this user's connections receive it. */
  userId?: string;
}

interface Conn {
  p: Principal;
  /** The operator signed in with a password: sees everything without asking the policy. */
  all: boolean;
  filter: { homeIds?: Set<string>; deviceIds?: Set<string>; types?: Set<string> };
  sink: StreamSink;
  label: string;
  queue: Entry[];
  head: number;
  draining: boolean;
  closed: boolean;
  /**
   * `d:<deviceId>` / `h:<homeId>` / `m:<homeId>` → the principal's right on events of it that
   * happened in `homeId` (for a device: its home then), from `since` on; valid until `until`.
   */
  rights: Map<string, Right>;
  /** Ends the connection when its access token expires. */
  expiry?: NodeJS.Timeout;
  /**
   * The id of the last message written (at first, the id the client resumed from): an `end`
   * carries it, so resuming from it loses nothing that was still queued.
   */
  sent: number | undefined;
}

interface Right {
  homeId: string | null;
  ok: boolean;
  since: number;
  until: number;
}

/** Where a device is, as far as this node knows. */
interface Placed {
  homeId: string | null;
  boundAt: number;
  until: number;
}

const PLACEMENT_TTL_MS = 5_000;
const RIGHTS_TTL_MS = 5_000;
/** Above this many cache entries, expired ones are swept on insert. */
const SWEEP_AT = 4_096;
/** Streams one user may hold open on one node, unless configured. */
export const DEFAULT_MAX_PER_USER = 10;
/** How long a revoked key is remembered, for a stream that was being opened with it meanwhile. */
const ENDED_KEY_MS = 5 * 60_000;
/** setTimeout's longest delay. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Ids are decimal numbers; parses one a client sent back (undefined when it is not one of ours). */
export function parseEventId(id: string | undefined | null): number | undefined {
  if (id == null || !/^\d{1,16}$/.test(id)) return undefined;
  return Number(id);
}

/**
 * Live events for the people of a home: property changes, device events, presence, command
 * status, and whatever later features `publish` (automation runs, notifications). Each event gets
 * an increasing id and goes into a ring buffer of the last `bufferSize`, so a client that
 * reconnects with its last id gets what it missed, then live events.
 *
 * Ids are `max(previous + 1, now × 1000)`: increasing within a process and, because they follow the
 * clock, larger after a restart than any id handed out before it (short of the clock going back; a client resuming from an id of a
 * previous run gets a `reset`, since the events between are not in this run's buffer).
 *
 * The service subscribes four wildcard subjects, whatever the number of clients. Each event
 * records its audience when it happens: the home its device was in then (`homeId`; null when the
 * device was in none, or joined its home after the event), or the home it is about. A connection
 * sees an event, live or replayed, only when the access policy lets its principal see that
 * device in that home (or that home), and did so already when the event happened; never by where
 * the device is now. Decisions are cached per connection for a few seconds, so a burst of events
 * does not ask the store for each one. Delivery to a connection keeps the order of the events.
 *
 * A connection lives no longer than its credentials: `endSession` and `endKey` (called on every
 * node by the revocation broadcasts) end the matching connections at once, and a connection
 * opened with an access token ends when the token expires. One user holds at most `maxPerUser`
 * connections on one node (API keys' included).
 */
export class StreamService {
  private readonly size: number;
  private readonly ring: Array<Entry | undefined>;
  /** Index of the oldest entry in `ring`, and how many there are. */
  private start0 = 0;
  private count = 0;
  /** The last id handed out (or, before any, the position this run starts from). */
  private last: number;
  /** Every event with an id above this is still in the buffer. */
  private horizon: number;
  private readonly conns = new Set<Conn>();
  /** Connections by user, session and API key: who to count, who to end. */
  private readonly byUser = new Map<string, Set<Conn>>();
  private readonly bySession = new Map<string, Set<Conn>>();
  private readonly byKey = new Map<string, Set<Conn>>();
  /** `s:<sessionId>` / `k:<keyId>` that ended → until when to remember it (a connect may be in flight). */
  private readonly ended = new Map<string, number>();
  private readonly maxPerUser: number;
  private readonly placements = new Map<string, Placed>();
  /** Per-device chains while a placement is looked up, so one device's events keep their order. */
  private readonly chains = new Map<string, Promise<void>>();
  private unsubs: Unsubscribe[] = [];
  private readonly maxPending: number;

  constructor(
    private readonly deps: {
      bus: Bus;
      access: AccessService;
      devices: DeviceService;
      log: Logger;
      bufferSize?: number;
      /** Streams one user may hold open on this node (default 10). */
      maxPerUser?: number;
    },
  ) {
    this.size = Math.max(1, deps.bufferSize ?? 10_000);
    this.maxPerUser = Math.max(1, deps.maxPerUser ?? DEFAULT_MAX_PER_USER);
    this.ring = new Array<Entry | undefined>(this.size);
    this.last = this.horizon = Date.now() * 1000 - 1;
    this.maxPending = this.size + 10_000;
  }

  start(): void {
    if (this.unsubs.length) return;
    const bus = this.deps.bus;
    const idOf = (msg: BusMessage) => msg.subject.split('.')[1];
    this.unsubs = [
      bus.subscribe(
        subjects.reported('*'),
        (msg) => {
          const r = msg.data;
          this.fromDevice('property', idOf(msg), r.at, { values: r.values, changed: r.changed, version: r.version }, r.receivedAt);
        },
        { name: 'stream.reported' },
      ),
      bus.subscribe(
        subjects.event('*'),
        (msg) => {
          const e = msg.data;
          this.fromDevice('event', idOf(msg), e.at, { eventId: e.id, event: e.event, params: e.params }, e.receivedAt);
        },
        { name: 'stream.event' },
      ),
      bus.subscribe(
        subjects.presence('*'),
        (msg) => {
          const e = msg.data;
          this.fromDevice('presence', idOf(msg), e.at, { online: e.online, reason: e.reason });
        },
        { name: 'stream.presence' },
      ),
      bus.subscribe(
        subjects.command('*'),
        (msg) => {
          const c = msg.data;
          const data: Record<string, unknown> = { commandId: c.id, action: c.action, status: c.status };
          if (c.ok !== undefined) data.ok = c.ok;
          if (c.result !== undefined) data.result = c.result;
          if (c.error !== undefined) data.error = c.error;
          if (c.expiresAt !== undefined) data.expiresAt = new Date(c.expiresAt).toISOString();
          this.fromDevice('command', idOf(msg), Date.now(), data);
        },
        { name: 'stream.command' },
      ),
      bus.subscribe(
        subjects.streamAnnounce,
        (msg) => {
          const a = msg.data;
          this.emit(a.type, a.deviceId, a.homeId, a.at, a.data, a.userId);
        },
        { name: 'stream.announce' },
      ),
    ];
  }

  /** Stops listening and ends every connection. */
  stop(): void {
    for (const u of this.unsubs) u();
    this.unsubs = [];
    for (const c of [...this.conns]) this.drop(c, 'shutdown');
    this.placements.clear();
  }

  /**
   * A session ended (sign-out, revocation, password change; here or on another node): its
   * connections end at once, and one being opened with it meanwhile ends as it opens.
   * `until`: when its last access token expires (it is remembered that long).
   */
  endSession(sessionId: string, until = Date.now() + ENDED_KEY_MS): void {
    this.remember(`s:${sessionId}`, until);
    for (const c of [...(this.bySession.get(sessionId) ?? [])]) this.drop(c, 'session-ended');
  }

  /** An API key was revoked: its connections end at once. */
  endKey(keyId: string): void {
    this.remember(`k:${keyId}`, Date.now() + ENDED_KEY_MS);
    for (const c of [...(this.byKey.get(keyId) ?? [])]) this.drop(c, 'key-revoked');
  }

  /**
   * Throws E_TOO_MANY_STREAMS when the principal's user holds `maxPerUser` connections on this
   * node already; transports ask before they answer, so the client gets a 429.
   */
  admit(p: Principal): void {
    const open = this.byUser.get(p.userId)?.size ?? 0;
    if (open >= this.maxPerUser) {
      throw new HearthError('E_TOO_MANY_STREAMS', `you have ${open} live streams open (at most ${this.maxPerUser}); close one first`, {
        limit: this.maxPerUser,
      });
    }
  }

  /**
   * Emits an event of another feature (automation runs, scene activations, notifications) to the
   * clients of every node, through the bus. Events with neither a device nor a home go to the
   * operator only. With `userId`, only that user's connections receive it (and only when they
   * may also view the home, if one is named): a personal inbox item.
   */
  publish(
    type: StreamEventType,
    deviceId: string | null,
    homeId: string | null,
    data: Record<string, unknown>,
    at = Date.now(),
    opts: { userId?: string } = {},
  ): void {
    const a: Announcement = { type, deviceId, homeId, at, data };
    if (opts.userId !== undefined) a.userId = opts.userId;
    this.deps.bus.publish(subjects.streamAnnounce, a);
  }

  /**
   * Forgets cached placements and access decisions (of one device, or all), e.g. after a device
   * was claimed, moved or released, or a membership changed. Without it they expire in seconds.
   */
  invalidate(deviceId?: string): void {
    if (deviceId === undefined) {
      this.placements.clear();
      for (const c of this.conns) c.rights.clear();
      return;
    }
    this.placements.delete(deviceId);
    for (const c of this.conns) c.rights.delete(`d:${deviceId}`);
  }

  /** Forgets the cached access decisions of one user's connections (their rights changed); placements stay. */
  invalidateUser(userId: string): void {
    for (const c of this.byUser.get(userId) ?? []) c.rights.clear();
  }

  /**
   * Checks that the principal may see what a filter names: throws E_HOME_NOT_FOUND /
   * E_DEVICE_NOT_FOUND otherwise, so a client learns at once that its filter can never match.
   */
  async authorize(p: Principal, filter: StreamFilter): Promise<void> {
    for (const homeId of filter.homeIds ?? []) await this.deps.access.requireHome(p, homeId, 'view');
    for (const deviceId of filter.deviceIds ?? []) await this.deps.access.requireDevice(p, deviceId, 'view');
  }

  /** The id a client that has seen everything so far would resume from. */
  get lastEventId(): string {
    return String(this.last);
  }

  /** How many live connections there are. */
  get connections(): number {
    return this.conns.size;
  }

  /**
   * Attaches a client. Replays the buffered events after `lastEventId` it may see (after a
   * `reset` when some of them are no longer buffered), then a `hello`, then live events. A
   * client whose credentials ended already, or whose user is at `maxPerUser`, is closed at once.
   */
  connect(opts: StreamConnectOptions): StreamConnection {
    const f = opts.filter ?? {};
    const p = opts.principal;
    const conn: Conn = {
      p: opts.principal,
      all: opts.principal.role === 'operator' && !opts.principal.keyId && !opts.principal.scopes,
      filter: {
        homeIds: f.homeIds?.length ? new Set(f.homeIds) : undefined,
        deviceIds: f.deviceIds?.length ? new Set(f.deviceIds) : undefined,
        types: f.types?.length ? new Set(f.types) : undefined,
      },
      sink: opts.sink,
      label: opts.label ?? 'stream',
      queue: [],
      head: 0,
      draining: false,
      closed: false,
      rights: new Map(),
      sent: parseEventId(opts.lastEventId),
    };
    const now = Date.now();
    const gone = this.endedReason(p, now);
    if (gone) {
      conn.closed = true;
      if (CREDENTIALS_ENDED.has(gone)) this.writeEnd(conn, gone);
      this.closeSink(conn, gone);
      return { close: () => undefined };
    }
    if ((this.byUser.get(p.userId)?.size ?? 0) >= this.maxPerUser) {
      conn.closed = true;
      this.closeSink(conn, 'too-many');
      return { close: () => undefined };
    }
    this.index(conn);
    if (p.expiresAt !== undefined) this.armExpiry(conn, p.expiresAt);
    let resumed = false;
    if (opts.lastEventId !== undefined) {
      const from = parseEventId(opts.lastEventId);
      if (from === undefined || from < this.horizon) {
        this.enqueue(
          conn,
          this.control('reset', this.horizon, now, {
            lastEventId: opts.lastEventId,
            reason: from === undefined ? 'unknown-id' : 'gap',
            message: 'events after your last id are no longer available: load the current state again',
          }),
        );
      } else resumed = true;
      for (const e of this.since(from ?? this.horizon)) this.enqueue(conn, e);
    }
    this.enqueue(conn, this.control('hello', this.last, now, { resumed }));
    if (!conn.closed) this.conns.add(conn);
    return { close: () => this.detach(conn) };
  }

  private remember(key: string, until: number): void {
    const now = Date.now();
    if (this.ended.size >= SWEEP_AT) for (const [k, u] of this.ended) if (u <= now) this.ended.delete(k);
    this.ended.set(key, Math.max(until, this.ended.get(key) ?? 0));
  }

  /** Why a principal's credentials no longer hold, or undefined while they do. */
  private endedReason(p: Principal, now: number): StreamCloseReason | undefined {
    if (p.sessionId !== undefined && (this.ended.get(`s:${p.sessionId}`) ?? 0) > now) return 'session-ended';
    if (p.keyId !== undefined && (this.ended.get(`k:${p.keyId}`) ?? 0) > now) return 'key-revoked';
    if (p.expiresAt !== undefined && p.expiresAt <= now) return 'token-expired';
    return undefined;
  }

  private armExpiry(c: Conn, at: number): void {
    const left = at - Date.now();
    if (left <= 0) return void this.drop(c, 'token-expired');
    c.expiry = setTimeout(() => this.armExpiry(c, at), Math.min(left, MAX_TIMER_MS));
    c.expiry.unref();
  }

  private index(c: Conn): void {
    add(this.byUser, c.p.userId, c);
    if (c.p.sessionId !== undefined) add(this.bySession, c.p.sessionId, c);
    if (c.p.keyId !== undefined) add(this.byKey, c.p.keyId, c);
  }

  private unindex(c: Conn): void {
    remove(this.byUser, c.p.userId, c);
    if (c.p.sessionId !== undefined) remove(this.bySession, c.p.sessionId, c);
    if (c.p.keyId !== undefined) remove(this.byKey, c.p.keyId, c);
  }

  // ---- events in ---------------------------------------------------------------------------

  /**
   * A device's event: its audience is the home the device was in when the platform received it
   * (`receivedAt`; else when this node learns of it), or none when the device joined that home only
   * after (a backlog or a redelivery handled after a claim: the event belonged to its previous
   * home, or none).
   */
  private fromDevice(type: StreamEventType, deviceId: string, at: number, data: Record<string, unknown>, receivedAt?: number): void {
    const now = Date.now();
    const when = Math.min(receivedAt ?? now, now);
    const chain = this.chains.get(deviceId);
    const hit = this.placements.get(deviceId);
    if (!chain && hit && hit.until > now) {
      this.emit(type, deviceId, homeAt(hit, when), at, data, undefined, when);
      return;
    }
    const next = (chain ?? Promise.resolve())
      .then(async () => this.emit(type, deviceId, homeAt(await this.placementOf(deviceId), when), at, data, undefined, when))
      .catch((err: unknown) => this.deps.log.error({ err, deviceId, type }, 'stream event dropped'));
    this.chains.set(deviceId, next);
    void next.then(() => {
      if (this.chains.get(deviceId) === next) this.chains.delete(deviceId);
    });
  }

  private async placementOf(deviceId: string): Promise<Placed> {
    const now = Date.now();
    const hit = this.placements.get(deviceId);
    if (hit && hit.until > now) return hit;
    const place = await this.deps.access.placement(deviceId);
    // "In no home" is cached too (most of a fleet, on the hot path); claiming a device calls
    // invalidate(), so it shows in its new home from its first event on.
    if (this.placements.size >= SWEEP_AT) sweep(this.placements, now);
    const placed: Placed = { homeId: place?.homeId ?? null, boundAt: place?.boundAt ?? 0, until: Date.now() + PLACEMENT_TTL_MS };
    this.placements.set(deviceId, placed);
    return placed;
  }

  private emit(
    type: StreamEventType,
    deviceId: string | null,
    homeId: string | null,
    at: number,
    data: Record<string, unknown>,
    userId?: string,
    when = Date.now(),
  ): void {
    const n = (this.last = Math.max(this.last + 1, Date.now() * 1000));
    const ev: StreamEvent = { id: String(n), type, deviceId, homeId, at: isoTime(at), data };
    const entry: Entry = { n, when, ev };
    if (userId !== undefined) entry.userId = userId;
    this.append(entry);
    for (const c of this.conns) this.enqueue(c, entry);
  }

  private control(type: StreamControlType, n: number, at: number, data: Record<string, unknown>): Entry {
    const ev: StreamEvent = { id: String(n), type, deviceId: null, homeId: null, at: isoTime(at), data };
    return { n, when: at, ev, json: JSON.stringify(ev), control: true };
  }

  // ---- the ring buffer ---------------------------------------------------------------------

  private append(e: Entry): void {
    if (this.count === this.size) {
      this.horizon = this.ring[this.start0]!.n;
      this.ring[this.start0] = e;
      this.start0 = (this.start0 + 1) % this.size;
    } else {
      this.ring[(this.start0 + this.count) % this.size] = e;
      this.count++;
    }
  }

  /** Buffered entries with an id above `n`, oldest first. */
  private since(n: number): Entry[] {
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ring[(this.start0 + mid) % this.size]!.n <= n) lo = mid + 1;
      else hi = mid;
    }
    const out: Entry[] = [];
    for (let i = lo; i < this.count; i++) out.push(this.ring[(this.start0 + i) % this.size]!);
    return out;
  }

  // ---- delivery ----------------------------------------------------------------------------

  private enqueue(c: Conn, e: Entry): void {
    if (c.closed) return;
    if (!e.control && !this.wanted(c, e.ev)) return;
    if (e.userId !== undefined && c.p.userId !== e.userId) return;
    if (c.head === c.queue.length) {
      // Nothing waiting: deliver at once when the decision is known.
      const v = e.control ? true : this.knownRight(c, e);
      if (v === false) return;
      if (v === true) {
        this.write(c, e);
        return;
      }
    }
    c.queue.push(e);
    if (c.queue.length - c.head > this.maxPending) {
      this.drop(c, 'slow');
      return;
    }
    if (!c.draining) void this.drain(c);
  }

  private async drain(c: Conn): Promise<void> {
    c.draining = true;
    try {
      while (c.head < c.queue.length && !c.closed) {
        const e = c.queue[c.head];
        let v = e.control ? true : this.knownRight(c, e);
        if (v === undefined) v = await this.check(c, e);
        c.head++;
        if (c.head >= 1024 && c.head * 2 >= c.queue.length) {
          c.queue.splice(0, c.head);
          c.head = 0;
        }
        if (v && !c.closed) this.write(c, e);
      }
      if (c.head === c.queue.length) {
        c.queue.length = 0;
        c.head = 0;
      }
    } finally {
      c.draining = false;
    }
  }

  private write(c: Conn, e: Entry): void {
    let ok: boolean;
    c.sent = e.n;
    try {
      ok = c.sink.write(e.ev, (e.json ??= JSON.stringify(e.ev)));
    } catch (err) {
      this.deps.log.warn({ err, conn: c.label }, 'stream write failed');
      ok = false;
    }
    if (!ok) this.drop(c, 'slow');
  }

  /** The connection's query filters (cheap, no store). */
  private wanted(c: Conn, ev: StreamEvent): boolean {
    const f = c.filter;
    if (f.types && !f.types.has(ev.type)) return false;
    if (f.deviceIds && (ev.deviceId === null || !f.deviceIds.has(ev.deviceId))) return false;
    if (f.homeIds && (ev.homeId === null || !f.homeIds.has(ev.homeId))) return false;
    return true;
  }

  /** A cached decision, or undefined when the policy must be asked. */
  private knownRight(c: Conn, e: Entry): boolean | undefined {
    if (c.all) return true;
    const ev = e.ev;
    const key = rightsKey(ev);
    if (key === undefined) return false;
    const hit = c.rights.get(key);
    if (!hit || hit.until <= Date.now() || hit.homeId !== ev.homeId) return undefined;
    return hit.ok && e.when >= hit.since;
  }

  /** Asks the policy whether the connection may see events like `e` (of its device in its home, or of its home). */
  private async check(c: Conn, e: Entry): Promise<boolean> {
    const { access, devices } = this.deps;
    const ev = e.ev;
    const key = rightsKey(ev);
    if (key === undefined) return false;
    let ok = false;
    let since = Infinity;
    try {
      if (ev.deviceId !== null) {
        const device = await devices.get(ev.deviceId);
        if (device) {
          const r = await access.deviceEventRight(c.p, device, ev.homeId);
          ok = r.right !== 'none';
          since = r.since;
        }
      } else if (ev.homeId !== null) {
        const r = await access.homeEventRole(c.p, ev.homeId);
        ok = !!r && (r.role !== 'guest' || !MEMBERS_ONLY.has(ev.type));
        since = r?.since ?? Infinity;
      }
    } catch (err) {
      this.deps.log.error({ err, conn: c.label, deviceId: ev.deviceId }, 'stream access check failed');
      return false;
    }
    const now = Date.now();
    if (c.rights.size >= SWEEP_AT) sweep(c.rights, now);
    c.rights.set(key, { homeId: ev.homeId, ok, since, until: now + RIGHTS_TTL_MS });
    return ok && e.when >= since;
  }

  private detach(c: Conn): void {
    if (c.expiry) clearTimeout(c.expiry);
    c.closed = true;
    c.queue = [];
    c.head = 0;
    c.rights.clear();
    this.conns.delete(c);
    this.unindex(c);
  }

  private drop(c: Conn, reason: StreamCloseReason): void {
    if (c.closed) return;
    // The `end` event goes out before anything still queued: the credentials are gone now.
    if (CREDENTIALS_ENDED.has(reason)) this.writeEnd(c, reason);
    this.detach(c);
    if (reason === 'slow') this.deps.log.warn({ conn: c.label, userId: c.p.userId }, 'stream client fell behind; connection dropped');
    else if (reason !== 'shutdown') this.deps.log.info({ conn: c.label, userId: c.p.userId, reason }, 'stream ended');
    this.closeSink(c, reason);
  }

  private writeEnd(c: Conn, reason: StreamCloseReason): void {
    try {
      const e = this.control('end', c.sent ?? this.last, Date.now(), { reason, message: END_MESSAGES[reason] });
      c.sink.write(e.ev, e.json!);
    } catch (err) {
      this.deps.log.warn({ err, conn: c.label }, 'stream write failed');
    }
  }

  private closeSink(c: Conn, reason: StreamCloseReason): void {
    try {
      c.sink.close(reason);
    } catch (err) {
      this.deps.log.warn({ err, conn: c.label }, 'stream close failed');
    }
  }
}

function add<K>(m: Map<K, Set<Conn>>, k: K, c: Conn): void {
  let set = m.get(k);
  if (!set) m.set(k, (set = new Set()));
  set.add(c);
}

function remove<K>(m: Map<K, Set<Conn>>, k: K, c: Conn): void {
  const set = m.get(k);
  if (set?.delete(c) && set.size === 0) m.delete(k);
}

/** The home a device's event at `when` belongs to: none when the device joined it only after. */
function homeAt(p: Placed, when: number): string | null {
  return p.homeId !== null && p.boundAt <= when ? p.homeId : null;
}

function sweep(m: Map<string, { until: number }>, now: number): void {
  for (const [k, v] of m) if (v.until <= now) m.delete(k);
}

function isoTime(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? new Date().toISOString() : d.toISOString();
}

/**
 * Home events that guests do not receive: an automation's runs name devices and people's
 * routines beyond the guest's devices (guests cannot list automations either).
 */
const MEMBERS_ONLY: ReadonlySet<string> = new Set(['automation']);

/** The rights cache key of an event: its device's, or its home's (events for members only are decided apart). */
function rightsKey(ev: StreamEvent): string | undefined {
  if (ev.deviceId !== null) return `d:${ev.deviceId}`;
  if (ev.homeId === null) return undefined;
  return MEMBERS_ONLY.has(ev.type) ? `m:${ev.homeId}` : `h:${ev.homeId}`;
}
