import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';

/**
 * Size limits checked from an MQTT packet's fixed header, before its body is read.
 * mqtt-packet (Aedes' parser) buffers a packet's whole remaining length before anything can
 * look at it, so these checks must sit in front of it, on the raw byte stream.
 */
export interface PacketLimits {
  /** Largest remaining length of any packet before the connection is admitted (the CONNECT and anything pipelined after it). */
  beforeConnack: number;
  /** Largest PUBLISH payload once admitted; a longer one is skipped, not buffered (see `TruncatedPublish`). */
  payload: number;
  /** Largest remaining length of any other packet once admitted (SUBSCRIBE with many filters, …). */
  packet: number;
}

export type RefusalReason = 'too-large' | 'malformed' | 'not-connect';

/** Why the byte stream was cut off. */
export interface Refusal {
  reason: RefusalReason;
  /** The MQTT packet type (1 CONNECT, 3 PUBLISH, 8 SUBSCRIBE, …), when the fixed header got that far. */
  type: number;
  /** The remaining length the header claimed, when it was read. */
  remaining: number;
  /** Whether the connection had been admitted (CONNACK) when this happened. */
  admitted: boolean;
}

/**
 * An admitted PUBLISH whose payload is over the limit: its topic and packet id were kept, its
 * payload bytes skipped as they arrived. The parser receives the same PUBLISH with an empty
 * payload instead, so the broker answers it like any refused publish (ACL, PUBACK).
 */
export interface TruncatedPublish {
  topic: string;
  qos: number;
  messageId: number | undefined;
  /** The payload length the device sent. */
  payloadBytes: number;
}

/** Where the framer's results go. */
export interface FramerSink {
  /** Bytes to pass to the parser: slices of the input chunks (no copy), or a rebuilt header. */
  data(buf: Buffer): void;
  refused(r: Refusal): void;
  truncated(t: TruncatedPublish): void;
}

const CONNECT = 1;
const PUBLISH = 3;
/** Longest topic kept from an oversized PUBLISH; device topics are under 100 bytes, and a longer one is closed by the ACL anyway. */
const MAX_TOPIC_BYTES = 1024;

const enum State {
  Header,
  Body,
  Prefix,
  Discard,
  Dead,
}

/**
 * The pure framing logic of the packet guard: follows MQTT packet boundaries across chunks
 * (a remaining-length varint split over chunks, many packets in one chunk) reading only fixed
 * headers, and passes good bytes on as slices of the chunks it was given. It refuses a packet
 * whose header claims more than the limit before a single body byte reaches the parser.
 */
export class MqttFramer {
  private state = State.Header;
  /** The fixed header being read (type byte + up to 4 varint bytes). */
  private readonly hdr: number[] = [];
  /** Whether `hdr` started in an earlier chunk (so its bytes were held back, not passed on). */
  private hdrCarried = false;
  private hdrStart = 0;
  /** Body bytes left to pass (Body) or skip (Discard). */
  private left = 0;
  private remaining = 0;
  private packets = 0;
  private admitted = false;
  /** Oversized PUBLISH: its topic length, topic and packet id, as they arrive. */
  private prefix: number[] = [];
  private prefixNeed = 0;

  constructor(
    private readonly limits: PacketLimits,
    private readonly sink: FramerSink,
  ) {}

  /** After CONNACK: the admitted limits apply from the next packet header on. */
  admit(): void {
    this.admitted = true;
  }

  get dead(): boolean {
    return this.state === State.Dead;
  }

  feed(chunk: Buffer): void {
    const len = chunk.length;
    let i = 0;
    /** Start of the run of bytes to pass on in this chunk, or -1. */
    let run = -1;
    const flush = (upto: number): void => {
      if (run >= 0 && upto > run) this.sink.data(chunk.subarray(run, upto));
      run = -1;
    };
    while (i < len && this.state !== State.Dead) {
      switch (this.state) {
        case State.Header: {
          if (this.hdr.length === 0) {
            this.hdrStart = i;
            this.hdrCarried = false;
          }
          const b = chunk[i++];
          this.hdr.push(b);
          if (this.hdr.length === 1) break;
          if (b & 0x80) {
            if (this.hdr.length === 5) {
              if (!this.hdrCarried) flush(this.hdrStart);
              this.refuse('malformed');
            }
            break;
          }
          let remaining = 0;
          for (let k = this.hdr.length - 1; k >= 1; k--) remaining = remaining * 128 + (this.hdr[k] & 0x7f);
          this.remaining = remaining;
          const carried = this.hdrCarried;
          const verdict = this.decide(this.hdr[0] >> 4, remaining);
          if (verdict === 'refuse') {
            // The packets before it were whole: they go on (the connection is closing anyway).
            if (!carried) flush(this.hdrStart);
            break;
          }
          if (verdict === 'pass') {
            if (this.hdrCarried) {
              this.sink.data(Buffer.from(this.hdr));
              run = i;
            } else if (run < 0) run = this.hdrStart;
            this.hdr.length = 0;
            this.packets++;
            this.left = remaining;
            this.state = remaining === 0 ? State.Header : State.Body;
          } else {
            // An oversized PUBLISH: keep its header back and read its topic and packet id.
            if (!this.hdrCarried) flush(this.hdrStart);
            this.packets++;
            this.prefix = [];
            this.prefixNeed = 2;
            this.state = State.Prefix;
          }
          break;
        }
        case State.Body: {
          const n = Math.min(this.left, len - i);
          if (run < 0) run = i;
          i += n;
          this.left -= n;
          if (this.left === 0) this.state = State.Header;
          break;
        }
        case State.Discard: {
          flush(i);
          const n = Math.min(this.left, len - i);
          i += n;
          this.left -= n;
          if (this.left === 0) this.state = State.Header;
          break;
        }
        case State.Prefix: {
          flush(i);
          while (i < len && this.prefix.length < this.prefixNeed) this.prefix.push(chunk[i++]);
          if (this.prefix.length < this.prefixNeed) break;
          if (this.prefixNeed === 2) {
            const topicLen = (this.prefix[0] << 8) | this.prefix[1];
            const qos = (this.hdr[0] >> 1) & 3;
            if (qos === 3) {
              this.refuse('malformed');
              break;
            }
            if (topicLen > MAX_TOPIC_BYTES) {
              this.refuse('too-large');
              break;
            }
            this.prefixNeed = 2 + topicLen + (qos > 0 ? 2 : 0);
            if (this.prefixNeed > this.remaining) {
              this.refuse('malformed');
              break;
            }
            if (this.prefix.length < this.prefixNeed) break;
          }
          this.endPrefix();
          if ((this.state as State) === State.Body) run = i;
          break;
        }
        default:
          i = len;
      }
    }
    if (this.state === State.Dead) return;
    if (this.state === State.Header && this.hdr.length > 0 && !this.hdrCarried) {
      // A header split over chunks: hold its bytes back until it is complete and checked.
      flush(this.hdrStart);
      this.hdrCarried = true;
    } else {
      flush(len);
    }
  }

  /** 'pass', 'prefix' (an oversized PUBLISH to skip) or 'refuse' (the stream is cut off). */
  private decide(type: number, remaining: number): 'pass' | 'prefix' | 'refuse' {
    if (!this.admitted) {
      if (this.packets === 0 && type !== CONNECT) return this.refuse('not-connect');
      if (remaining > this.limits.beforeConnack) return this.refuse('too-large');
      return 'pass';
    }
    if (type === PUBLISH) return remaining > this.limits.payload ? 'prefix' : 'pass';
    if (remaining > this.limits.packet) return this.refuse('too-large');
    return 'pass';
  }

  /** The topic and packet id of an oversized PUBLISH are in: pass it whole if the payload fits after all, else skip it. */
  private endPrefix(): void {
    const prefixLen = this.prefixNeed;
    const payloadBytes = this.remaining - prefixLen;
    const bodyLeft = payloadBytes;
    const prefix = Buffer.from(this.prefix);
    const header = Buffer.from(this.hdr);
    const first = header[0];
    this.hdr.length = 0;
    this.prefix = [];
    if (payloadBytes <= this.limits.payload) {
      // It fits after all (the topic made the packet look long): pass the original bytes on.
      this.sink.data(Buffer.concat([header, prefix]));
      this.left = bodyLeft;
      this.state = bodyLeft === 0 ? State.Header : State.Body;
      return;
    }
    const qos = (first >> 1) & 3;
    const topicLen = prefix.readUInt16BE(0);
    this.sink.truncated({
      topic: prefix.toString('utf8', 2, 2 + topicLen),
      qos,
      messageId: qos > 0 ? prefix.readUInt16BE(2 + topicLen) : undefined,
      payloadBytes,
    });
    this.sink.data(Buffer.concat([Buffer.from([first, ...encodeLength(prefixLen)]), prefix]));
    this.left = bodyLeft;
    this.state = bodyLeft === 0 ? State.Header : State.Discard;
  }

  private refuse(reason: RefusalReason): 'refuse' {
    const complete = this.state === State.Prefix || (this.hdr.length >= 2 && !(this.hdr[this.hdr.length - 1] & 0x80));
    this.sink.refused({ reason, type: this.hdr.length ? this.hdr[0] >> 4 : 0, remaining: complete ? this.remaining : -1, admitted: this.admitted });
    this.state = State.Dead;
    this.hdr.length = 0;
    this.prefix = [];
    return 'refuse';
  }
}

/** MQTT's remaining-length varint. */
export function encodeLength(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

/** The stream was cut off by the guard. */
export class PacketRefusedError extends Error {
  constructor(readonly refusal: Refusal) {
    super(
      refusal.reason === 'too-large'
        ? `packet of ${refusal.remaining < 0 ? 'unknown' : refusal.remaining} bytes (type ${refusal.type}) is over the limit`
        : refusal.reason === 'not-connect'
          ? 'the first packet must be CONNECT'
          : 'malformed packet header',
    );
    this.name = 'PacketRefusedError';
  }
}

/** Most truncated publishes waiting for the broker to reach them; more means the broker is not reading them. */
const MAX_PENDING_TRUNCATED = 64;

/**
 * The packet guard between a device connection (TCP socket or WebSocket stream) and the
 * broker: the broker reads and writes it like the connection itself. Reads go through an
 * `MqttFramer`; a refused packet destroys the connection at once (MQTT 3.1.1 has no way to
 * say "too large"), before its body is read. Writes pass straight through.
 */
export class PacketGuard extends Duplex {
  private readonly framer: MqttFramer;
  private readonly pending: TruncatedPublish[] = [];

  constructor(
    private readonly inner: Duplex,
    limits: PacketLimits,
    private readonly hooks: { refused?: (r: Refusal) => void } = {},
  ) {
    super({ allowHalfOpen: false });
    this.framer = new MqttFramer(limits, {
      data: (buf) => {
        if (!this.push(buf)) inner.pause();
      },
      refused: (r) => {
        this.hooks.refused?.(r);
        this.destroy(new PacketRefusedError(r));
      },
      truncated: (t) => {
        this.pending.push(t);
        if (this.pending.length > MAX_PENDING_TRUNCATED) this.destroy(new Error('too many oversized publishes in flight'));
      },
    });
    inner.on('data', (chunk: Buffer) => {
      if (!this.destroyed) this.framer.feed(chunk);
    });
    inner.once('end', () => this.push(null));
    inner.on('error', (err) => this.destroy(err));
    inner.once('close', () => this.destroy());
  }

  /** The connection was admitted (CONNACK sent): the admitted limits apply. */
  admit(): void {
    this.framer.admit();
  }

  /** The oversized PUBLISH (if any) that the broker received empty as this packet. */
  takeTruncated(topic: string, messageId: number | undefined): TruncatedPublish | undefined {
    const i = this.pending.findIndex((t) => t.topic === topic && t.messageId === messageId);
    return i < 0 ? undefined : this.pending.splice(i, 1)[0];
  }

  override _read(): void {
    this.inner.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.inner.write(chunk)) cb();
    else this.inner.once('drain', () => cb());
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    this.inner.cork();
    let ok = true;
    for (const c of chunks) ok = this.inner.write(c.chunk);
    this.inner.uncork();
    if (ok) cb();
    else this.inner.once('drain', () => cb());
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.inner.end(() => cb());
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.inner.destroy();
    cb(err);
  }
}

/** What the gateway asks of a guarded connection, a `PacketGuard` stream or a socket guarded in place. */
export interface GuardControl {
  /** The connection was admitted (CONNACK sent): the admitted limits apply. */
  admit(): void;
  /** The oversized PUBLISH (if any) that the broker received empty as this packet. */
  takeTruncated(topic: string, messageId: number | undefined): TruncatedPublish | undefined;
}

const GUARD = Symbol('hearth.packetGuard');

/** The guard of a connection: the `PacketGuard` stream itself, or the one `guardSocket` put on a socket. */
export function guardOf(conn: unknown): GuardControl | undefined {
  if (conn instanceof PacketGuard) return conn;
  return (conn as { [GUARD]?: GuardControl } | null)?.[GUARD];
}

/**
 * The packet guard put on a TCP or TLS socket itself, without a stream in between: the socket's
 * own `push` (what Node calls with every chunk it reads) goes through an `MqttFramer`, so the
 * broker reads the socket directly and only ever sees the bytes the framer passed on; writes
 * are not touched. Same limits and refusals as `PacketGuard` (a refused packet destroys the
 * socket before its body is read), one stream fewer per connection: about a kilobyte of memory
 * and a stream hop on every read and write.
 */
export function guardSocket(socket: Socket, limits: PacketLimits, hooks: { refused?: (r: Refusal) => void } = {}): void {
  const guarded = socket as Socket & { [GUARD]: SocketGuard };
  guarded[GUARD] = new SocketGuard(socket, limits, hooks);
  guarded.push = guardedPush;
}

/** A guarded socket's `push`: the end of the stream goes on as it is, bytes through the framer. */
function guardedPush(this: Socket & { [GUARD]: SocketGuard }, chunk: unknown, encoding?: BufferEncoding): boolean {
  const guard = this[GUARD];
  if (chunk === null || chunk === undefined) return guard.push.call(this, chunk, encoding);
  return guard.feed(chunk as Buffer);
}

class SocketGuard implements FramerSink, GuardControl {
  private readonly framer: MqttFramer;
  private pending: TruncatedPublish[] | undefined;
  /** The socket's own `push`. */
  readonly push: Socket['push'];
  /** Whether the last bytes passed on left room in the socket's read buffer. */
  private room = true;

  constructor(
    private readonly socket: Socket,
    limits: PacketLimits,
    private readonly hooks: { refused?: (r: Refusal) => void },
  ) {
    this.push = socket.push;
    this.framer = new MqttFramer(limits, this);
  }

  feed(chunk: Buffer): boolean {
    if (this.socket.destroyed || this.framer.dead) return false;
    this.room = true;
    this.framer.feed(chunk);
    return this.room && !this.framer.dead;
  }

  data(buf: Buffer): void {
    this.room = this.push.call(this.socket, buf);
  }

  refused(r: Refusal): void {
    this.hooks.refused?.(r);
    this.socket.destroy(new PacketRefusedError(r));
  }

  truncated(t: TruncatedPublish): void {
    (this.pending ??= []).push(t);
    if (this.pending.length > MAX_PENDING_TRUNCATED) this.socket.destroy(new Error('too many oversized publishes in flight'));
  }

  admit(): void {
    this.framer.admit();
  }

  takeTruncated(topic: string, messageId: number | undefined): TruncatedPublish | undefined {
    const i = this.pending?.findIndex((t) => t.topic === topic && t.messageId === messageId) ?? -1;
    return i < 0 ? undefined : this.pending!.splice(i, 1)[0];
  }
}
