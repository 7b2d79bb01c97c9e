import type { Bus, BusMessage, Unsubscribe } from '../core/bus/bus.ts';
import { subjects } from '../core/bus/subjects.ts';
import type { Logger } from '../core/logger.ts';
import { isHearthError } from '../core/errors.ts';
import type { AccessService } from '../homes/access-service.ts';
import type { DeviceService } from '../devices/device-service.ts';
import type { Principal } from '../auth/auth-service.ts';
import type { ReportedEvent, DeviceEvent } from '../ingest/ingest-service.ts';
import type { PresenceEvent } from '../devices/presence-service.ts';

/** The kinds of event the stream carries (and clients may filter on with `types=`). */
export const STREAM_EVENT_TYPES = ['property', 'event', 'presence', 'command', 'automation', 'notification', 'scene'] as const;
export type StreamEventType = (typeof STREAM_EVENT_TYPES)[number];

/**
 * Messages about the connection itself, never buffered: `hello` when the client is live (its id
 * is the position to resume from), `reset` when events after the client's last id were lost.
 */
export type StreamControlType = 'hello' | 'reset';

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
  /** The service ends the connection: it fell behind, or the service is stopping. */
  close(reason: 'slow' | 'shutdown'): void;
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

/** The `data` of a `command` event (status changes on `device.{id}.command`). */
interface CommandChange {
  id: string;
  deviceId: string;
  action: string;
  status: string;
  ok?: boolean;
  result?: Record<string, unknown>;
  error?: string;
}

interface Entry {
  n: number;
  ev: StreamEvent;
  /** Serialised on first delivery, once for all connections; most events reach none. */
  json?: string;
  /** Control messages skip the filters and access checks. */
  control?: boolean;
  /** A personal event (an inbox item): only this user's connections receive it. */
  userId?: string;
}

/** What `publish` sends on `stream.announce`, so that every node's clients receive it. */
interface Announcement {
  type: StreamEventType;
  deviceId: string | null;
  homeId: string | null;
  userId?: string;
  at: number;
  data: Record<string, unknown>;
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
  /** `d:<deviceId>` / `h:<homeId>` → may the principal see it, until when. */
  rights: Map<string, { ok: boolean; until: number }>;
}

const PLACEMENT_TTL_MS = 5_000;
const RIGHTS_TTL_MS = 5_000;
/** Above this many cache entries, expired ones are swept on insert. */
const SWEEP_AT = 4_096;

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
 * The service subscribes four wildcard subjects, whatever the number of clients. Each connection
 * sees an event only when the access policy lets its principal view the device (or, for events
 * of a home without a device, the home); decisions are cached per connection for a few seconds, so a
 * burst of events does not ask the store for each one. Delivery to a connection keeps the order of
 * the events.
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
  private readonly placements = new Map<string, { homeId: string | null; until: number }>();
  /** Per-device chains while a placement is looked up, so one device's events keep their order. */
  private readonly chains = new Map<string, Promise<void>>();
  private unsubs: Unsubscribe[] = [];
  private readonly maxPending: number;

  constructor(private readonly deps: { bus: Bus; access: AccessService; devices: DeviceService; log: Logger; bufferSize?: number }) {
    this.size = Math.max(1, deps.bufferSize ?? 10_000);
    this.ring = new Array<Entry | undefined>(this.size);
    this.last = this.horizon = Date.now() * 1000 - 1;
    this.maxPending = this.size + 10_000;
  }

  start(): void {
    if (this.unsubs.length) return;
    const bus = this.deps.bus;
    const idOf = (msg: BusMessage) => msg.subject.split('.')[1];
    this.unsubs = [
      bus.subscribe<ReportedEvent>(subjects.reported('*'), (msg) => {
        const r = msg.data;
        this.fromDevice('property', idOf(msg), r.at, { values: r.values, changed: r.changed, version: r.version });
      }, { name: 'stream.reported' }),
      bus.subscribe<DeviceEvent>(subjects.event('*'), (msg) => {
        const e = msg.data;
        this.fromDevice('event', idOf(msg), e.at, { eventId: e.id, event: e.event, params: e.params });
      }, { name: 'stream.event' }),
      bus.subscribe<PresenceEvent>(subjects.presence('*'), (msg) => {
        const e = msg.data;
        this.fromDevice('presence', idOf(msg), e.at, { online: e.online, reason: e.reason });
      }, { name: 'stream.presence' }),
      bus.subscribe<CommandChange>(subjects.command('*'), (msg) => {
        const c = msg.data;
        const data: Record<string, unknown> = { commandId: c.id, action: c.action, status: c.status };
        if (c.ok !== undefined) data.ok = c.ok;
        if (c.result !== undefined) data.result = c.result;
        if (c.error !== undefined) data.error = c.error;
        this.fromDevice('command', idOf(msg), Date.now(), data);
      }, { name: 'stream.command' }),
      bus.subscribe<Announcement>(subjects.streamAnnounce, (msg) => {
        const a = msg.data;
        this.emit(a.type, a.deviceId, a.homeId, a.at, a.data, a.userId);
      }, { name: 'stream.announce' }),
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
   * Emits an event of another feature (automation runs, scene activations, notifications) to the
   * clients of every node, through the bus. Events with neither a device nor a home go to the
   * operator only. With `userId`, only that user's connections receive it (and only when they
   * may also view the home, if one is named): a personal inbox item.
   */
  publish(type: StreamEventType, deviceId: string | null, homeId: string | null, data: Record<string, unknown>, at = Date.now(), opts: { userId?: string } = {}): void {
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
   * `reset` when some of them are no longer buffered), then a `hello`, then live events.
   */
  connect(opts: StreamConnectOptions): StreamConnection {
    const f = opts.filter ?? {};
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
      queue: [], head: 0, draining: false, closed: false,
      rights: new Map(),
    };
    const now = Date.now();
    let resumed = false;
    if (opts.lastEventId !== undefined) {
      const from = parseEventId(opts.lastEventId);
      if (from === undefined || from < this.horizon) {
        this.enqueue(conn, this.control('reset', this.horizon, now, {
          lastEventId: opts.lastEventId,
          reason: from === undefined ? 'unknown-id' : 'gap',
          message: 'events after your last id are no longer available: load the current state again',
        }));
      } else resumed = true;
      for (const e of this.since(from ?? this.horizon)) this.enqueue(conn, e);
    }
    this.enqueue(conn, this.control('hello', this.last, now, { resumed }));
    if (!conn.closed) this.conns.add(conn);
    return { close: () => this.detach(conn) };
  }

  // ---- events in ---------------------------------------------------------------------------

  private fromDevice(type: StreamEventType, deviceId: string, at: number, data: Record<string, unknown>): void {
    const chain = this.chains.get(deviceId);
    const hit = this.placements.get(deviceId);
    if (!chain && hit && hit.until > Date.now()) {
      this.emit(type, deviceId, hit.homeId, at, data);
      return;
    }
    const next = (chain ?? Promise.resolve())
      .then(async () => this.emit(type, deviceId, await this.homeOf(deviceId), at, data))
      .catch((err: unknown) => this.deps.log.error({ err, deviceId, type }, 'stream event dropped'));
    this.chains.set(deviceId, next);
    void next.then(() => {
      if (this.chains.get(deviceId) === next) this.chains.delete(deviceId);
    });
  }

  private async homeOf(deviceId: string): Promise<string | null> {
    const now = Date.now();
    const hit = this.placements.get(deviceId);
    if (hit && hit.until > now) return hit.homeId;
    const homeId = (await this.deps.access.placement(deviceId))?.homeId ?? null;
    // "In no home" is cached too (most of a fleet, on the hot path); claiming a device calls
    // invalidate(), so it shows in its new home from its first event on.
    if (this.placements.size >= SWEEP_AT) sweep(this.placements, now);
    this.placements.set(deviceId, { homeId, until: Date.now() + PLACEMENT_TTL_MS });
    return homeId;
  }

  private emit(type: StreamEventType, deviceId: string | null, homeId: string | null, at: number, data: Record<string, unknown>, userId?: string): void {
    const n = (this.last = Math.max(this.last + 1, Date.now() * 1000));
    const ev: StreamEvent = { id: String(n), type, deviceId, homeId, at: isoTime(at), data };
    const entry: Entry = { n, ev };
    if (userId !== undefined) entry.userId = userId;
    this.append(entry);
    for (const c of this.conns) this.enqueue(c, entry);
  }

  private control(type: StreamControlType, n: number, at: number, data: Record<string, unknown>): Entry {
    const ev: StreamEvent = { id: String(n), type, deviceId: null, homeId: null, at: isoTime(at), data };
    return { n, ev, json: JSON.stringify(ev), control: true };
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
      const v = e.control ? true : this.knownRight(c, e.ev);
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
        let v = e.control ? true : this.knownRight(c, e.ev);
        if (v === undefined) v = await this.check(c, e.ev);
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
  private knownRight(c: Conn, ev: StreamEvent): boolean | undefined {
    if (c.all) return true;
    const key = ev.deviceId !== null ? `d:${ev.deviceId}` : ev.homeId !== null ? homeKey(ev) : undefined;
    if (key === undefined) return false;
    const hit = c.rights.get(key);
    return hit && hit.until > Date.now() ? hit.ok : undefined;
  }

  private async check(c: Conn, ev: StreamEvent): Promise<boolean> {
    const { access, devices } = this.deps;
    let ok = false;
    let key: string;
    try {
      if (ev.deviceId !== null) {
        key = `d:${ev.deviceId}`;
        const device = await devices.get(ev.deviceId);
        ok = !!device && (await access.deviceRight(c.p, device)) !== 'none';
      } else if (ev.homeId !== null) {
        key = homeKey(ev);
        try {
          const role = await access.requireHome(c.p, ev.homeId, 'view');
          ok = role !== 'guest' || !MEMBERS_ONLY.has(ev.type);
        } catch (err) {
          if (!isHearthError(err)) throw err;
        }
      } else return false;
    } catch (err) {
      this.deps.log.error({ err, conn: c.label, deviceId: ev.deviceId }, 'stream access check failed');
      return false;
    }
    const now = Date.now();
    if (c.rights.size >= SWEEP_AT) sweep(c.rights, now);
    c.rights.set(key, { ok, until: now + RIGHTS_TTL_MS });
    return ok;
  }

  private detach(c: Conn): void {
    c.closed = true;
    c.queue = [];
    c.head = 0;
    c.rights.clear();
    this.conns.delete(c);
  }

  private drop(c: Conn, reason: 'slow' | 'shutdown'): void {
    if (c.closed) return;
    this.detach(c);
    if (reason === 'slow') this.deps.log.warn({ conn: c.label, userId: c.p.userId }, 'stream client fell behind; connection dropped');
    try {
      c.sink.close(reason);
    } catch (err) {
      this.deps.log.warn({ err, conn: c.label }, 'stream close failed');
    }
  }
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

/** The rights cache key of a home event: events for members only are decided apart. */
function homeKey(ev: StreamEvent): string {
  return MEMBERS_ONLY.has(ev.type) ? `m:${ev.homeId}` : `h:${ev.homeId}`;
}
