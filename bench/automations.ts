/**
 * The automation engine under load: trigger-to-action latency (a device's report in over MQTT →
 * the command out to another device over MQTT) and rule-evaluation throughput, with 10 enabled
 * automations in one home and then with 10,000 across 1,000 homes. The engine indexes triggers
 * by device, so neither figure should move with the automations of other homes.
 */
import type { MqttClient } from 'mqtt';
import { type Api, connectDevice, subscribe, publish1, closeClients, type DeviceCred } from './clients.ts';
import { runIngest, type IngestResult } from './scenarios.ts';
import { waitShadows } from './checks.ts';
import { mapLimit, now, percentiles, withTimeout, type Percentiles } from './stats.ts';

export interface AutomationBenchParams {
  homes: number;
  perHome: number;
  /** Trigger → command round trips measured at each scale (after `warmup`). */
  samples: number;
  warmup: number;
  /** Sensors (in as many homes) reporting for the evaluation throughput, and reports each. */
  sensors: number;
  reportsPerSensor: number;
  window: number;
  batch: number;
}

export interface AutomationBenchResult {
  homes: number;
  automations: number;
  /** Latency with only home 0's automations. */
  latencyOneHome: Percentiles;
  /** Latency with every home's automations. */
  latencyAll: Percentiles;
  /** Sensor reports through the ingest before any automation existed. */
  ingestNone: IngestResult;
  /** The same load with every automation enabled (each report checks its home's illuminance triggers). */
  ingestAll: IngestResult;
  /** Triggers checked per report in `ingestAll`. */
  triggersPerReport: number;
  setupS: number;
}

/**
 * Home h has a motion sensor S_h and a light L_h, and `perHome` automations: S_h's occupancy
 * turning true toggles L_h, turning false blinks it, and the rest watch S_h's illuminance rise
 * above thresholds it never reaches (checked on every illuminance report, never firing).
 */
function automationsOf(sensor: string, light: string, perHome: number): unknown[] {
  const list: unknown[] = [
    {
      name: 'motion on',
      triggers: [{ type: 'property', device: sensor, property: 'occupancy', to: true }],
      actions: [{ type: 'command', device: light, action: 'toggle' }],
      mode: 'parallel',
    },
    {
      name: 'motion off',
      triggers: [{ type: 'property', device: sensor, property: 'occupancy', to: false }],
      actions: [{ type: 'command', device: light, action: 'blink', params: { times: 1 } }],
      mode: 'parallel',
    },
  ];
  for (let i = list.length; i < perHome; i++) {
    list.push({
      name: `bright ${i}`,
      triggers: [{ type: 'property', device: sensor, property: 'illuminance', above: 90_000 + i }],
      actions: [{ type: 'command', device: light, action: 'toggle' }],
    });
  }
  return list;
}

/** Publishes occupancy reports on S and times each until L receives the command it causes. */
async function measureLatency(
  sensor: MqttClient,
  sensorId: string,
  commands: { next(): Promise<number> },
  samples: number,
  warmup: number,
): Promise<Percentiles> {
  const out: number[] = [];
  for (let i = 0; i < warmup + samples; i++) {
    const t0 = now();
    const arrived = commands.next();
    await publish1(sensor, `devices/${sensorId}/properties`, JSON.stringify({ occupancy: i % 2 === 0 }));
    const t1 = await withTimeout(arrived, 10_000, `the command caused by report ${i}`);
    if (i >= warmup) out.push(t1 - t0);
  }
  return percentiles(out);
}

/** A light that answers its commands and lets the benchmark wait for the next one to arrive. */
async function commandWatcher(url: string, light: DeviceCred): Promise<{ client: MqttClient; next(): Promise<number> }> {
  const client = await connectDevice(url, light);
  let waiting: ((t: number) => void) | undefined;
  client.on('message', (topic, payload) => {
    if (topic !== `devices/${light.id}/commands`) return;
    const t = now();
    const cmd = JSON.parse(payload.toString('utf8')) as { id: string };
    client.publish(`devices/${light.id}/commands/result`, JSON.stringify({ id: cmd.id, ok: true }), { qos: 1 });
    const w = waiting;
    waiting = undefined;
    w?.(t);
  });
  await subscribe(client, `devices/${light.id}/commands`, 1);
  return { client, next: () => new Promise<number>((resolve) => (waiting = resolve)) };
}

export async function runAutomationBench(opts: {
  api: Api;
  mqttUrl: string;
  serverPid: number;
  params: AutomationBenchParams;
  log: (line: string) => void;
}): Promise<AutomationBenchResult> {
  const { api, params: P, log } = opts;
  const t0 = Date.now();
  const sensors = await api.provision(P.homes, 'motion-sensor', 'bench motion');
  const lights = await api.provision(P.homes, 'light', 'bench hall light');
  const homes = await mapLimit(
    Array.from({ length: P.homes }, (_, h) => h),
    16,
    async (h) => {
      const home = await api.expect<{ id: string }>(201, 'POST', '/api/v1/homes', {
        name: `bench home ${h}`,
        timezone: 'Europe/Berlin',
        latitude: 52.52,
        longitude: 13.405,
      });
      for (const d of [sensors[h], lights[h]]) await api.expect(201, 'POST', `/api/v1/homes/${home.id}/devices`, { pairingCode: d.pairingCode });
      return home.id;
    },
  );
  const create = (h: number) =>
    mapLimit(automationsOf(sensors[h].id, lights[h].id, P.perHome), 4, (a) => api.expect(201, 'POST', `/api/v1/homes/${homes[h]}/automations`, a));
  log(`  ${P.homes} homes with a motion sensor and a light each (${((Date.now() - t0) / 1000).toFixed(0)} s)`);

  // Evaluation throughput, first without automations: sensors of homes 1..n report illuminance.
  const reporters = sensors.slice(1, 1 + P.sensors);
  const perDevice = reporters.map(() => P.reportsPerSensor);
  const ingest = (round: number) =>
    runIngest({
      url: opts.mqttUrl,
      devs: reporters,
      serverPid: opts.serverPid,
      params: { perDevice, window: P.window, batch: P.batch },
      // Values never repeat across rounds, so every report changes the shadow (its version counts them).
      payload: (i) => `{"illuminance":${(round * 50_000 + i) % 80_000}}`,
      complete: () =>
        waitShadows(
          api,
          reporters,
          perDevice.map((n) => n * round),
          () => undefined,
          120_000,
        ),
    });
  const ingestNone = await ingest(1);

  const sensor = await connectDevice(opts.mqttUrl, sensors[0]);
  const light = await commandWatcher(opts.mqttUrl, lights[0]);
  try {
    await create(0);
    const latencyOneHome = await measureLatency(sensor, sensors[0].id, light, P.samples, P.warmup);
    log(`  ${P.perHome} automations in one home: trigger → command p50 ${latencyOneHome.p50.toFixed(2)} ms, p99 ${latencyOneHome.p99.toFixed(2)} ms`);
    const t1 = Date.now();
    await mapLimit(
      Array.from({ length: P.homes - 1 }, (_, i) => i + 1),
      8,
      (h) => create(h),
    );
    const setupS = (Date.now() - t0) / 1000;
    log(`  ${P.homes * P.perHome} automations in ${P.homes} homes (created in ${((Date.now() - t1) / 1000).toFixed(0)} s)`);
    const latencyAll = await measureLatency(sensor, sensors[0].id, light, P.samples, P.warmup);
    log(`  ${P.homes * P.perHome} automations: trigger → command p50 ${latencyAll.p50.toFixed(2)} ms, p99 ${latencyAll.p99.toFixed(2)} ms`);
    const ingestAll = await ingest(2);
    log(`  sensor reports without automations ${ingestNone.completeRate.toFixed(0)}/s, with ${P.homes * P.perHome}: ${ingestAll.completeRate.toFixed(0)}/s`);
    return { homes: P.homes, automations: P.homes * P.perHome, latencyOneHome, latencyAll, ingestNone, ingestAll, triggersPerReport: P.perHome - 2, setupS };
  } finally {
    await closeClients([sensor, light.client]);
  }
}
