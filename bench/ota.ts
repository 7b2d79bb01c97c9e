/**
 * Firmware updates under load (BENCH_MODE=ota npm run bench): one Hearth (embedded) and many
 * simulated devices (src/simulator/ota-device.ts: MQTT + HTTP download, SHA-256 and Ed25519
 * checked, reboot, new version reported) through one campaign of a 1 MiB package in waves of
 * 10 % and 100 %. Measures the server's CPU per device updated, its peak RSS, the bytes it served
 * per second beside a plain Node HTTP server sending the same bytes over loopback (the ceiling),
 * the time to complete, and how long a campaign takes to abort once failures start.
 *
 *   BENCH_OTA_DEVICES       devices in the campaign (10000)
 *   BENCH_OTA_IMAGE_BYTES   package size (1048576)
 *   BENCH_OTA_ABORT_DEVICES devices of the abort run, every install failing (200)
 *   BENCH_QUICK=1           200 devices, a smoke run
 *   BENCH_WRITE_DOCS=0|1    write the OTA section of docs/benchmarks.md (default 1, 0 in quick mode)
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Api } from './clients.ts';
import { BENCH_ADMIN, ROOT, cpuMs, killAll, rssKb, startHearth } from './procs.ts';
import { fmt, mapLimit, sleep } from './stats.ts';
import { startOtaDevice, type OtaDevice } from '../src/simulator/ota-device.ts';

const QUICK = process.env.BENCH_QUICK === '1';
const int = (name: string, def: number, quick: number): number => {
  const v = process.env[name];
  return v ? Number(v) : QUICK ? quick : def;
};
const DEVICES = int('BENCH_OTA_DEVICES', 10_000, 200);
const IMAGE = int('BENCH_OTA_IMAGE_BYTES', 1024 * 1024, 1024 * 1024);
const ABORT_DEVICES = int('BENCH_OTA_ABORT_DEVICES', 200, 50);
const WRITE_DOCS = process.env.BENCH_WRITE_DOCS ? process.env.BENCH_WRITE_DOCS === '1' : !QUICK;
/** Devices connecting (and downloading, in the ceiling run) at once. */
const PARALLEL = 200;
const TICK_MS = 500;
const log = (m: string) => process.stdout.write(m + '\n');

interface OtaResults {
  devices: number;
  imageBytes: number;
  completeS: number;
  /** Seconds from the campaign's creation to the first wave ending (10 %). */
  firstWaveS: number;
  cpuMsPerDevice: number;
  peakRssMb: number;
  idleRssMb: number;
  servedMBps: number;
  ceilingMBps: number;
  abortDevices: number;
  /** From the first failure a device reported to the campaign reading `aborted`. */
  abortReactionMs: number;
  /** Jobs of the abort run that were sent (all others were cancelled unsent). */
  abortSent: number;
}

/** A plain Node HTTP server sending the same bytes to the same number of parallel clients: what loopback and Node's HTTP allow here. */
async function ceiling(image: Buffer, downloads: number): Promise<number> {
  const srv = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': image.length, 'content-type': 'application/octet-stream' });
    res.end(image);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  const t0 = performance.now();
  await mapLimit(Array.from({ length: downloads }), PARALLEL, async () => {
    const res = await fetch(`http://127.0.0.1:${port}/`);
    await res.arrayBuffer();
  });
  const s = (performance.now() - t0) / 1000;
  await new Promise((r) => srv.close(r));
  return (downloads * image.length) / s / 1e6;
}

async function fleet(
  api: Api,
  mqttUrl: string,
  product: string,
  n: number,
  version: string,
  failureRate = 0,
  onLog?: (m: string) => void,
): Promise<OtaDevice[]> {
  const creds = await api.provision(n, product, `${product} device`);
  return mapLimit(creds, PARALLEL, async (c) => {
    const d = startOtaDevice({ mqttUrl, id: c.id, secret: c.secret, product, version, failureRate, rebootMs: 20, reconnect: true, log: onLog });
    await d.ready;
    return d;
  });
}

export async function main(): Promise<number> {
  const tmp = mkdtempSync(join(tmpdir(), 'hearth-bench-ota-'));
  const hearth = await startHearth(join(tmp, 'hearth'), [], {
    HEARTH_OTA_TICK_MS: String(TICK_MS),
    HEARTH_CONNECT_RATE_PER_SECOND: '100000',
    HEARTH_CONNECT_BURST: '100000',
  });
  const api = new Api(hearth.httpUrl);
  const devices: OtaDevice[] = [];
  try {
    await api.login(BENCH_ADMIN.email, BENCH_ADMIN.password);
    log(`OTA benchmark: ${DEVICES} devices, a ${IMAGE} byte package, waves of 10 % and 100 %`);
    const product = 'bench-ota';
    await api.expect(201, 'POST', '/api/v1/products', {
      key: product,
      name: 'OTA bench',
      category: 'light',
      model: { properties: [], events: [], actions: [] },
    });
    devices.push(...(await fleet(api, hearth.mqttUrl, product, DEVICES, '1.0.0')));
    log(`  ${devices.length} devices connected and reporting 1.0.0`);
    const image = randomBytes(IMAGE);
    const up = await fetch(`${hearth.httpUrl}/api/v1/products/${product}/firmware?version=1.1.0`, {
      method: 'POST',
      body: image,
      headers: { 'content-type': 'application/octet-stream', authorization: `Bearer ${(api as unknown as { token: string }).token}` },
    });
    if (up.status !== 201) throw new Error(`upload: ${up.status} ${await up.text()}`);
    const fw = (await up.json()) as { id: string };
    for (;;) {
      const inv = await api.expect<{ versions: Array<{ version: string; devices: number }> }>(200, 'GET', `/api/v1/products/${product}/firmware-versions`);
      if (inv.versions.find((v) => v.version === '1.0.0')?.devices === DEVICES) break;
      await sleep(200);
    }
    const idleRss = rssKb(hearth.pid);
    let peakRss = idleRss;
    const sampler = setInterval(() => {
      try {
        peakRss = Math.max(peakRss, rssKb(hearth.pid));
      } catch {
        /* gone */
      }
    }, 100);
    const cpu0 = cpuMs(hearth.pid);
    const t0 = performance.now();
    const c = await api.expect<{ id: string }>(201, 'POST', '/api/v1/ota/campaigns', {
      name: 'bench',
      product,
      firmware: fw.id,
      waves: [{ percent: 10 }, { percent: 100 }],
    });
    let firstWaveS = 0;
    for (;;) {
      const s = await api.expect<{ state: string; wave: number; counts: Record<string, number> }>(200, 'GET', `/api/v1/ota/campaigns/${c.id}`);
      if (!firstWaveS && s.wave === 1) firstWaveS = (performance.now() - t0) / 1000;
      if (s.state !== 'running') {
        if (s.state !== 'completed' || s.counts.succeeded !== DEVICES) throw new Error(`campaign ended ${s.state}: ${JSON.stringify(s.counts)}`);
        break;
      }
      await sleep(100);
    }
    const completeS = (performance.now() - t0) / 1000;
    const cpu = cpuMs(hearth.pid) - cpu0;
    clearInterval(sampler);
    log(
      `  completed in ${completeS.toFixed(1)} s (first wave ${firstWaveS.toFixed(1)} s); server CPU ${fmt(cpu / DEVICES)} ms per device; peak RSS ${fmt(peakRss / 1024)} MB (idle ${fmt(idleRss / 1024)} MB)`,
    );
    const servedMBps = (DEVICES * IMAGE) / completeS / 1e6;
    const ceilingMBps = await ceiling(image, Math.min(DEVICES, 2000));
    log(`  served ${fmt(servedMBps)} MB/s over the whole campaign; a plain Node HTTP server here: ${fmt(ceilingMBps)} MB/s`);

    // Abort: a bad build on devices where every install fails; from the first failure to `aborted`.
    let firstFailure = 0;
    await api.expect(201, 'POST', '/api/v1/products', {
      key: 'bench-ota-abort',
      name: 'OTA abort bench',
      category: 'light',
      model: { properties: [], events: [], actions: [] },
    });
    const failing = await fleet(api, hearth.mqttUrl, 'bench-ota-abort', ABORT_DEVICES, '1.0.0', 1, (m) => {
      if (!firstFailure && m.includes('failed')) firstFailure = performance.now();
    });
    devices.push(...failing);
    const up2 = await fetch(`${hearth.httpUrl}/api/v1/products/bench-ota-abort/firmware?version=2.0.0`, {
      method: 'POST',
      body: image,
      headers: { 'content-type': 'application/octet-stream', authorization: `Bearer ${(api as unknown as { token: string }).token}` },
    });
    const fw2 = (await up2.json()) as { id: string };
    const c2 = await api.expect<{ id: string }>(201, 'POST', '/api/v1/ota/campaigns', {
      name: 'bad build',
      product: 'bench-ota-abort',
      firmware: fw2.id,
      waves: [{ percent: 20 }, { percent: 100 }],
      abort: { maxFailureRate: 0.1, minDevices: 5 },
    });
    let abortedAt = 0;
    for (;;) {
      const s = await api.expect<{ state: string }>(200, 'GET', `/api/v1/ota/campaigns/${c2.id}`);
      if (s.state === 'aborted') {
        abortedAt = performance.now();
        break;
      }
      if (s.state !== 'running') throw new Error(`abort run ended ${s.state}`);
      await sleep(20);
    }
    const jobs = await api.expect<{ total: number }>(200, 'GET', `/api/v1/ota/campaigns/${c2.id}/devices?state=cancelled&limit=1`);
    const abortSent = ABORT_DEVICES - jobs.total;
    log(`  abort: ${fmt(abortedAt - firstFailure)} ms from the first failure to aborted (tick ${TICK_MS} ms); ${abortSent} of ${ABORT_DEVICES} jobs sent`);

    const r: OtaResults = {
      devices: DEVICES,
      imageBytes: IMAGE,
      completeS,
      firstWaveS,
      cpuMsPerDevice: cpu / DEVICES,
      peakRssMb: peakRss / 1024,
      idleRssMb: idleRss / 1024,
      servedMBps,
      ceilingMBps,
      abortDevices: ABORT_DEVICES,
      abortReactionMs: abortedAt - firstFailure,
      abortSent,
    };
    if (WRITE_DOCS) {
      writeSection(r);
      log('wrote the OTA section of docs/benchmarks.md');
    }
    return 0;
  } catch (err) {
    log(`OTA benchmark failed: ${(err as Error).stack ?? err}\n${hearth.output()}`);
    return 1;
  } finally {
    await mapLimit(devices, PARALLEL, (d) => d.stop());
    api.close();
    await hearth.stop();
    await killAll(5000).catch(() => undefined);
    rmSync(tmp, { recursive: true, force: true });
  }
}

const BEGIN = '<!-- ota:begin -->';
const END = '<!-- ota:end -->';

function writeSection(r: OtaResults): void {
  const file = join(ROOT, 'docs', 'benchmarks.md');
  const block = `${BEGIN}
## Firmware updates (OTA)

\`BENCH_MODE=ota npm run bench\` (bench/ota.ts), ${new Date().toISOString().slice(0, 10)}: one embedded Hearth and
${fmt(r.devices)} simulated devices in the same machine (src/simulator/ota-device.ts: MQTT, an HTTP download of the
package, SHA-256 and Ed25519 checked, a reboot, the new version reported) through one campaign of a
${fmt(r.imageBytes / 1024 / 1024)} MiB package in waves of 10 % and 100 %, the campaign tick at ${TICK_MS} ms.

| Measure | Value |
|---|---|
| devices updated | ${fmt(r.devices)} |
| time to complete (first wave done) | ${r.completeS.toFixed(1)} s (${r.firstWaveS.toFixed(1)} s) |
| server CPU per device updated | ${fmt(r.cpuMsPerDevice)} ms |
| server RSS, idle with the devices connected → peak | ${fmt(r.idleRssMb)} → ${fmt(r.peakRssMb)} MB |
| bytes served per second over the whole campaign | ${fmt(r.servedMBps)} MB/s |
| a plain Node HTTP server sending the same bytes here (the loopback ceiling) | ${fmt(r.ceilingMBps)} MB/s |
| abort reaction: first failure → campaign \`aborted\` (${fmt(r.abortDevices)} devices, every install failing, gate 10 % over 5) | ${fmt(r.abortReactionMs)} ms; ${r.abortSent} of ${r.abortDevices} jobs sent (the first wave's) |

The campaign's time includes the devices' own work (downloads, hashes, signatures and reboots run
in the benchmark's process, on the same cores as the server), so the served rate is far below the
ceiling by construction; the server's part is its CPU per device. Images are served from the data
directory as file streams, never read whole into memory; the RSS growth is the devices' jobs,
downloads in flight (at most \`HEARTH_OTA_MAX_CONCURRENT_DOWNLOADS\`, 200) and their MQTT traffic.
${END}
`;
  const text = readFileSync(file, 'utf8');
  const i = text.indexOf(BEGIN);
  const j = text.indexOf(END);
  writeFileSync(file, i >= 0 && j > i ? text.slice(0, i) + block.trimEnd() + text.slice(j + END.length) : `${text.trimEnd()}\n\n${block}`);
}
