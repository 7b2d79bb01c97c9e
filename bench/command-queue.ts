/**
 * Queued commands under load (issue 17): `devices` offline devices get `perDevice` queued
 * commands each over the API, then all of them connect at once, subscribe, and answer every
 * command as it arrives. Measures the time until every command is answered, the server's CPU per
 * delivered command and its peak RSS while the queues drain.
 */
import type { MqttClient } from 'mqtt';
import { type Api, connectDevice, subscribe, type DeviceCred } from './clients.ts';
import { BENCH_ADMIN, cpuMs, rssKb } from './procs.ts';
import { mapLimit, sleep, withTimeout } from './stats.ts';

export interface QueueBenchParams {
  devices: number;
  perDevice: number;
  /** Connects started at once. */
  batch: number;
}

export interface QueueBenchResult {
  devices: number;
  commands: number;
  /** Queueing over the API (202s per second). */
  queueRate: number;
  /** From the first connect to the last command answered (PUBACKed by the server) and recorded in the ledger. */
  drainS: number;
  cpuMsPerCommand: number;
  peakRssMb: number;
}

/** Connects, retrying while the server's admission limit answers "server unavailable". */
async function connectRetrying(url: string, d: DeviceCred): Promise<MqttClient> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await connectDevice(url, d);
    } catch (err) {
      if (attempt >= 50 || !/unavailable|Server unavailable|closed before CONNACK/i.test((err as Error).message)) throw err;
      await sleep(100 + Math.random() * 200);
    }
  }
}

export async function runQueueBench(opts: {
  api: Api;
  mqttUrl: string;
  serverPid: number;
  params: QueueBenchParams;
  log: (m: string) => void;
}): Promise<QueueBenchResult> {
  const { api, params: P, log } = opts;
  const devs = await api.provision(P.devices, 'cloud-printer', 'bench printer');
  const total = P.devices * P.perDevice;
  const t0 = Date.now();
  const jobs = Array.from({ length: total }, (_, i) => i);
  const lastIds = new Array<string>(P.devices);
  // A long run outlives the access token: sign in again once (shared by the workers) and retry.
  let relogin: Promise<void> | undefined;
  await mapLimit(jobs, 64, async (i) => {
    const d = devs[i % P.devices];
    const post = () =>
      api.call<{ id: string; state: string }>('POST', `/api/v1/devices/${d.id}/commands`, {
        action: 'print',
        params: { content: `job ${i}` },
        ttlMs: 3_600_000,
      });
    let r = await post();
    if (r.status === 401) {
      relogin ??= api.login(BENCH_ADMIN.email, BENCH_ADMIN.password).finally(() => setTimeout(() => (relogin = undefined), 1000));
      await relogin;
      r = await post();
    }
    // The operator's rate limit (60,000 a minute by default) can be reached by 100,000 commands:
    // wait as told, like any client.
    for (let tries = 0; r.status === 429 && tries < 120; tries++) {
      await sleep(1000 * Number((r.body as { retryAfter?: number })?.retryAfter ?? 1));
      r = await post();
    }
    if (r.status !== 202) throw new Error(`queueing answered ${r.status}: ${JSON.stringify(r.body).slice(0, 300)}`);
    if (Math.floor(i / P.devices) === P.perDevice - 1) lastIds[i % P.devices] = r.body.id;
  });
  const queueRate = total / ((Date.now() - t0) / 1000);
  log(`  queued ${total} commands for ${P.devices} offline devices (${Math.round(queueRate)} per s)`);

  let answered = 0;
  let resolveAll!: () => void;
  const all = new Promise<void>((r) => (resolveAll = r));
  let peak = rssKb(opts.serverPid);
  const sampler = setInterval(() => {
    try {
      peak = Math.max(peak, rssKb(opts.serverPid));
    } catch {
      /* gone */
    }
  }, 100);
  const cpu0 = cpuMs(opts.serverPid);
  const start = Date.now();
  const clients: MqttClient[] = [];
  try {
    for (let i = 0; i < devs.length; i += P.batch) {
      clients.push(
        ...(await Promise.all(
          devs.slice(i, i + P.batch).map(async (d) => {
            const c = await connectRetrying(opts.mqttUrl, d);
            const seen = new Set<string>();
            c.on('message', (topic, buf) => {
              if (topic !== `devices/${d.id}/commands`) return;
              const cmd = JSON.parse(buf.toString()) as { id: string };
              // A device de-duplicates by id (a redelivery is answered again, counted once).
              const first = !seen.has(cmd.id);
              seen.add(cmd.id);
              c.publish(`devices/${d.id}/commands/result`, JSON.stringify({ id: cmd.id, ok: true, result: { jobId: cmd.id } }), { qos: 1 }, (err) => {
                if (err || !first) return;
                if (++answered === total) resolveAll();
              });
            });
            await subscribe(c, `devices/${d.id}/commands`);
            return c;
          }),
        )),
      );
    }
    await withTimeout(all, 600_000, `all ${total} queued commands answered`);
    await api.login(BENCH_ADMIN.email, BENCH_ADMIN.password);
    // The answers are acknowledged once stored; the ledger follows a moment later.
    const sample = lastIds.filter((_, i) => i % Math.max(1, Math.floor(P.devices / 100)) === 0);
    await mapLimit(sample, 16, async (id, i) => {
      const d = devs[lastIds.indexOf(id)] ?? devs[i];
      for (;;) {
        const r = await api.call<{ status: string }>('GET', `/api/v1/devices/${d.id}/commands/${id}`);
        if (r.body?.status === 'answered') return;
        await sleep(50);
      }
    });
  } finally {
    clearInterval(sampler);
  }
  const drainS = (Date.now() - start) / 1000;
  const cpuUsed = cpuMs(opts.serverPid) - cpu0;
  for (const c of clients) c.end(true);
  return { devices: P.devices, commands: total, queueRate, drainS, cpuMsPerCommand: cpuUsed / total, peakRssMb: peak / 1024 };
}
