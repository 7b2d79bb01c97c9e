/**
 * `npm run bench`: Hearth against a plain reference MQTT broker (Debian's mosquitto) on this
 * machine, with simulated devices over real MQTT. Prints a table of each Hearth figure beside
 * the reference and their ratio, and writes it to docs/benchmarks.md.
 *
 * Sizes (environment):
 *   BENCH_MODE=cluster     run the cluster benchmark instead (bench/cluster.ts, sizes described there)
 *   BENCH_MODE=ota         run the firmware update benchmark instead (bench/ota.ts, sizes described there)
 *   BENCH_MODE=fleet       run the fleet search benchmark instead (bench/fleet-search.ts, sizes described there)
 *   BENCH_QUICK=1          tiny sizes, a smoke run in well under 30 s (does not write the docs)
 *   BENCH_DEVICES          ingest devices (100)
 *   BENCH_MESSAGES         ingest messages in total (200000)
 *   BENCH_WINDOW           QoS 1 reports each ingest client keeps in flight (20)
 *   BENCH_COMMANDS         commands per mode (2000)
 *   BENCH_CONCURRENCY      commands in flight in the concurrent mode (10)
 *   BENCH_CONNECTIONS      idle connections (100000; capped by the open-file limit the benchmark
 *                          can set: it raises its own with prlimit, which needs CAP_SYS_RESOURCE
 *                          above the hard limit, and the servers and load processes inherit it)
 *   BENCH_BATCH            connects in flight at a time (100)
 *   BENCH_PHASES           comma-separated phases to run (default all): ingest-commands, connections,
 *                          pipeline, automations, queue; e.g. BENCH_PHASES=connections provisions the
 *                          devices and measures the connections only
 *   BENCH_AUTOMATION_HOMES    homes of the automation phase, 10 automations each (1000)
 *   BENCH_AUTOMATION_SAMPLES  trigger → command latency samples per measurement (300)
 *   BENCH_AUTOMATION_REPORTS  illuminance reports per sensor in the throughput run (1000)
 *   BENCH_QUEUE_DEVICES    offline devices of the queued-commands phase (10000)
 *   BENCH_QUEUE_COMMANDS   queued commands per device (10)
 *   BENCH_WRITE_DOCS=0|1   write docs/benchmarks.md (default: 1, 0 in quick mode)
 *   BENCH_HEARTH_PROF=1    run Hearth with --cpu-prof (profiles in $TMPDIR/hearth-bench-profiles/)
 *   BENCH_TIMEOUT_S        abort the whole run after this many seconds (900)
 *   BENCH_MOSQUITTO        path of the reference broker (default: the Debian package's)
 *   BENCH_KEEP=1           keep the temporary directory (Hearth's data, mosquitto.conf)
 */
import { execFileSync } from 'node:child_process';
import { raiseOpenFileLimit } from './conn-load.ts';
import { connectV8, inspectArgs, type V8Handle } from './inspector.ts';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { MqttClient } from 'mqtt';
import { Api, closeClients, openClientCount, subscribe, type DeviceCred } from './clients.ts';
import {
  BENCH_ADMIN,
  freePort,
  MOSQUITTO_BIN,
  PROFILE_DIR,
  cpuProfileArgs,
  ROOT,
  killAll,
  mosquittoVersion,
  spawnHelper,
  startHearth,
  startMosquitto,
  type HearthServer,
  type Server,
} from './procs.ts';
import {
  answerCommands,
  connectAll,
  mqttRequester,
  runCommands,
  runConnections,
  runIngest,
  type CommandResult,
  type ConnectionResult,
  type IngestResult,
} from './scenarios.ts';
import { fmt, sleep, withTimeout, type Percentiles } from './stats.ts';
import { runAutomationBench, type AutomationBenchParams, type AutomationBenchResult } from './automations.ts';
import { waitOnline, waitShadows } from './checks.ts';
import { runQueueBench, type QueueBenchParams, type QueueBenchResult } from './command-queue.ts';

// BENCH_MODE=cluster: PostgreSQL + NATS + Hearth nodes instead of one Hearth beside mosquitto.
if (process.env.BENCH_MODE === 'cluster') process.exit(await (await import('./cluster.ts')).main());
// BENCH_MODE=ota: one firmware campaign through many simulated devices (bench/ota.ts).
if (process.env.BENCH_MODE === 'ota') process.exit(await (await import('./ota.ts')).main());
// BENCH_MODE=fleet: fleet search over a million devices on SQLite and PostgreSQL (bench/fleet-search.ts).
if (process.env.BENCH_MODE === 'fleet') process.exit(await (await import('./fleet-search.ts')).main());

// ---------------------------------------------------------------------------------------------
// Parameters

const QUICK = process.env.BENCH_QUICK === '1';
const int = (name: string, full: number, quick: number): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return QUICK ? quick : full;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return n;
};

const requestedConnections = int('BENCH_CONNECTIONS', 100_000, 200);
// Every server holds one descriptor per connection: raise the open-file limit the children
// inherit (prlimit; needs CAP_SYS_RESOURCE above the hard limit), else measure what it allows.
const fdRaise = raiseOpenFileLimit(requestedConnections + 2000);
const fdLimit = fdRaise.limit;
/** Descriptors a server needs besides its device connections (store, HTTP, logs, …). */
const FD_RESERVE = 400;
const P = {
  devices: int('BENCH_DEVICES', 100, 10),
  messages: int('BENCH_MESSAGES', 200_000, 2000),
  window: int('BENCH_WINDOW', 20, 20),
  commands: int('BENCH_COMMANDS', 2000, 200),
  concurrency: int('BENCH_CONCURRENCY', 10, 10),
  connections: Math.max(1, Math.min(requestedConnections, fdLimit - FD_RESERVE)),
  batch: int('BENCH_BATCH', 100, 50),
};
/** The automation phase: 10,000 automations across 1,000 homes by default. */
const autoHomes = int('BENCH_AUTOMATION_HOMES', 1000, 50);
const AUTO: AutomationBenchParams = {
  homes: autoHomes,
  perHome: 10,
  samples: int('BENCH_AUTOMATION_SAMPLES', 300, 30),
  warmup: 30,
  sensors: Math.min(100, autoHomes - 1),
  reportsPerSensor: int('BENCH_AUTOMATION_REPORTS', 1000, 50),
  window: 20,
  batch: 100,
};
/** Queued commands: 10,000 devices × 10 commands each by default. */
const QUEUE: QueueBenchParams = { devices: int('BENCH_QUEUE_DEVICES', 10_000, 100), perDevice: int('BENCH_QUEUE_COMMANDS', 10, 5), batch: 100 };
/**
 * Unmeasured commands first: the server's CPU per command settles only after about 1,500 (the JIT
 * compiles the command path's code), and a serving process is warm; 1,000 by default.
 */
const WARMUP_COMMANDS = Math.min(1000, Math.max(10, Math.floor(P.commands / 2)));
const WARMUP_CONNECTIONS = 10;
const WRITE_DOCS = process.env.BENCH_WRITE_DOCS ? process.env.BENCH_WRITE_DOCS === '1' : !QUICK;
const PROFILE = process.env.BENCH_HEARTH_PROF === '1';
const ALL_PHASES = ['ingest-commands', 'connections', 'pipeline', 'automations', 'queue'];
const PHASES = new Set(process.env.BENCH_PHASES ? process.env.BENCH_PHASES.split(',').map((p) => p.trim()) : ALL_PHASES);
for (const p of PHASES) if (!ALL_PHASES.includes(p)) throw new Error(`BENCH_PHASES: unknown phase "${p}" (known: ${ALL_PHASES.join(', ')})`);
const TIMEOUT_S = int('BENCH_TIMEOUT_S', 900, 120);

/** Messages per ingest device: the total split as evenly as possible. */
const perDevice = Array.from({ length: P.devices }, (_, i) => Math.floor(P.messages / P.devices) + (i < P.messages % P.devices ? 1 : 0));

const log = (m: string) => process.stdout.write(m + '\n');

// ---------------------------------------------------------------------------------------------
// Results

interface Row {
  metric: string;
  /** 'up' = higher is better, 'down' = lower is better. */
  better: 'up' | 'down';
  hearth?: number;
  ref?: number;
}

interface Results {
  hearthIngest?: IngestResult;
  refIngest?: IngestResult;
  hearthCommands?: CommandResult;
  refCommands?: CommandResult;
  hearthConnections?: ConnectionResult;
  refConnections?: ConnectionResult;
  hearthIdleRssKb?: number;
  refIdleRssKb?: number;
  /** Spawn to /readyz 200 on an empty data directory (phase 1's first start). */
  hearthReadyMs?: number;
  hearthStopMs?: number;
  persistedCheck?: string;
  /** The same ingest, default gateway configuration vs. a realistic rule set. */
  pipelineBase?: IngestResult;
  pipelineRules?: IngestResult;
  /** The default configuration again, after the rule set was removed (A-B-A: a later run meets a fuller store and heap). */
  pipelineBaseAfter?: IngestResult;
  automations?: AutomationBenchResult;
  queue?: QueueBenchResult;
}

function rows(r: Results): Row[] {
  const c = P.concurrency;
  return [
    { metric: 'ingest, persisted (msg/s)', better: 'up', hearth: r.hearthIngest?.completeRate, ref: r.refIngest?.completeRate },
    { metric: 'ingest, acknowledged (msg/s)', better: 'up', hearth: r.hearthIngest?.ackedRate, ref: r.refIngest?.ackedRate },
    { metric: 'server CPU per 1000 reports (ms)', better: 'down', hearth: r.hearthIngest?.cpuMsPer1k, ref: r.refIngest?.cpuMsPer1k },
    { metric: 'peak RSS during ingest (MB)', better: 'down', hearth: mb(r.hearthIngest?.peakRssKb), ref: mb(r.refIngest?.peakRssKb) },
    { metric: 'command p50 (ms)', better: 'down', hearth: r.hearthCommands?.sequential.p50, ref: r.refCommands?.sequential.p50 },
    { metric: 'command p95 (ms)', better: 'down', hearth: r.hearthCommands?.sequential.p95, ref: r.refCommands?.sequential.p95 },
    { metric: 'command p99 (ms)', better: 'down', hearth: r.hearthCommands?.sequential.p99, ref: r.refCommands?.sequential.p99 },
    { metric: `commands x${c} (cmd/s)`, better: 'up', hearth: r.hearthCommands?.concurrentRate, ref: r.refCommands?.concurrentRate },
    { metric: `command x${c} p50 (ms)`, better: 'down', hearth: r.hearthCommands?.concurrent.p50, ref: r.refCommands?.concurrent.p50 },
    { metric: `command x${c} p99 (ms)`, better: 'down', hearth: r.hearthCommands?.concurrent.p99, ref: r.refCommands?.concurrent.p99 },
    { metric: 'server CPU per command (ms)', better: 'down', hearth: r.hearthCommands?.cpuMsPerCommand, ref: r.refCommands?.cpuMsPerCommand },
    { metric: 'idle connections held', better: 'up', hearth: r.hearthConnections?.connections, ref: r.refConnections?.connections },
    { metric: 'connect + subscribe (conn/s)', better: 'up', hearth: r.hearthConnections?.rate, ref: r.refConnections?.rate },
    { metric: 'server CPU per connection (ms)', better: 'down', hearth: r.hearthConnections?.cpuMsPerConnection, ref: r.refConnections?.cpuMsPerConnection },
    { metric: 'memory per connection (KB)', better: 'down', hearth: r.hearthConnections?.perConnectionKb, ref: r.refConnections?.perConnectionKb },
    {
      metric: 'memory per connection, after GC (KB)',
      better: 'down',
      hearth: r.hearthConnections?.perConnectionGcKb,
      ref: r.refConnections?.perConnectionKb,
    },
    { metric: 'idle RSS (MB)', better: 'down', hearth: mb(r.hearthIdleRssKb), ref: mb(r.refIdleRssKb) },
    { metric: 'start to ready, empty data dir (ms)', better: 'down', hearth: r.hearthReadyMs },
  ];
}

const mb = (kb: number | undefined) => (kb === undefined ? undefined : kb / 1024);
const ratio = (row: Row) => (row.hearth !== undefined && row.ref !== undefined && row.ref !== 0 ? row.hearth / row.ref : undefined);
const arrow = (row: Row) => (row.better === 'up' ? '↑' : '↓');

function textTable(r: Results): string {
  const head = ['metric', 'hearth', 'mosquitto', 'hearth/ref'];
  const body = rows(r).map((row) => [`${row.metric} ${arrow(row)}`, fmt(row.hearth), fmt(row.ref), ratio(row) === undefined ? 'n/a' : `${fmt(ratio(row))}x`]);
  const w = [32, 12, 12, 10];
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join(' ');
  return [line(head), line(w.map((n) => '-'.repeat(n))), ...body.map(line), '↑ higher is better, ↓ lower is better'].join('\n');
}

function markdownTable(r: Results): string {
  const out = ['| metric | hearth | mosquitto | hearth/ref |', '|---|---:|---:|---:|'];
  for (const row of rows(r))
    out.push(`| ${row.metric} ${arrow(row)} | ${fmt(row.hearth)} | ${fmt(row.ref)} | ${ratio(row) === undefined ? 'n/a' : `${fmt(ratio(row))}×`} |`);
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Environment

function gitRevision(): string {
  try {
    const rev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no', '--', 'src', 'bin'], { cwd: ROOT, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${rev} (with uncommitted changes in src/)` : rev;
  } catch {
    return 'unknown';
  }
}

const ENV = {
  date: new Date().toISOString(),
  node: process.version,
  cpu: cpus()[0]?.model?.trim() ?? 'unknown',
  cores: cpus().length,
  memoryGb: totalmem() / 1024 ** 3,
  loadavg: loadavg()
    .map((l) => l.toFixed(2))
    .join(' '),
  mosquitto: mosquittoVersion() ?? 'not installed',
  revision: gitRevision(),
};

// ---------------------------------------------------------------------------------------------
// Hearth-specific pieces

/** Node options of a Hearth child: a CPU profile per phase with BENCH_HEARTH_PROF=1. */
const hearthNodeArgs = (phase: string): string[] => cpuProfileArgs(`hearth-${phase}`);

/** After Hearth stopped: the store holds every shadow version and history point the run produced. */
function checkPersisted(dataDir: string, devs: DeviceCred[], expected: number[]): string {
  const db = new Database(join(dataDir, 'hearth.sqlite'));
  try {
    const version = db.prepare('SELECT version FROM shadows WHERE device_id = ?');
    const points = db.prepare("SELECT COUNT(*) AS n FROM history WHERE device_id = ? AND property = 'brightness'");
    const bad: string[] = [];
    let totalPoints = 0;
    devs.forEach((d, i) => {
      const row = version.get(d.id) as { version: number } | undefined;
      if (Number(row?.version ?? -1) !== expected[i]) bad.push(`${d.id}: stored shadow version ${row?.version ?? 'none'}, expected ${expected[i]}`);
      totalPoints += Number((points.get(d.id) as { n: number }).n);
    });
    const total = expected.reduce((a, b) => a + b, 0);
    if (totalPoints !== total) bad.push(`${totalPoints} brightness history points stored, expected ${total}`);
    return bad.length ? `FAILED: ${bad.slice(0, 5).join('; ')}` : `ok (${devs.length} shadows at their final version, ${totalPoints} history points)`;
  } finally {
    db.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Phases

async function phaseOne(tmp: string, results: Results): Promise<{ dataDir: string; connDevs: DeviceCred[] }> {
  const dataDir = join(tmp, 'hearth-data');
  log(`starting Hearth (node bin/hearth.js start)${PROFILE ? `, CPU profiles to ${PROFILE_DIR}` : ''} ...`);
  const hearth = await startHearth(dataDir, hearthNodeArgs('1-ingest-commands'));
  results.hearthReadyMs = hearth.readyMs;
  const api = new Api(hearth.httpUrl);
  let ref: Server | undefined;
  let ingestDevs: DeviceCred[] = [];
  let connDevs: DeviceCred[] = [];
  try {
    await api.login(BENCH_ADMIN.email, BENCH_ADMIN.password);
    const cmdDevices = P.concurrency;
    const t = Date.now();
    const all = await api.provision(P.devices + cmdDevices + P.connections + WARMUP_CONNECTIONS, 'light', 'bench light');
    log(`provisioned ${all.length} devices in ${Date.now() - t} ms (bulk, 1000 per call)`);
    ingestDevs = all.slice(0, P.devices);
    const cmdDevs = all.slice(P.devices, P.devices + cmdDevices);
    connDevs = all.slice(P.devices + cmdDevices);

    if (MOSQUITTO_BIN) ref = await startMosquitto(tmp);

    // 1. Ingest ---------------------------------------------------------------------------
    log(`\n[1/3] ingest: ${P.devices} devices, ${P.messages} QoS 1 reports, ${P.window} in flight per device`);
    const errors: string[] = [];
    results.hearthIngest = await runIngest({
      url: hearth.mqttUrl,
      devs: ingestDevs,
      serverPid: hearth.pid,
      params: { perDevice, window: P.window, batch: P.batch },
      prepare: async (c, d) => {
        c.on('message', (topic, payload) => {
          if (topic === `devices/${d.id}/errors`) errors.push(`${d.id}: ${payload.toString('utf8')}`);
        });
        await subscribe(c, `devices/${d.id}/errors`, 1);
      },
      complete: () => waitShadows(api, ingestDevs, perDevice, () => errors[0], 120_000),
    });
    log(
      `  hearth     ${fmt(results.hearthIngest.completeRate)} msg/s persisted (${fmt(results.hearthIngest.completeMs / 1000)} s), ${fmt(results.hearthIngest.ackedRate)} msg/s acknowledged`,
    );
    if (ref) {
      const sub = spawnHelper('ref-subscriber.ts', [ref.mqttUrl]);
      try {
        const msgs: Array<{ type: string; count?: number }> = [];
        let wake: (() => void) | undefined;
        sub.on('message', (m: { type: string }) => {
          msgs.push(m);
          wake?.();
        });
        const waitMsg = (type: string, ms: number) =>
          withTimeout(
            new Promise<void>((resolve, reject) => {
              const look = () => {
                if (msgs.some((m) => m.type === type)) return resolve();
                if (sub.exitCode !== null) return reject(new Error(`reference subscriber exited (${sub.exitCode})`));
                wake = look;
              };
              look();
            }),
            ms,
            `reference subscriber "${type}"`,
          );
        await waitMsg('ready', 30_000);
        const total = perDevice.reduce((a, b) => a + b, 0);
        results.refIngest = await runIngest({
          url: ref.mqttUrl,
          devs: ingestDevs.map((d) => ({ id: d.id, secret: '' })),
          serverPid: ref.pid,
          cpuPids: [ref.pid, sub.pid!],
          params: { perDevice, window: P.window, batch: P.batch },
          arm: () => sub.send({ type: 'expect', count: total }),
          complete: () => waitMsg('done', 120_000),
        });
        log(
          `  mosquitto  ${fmt(results.refIngest.completeRate)} msg/s delivered (${fmt(results.refIngest.completeMs / 1000)} s), ${fmt(results.refIngest.ackedRate)} msg/s acknowledged`,
        );
      } finally {
        sub.kill('SIGTERM');
      }
    }

    // 2. Commands -------------------------------------------------------------------------
    log(`\n[2/3] commands: ${P.commands} sequential, then ${P.commands} with ${P.concurrency} in flight (after ${WARMUP_COMMANDS} warm-up)`);
    let devClients: MqttClient[] = await connectAll(hearth.mqttUrl, cmdDevs, P.batch, answerCommands);
    try {
      await waitOnline(
        api,
        cmdDevs.map((d) => d.id),
      );
      results.hearthCommands = await runCommands({
        devs: cmdDevs,
        count: P.commands,
        concurrency: P.concurrency,
        warmup: WARMUP_COMMANDS,
        serverPid: hearth.pid,
        send: (id) => api.toggle(id),
      });
    } finally {
      await closeClients(devClients);
    }
    const hc = results.hearthCommands;
    log(
      `  hearth     p50 ${fmt(hc.sequential.p50)} ms, p95 ${fmt(hc.sequential.p95)} ms, p99 ${fmt(hc.sequential.p99)} ms; x${hc.concurrency}: ${fmt(hc.concurrentRate)} cmd/s`,
    );
    if (ref) {
      const refDevs = cmdDevs.map((d) => ({ id: d.id, secret: '' }));
      devClients = await connectAll(ref.mqttUrl, refDevs, P.batch, answerCommands);
      const requester = await mqttRequester(ref.mqttUrl);
      try {
        results.refCommands = await runCommands({
          devs: refDevs,
          count: P.commands,
          concurrency: P.concurrency,
          warmup: WARMUP_COMMANDS,
          serverPid: ref.pid,
          send: requester.send,
        });
      } finally {
        await requester.close();
        await closeClients(devClients);
      }
      const rc = results.refCommands;
      log(
        `  mosquitto  p50 ${fmt(rc.sequential.p50)} ms, p95 ${fmt(rc.sequential.p95)} ms, p99 ${fmt(rc.sequential.p99)} ms; x${rc.concurrency}: ${fmt(rc.concurrentRate)} cmd/s`,
      );
    }
  } finally {
    api.close();
    if (ref) await ref.stop();
    const t = Date.now();
    const code = await hearth.stop();
    results.hearthStopMs = Date.now() - t;
    if (code !== 0) log(`warning: Hearth exited with ${code} after SIGTERM (${results.hearthStopMs} ms):\n${hearth.output()}`);
  }
  results.persistedCheck = checkPersisted(dataDir, ingestDevs, perDevice);
  return { dataDir, connDevs };
}

/** Without the ingest and command phases (BENCH_PHASES): a Hearth that only provisions the connection phase's devices. */
async function provisionOnly(tmp: string): Promise<{ dataDir: string; connDevs: DeviceCred[] }> {
  const dataDir = join(tmp, 'hearth-data');
  const hearth = await startHearth(dataDir);
  const api = new Api(hearth.httpUrl);
  try {
    await api.login(BENCH_ADMIN.email, BENCH_ADMIN.password);
    const t = Date.now();
    const connDevs = await api.provision(P.connections + WARMUP_CONNECTIONS, 'light', 'bench light');
    log(`provisioned ${connDevs.length} devices in ${Date.now() - t} ms (bulk, 1000 per call)`);
    return { dataDir, connDevs };
  } finally {
    api.close();
    await hearth.stop();
  }
}

async function phaseTwo(tmp: string, dataDir: string, devs: DeviceCred[], results: Results): Promise<void> {
  const warm = devs.slice(0, WARMUP_CONNECTIONS);
  const conn = devs.slice(WARMUP_CONNECTIONS);
  log(`\n[3/3] connections: ${conn.length} idle devices (connect + subscribe, ${P.batch} in flight; open-file limit ${fdLimit})`);
  // Fresh processes, so that the memory left over from the load above does not blur the figure.
  // Admission (HEARTH_CONNECT_RATE_PER_SECOND) is raised out of the way: this measures how fast
  // connections can be served, not the pace an operator chose.
  // The inspector lets the benchmark read Hearth's memory after a full garbage collection too.
  const inspectPort = await freePort();
  const hearth: HearthServer = await startHearth(dataDir, [...hearthNodeArgs('2-connections'), ...inspectArgs(inspectPort)], CONNECT_ADMISSION);
  let ref: Server | undefined;
  let v8: V8Handle | undefined;
  try {
    v8 = await connectV8(inspectPort);
    if (MOSQUITTO_BIN) ref = await startMosquitto(tmp);
    await sleep(1000);
    const gc = v8.collectGarbage;
    results.hearthConnections = await runConnections({
      url: hearth.mqttUrl,
      devs: conn,
      warmup: warm,
      batch: P.batch,
      serverPid: hearth.pid,
      collectGarbage: gc,
    });
    results.hearthIdleRssKb = results.hearthConnections.rssBeforeKb;
    const h = results.hearthConnections;
    log(
      `  hearth     ${fmt(h.connections)} connections, ${fmt(h.rate)} conn/s, ${fmt(h.cpuMsPerConnection)} ms CPU each, RSS ${fmt(h.rssBeforeKb / 1024)} → ${fmt(h.rssAfterKb / 1024)} MB, ${fmt(h.perConnectionKb)} KB per connection; after a full GC ${fmt(mb(h.rssBeforeGcKb))} → ${fmt(mb(h.rssAfterGcKb))} MB, ${fmt(h.perConnectionGcKb)} KB per connection`,
    );
    if (ref) {
      const strip = (d: DeviceCred) => ({ id: d.id, secret: '' });
      results.refConnections = await runConnections({ url: ref.mqttUrl, devs: conn.map(strip), warmup: warm.map(strip), batch: P.batch, serverPid: ref.pid });
      results.refIdleRssKb = results.refConnections.rssBeforeKb;
      const m = results.refConnections;
      log(
        `  mosquitto  ${fmt(m.connections)} connections, ${fmt(m.rate)} conn/s, ${fmt(m.cpuMsPerConnection)} ms CPU each, RSS ${fmt(m.rssBeforeKb / 1024)} → ${fmt(m.rssAfterKb / 1024)} MB, ${fmt(m.perConnectionKb)} KB per connection`,
      );
    }
  } finally {
    v8?.close();
    if (ref) await ref.stop();
    const code = await hearth.stop();
    if (code !== 0) log(`warning: Hearth exited with ${code} after SIGTERM:\n${hearth.output()}`);
  }
}

/** The connections phase's admission: far above any rate this machine reaches. */
const CONNECT_ADMISSION = { HEARTH_CONNECT_RATE_PER_SECOND: '1000000', HEARTH_CONNECT_BURST: '1000000' };

/** 5 filters and 50 routes, as an operator with a few partners would have them. */
export const PIPELINE_FILTERS = [
  { type: 'source', allow: ['mqtt', 'http', 'api', 'partner:*', 'amqp:*'] },
  { type: 'validate' },
  { type: 'dedupe', windowMs: 60_000 },
  { type: 'rateLimit', scope: 'device', perSecond: 100_000, burst: 100_000, action: 'tag', tag: 'rate=exceeded' },
  {
    type: 'classify',
    rules: [
      { when: { kind: 'events', product: ['smoke-sensor', 'water-leak-sensor'] }, set: { class: 'alarm' } },
      { when: { kind: 'properties', product: 'plug' }, set: { class: 'energy' } },
      { when: { kind: 'properties', product: 'light' }, set: { class: 'lighting' } },
    ],
  },
];

function pipelineRoutes(): unknown[] {
  const products = [
    'plug',
    'thermostat',
    'door-lock',
    'curtain',
    'camera',
    'smoke-sensor',
    'water-leak-sensor',
    'motion-sensor',
    'contact-sensor',
    'temp-humidity-sensor',
  ];
  const routes: unknown[] = [];
  for (let i = 0; i < 49; i++) {
    const product = products[i % products.length];
    const match =
      i % 3 === 0 ? { topic: `devices/+/events`, product } : i % 3 === 1 ? { kind: 'properties', product } : { tags: { class: i % 2 ? 'alarm' : 'energy' } };
    routes.push({ name: `partner-${i}`, match, targets: [{ type: 'nats', subject: `bench.partner.${i}` }] });
  }
  // One route every light report takes, besides the device core: a stream of light states to an analytics subject.
  routes.push({
    name: 'lighting-analytics',
    match: { topic: 'devices/+/properties', tags: { class: 'lighting' } },
    targets: [{ type: 'nats', subject: 'bench.lighting', template: { d: '{{deviceId}}', b: '{{payload.brightness}}' } }],
  });
  return routes;
}

/**
 * The message pipeline's cost: the ingest above on a fresh Hearth with the default configuration
 * (the device core only), then with 5 filters and 50 routes (every light report also going to a
 * NATS target), then with the default configuration again, after a warm-up run. Each run meets a fuller store and
 * heap than the one before; comparing the rule set with the mean of the runs around it keeps
 * that out of its cost.
 */
async function phasePipeline(tmp: string, results: Results): Promise<void> {
  log(
    `\n[4/5] message pipeline: the same ingest with the default configuration, with ${PIPELINE_FILTERS.length} filters and 50 routes, and with the default again`,
  );
  const hearth = await startHearth(join(tmp, 'hearth-pipeline'), hearthNodeArgs('3-pipeline'));
  const api = new Api(hearth.httpUrl);
  try {
    await api.login(BENCH_ADMIN.email, BENCH_ADMIN.password);
    const all = await api.provision(4 * P.devices, 'light', 'bench light');
    const run = (devs: DeviceCred[]) =>
      runIngest({
        url: hearth.mqttUrl,
        devs,
        serverPid: hearth.pid,
        params: { perDevice, window: P.window, batch: P.batch },
        complete: () => waitShadows(api, devs, perDevice, () => undefined, 120_000),
      });
    // A fresh process runs its first messages through cold code: one run to warm it, not counted.
    log(`  warm-up                   ${fmt((await run(all.slice(3 * P.devices))).completeRate)} msg/s persisted (not counted)`);
    results.pipelineBase = await run(all.slice(0, P.devices));
    log(`  default configuration     ${fmt(results.pipelineBase.completeRate)} msg/s persisted`);
    await api.expect(200, 'PUT', '/api/v1/gateway/filters', { filters: PIPELINE_FILTERS });
    const ids: string[] = [];
    for (const r of pipelineRoutes()) ids.push((await api.expect<{ id: string }>(201, 'POST', '/api/v1/routes', r)).id);
    results.pipelineRules = await run(all.slice(P.devices, 2 * P.devices));
    log(`  5 filters, 50 routes      ${fmt(results.pipelineRules.completeRate)} msg/s persisted`);
    await api.expect(200, 'PUT', '/api/v1/gateway/filters', { filters: [{ type: 'validate' }] });
    for (const id of ids) await api.expect(200, 'DELETE', `/api/v1/routes/${id}`);
    results.pipelineBaseAfter = await run(all.slice(2 * P.devices, 3 * P.devices));
    log(
      `  default configuration     ${fmt(results.pipelineBaseAfter.completeRate)} msg/s persisted (the rule set costs ${fmt(pipelineCost(results)! * 100)}%)`,
    );
  } finally {
    api.close();
    await hearth.stop();
  }
}

/** Trigger-to-action latency and evaluation throughput with many automations (bench/automations.ts). */
async function phaseAutomations(tmp: string, results: Results): Promise<void> {
  log(`\n[5/5] automations: trigger → command latency and evaluation throughput, ${AUTO.perHome} automations in one home, then in each of ${AUTO.homes} homes`);
  const hearth = await startHearth(join(tmp, 'hearth-automations'), hearthNodeArgs('4-automations'));
  const api = new Api(hearth.httpUrl);
  try {
    await api.login(BENCH_ADMIN.email, BENCH_ADMIN.password);
    results.automations = await runAutomationBench({ api, mqttUrl: hearth.mqttUrl, serverPid: hearth.pid, params: AUTO, log });
  } finally {
    api.close();
    await hearth.stop();
  }
}

/** Queued commands drained by devices reconnecting at once (bench/command-queue.ts). */
async function phaseQueue(tmp: string, results: Results): Promise<void> {
  log(`\n[6/6] queued commands: ${QUEUE.devices} offline devices × ${QUEUE.perDevice} queued commands, then every device reconnects at once`);
  const hearth = await startHearth(join(tmp, 'hearth-queue'), hearthNodeArgs('5-queue'));
  const api = new Api(hearth.httpUrl);
  try {
    await api.login(BENCH_ADMIN.email, BENCH_ADMIN.password);
    results.queue = await runQueueBench({ api, mqttUrl: hearth.mqttUrl, serverPid: hearth.pid, params: QUEUE, log });
  } finally {
    api.close();
    await hearth.stop();
  }
}

function queueText(r: Results): string {
  const q = r.queue;
  if (!q) return 'not measured';
  return [
    '| devices × queued commands | queued over the API (per s) | reconnect → all answered (s) | server CPU per delivered command (ms) | peak RSS while draining (MB) |',
    '|---|---|---|---|---|',
    `| ${fmt(q.devices)} × ${fmt(q.commands / q.devices)} | ${fmt(q.queueRate)} | ${q.drainS.toFixed(1)} | ${q.cpuMsPerCommand.toFixed(3)} | ${fmt(q.peakRssMb)} |`,
  ].join('\n');
}

function automationText(r: Results): string {
  const a = r.automations;
  if (!a) return 'not measured';
  const lat = (p: Percentiles) => `${fmt(p.p50)} / ${fmt(p.p99)}`;
  return [
    '| enabled automations | trigger → command p50 / p99 (ms) | sensor reports evaluated (per s) | server CPU per 1000 reports (ms) |',
    '|---|---:|---:|---:|',
    `| none | | ${fmt(a.ingestNone.completeRate)} | ${fmt(a.ingestNone.cpuMsPer1k)} |`,
    `| ${AUTO.perHome} (one home) | ${lat(a.latencyOneHome)} | | |`,
    `| ${fmt(a.automations)} (${fmt(a.homes)} homes) | ${lat(a.latencyAll)} | ${fmt(a.ingestAll.completeRate)} | ${fmt(a.ingestAll.cpuMsPer1k)} |`,
    '',
    `With ${fmt(a.automations)} automations each sensor report checks the ${a.triggersPerReport} illuminance triggers of its own home ` +
      `(${fmt(a.ingestAll.completeRate * a.triggersPerReport)} trigger checks/s at that rate); latency is from the sensor's publish to the light receiving the command.`,
  ].join('\n');
}

/** The rule set's cost: its throughput against the mean of the default configuration's runs before and after it. */
const pipelineCost = (r: Results) =>
  r.pipelineBase && r.pipelineRules && r.pipelineBaseAfter
    ? 1 - r.pipelineRules.completeRate / ((r.pipelineBase.completeRate + r.pipelineBaseAfter.completeRate) / 2)
    : undefined;

function pipelineText(r: Results): string {
  if (!r.pipelineBase || !r.pipelineRules || !r.pipelineBaseAfter) return 'not measured';
  return [
    '| configuration | ingest, persisted (msg/s) | server CPU per 1000 reports (ms) |',
    '|---|---:|---:|',
    `| default (validate filter, device core route) | ${fmt(r.pipelineBase.completeRate)} | ${fmt(r.pipelineBase.cpuMsPer1k)} |`,
    `| ${PIPELINE_FILTERS.length} filters, 50 routes, every report also to a NATS target | ${fmt(r.pipelineRules.completeRate)} | ${fmt(r.pipelineRules.cpuMsPer1k)} |`,
    `| default again, the rule set removed | ${fmt(r.pipelineBaseAfter.completeRate)} | ${fmt(r.pipelineBaseAfter.cpuMsPer1k)} |`,
    '',
    `The rule set costs **${fmt(pipelineCost(r)! * 100)}%** of the throughput (the budget is 25%).`,
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Report

function parametersText(): string {
  return [
    `- ingest: ${P.devices} devices (product \`light\`), ${P.messages} QoS 1 property reports in total (${perDevice[0]} per device), each client keeping up to ${P.window} unacknowledged`,
    `- commands: ${P.commands} sequential commands to one device, then ${P.commands} with ${P.concurrency} in flight (one device each), after ${WARMUP_COMMANDS} warm-up commands`,
    `- connections: ${P.connections} idle devices, each connecting and subscribing to its commands topic, ${P.batch} connects in flight (after ${WARMUP_CONNECTIONS} warm-up connections); open-file limit ${fdLimit}${requestedConnections !== P.connections ? ` (${requestedConnections} requested${fdRaise.error ? `; raising the limit failed: ${fdRaise.error}` : ''})` : ''}; Hearth's \`HEARTH_CONNECT_RATE_PER_SECOND\` and \`HEARTH_CONNECT_BURST\` raised to ${CONNECT_ADMISSION.HEARTH_CONNECT_RATE_PER_SECOND}`,
    `- Hearth: \`node bin/hearth.js start\` as a child process, SQLite store in a fresh temporary directory, \`HEARTH_LOG_LEVEL=warn\`, the per-user request rate limit raised out of the way, defaults otherwise`,
    `- reference: ${ENV.mosquitto} (\`listener <port> 127.0.0.1\`, \`allow_anonymous true\`, \`persistence false\`, \`set_tcp_nodelay true\`, \`max_queued_messages 0\`, defaults otherwise)`,
    `- automations: ${AUTO.homes} homes × ${AUTO.perHome} automations, ${AUTO.samples} latency samples per measurement (after ${AUTO.warmup} warm-up), ${AUTO.sensors} sensors × ${AUTO.reportsPerSensor} QoS 1 reports for the throughput`,
    `- clients: mqtt.js ${mqttVersion()} (MQTT 3.1.1, Nagle off), REST over a keep-alive \`http.Agent\`; the idle connections: light clients (bench/conn-load.ts, raw sockets, mqtt-packet ${mqttPacketVersion()}, Nagle off)`,
  ].join('\n');
}

function mqttPacketVersion(): string {
  try {
    return (JSON.parse(readFileSync(join(ROOT, 'node_modules', 'mqtt-packet', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '9';
  }
}

function mqttVersion(): string {
  try {
    return (JSON.parse(readFileSync(join(ROOT, 'node_modules', 'mqtt', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '5';
  }
}

function environmentText(): string {
  return [
    `- date: ${ENV.date}`,
    `- node: ${ENV.node}`,
    `- cpu: ${ENV.cpu}, ${ENV.cores} cores; ${ENV.memoryGb.toFixed(1)} GB RAM; load average at start ${ENV.loadavg}`,
    `- Hearth revision: ${ENV.revision}`,
  ].join('\n');
}

function markdown(r: Results, elapsedS: number): string {
  return `# Benchmarks

\`npm run bench\` measures Hearth on the machine it runs on, with simulated devices over real
MQTT, against a plain reference broker (Debian's \`mosquitto\`) under the same load, and
regenerates this page. Hearth runs as a child process (\`node bin/hearth.js start\`), so that
its memory can be read from \`/proc/PID/status\` and it does not share an event loop with the
load generator; the load generator (mqtt.js clients, the REST client) runs in the benchmark
process, except the idle connections' light clients (own processes).

**Read the ratios, not the absolute numbers.** These figures come from a small shared machine
(${ENV.cores} cores) where the load generator, the server under test and whatever else runs
there compete for the same CPUs; absolute throughput and latency move with that, the ratio
to the reference measured right after under the same conditions much less. Hearth does more
than the reference for each message (authentication and per-device ACLs, validation against
the product's thing model, a shadow, a time series, a command ledger, all in SQLite), so a
ratio below 1 for throughput is expected; the table shows what that costs.

## Method

1. **Ingest.** ${P.devices} device clients each publish QoS 1 property reports
   (\`{"on":…,"brightness":…}\` to \`devices/{id}/properties\`), keeping up to ${P.window}
   unacknowledged. *Hearth:* the clock runs from the first publish until every device's shadow
   (\`GET /api/v1/devices/{id}\`) reaches a version equal to the number of reports the device
   sent, i.e. every report was validated and applied (shadow writes reach SQLite in batches
   every 100 ms; after the run the store is checked for every shadow's final version and
   every history point). *Reference:* one subscriber on \`devices/+/properties\` (QoS 1, in its
   own process, as Hearth's ingest runs in Hearth's process); the clock stops when it has
   received every message. "Acknowledged" is the time until every PUBACK reached the
   publishers; Hearth sends a PUBACK once the report is committed to its stream log
   (\`streams.sqlite\`, group commit), so a crash after it loses nothing.
2. **Command round trip.** Devices subscribe to \`devices/{id}/commands\` and answer each
   command on \`devices/{id}/commands/result\`. *Hearth:* \`POST /api/v1/devices/{id}/commands\`
   \`{"action":"toggle"}\`, measured by the HTTP client until the response (which Hearth sends
   once the device answered). *Reference:* an MQTT requester publishes the command to
   \`devices/{id}/commands\` and waits for the answer on \`devices/{id}/commands/result\` (QoS 1
   both ways). First one at a time, then ${P.concurrency} in flight. *Server CPU per command*
   is the server process's CPU time over both modes divided by the number of commands.
3. **Connections.** Fresh server processes; ${P.connections} idle device connections, each
   subscribed to its commands topic, ${P.batch} connects in flight at a time. The devices are
   light clients (bench/conn-load.ts): raw sockets that write a CONNECT (keepalive 1200 s, so no
   PINGREQ falls due) and, after the CONNACK, a SUBSCRIBE, read the SUBACK and then stay idle,
   spread over load processes (each holding up to its open-file limit of sockets) and loopback source
   addresses (127.0.x.y, 5,000 connections each). Hearth's admission limit is raised out of the
   way for this phase. *Connect + subscribe* is the number of connections divided by the time
   from the first connect to the last SUBACK, *server CPU per connection* the server's CPU time
   over that window divided by the number of connections. Memory per connection is the growth of the
   server's resident set (VmRSS) divided by the number of connections, read at least 2 s after
   the last one connected, once two readings a second apart differ by less than 1%. Hearth's
   is also read right after a full garbage collection at both points (*after GC*; requested
   through its inspector, \`--inspect\` on loopback, opened in this phase only): V8 collects its
   old generation lazily, and an idle process may keep the garbage of its connects for minutes,
   so the plain figure counts some of it. mosquitto frees memory at once; its one figure stands
   in both rows. The
   servers' open-file limit was ${fdLimit}${fdRaise.error ? ` and could not be raised (${fdRaise.error})` : ''}${requestedConnections !== P.connections ? `, so ${P.connections} connections were measured instead of ${requestedConnections}` : ''}.

*Server CPU* is the user + system CPU time of the server side during the measured window (from
\`/proc/PID/stat\`): the Hearth process; for the reference, mosquitto (plus, for ingest, the
subscriber process). It is the figure least distorted by the load generator: with ${ENV.cores}
cores, the reference's throughput is capped by the clients (one Node process publishing for
all devices) at least as much as by mosquitto, so its msg/s and cmd/s are lower bounds.

Each measurement runs against Hearth and then, seconds later, against the reference, so
that both see about the same background load.

## Results

${markdownTable(r)}

↑ higher is better, ↓ lower is better. A ratio is Hearth's figure divided by the reference's.

Persistence check after the ingest run: ${r.persistedCheck ?? 'not run'}.
Whole benchmark: ${elapsedS.toFixed(0)} s.${MOSQUITTO_BIN ? '' : '\n\nmosquitto was not installed on this machine, so there is no reference column (`apt-get install -y mosquitto`).'}

Reading the table:

- Hearth is one Node.js process; at full ingest load it uses about one core, so its ingest
  rate is roughly 1000 / (server CPU per 1000 reports) per second.
- RSS of a garbage-collected process is noisy: V8 collects the old generation lazily, so
  *peak RSS during ingest* mostly shows garbage not yet collected rather than retained data,
  and *memory per connection* moves by a few KB between runs. Hearth's idle RSS includes the
  Node.js runtime (about 40 MB for \`node -e ''\` on this machine); the server runs compiled
  JavaScript from \`dist/\`.

## Message pipeline

Every message goes through the gateway's filter chain and router (docs/message-gateway.md). A
fresh Hearth runs the ingest above four times, each with its own devices: a warm-up (not
counted), the default configuration, a realistic rule set (source allow-list, model validation,
de-duplication, a per-device rate limit, three classification rules, and 50 routes matching by
topic, kind, product and tags, of which every light report takes one more: a NATS target with a
template, through the durable delivery stream), and the default configuration again. The rule
set's cost is its throughput against the mean of the two default runs.

${pipelineText(r)}

## Automations

A fresh Hearth gets ${AUTO.homes} homes, each with a motion sensor and a light and ${AUTO.perHome}
automations on that sensor (occupancy turning true toggles the light, turning false blinks it,
the others watch illuminance thresholds the sensor never reaches). The latency is measured
with one home's automations, then again with every home's; ${AUTO.sensors} sensors of other homes
then report illuminance as fast as they can (${AUTO.reportsPerSensor} QoS 1 reports each), first
before any automation existed and then with all of them.

${automationText(r)}

## Queued commands

${fmt(QUEUE.devices)} offline cloud printers get ${QUEUE.perDevice} queued commands each over the API
(\`ttlMs\`, 202 \`queued\`); then every printer connects (${QUEUE.batch} at a time, as fast as
admission lets them), subscribes to its commands topic and answers each command as it arrives
(at most \`HEARTH_COMMAND_QUEUE_MAX_IN_FLIGHT\` in flight per device). The time runs from the first
connect until every command is answered and, for a sample of devices, the last one is
\`answered\` in the ledger; CPU is the server's over that time, per command.

${queueText(r)}

## Parameters

${parametersText()}

Sizes can be changed with \`BENCH_DEVICES\`, \`BENCH_MESSAGES\`, \`BENCH_WINDOW\`, \`BENCH_COMMANDS\`,
\`BENCH_CONCURRENCY\`, \`BENCH_CONNECTIONS\`, \`BENCH_BATCH\`, \`BENCH_AUTOMATION_HOMES\`,
\`BENCH_AUTOMATION_SAMPLES\` and \`BENCH_AUTOMATION_REPORTS\`; \`BENCH_QUICK=1\` runs tiny sizes as a
smoke test (and does not rewrite this page); \`BENCH_HEARTH_PROF=1\` writes CPU profiles of the Hearth
processes to \`$TMPDIR/hearth-bench-profiles/\`.

## Environment

${environmentText()}
`;
}

// ---------------------------------------------------------------------------------------------
// Main

let cleaningUp: Promise<void> | undefined;
let interrupted = false;
function cleanup(tmp: string): Promise<void> {
  cleaningUp ??= (async () => {
    await closeClients().catch(() => undefined);
    await killAll(10_000).catch(() => undefined);
    if (process.env.BENCH_KEEP !== '1') rmSync(tmp, { recursive: true, force: true });
  })();
  return cleaningUp;
}

async function main(): Promise<number> {
  const started = Date.now();
  const tmp = mkdtempSync(join(tmpdir(), 'hearth-bench-'));
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      interrupted = true;
      log(`\n${sig}: stopping`);
      void cleanup(tmp).finally(() => process.exit(130));
    });
  }
  const watchdog = setTimeout(() => {
    log(`\nbenchmark did not finish within ${TIMEOUT_S} s; aborting`);
    void cleanup(tmp).finally(() => process.exit(1));
  }, TIMEOUT_S * 1000);

  log(`Hearth benchmark${QUICK ? ' (quick mode)' : ''}: node ${ENV.node}, ${ENV.cpu} x${ENV.cores}, load ${ENV.loadavg}`);
  if (!MOSQUITTO_BIN) {
    log('\nmosquitto is not installed, so there is no reference column. Install it with:\n  apt-get install -y mosquitto\n');
  } else {
    log(`reference: ${ENV.mosquitto} (${MOSQUITTO_BIN})`);
  }
  if (P.connections < requestedConnections)
    log(
      `note: ${requestedConnections} connections requested; using ${P.connections} (open-file limit ${fdLimit}${fdRaise.error ? `; raising it failed: ${fdRaise.error}` : ''})`,
    );

  const results: Results = {};
  try {
    const { dataDir, connDevs } = PHASES.has('ingest-commands') ? await phaseOne(tmp, results) : await provisionOnly(tmp);
    if (PHASES.has('connections')) await phaseTwo(tmp, dataDir, connDevs, results);
    if (PHASES.has('pipeline')) await phasePipeline(tmp, results);
    if (PHASES.has('automations')) await phaseAutomations(tmp, results);
    if (PHASES.has('queue')) await phaseQueue(tmp, results);
  } catch (err) {
    if (!interrupted) log(`\nbenchmark failed: ${(err as Error).stack ?? err}`);
    await cleanup(tmp);
    clearTimeout(watchdog);
    return 1;
  }
  await cleanup(tmp);
  clearTimeout(watchdog);
  if (openClientCount() > 0) log(`warning: ${openClientCount()} MQTT clients still open`);

  const elapsed = (Date.now() - started) / 1000;
  log('\n' + textTable(results));
  if (!MOSQUITTO_BIN) log('(no reference: mosquitto is not installed; apt-get install -y mosquitto)');
  log(`\npersistence check: ${results.persistedCheck ?? 'not run'}`);
  if (results.automations)
    log(
      `automations: ${fmt(results.automations.automations)} across ${fmt(results.automations.homes)} homes, trigger → command p50 ${fmt(results.automations.latencyAll.p50)} ms, p99 ${fmt(results.automations.latencyAll.p99)} ms (one home's only: ${fmt(results.automations.latencyOneHome.p50)} / ${fmt(results.automations.latencyOneHome.p99)} ms)`,
    );
  if (results.queue)
    log(
      `queued commands: ${fmt(results.queue.commands)} to ${fmt(results.queue.devices)} reconnecting devices answered in ${results.queue.drainS.toFixed(1)} s, ${results.queue.cpuMsPerCommand.toFixed(3)} ms server CPU per command, peak RSS ${fmt(results.queue.peakRssMb)} MB`,
    );
  log(
    `message pipeline: ${
      pipelineText(results)
        .split('\n')
        .filter((l) => l.startsWith('The rule set'))
        .join('') || 'not measured'
    }`,
  );
  if (results.hearthStopMs !== undefined && results.hearthStopMs > 5000) log(`note: Hearth took ${results.hearthStopMs} ms to stop after SIGTERM`);
  log(`whole run: ${elapsed.toFixed(0)} s`);
  if (WRITE_DOCS) {
    // The cluster and fleet benchmarks' sections (BENCH_MODE=cluster, BENCH_MODE=fleet) stay as they are.
    const file = join(ROOT, 'docs', 'benchmarks.md');
    const old = readFileSync(file, 'utf8');
    // The sections other modes write (BENCH_MODE=cluster, ota and fleet, npm run bench:telemetry and bench:telemetry-fleet) are kept.
    const kept = ['cluster', 'telemetry', 'telemetry-fleet', 'ota', 'fleet']
      .map((name) => new RegExp(`<!-- ${name}:begin -->[\\s\\S]*<!-- ${name}:end -->\\n?`).exec(old)?.[0])
      .filter((x) => x !== undefined)
      .join('\n');
    writeFileSync(file, markdown(results, elapsed) + (kept ? `\n${kept}` : ''));
    log('wrote docs/benchmarks.md');
  } else {
    log(`docs/benchmarks.md not written (${QUICK ? 'quick mode; ' : ''}BENCH_WRITE_DOCS=1 to write it)`);
  }
  return results.persistedCheck?.startsWith('FAILED') ? 1 : 0;
}

process.exitCode = await main();
process.exit(process.exitCode);
