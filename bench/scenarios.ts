/**
 * The three measurements, each written once and run against Hearth and against the
 * reference broker. What differs between the two is passed in (how completion is observed,
 * how a command is sent).
 */
import type { MqttClient } from 'mqtt';
import { closeClients, connectDevice, subscribe, type DeviceCred } from './clients.ts';
import { openLightFleet, type LightFleet } from './conn-load.ts';
import { cpuMs, rssKb } from './procs.ts';
import { now, percentiles, sleep, type Percentiles } from './stats.ts';

/**
 * Connects `devs` in batches of `batch` concurrent connects; `after` runs per client inside the batch.
 * `url` may depend on the device's index, so that a cluster's devices spread over its nodes.
 */
export async function connectAll(
  url: string | ((index: number) => string),
  devs: DeviceCred[],
  batch: number,
  after?: (c: MqttClient, d: DeviceCred) => Promise<void>,
): Promise<MqttClient[]> {
  const out: MqttClient[] = [];
  for (let i = 0; i < devs.length; i += batch) {
    const part = await Promise.all(
      devs.slice(i, i + batch).map(async (d, j) => {
        const c = await connectDevice(typeof url === 'string' ? url : url(i + j), d);
        if (after) await after(c, d);
        return c;
      }),
    );
    out.push(...part);
  }
  return out;
}

/** Samples a process's RSS every `everyMs` until stopped; returns the peak in KB. */
function rssSampler(pid: number, everyMs = 100): { stop(): number } {
  let peak = rssKb(pid);
  const t = setInterval(() => {
    try {
      peak = Math.max(peak, rssKb(pid));
    } catch {
      /* process gone; the scenario will fail elsewhere */
    }
  }, everyMs);
  return {
    stop() {
      clearInterval(t);
      return peak;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// 1. Ingest

export interface IngestParams {
  /** Messages per device (index = device). */
  perDevice: number[];
  /** QoS 1 publishes each client keeps in flight. */
  window: number;
  batch: number;
}

export interface IngestResult {
  messages: number;
  /** From the first publish until every PUBACK arrived. */
  ackedMs: number;
  /** From the first publish until every message was visible at the consumer (shadow / subscriber). */
  completeMs: number;
  ackedRate: number;
  completeRate: number;
  peakRssKb: number;
  /** CPU time the server side (`cpuPids`) used from the first publish to completion, per 1000 messages. */
  cpuMsPer1k: number;
}

/** A light's property report; alternates `on` and walks `brightness` so that every report changes the state. */
export const report = (i: number): string => `{"on":${i % 2 === 0},"brightness":${i % 101}}`;

/** Publishes `count` QoS 1 reports, keeping up to `window` unacknowledged. Resolves when all are acknowledged. */
function publisher(client: MqttClient, topic: string, count: number, window: number, payload: (i: number) => string = report): Promise<void> {
  return new Promise((resolve, reject) => {
    if (count === 0) return resolve();
    let sent = 0;
    let acked = 0;
    const onAck = (err?: Error) => {
      if (err) return reject(err);
      if (++acked === count) resolve();
      else pump();
    };
    const pump = () => {
      while (sent < count && sent - acked < window) client.publish(topic, payload(sent++), { qos: 1 }, onAck);
    };
    pump();
  });
}

/**
 * Runs the ingest load: every device client publishes its share as fast as its window
 * allows; `complete` resolves when the consumer side has seen everything.
 */
export async function runIngest(opts: {
  /** The broker, or each device's broker by index. */
  url: string | ((index: number) => string);
  devs: DeviceCred[];
  params: IngestParams;
  serverPid: number;
  /** Processes whose CPU time counts as the server side's (default: the server). */
  cpuPids?: number[];
  /** Optional per-client setup before the clock starts (e.g. subscribe to the error topic). */
  prepare?: (c: MqttClient, d: DeviceCred) => Promise<void>;
  /** Called right before the clock starts. */
  arm?: () => void;
  /** The i-th report of a device (default: a light's `report`). */
  payload?: (i: number) => string;
  /** Resolves when every message is visible at the consumer; called once all are acknowledged. */
  complete: () => Promise<void>;
}): Promise<IngestResult> {
  const { url, devs, params } = opts;
  const clients = await connectAll(url, devs, params.batch, opts.prepare);
  try {
    await sleep(300);
    const total = params.perDevice.reduce((a, b) => a + b, 0);
    const sampler = rssSampler(opts.serverPid);
    const cpuPids = opts.cpuPids ?? [opts.serverPid];
    const cpu = () => cpuPids.reduce((a, pid) => a + cpuMs(pid), 0);
    opts.arm?.();
    const cpu0 = cpu();
    const t0 = now();
    await Promise.all(clients.map((c, i) => publisher(c, `devices/${devs[i].id}/properties`, params.perDevice[i], params.window, opts.payload)));
    const tAck = now();
    await opts.complete();
    const tDone = now();
    const cpuUsed = cpu() - cpu0;
    const peakRssKb = sampler.stop();
    return {
      messages: total,
      ackedMs: tAck - t0,
      completeMs: tDone - t0,
      ackedRate: total / ((tAck - t0) / 1000),
      completeRate: total / ((tDone - t0) / 1000),
      peakRssKb,
      cpuMsPer1k: (cpuUsed / total) * 1000,
    };
  } finally {
    await closeClients(clients);
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Command round trip

export interface CommandResult {
  sequential: Percentiles;
  concurrent: Percentiles;
  concurrency: number;
  /** Commands per second with `concurrency` in flight. */
  concurrentRate: number;
  /** Server CPU time per command (both modes, warm-up excluded). */
  cpuMsPerCommand: number;
}

/** Subscribes a simulated device to its commands and answers each with `{"id", "ok": true}` (QoS 1). */
export async function answerCommands(c: MqttClient, d: DeviceCred): Promise<void> {
  c.on('message', (topic, payload) => {
    if (topic !== `devices/${d.id}/commands`) return;
    const cmd = JSON.parse(payload.toString('utf8')) as { id: string };
    c.publish(`devices/${d.id}/commands/result`, JSON.stringify({ id: cmd.id, ok: true }), { qos: 1 });
  });
  await subscribe(c, `devices/${d.id}/commands`, 1);
}

/**
 * Sends `count` commands one after the other to the first device, then `count` commands with
 * `concurrency` in flight (one per device); `send` resolves when the device's answer is back.
 */
export async function runCommands(opts: {
  devs: DeviceCred[];
  count: number;
  concurrency: number;
  warmup: number;
  serverPid: number;
  send: (deviceId: string) => Promise<void>;
}): Promise<CommandResult> {
  const { devs, count, send } = opts;
  const concurrency = Math.min(opts.concurrency, devs.length);
  for (let i = 0; i < opts.warmup; i++) await send(devs[i % devs.length].id);
  const cpu0 = cpuMs(opts.serverPid);

  const seq: number[] = [];
  for (let i = 0; i < count; i++) {
    const t = now();
    await send(devs[0].id);
    seq.push(now() - t);
  }

  const conc: number[] = [];
  let next = 0;
  const t0 = now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      while (next < count) {
        next++;
        const t = now();
        await send(devs[w].id);
        conc.push(now() - t);
      }
    }),
  );
  const elapsed = now() - t0;
  const cpuUsed = cpuMs(opts.serverPid) - cpu0;
  return {
    sequential: percentiles(seq),
    concurrent: percentiles(conc),
    concurrency,
    concurrentRate: count / (elapsed / 1000),
    cpuMsPerCommand: cpuUsed / (2 * count),
  };
}

/**
 * The reference "requester": one MQTT client that publishes a command to `devices/X/commands`
 * and waits for the answer on `devices/X/commands/result` (QoS 1 both ways).
 */
export async function mqttRequester(url: string): Promise<{ send: (deviceId: string) => Promise<void>; close: () => Promise<void> }> {
  const client = await connectDevice(url, { id: `bench-requester-${process.pid}`, secret: '' });
  const pending = new Map<string, () => void>();
  client.on('message', (_topic, payload) => {
    const r = JSON.parse(payload.toString('utf8')) as { id: string };
    const done = pending.get(r.id);
    if (done) {
      pending.delete(r.id);
      done();
    }
  });
  await subscribe(client, 'devices/+/commands/result', 1);
  let seq = 0;
  return {
    send: (deviceId) =>
      new Promise<void>((resolve, reject) => {
        const id = `c_${(++seq).toString(36)}`;
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`reference command ${id} to ${deviceId} was not answered within 5000 ms`));
        }, 5000);
        pending.set(id, () => {
          clearTimeout(timer);
          resolve();
        });
        client.publish(`devices/${deviceId}/commands`, JSON.stringify({ id, action: 'toggle', params: {} }), { qos: 1 });
      }),
    close: () => closeClients([client]),
  };
}

// ---------------------------------------------------------------------------------------------
// 3. Connections

export interface ConnectionResult {
  connections: number;
  connectMs: number;
  /** Connections per second (connect + subscribe, `batch` at a time). */
  rate: number;
  rssBeforeKb: number;
  rssAfterKb: number;
  perConnectionKb: number;
  /** Idle connections the server closed before the memory was read (should be 0). */
  lost: number;
  /** The server's CPU time from the first connect to the last SUBACK, per connection (ms). */
  cpuMsPerConnection: number;
  /** With `collectGarbage`: both readings again right after a full garbage collection. */
  rssBeforeGcKb?: number;
  rssAfterGcKb?: number;
  perConnectionGcKb?: number;
}

/**
 * Opens `devs.length` idle device connections (each subscribed to its commands topic, as a
 * real device is) with light clients (conn-load.ts), `batch` connects in flight at a time, and
 * reads the server's RSS before and, once it settled, after. A connection refused or lost fails it.
 */
export async function runConnections(opts: {
  url: string;
  devs: DeviceCred[];
  batch: number;
  serverPid: number;
  warmup: DeviceCred[];
  /** A full garbage collection in the server (a garbage-collected server: Hearth). */
  collectGarbage?: () => Promise<void>;
}): Promise<ConnectionResult> {
  const { url, devs, batch, serverPid, collectGarbage } = opts;
  /** RSS right after a full garbage collection (and a moment for the freed pages to go back). */
  const rssAfterGc = async () => {
    if (!collectGarbage) return undefined;
    await collectGarbage();
    await sleep(500);
    return rssKb(serverPid);
  };
  const check = (f: LightFleet, what: string) => {
    if (f.failed > 0) throw new Error(`${f.failed} of ${f.failed + f.count} ${what} connections failed, e.g. ${f.firstError}`);
  };
  // Warm the server's connection path first, so that lazily loaded code is not counted per connection.
  const warm = await openLightFleet(url, opts.warmup, batch);
  await warm.close();
  check(warm, 'warm-up');
  await sleep(1000);
  const rssBeforeKb = rssKb(serverPid);
  const rssBeforeGcKb = await rssAfterGc();
  const cpu0 = cpuMs(serverPid);
  const fleet = await openLightFleet(url, devs, batch);
  const cpuUsed = cpuMs(serverPid) - cpu0;
  try {
    check(fleet, 'idle');
    // Settled: at least 2 s after the last connect, and two readings a second apart within 1%.
    await sleep(2000);
    let rssAfterKb = rssKb(serverPid);
    for (let i = 0; i < 10; i++) {
      await sleep(1000);
      const again = rssKb(serverPid);
      const stable = Math.abs(again - rssAfterKb) <= rssAfterKb * 0.01;
      rssAfterKb = again;
      if (stable) break;
    }
    const rssAfterGcKb = await rssAfterGc();
    const lost = await fleet.lost();
    if (lost > 0) throw new Error(`the server closed ${lost} of ${fleet.count} idle connections`);
    return {
      connections: fleet.count,
      connectMs: fleet.elapsedMs,
      rate: fleet.count / (fleet.elapsedMs / 1000),
      rssBeforeKb,
      rssAfterKb,
      perConnectionKb: (rssAfterKb - rssBeforeKb) / fleet.count,
      lost,
      cpuMsPerConnection: cpuUsed / fleet.count,
      ...(rssBeforeGcKb !== undefined && rssAfterGcKb !== undefined
        ? { rssBeforeGcKb, rssAfterGcKb, perConnectionGcKb: (rssAfterGcKb - rssBeforeGcKb) / fleet.count }
        : {}),
    };
  } finally {
    await fleet.close();
  }
}
