/**
 * The connections phase's load generator: light MQTT clients, many per process.
 *
 * An mqtt.js client object per connection costs the generator tens of KB and a good part of a
 * core per thousand connects, too heavy for 100,000 idle devices. Here a device is a raw TCP
 * socket: it writes a CONNECT (MQTT 3.1.1, clean session, client id = user name = device id,
 * password = secret, keepalive `KEEPALIVE_S`), reads the CONNACK, writes a SUBSCRIBE to
 * `devices/{id}/commands` (QoS 1), reads the SUBACK, and then answers nothing (the keepalive is
 * longer than any measurement, so no PINGREQ is due). Packets come from mqtt-packet's generator.
 *
 * A process may hold only as many sockets as its open-file limit, and one source address has
 * about 28,000 ephemeral ports (ip_local_port_range 32768-60999): the benchmark runs several of
 * these as child processes (`spawnHelper('conn-load.ts')`, IPC), each with its share of the
 * devices, and each connection binds one of the loopback source addresses 127.0.0.1, .2, .3, …
 * (`localAddress`; Linux routes all of 127/8 to the loopback interface).
 *
 * Messages (IPC): in `{type: 'open', host, port, devs, inFlight, sources}` → out `{type: 'opened',
 * count, failed, firstError, startedAt, endedAt}` (epoch ms); in `{type: 'close'}` → every socket is
 * destroyed → out `{type: 'closed'}`. Out `{type: 'ready'}` once the process is up.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { spawnHelper, stopChild } from './procs.ts';

/** Long enough that no PINGREQ falls due during a measurement (the server allows 1.5× this). */
export const KEEPALIVE_S = 1200;

export interface LightDevice {
  id: string;
  secret: string;
}

export interface OpenRequest {
  type: 'open';
  host: string;
  port: number;
  devs: LightDevice[];
  /** Connects (CONNECT … SUBACK) in flight at once in this process. */
  inFlight: number;
  /** Source addresses, used round robin. */
  sources: string[];
}

export interface OpenResult {
  type: 'opened';
  count: number;
  failed: number;
  firstError?: string;
  startedAt: number;
  endedAt: number;
}

/** Idle connections (SUBACK received) that closed other than by `close`. */
let lostIdle = 0;
let onIdleLost: () => void = () => undefined;

const CONNACK = 2;
const SUBACK = 9;

/**
 * One light device: resolves when its SUBACK granted the subscription, rejects on a refused
 * CONNACK, a refused filter, or a socket that closes or fails before that.
 */
export function openLight(host: string, port: number, dev: LightDevice, localAddress: string | undefined, sockets: Set<Socket>): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, noDelay: true, ...(localAddress ? { localAddress } : {}) });
    sockets.add(socket);
    let step = 0; // 0: waiting for CONNACK, 1: for SUBACK, 2: idle
    let buf: Buffer | undefined;
    let idle = false;
    const fail = (why: string) => {
      if (step === 2) return;
      step = 2;
      socket.destroy();
      reject(new Error(`${dev.id}: ${why}`));
    };
    socket.once('connect', () => {
      const packet = {
        cmd: 'connect' as const,
        protocolId: 'MQTT' as const,
        protocolVersion: 4 as const,
        clean: true,
        clientId: dev.id,
        keepalive: KEEPALIVE_S,
        ...(dev.secret ? { username: dev.id, password: Buffer.from(dev.secret) } : {}),
      };
      socket.write(mqttPacket.generate(packet));
    });
    socket.on('data', (chunk: Buffer) => {
      if (step === 2) return; // idle: nothing is answered
      buf = buf ? Buffer.concat([buf, chunk]) : chunk;
      // The answers here are small: a fixed header with a one-byte remaining length.
      while (buf && buf.length >= 2 && buf.length >= 2 + buf[1]) {
        const type = buf[0] >> 4;
        const body = buf.subarray(2, 2 + buf[1]);
        buf = buf.length > 2 + buf[1] ? buf.subarray(2 + buf[1]) : undefined;
        if (step === 0 && type === CONNACK) {
          if (body[1] !== 0) return fail(`CONNACK ${body[1]}`);
          step = 1;
          socket.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `devices/${dev.id}/commands`, qos: 1 }] }));
        } else if (step === 1 && type === SUBACK) {
          if (body[2] === 0x80) return fail('subscription refused');
          step = 2;
          idle = true;
          buf = undefined;
          return resolve();
        }
      }
    });
    socket.on('error', (err) => fail(err.message));
    socket.on('close', () => {
      sockets.delete(socket);
      if (step === 2 && idle) onIdleLost();
      fail('closed before SUBACK');
    });
  });
}

/** Opens `devs` with at most `inFlight` connects at a time. */
export async function openAll(req: OpenRequest, sockets: Set<Socket>): Promise<OpenResult> {
  const startedAt = Date.now();
  let next = 0;
  let count = 0;
  let failed = 0;
  let firstError: string | undefined;
  const worker = async () => {
    while (next < req.devs.length) {
      const i = next++;
      try {
        await openLight(req.host, req.port, req.devs[i], req.sources[i % req.sources.length], sockets);
        count++;
      } catch (err) {
        failed++;
        firstError ??= (err as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(req.inFlight, req.devs.length) }, worker));
  return { type: 'opened', count, failed, ...(firstError ? { firstError } : {}), startedAt, endedAt: Date.now() };
}

// ---------------------------------------------------------------------------------------------
// The benchmark's side

/** The soft open-file limit of a process (`Max open files` of /proc/PID/limits). */
export function openFileLimitOf(pid: number | 'self' = 'self'): number {
  const m = /^Max open files\s+(\S+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
  return !m || m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1]);
}

/**
 * Raises this process's open-file limit (soft and hard) to `want` with prlimit(1), so that the
 * servers and load processes spawned after it inherit it; raising the hard limit needs
 * CAP_SYS_RESOURCE. Returns the limit in force afterwards, and why it could not be raised.
 */
export function raiseOpenFileLimit(want: number): { limit: number; error?: string } {
  const before = openFileLimitOf();
  if (before >= want) return { limit: before };
  try {
    execFileSync('prlimit', [`--nofile=${want}:${want}`, '--pid', String(process.pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const text = String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim();
    return { limit: openFileLimitOf(), error: text.split('\n')[0] };
  }
  return { limit: openFileLimitOf() };
}

/** Source addresses not used yet in this run: a closed connection's port stays in TIME_WAIT for a minute. */
let nextSource = 10;
function freshSources(connections: number): string[] {
  const n = Math.max(1, Math.ceil(connections / SOCKETS_PER_SOURCE));
  return Array.from({ length: n }, () => {
    const k = nextSource++;
    return `127.0.${Math.floor(k / 250)}.${(k % 250) + 2}`;
  });
}

/**
 * Connections per source address. The ephemeral port range has about 28,000 ports, but binding a
 * source address takes a port by searching the range (Linux keeps half of it for bind), which
 * gets slow as it fills: keep each address far from full.
 */
const SOCKETS_PER_SOURCE = 5000;

/** Connections held open by light load processes; `close()` ends them and the processes. */
export interface LightFleet {
  count: number;
  failed: number;
  firstError?: string;
  /** From the first connect until the last SUBACK, over all processes (ms). */
  elapsedMs: number;
  /** Open connections the server closed while they were idle, so far. */
  lost(): Promise<number>;
  close(): Promise<void>;
}

type FromChild = OpenResult | { type: 'ready' } | { type: 'closed' } | { type: 'status'; lost: number };

/**
 * Opens one light connection per device (CONNECT + SUBSCRIBE) from as many load processes as
 * the open-file limit needs, `inFlight` connects at a time in total.
 */
export async function openLightFleet(url: string, devs: LightDevice[], inFlight: number): Promise<LightFleet> {
  const { hostname: host, port } = new URL(url);
  const perProcess = Math.max(100, openFileLimitOf() - 200);
  const procs = Math.max(1, Math.ceil(devs.length / perProcess));
  const sources = freshSources(devs.length);
  const children: ChildProcess[] = [];
  const next = (child: ChildProcess, type: FromChild['type']): Promise<FromChild> =>
    new Promise((resolve, reject) => {
      const onMsg = (m: FromChild) => {
        if (m.type !== type) return;
        child.off('message', onMsg);
        child.off('exit', onExit);
        resolve(m);
      };
      const onExit = (code: number | null) => reject(new Error(`a connection load process exited (${code}) waiting for "${type}"`));
      child.on('message', onMsg);
      child.once('exit', onExit);
    });
  try {
    for (let i = 0; i < procs; i++) children.push(spawnHelper('conn-load.ts', []));
    await Promise.all(children.map((c) => next(c, 'ready')));
    const share = Math.ceil(devs.length / procs);
    const results = (await Promise.all(
      children.map((c, i) => {
        const done = next(c, 'opened');
        const req: OpenRequest = {
          type: 'open',
          host,
          port: Number(port),
          devs: devs.slice(i * share, (i + 1) * share).map((d) => ({ id: d.id, secret: d.secret })),
          inFlight: Math.max(1, Math.ceil(inFlight / procs)),
          sources,
        };
        c.send(req);
        return done;
      }),
    )) as OpenResult[];
    const startedAt = Math.min(...results.map((r) => r.startedAt));
    const endedAt = Math.max(...results.map((r) => r.endedAt));
    const firstError = results.find((r) => r.firstError)?.firstError;
    return {
      count: results.reduce((a, r) => a + r.count, 0),
      failed: results.reduce((a, r) => a + r.failed, 0),
      ...(firstError ? { firstError } : {}),
      elapsedMs: endedAt - startedAt,
      lost: async () => {
        const all = await Promise.all(
          children.map((c) => {
            const p = next(c, 'status');
            c.send({ type: 'status' });
            return p;
          }),
        );
        return all.reduce((a, m) => a + (m as { lost: number }).lost, 0);
      },
      close: async () => {
        await Promise.all(
          children.map((c) => {
            const p = next(c, 'closed').catch(() => undefined);
            c.send({ type: 'close' });
            return p;
          }),
        );
        await Promise.all(children.map((c) => stopChild(c, 'SIGTERM', 5000)));
      },
    };
  } catch (err) {
    await Promise.all(children.map((c) => stopChild(c, 'SIGKILL', 1000)));
    throw err;
  }
}

// As a child process of the benchmark (spawnHelper): serve the IPC messages above.
if (process.send && process.argv[1]?.endsWith('conn-load.ts')) {
  const sockets = new Set<Socket>();
  let closing = false;
  process.on('message', (m: OpenRequest | { type: 'close' } | { type: 'status' }) => {
    if (m.type === 'open') {
      void openAll(m, sockets).then((r) => process.send!(r));
    } else if (m.type === 'status') {
      process.send!({ type: 'status', lost: lostIdle });
    } else if (m.type === 'close') {
      closing = true;
      for (const s of sockets) s.destroy();
      sockets.clear();
      process.send!({ type: 'closed' });
    }
  });
  onIdleLost = () => {
    if (!closing) lostIdle++;
  };
  process.on('disconnect', () => process.exit(0));
  process.send({ type: 'ready' });
}
