/**
 * `BENCH_MODE=cluster npm run bench`: Hearth in cluster mode on this machine. PostgreSQL, NATS
 * JetStream and the Hearth nodes run as separate processes; simulated devices connect over real
 * MQTT straight to the nodes' ports (no balancer in between). It measures what the sizing table
 * of docs/operations.md needs (ingest per worker, commands per API node, memory per connection
 * and connect rate of a gateway node), prints a table, and writes it to docs/benchmarks.md
 * (between the cluster markers) and to the sizing table.
 *
 * The load generator, every node, NATS and PostgreSQL share this machine's cores, so each
 * figure is a lower bound for a node with cores of its own.
 *
 * Sizes (environment):
 *   BENCH_QUICK=1          tiny sizes, a smoke run in well under 60 s (does not write the docs)
 *   BENCH_DEVICES          ingest devices, half on each node (100)
 *   BENCH_MESSAGES         ingest messages in total (100000)
 *   BENCH_WINDOW           QoS 1 reports each ingest client keeps in flight (20)
 *   BENCH_COMMANDS         commands per mode (1000)
 *   BENCH_CONCURRENCY      commands in flight in the concurrent mode (10)
 *   BENCH_CONNECTIONS      idle connections on the gateway node (5000; capped by the open-file limit)
 *   BENCH_BATCH            concurrent connects per batch (100)
 *   BENCH_WAVE             concurrent connects in a reconnect wave (500)
 *   BENCH_PACED_S          seconds of the paced ingest at 80% of the saturated rate (20)
 *   BENCH_WRITE_DOCS=0|1   write docs/benchmarks.md and the sizing table (default: 1, 0 in quick mode)
 *   BENCH_TIMEOUT_S        abort the whole run after this many seconds (420)
 *   BENCH_HEARTH_PROF=1    each node writes a CPU profile when it stops ($TMPDIR/hearth-bench-profiles/)
 *   BENCH_KEEP=1           keep the temporary directory (the nodes' data directories, each with its node.log)
 */
import { execFileSync, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import pg from 'pg';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import { UPLINK_STREAM } from '../src/core/bus/subjects.ts';
import { startNats, type NatsServer } from '../test/helpers/nats.ts';
import { startPostgres, type PostgresServer } from '../test/helpers/postgres.ts';
import { waitOnline, waitShadows } from './checks.ts';
import { Api, closeClients, connectDevice, openClientCount, subscribe, type DeviceCred } from './clients.ts';
import { BENCH_ADMIN, ROOT, cpuMs, cpuProfileArgs, freePort, killAll, stopChild, track } from './procs.ts';
import {
  answerCommands,
  connectAll,
  runCommands,
  runConnections,
  report,
  runIngest,
  type CommandResult,
  type ConnectionResult,
  type IngestResult,
} from './scenarios.ts';
import { fmt, mapLimit, now, sleep } from './stats.ts';

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

function openFileLimit(): number {
  try {
    const out = execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim();
    return out === 'unlimited' ? Infinity : Number(out) || 1024;
  } catch {
    return 1024;
  }
}

const fdLimit = openFileLimit();
const requestedConnections = int('BENCH_CONNECTIONS', 5000, 200);
const P = {
  devices: int('BENCH_DEVICES', 100, 10),
  messages: int('BENCH_MESSAGES', 100_000, 2000),
  window: int('BENCH_WINDOW', 20, 20),
  commands: int('BENCH_COMMANDS', 1000, 100),
  concurrency: int('BENCH_CONCURRENCY', 10, 10),
  connections: Math.max(1, Math.min(requestedConnections, Math.floor(fdLimit / 2) - 100)),
  batch: int('BENCH_BATCH', 100, 50),
  wave: int('BENCH_WAVE', 500, 100),
  /** Seconds of the paced ingest at 80% of the saturated rate. */
  pacedSeconds: int('BENCH_PACED_S', 20, 5),
};
/** The paced ingest runs at this share of the rate measured at saturation. */
const PACED_SHARE = 0.8;
const WARMUP_COMMANDS = Math.min(100, Math.max(10, Math.floor(P.commands / 10)));
const WARMUP_CONNECTIONS = 10;
const WRITE_DOCS = process.env.BENCH_WRITE_DOCS ? process.env.BENCH_WRITE_DOCS === '1' : !QUICK;
const TIMEOUT_S = int('BENCH_TIMEOUT_S', 420, 120);
/** Nodes of the ingest and command runs, all roles each. */
const NODES = 2;
/** Hearth's admission defaults (HEARTH_CONNECT_RATE_PER_SECOND, HEARTH_CONNECT_BURST), for the text. */
const ADMISSION = { rate: 2000, burst: 500 };
/** The pod the sizing table is for, and the share of its memory that connections may take. */
const POD = { memoryGiB: 4, headroom: 0.7, cpus: 2 };

/** Messages per ingest device: the total split as evenly as possible. */
const perDevice = Array.from({ length: P.devices }, (_, i) => Math.floor(P.messages / P.devices) + (i < P.messages % P.devices ? 1 : 0));

const log = (m: string) => process.stdout.write(m + '\n');

// ---------------------------------------------------------------------------------------------
// Processes: Hearth nodes, and the CPU time of NATS and PostgreSQL

interface ClusterNode {
  name: string;
  pid: number;
  httpUrl: string;
  mqttUrl: string;
  output(): string;
  stop(): Promise<number | string | null>;
}

/** Every node started, so that a failure can show what they logged. */
const started: ClusterNode[] = [];

/**
 * Starts `node bin/hearth.js start` in cluster mode on free loopback ports and waits for
 * /readyz. Unlike test/helpers/cluster.ts it hands out the process id, which the CPU and
 * memory figures need.
 */
async function startNode(name: string, tmp: string, shared: { databaseUrl: string; natsUrl: string }, env: Record<string, string> = {}): Promise<ClusterNode> {
  const [httpPort, mqttPort] = [await freePort(), await freePort()];
  const dataDir = join(tmp, name);
  mkdirSync(dataDir, { recursive: true });
  const child = track(
    spawn(process.execPath, [...cpuProfileArgs(`cluster-${name}`), join(ROOT, 'bin/hearth.js'), 'start'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        // Hearth's defaults apart from what is set here: HEARTH_* settings of the calling shell are not passed on.
        ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HEARTH_'))),
        HEARTH_NODE_NAME: name,
        HEARTH_DATABASE_URL: shared.databaseUrl,
        HEARTH_NATS_URL: shared.natsUrl,
        HEARTH_HTTP_PORT: String(httpPort),
        HEARTH_MQTT_PORT: String(mqttPort),
        HEARTH_HTTP_HOST: '127.0.0.1',
        HEARTH_MQTT_HOST: '127.0.0.1',
        HEARTH_DATA_DIR: dataDir,
        HEARTH_DEMO: '0',
        HEARTH_ADMIN_EMAIL: BENCH_ADMIN.email,
        HEARTH_ADMIN_PASSWORD: BENCH_ADMIN.password,
        HEARTH_LOG_LEVEL: 'warn',
        // The benchmark measures throughput, not the per-user request limit.
        HEARTH_RATE_LIMIT_PER_MINUTE: '100000000',
        HEARTH_RATE_LIMIT_BURST: '1000000',
        ...env,
      },
    }),
  );
  let out = '';
  const keep = (c: Buffer) => void (out = (out + c.toString('utf8')).slice(-6000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  if (process.env.BENCH_KEEP === '1') {
    // Kept with the temporary directory: the node's whole log.
    const file = createWriteStream(join(dataDir, 'node.log'));
    child.stdout!.pipe(file);
    child.stderr!.pipe(file);
  }
  const httpUrl = `http://127.0.0.1:${httpPort}`;
  const until = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`node ${name} exited (${child.exitCode ?? child.signalCode}) while starting:\n${out}`);
    const ready = await fetch(`${httpUrl}/readyz`, { signal: AbortSignal.timeout(1000) }).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ready) break;
    if (Date.now() > until) throw new Error(`node ${name} not ready 60 s after starting:\n${out}`);
    await sleep(100);
  }
  const node: ClusterNode = {
    name,
    pid: child.pid!,
    httpUrl,
    mqttUrl: `mqtt://127.0.0.1:${mqttPort}`,
    output: () => out,
    stop: () => stopChild(child, 'SIGTERM', 30_000),
  };
  started.push(node);
  return node;
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** The first process whose command line `match`es (from /proc/PID/cmdline). */
function findProcess(match: (argv: string[]) => boolean): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean);
      if (argv.length && match(argv)) return Number(entry);
    } catch {
      /* gone meanwhile */
    }
  }
  return undefined;
}

/** `argv` runs a binary named `name` with `-p <port>`. */
const listensOn = (name: string, port: string) => (argv: string[]) =>
  (argv[0].endsWith(`/${name}`) || argv[0] === name) && argv.some((a, i) => a === '-p' && argv[i + 1] === port);

/**
 * CPU time (ms) of a process and its children, those still running and those already reaped
 * (cutime/cstime): PostgreSQL serves each connection in a process of its own.
 */
function treeCpuMs(root: number): number {
  let ticks = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    // After the command name: state (3), ppid (4), …, utime (14), stime (15), cutime (16), cstime (17).
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(entry) === root || Number(f[1]) === root) ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  }
  return (ticks * 1000) / CLK_TCK;
}

// ---------------------------------------------------------------------------------------------
// /metrics: the ingest lag histogram, the event-loop lag gauge

/** Cumulative bucket counts of a Prometheus histogram, by upper bound (seconds; Infinity for +Inf). */
type Buckets = Map<number, number>;

async function scrape(node: ClusterNode): Promise<string> {
  const r = await fetch(`${node.httpUrl}/metrics`);
  if (r.status !== 200) throw new Error(`GET ${node.httpUrl}/metrics answered ${r.status}`);
  return r.text();
}

function histogramBuckets(text: string, name: string): Buckets {
  const out: Buckets = new Map();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}_bucket{`)) continue;
    const le = /le="([^"]+)"/.exec(line)?.[1];
    if (le === undefined) continue;
    const bound = le === '+Inf' ? Infinity : Number(le);
    out.set(bound, (out.get(bound) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return out;
}

/** The ingest lag histogram summed over `nodes`. */
async function ingestLag(nodes: ClusterNode[]): Promise<Buckets> {
  const sum: Buckets = new Map();
  for (const text of await Promise.all(nodes.map(scrape))) {
    for (const [le, n] of histogramBuckets(text, 'hearth_ingest_lag_seconds')) sum.set(le, (sum.get(le) ?? 0) + n);
  }
  return sum;
}

function gauge(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/**
 * The q-quantile of a histogram, interpolated linearly inside its bucket as Prometheus'
 * histogram_quantile does; beyond the highest finite bound it answers that bound.
 */
function quantile(b: Buckets, q: number): number {
  const bounds = [...b.keys()].sort((x, y) => x - y);
  const total = b.get(Infinity) ?? 0;
  if (total === 0) return NaN;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const le of bounds) {
    const count = b.get(le)!;
    if (count >= rank) {
      if (le === Infinity) return lower;
      return lower + ((le - lower) * (rank - below)) / Math.max(1, count - below);
    }
    lower = le;
    below = count;
  }
  return lower;
}

/**
 * Waits until every shard has an owner and each worker owns some: a node that just joined may
 * still be taking shards over, and the measurement is of a cluster at rest.
 */
async function waitShardsSpread(nodes: ClusterNode[], db: pg.Pool, timeoutMs: number): Promise<number[]> {
  const shards = (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM shard_leases')).rows[0].n;
  const until = Date.now() + timeoutMs;
  for (;;) {
    const owned = (await Promise.all(nodes.map(scrape))).map((t) => gauge(t, 'hearth_shards_owned') ?? 0);
    if (owned.every((n) => n > 0) && owned.reduce((a, b) => a + b, 0) === shards) return owned;
    if (Date.now() > until) throw new Error(`shards not spread over the nodes ${timeoutMs} ms after they were ready: ${owned.join(' + ')} of ${shards} owned`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: the stored result of the ingest run, presence

/**
 * Over all consumers of the uplink stream: messages not yet acknowledged (delivered or not), and
 * messages delivered more than once (an acknowledgement not back within HEARTH_ACK_WAIT_MS).
 */
async function uplinkState(jsm: JetStreamManager): Promise<{ backlog: number; redelivered: number }> {
  let backlog = 0;
  let redelivered = 0;
  for await (const c of jsm.consumers.list(UPLINK_STREAM)) {
    backlog += c.num_ack_pending + c.num_pending;
    redelivered += c.num_redelivered;
  }
  return { backlog, redelivered };
}

/**
 * Waits until the run has settled (JetStream holds no unacknowledged uplink message, so nothing
 * can be delivered again) and PostgreSQL holds every history point and every shadow's final
 * version. A shadow past its report count or a second history point means a report was
 * applied twice.
 */
async function checkStored(db: pg.Pool, jsm: JetStreamManager, devs: DeviceCred[], expected: number[], timeoutMs: number): Promise<StoredCheck> {
  const ids = devs.map((d) => d.id);
  const want = new Map(ids.map((id, i) => [id, expected[i]]));
  const total = expected.reduce((a, b) => a + b, 0);
  const t0 = now();
  for (;;) {
    const { backlog, redelivered } = await uplinkState(jsm);
    const again = redelivered ? `; JetStream delivered ${redelivered} messages again` : '';
    const points = await db.query<{ device_id: string; n: number }>(
      "SELECT device_id, count(*)::int AS n FROM history WHERE property = 'brightness' AND device_id = ANY($1) GROUP BY device_id",
      [ids],
    );
    const versions = await db.query<{ device_id: string; version: string }>('SELECT device_id, version FROM shadows WHERE device_id = ANY($1)', [ids]);
    const stored = points.rows.reduce((a, r) => a + r.n, 0);
    const afterMs = now() - t0;
    const extraPoints = points.rows.find((r) => r.n > want.get(r.device_id)!);
    if (extraPoints)
      return {
        ok: false,
        afterMs,
        text: `FAILED: ${extraPoints.device_id} has ${extraPoints.n} brightness history points for ${want.get(extraPoints.device_id)} reports sent (applied twice)${again}`,
      };
    const past = versions.rows.filter((r) => Number(r.version) > want.get(r.device_id)!);
    if (past.length) {
      const extra = past.reduce((a, r) => a + Number(r.version) - want.get(r.device_id)!, 0);
      return {
        ok: false,
        afterMs,
        text: `FAILED: ${past.length} shadows are past their report count (${extra} reports applied twice), e.g. ${past[0].device_id} at version ${past[0].version} of ${want.get(past[0].device_id)}${again}`,
      };
    }
    const final = versions.rows.filter((r) => Number(r.version) === want.get(r.device_id)).length;
    if (backlog === 0 && stored === total && final === ids.length) {
      return {
        ok: true,
        afterMs,
        text: `ok (every uplink message acknowledged; ${ids.length} shadows at their final version, ${stored} history points, one per report${again})`,
      };
    }
    if (afterMs > timeoutMs) {
      return {
        ok: false,
        afterMs,
        text: `FAILED: after ${timeoutMs} ms, ${backlog} uplink messages are unacknowledged and PostgreSQL holds ${stored} of ${total} history points and ${final} of ${ids.length} shadows at their final version${again}`,
      };
    }
    await sleep(100);
  }
}

/** Waits until exactly `online` of `ids` are online in the presence table. */
async function waitPresence(db: pg.Pool, ids: string[], online: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM presence WHERE online = 1 AND device_id = ANY($1)', [ids]);
    if (r.rows[0].n === online) return;
    if (Date.now() > until) throw new Error(`after ${timeoutMs} ms, ${r.rows[0].n} of ${ids.length} devices are online in PostgreSQL (waiting for ${online})`);
    await sleep(25);
  }
}

// ---------------------------------------------------------------------------------------------
// Reconnect wave

interface WaveResult {
  connections: number;
  /** From the first connect until every device is connected and subscribed. */
  connectMs: number;
  rate: number;
  /** Connects refused by admission ("server unavailable") and retried. */
  refused: number;
  /** From the first connect until PostgreSQL shows every device online. */
  presenceMs: number;
  gatewayCpuMsPerConnect: number;
  /** The gateway's event-loop delay p99 over the wave. */
  loopLagP99Ms?: number;
}

/**
 * Every device connects at once, `concurrency` at a time, as after an outage; a connect refused
 * by admission is retried after 100–300 ms, as a device's reconnect back-off would.
 */
async function reconnectWave(node: ClusterNode, devs: DeviceCred[], concurrency: number, db: pg.Pool): Promise<WaveResult> {
  const ids = devs.map((d) => d.id);
  await waitPresence(db, ids, 0, 60_000);
  await scrape(node); // restarts the event-loop delay window
  let refused = 0;
  const cpu0 = cpuMs(node.pid);
  const t0 = now();
  const presence = waitPresence(db, ids, ids.length, 120_000).then(() => now() - t0);
  presence.catch(() => undefined);
  const clients = await mapLimit(devs, concurrency, async (d): Promise<MqttClient> => {
    for (;;) {
      try {
        const c = await connectDevice(node.mqttUrl, d);
        await subscribe(c, `devices/${d.id}/commands`, 1);
        return c;
      } catch (err) {
        if (!/server unavailable/i.test((err as Error).message)) throw err;
        refused++;
        await sleep(100 + Math.random() * 200);
      }
    }
  });
  const connectMs = now() - t0;
  try {
    const presenceMs = await presence;
    const cpuUsed = cpuMs(node.pid) - cpu0;
    const lag = gauge(await scrape(node), 'hearth_nodejs_eventloop_lag_p99_seconds');
    return {
      connections: clients.length,
      connectMs,
      rate: clients.length / (connectMs / 1000),
      refused,
      presenceMs,
      gatewayCpuMsPerConnect: cpuUsed / clients.length,
      loopLagP99Ms: lag === undefined ? undefined : lag * 1000,
    };
  } finally {
    await closeClients(clients);
  }
}

// ---------------------------------------------------------------------------------------------
// Results

interface StoredCheck {
  ok: boolean;
  text: string;
  /** From the last shadow applied until the check passed (or gave up). */
  afterMs: number;
}

interface Results {
  ingest?: IngestResult;
  natsCpuMsPer1k?: number;
  pgCpuMsPer1k?: number;
  lagP50Ms?: number;
  lagP99Ms?: number;
  stored?: StoredCheck;
  /** Shards each ingest node owned (rendezvous hashing of the random node ids: rarely an even split). */
  shardsOwned?: number[];
  /** Ingest lag observations beyond the reports sent: reports handled more than once. */
  handledAgain?: number;
  /** The same devices publishing at PACED_SHARE of the saturated rate. */
  paced?: PacedResult;
  commands?: CommandResult;
  /** The same commands through the devices' own node. */
  commandsSameNode?: CommandResult;
  /** CPU of both nodes per command, warm-up included. */
  commandsCpuMsPerCommand?: number;
  gateway?: ConnectionResult;
  waveRaised?: WaveResult;
  waveDefault?: WaveResult;
}

interface Row {
  metric: string;
  better: 'up' | 'down';
  value?: number;
  /** A count, shown as an integer. */
  count?: boolean;
}

const show = (row: Row) => (row.count && row.value !== undefined ? row.value.toLocaleString('en-US') : fmt(row.value));

const mb = (kb: number | undefined) => (kb === undefined ? undefined : kb / 1024);
const perWorker = (r: Results) => (r.ingest ? r.ingest.completeRate / NODES : undefined);

/** Devices a gateway pod holds by memory alone: its headroom less the idle process, per connection. */
function devicesPerGateway(r: Results): number | undefined {
  const g = r.gateway;
  if (!g || g.perConnectionKb <= 0) return undefined;
  const budgetKb = POD.memoryGiB * 1024 * 1024 * POD.headroom;
  const n = (budgetKb - g.rssBeforeKb) / g.perConnectionKb;
  // Two significant digits: the memory per connection moves by a few KB between runs.
  const step = 10 ** Math.max(0, Math.floor(Math.log10(n)) - 1);
  return Math.floor(n / step) * step;
}

function rows(r: Results): Row[] {
  const c = P.concurrency;
  return [
    { metric: `ingest, persisted, ${NODES} nodes (msg/s)`, better: 'up', value: r.ingest?.completeRate },
    { metric: `ingest, acknowledged, ${NODES} nodes (msg/s)`, better: 'up', value: r.ingest?.ackedRate },
    { metric: 'ingest per worker node (msg/s)', better: 'up', value: perWorker(r) },
    { metric: `Hearth CPU per 1000 reports, ${NODES} nodes (ms)`, better: 'down', value: r.ingest?.cpuMsPer1k },
    { metric: 'NATS CPU per 1000 reports (ms)', better: 'down', value: r.natsCpuMsPer1k },
    { metric: 'PostgreSQL CPU per 1000 reports (ms)', better: 'down', value: r.pgCpuMsPer1k },
    { metric: 'ingest lag p50 (ms)', better: 'down', value: r.lagP50Ms },
    { metric: 'ingest lag p99 (ms)', better: 'down', value: r.lagP99Ms },
    { metric: 'reports handled more than once', better: 'down', value: r.handledAgain, count: true },
    { metric: `paced ingest at ${PACED_SHARE * 100}% of that (msg/s)`, better: 'up', value: r.paced?.rate },
    { metric: 'paced: ingest lag p50 (ms)', better: 'down', value: r.paced?.lagP50Ms },
    { metric: 'paced: ingest lag p99 (ms)', better: 'down', value: r.paced?.lagP99Ms },
    { metric: 'paced: Hearth CPU per 1000 reports (ms)', better: 'down', value: r.paced?.cpuMsPer1k },
    { metric: 'command via other node p50 (ms)', better: 'down', value: r.commands?.sequential.p50 },
    { metric: 'command via other node p95 (ms)', better: 'down', value: r.commands?.sequential.p95 },
    { metric: 'command via other node p99 (ms)', better: 'down', value: r.commands?.sequential.p99 },
    { metric: "command via the devices' node p50 (ms)", better: 'down', value: r.commandsSameNode?.sequential.p50 },
    { metric: "command via the devices' node p99 (ms)", better: 'down', value: r.commandsSameNode?.sequential.p99 },
    { metric: `commands x${c}, one API node (cmd/s)`, better: 'up', value: r.commands?.concurrentRate },
    { metric: `command x${c} p50 (ms)`, better: 'down', value: r.commands?.concurrent.p50 },
    { metric: `command x${c} p99 (ms)`, better: 'down', value: r.commands?.concurrent.p99 },
    { metric: 'API node CPU per command (ms)', better: 'down', value: r.commands?.cpuMsPerCommand },
    { metric: `Hearth CPU per command, ${NODES} nodes (ms)`, better: 'down', value: r.commandsCpuMsPerCommand },
    { metric: 'gateway node idle RSS (MB)', better: 'down', value: mb(r.gateway?.rssBeforeKb) },
    { metric: 'gateway memory per connection (KB)', better: 'down', value: r.gateway?.perConnectionKb },
    { metric: 'connect + subscribe, admission raised (conn/s)', better: 'up', value: r.gateway?.rate },
    { metric: 'reconnect wave, admission raised (conn/s)', better: 'up', value: r.waveRaised?.rate },
    { metric: 'reconnect wave, default admission (conn/s)', better: 'up', value: r.waveDefault?.rate },
    { metric: 'wave, default admission: connects refused', better: 'down', value: r.waveDefault?.refused, count: true },
    {
      metric: 'wave, default admission: all online in DB (s)',
      better: 'down',
      value: r.waveDefault === undefined ? undefined : r.waveDefault.presenceMs / 1000,
    },
    { metric: 'wave, admission raised: all online in DB (s)', better: 'down', value: r.waveRaised === undefined ? undefined : r.waveRaised.presenceMs / 1000 },
    { metric: 'gateway CPU per connect (ms)', better: 'down', value: r.waveRaised?.gatewayCpuMsPerConnect },
    { metric: 'gateway event-loop lag p99, wave (ms)', better: 'down', value: r.waveDefault?.loopLagP99Ms },
  ];
}

const arrow = (row: Row) => (row.better === 'up' ? '↑' : '↓');

function textTable(r: Results): string {
  const w = [48, 12];
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join(' ');
  return [
    line(['metric', 'cluster']),
    line(w.map((n) => '-'.repeat(n))),
    ...rows(r).map((row) => line([`${row.metric} ${arrow(row)}`, show(row)])),
    '↑ higher is better, ↓ lower is better',
  ].join('\n');
}

function markdownTable(r: Results): string {
  const out = ['| metric | cluster |', '|---|---:|'];
  for (const row of rows(r)) out.push(`| ${row.metric.trim()} ${arrow(row)} | ${show(row)} |`);
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Environment

function firstLine(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
      .split('\n')[0]
      .trim();
  } catch {
    return 'unknown';
  }
}

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
  revision: gitRevision(),
  // Debian installs nats-server in /usr/sbin, which is not on every user's PATH.
  nats:
    [firstLine('nats-server', ['--version']), firstLine('/usr/sbin/nats-server', ['--version'])]
      .find((v) => v !== 'unknown')
      ?.replace(/^nats-server:\s*/, '') ?? 'unknown',
  postgres: '',
};

/** Says plainly what the figures are worth on this machine. */
const sharedNote = () =>
  `This machine has ${ENV.cores} cores. The load generator, ${NODES} Hearth nodes, NATS and PostgreSQL share them, ` +
  'so every figure is a lower bound for one node with its own 2 vCPU.';

// ---------------------------------------------------------------------------------------------
// Phases

interface Infra {
  pg: PostgresServer;
  nats: NatsServer;
  databaseUrl: string;
  natsPid?: number;
  pgPid?: number;
  db: pg.Pool;
  /** The benchmark's own NATS connection, to read the uplink consumers' state. */
  nc: NatsConnection;
  jsm: JetStreamManager;
}

async function startInfra(): Promise<Infra> {
  log('starting PostgreSQL and NATS JetStream ...');
  const [pgServer, nats] = await Promise.all([startPostgres(), startNats()]);
  const databaseUrl = await pgServer.createDatabase();
  const natsPid = findProcess(listensOn('nats-server', new URL(nats.url).port));
  const pgPid = findProcess(listensOn('postgres', new URL(databaseUrl).port));
  if (natsPid === undefined) log('warning: the nats-server process was not found; its CPU is not reported');
  if (pgPid === undefined) log('warning: the PostgreSQL server process was not found; its CPU is not reported');
  // If the benchmark dies, nats-server must not outlive it (the helper stops PostgreSQL itself).
  if (natsPid !== undefined) {
    process.once('exit', () => {
      try {
        process.kill(natsPid, 'SIGKILL');
      } catch {
        /* already stopped */
      }
    });
  }
  const db = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  db.on('error', () => undefined);
  const nc = await natsConnect({ servers: nats.url, name: 'hearth-bench' });
  return { pg: pgServer, nats, databaseUrl, natsPid, pgPid, db, nc, jsm: await jetstreamManager(nc) };
}

/**
 * Phases 1 and 2 on `NODES` nodes with all roles; returns the devices left for the gateway phase.
 * The nodes stay up for that phase, so that presence events reach their caches as in a real cluster.
 */
async function ingestAndCommands(tmp: string, infra: Infra, results: Results): Promise<DeviceCred[]> {
  const shared = { databaseUrl: infra.databaseUrl, natsUrl: infra.nats.url };
  log(`starting ${NODES} Hearth nodes (all roles) ...`);
  // The first node migrates the fresh database alone; the others start together.
  const first = await startNode('node-a', tmp, shared);
  const nodes = [first, ...(await Promise.all(Array.from({ length: NODES - 1 }, (_, i) => startNode(`node-${String.fromCharCode(98 + i)}`, tmp, shared))))];
  const [a, b] = nodes;
  const apiA = new Api(a.httpUrl);
  const apiB = new Api(b.httpUrl);
  try {
    const owned = (results.shardsOwned = await waitShardsSpread(nodes, infra.db, 30_000));
    log(`shards owned: ${nodes.map((n, i) => `${n.name} ${owned[i]}`).join(', ')}`);
    await apiA.login(BENCH_ADMIN.email, BENCH_ADMIN.password);
    await apiB.login(BENCH_ADMIN.email, BENCH_ADMIN.password);
    const t = Date.now();
    const all = await apiA.provision(P.devices + P.concurrency + P.connections + WARMUP_CONNECTIONS, 'light', 'bench light');
    log(`provisioned ${all.length} devices in ${Date.now() - t} ms`);
    const ingestDevs = all.slice(0, P.devices);
    const cmdDevs = all.slice(P.devices, P.devices + P.concurrency);
    const connDevs = all.slice(P.devices + P.concurrency);

    // 1. Ingest -----------------------------------------------------------------------------
    log(
      `\n[1/3] cluster ingest: ${P.devices} devices (alternately on ${nodes.map((n) => n.name).join(' and ')}), ${P.messages} QoS 1 reports, ${P.window} in flight per device`,
    );
    const errors: string[] = [];
    const infraCpu = () => ({
      nats: infra.natsPid === undefined ? NaN : treeCpuMs(infra.natsPid),
      pg: infra.pgPid === undefined ? NaN : treeCpuMs(infra.pgPid),
    });
    let cpu0 = infraCpu();
    let cpu1 = cpu0;
    const lag0 = await ingestLag(nodes);
    results.ingest = await runIngest({
      url: (i) => nodes[i % nodes.length].mqttUrl,
      devs: ingestDevs,
      serverPid: a.pid,
      cpuPids: nodes.map((n) => n.pid),
      params: { perDevice, window: P.window, batch: P.batch },
      prepare: async (c, d) => {
        c.on('message', (topic, payload) => {
          if (topic === `devices/${d.id}/errors`) errors.push(`${d.id}: ${payload.toString('utf8')}`);
        });
        await subscribe(c, `devices/${d.id}/errors`, 1);
      },
      arm: () => void (cpu0 = infraCpu()),
      complete: async () => {
        // A report applied twice does not stop the run: the settling check below counts them all.
        await waitShadows(
          apiB,
          ingestDevs,
          perDevice,
          () => errors[0],
          180_000,
          () => undefined,
        );
        cpu1 = infraCpu();
      },
    });
    const lag1 = await ingestLag(nodes);
    const lag: Buckets = new Map([...lag1].map(([le, n]) => [le, n - (lag0.get(le) ?? 0)]));
    const k = results.ingest.messages / 1000;
    results.natsCpuMsPer1k = (cpu1.nats - cpu0.nats) / k;
    results.pgCpuMsPer1k = (cpu1.pg - cpu0.pg) / k;
    results.lagP50Ms = quantile(lag, 0.5) * 1000;
    results.lagP99Ms = quantile(lag, 0.99) * 1000;
    const ing = results.ingest;
    log(
      `  ${fmt(ing.completeRate)} msg/s persisted (${fmt(ing.completeMs / 1000)} s), ${fmt(ing.ackedRate)} msg/s acknowledged; ingest lag p50 ${fmt(results.lagP50Ms)} ms, p99 ${fmt(results.lagP99Ms)} ms (${lag.get(Infinity) ?? 0} observations)`,
    );
    log(`  CPU per 1000 reports: Hearth ${fmt(ing.cpuMsPer1k)} ms, NATS ${fmt(results.natsCpuMsPer1k)} ms, PostgreSQL ${fmt(results.pgCpuMsPer1k)} ms`);
    results.stored = await checkStored(infra.db, infra.jsm, ingestDevs, perDevice, 60_000);
    // Counted once the run settled: a report delivered again after its acknowledgement was late is handled again.
    results.handledAgain = Math.max(0, ((await ingestLag(nodes)).get(Infinity) ?? 0) - (lag0.get(Infinity) ?? 0) - ing.messages);
    if (results.handledAgain) log(`  ${results.handledAgain} reports were handled more than once`);
    log(`  settled: ${results.stored.text}${results.stored.ok ? `, ${fmt(results.stored.afterMs)} ms after the last shadow applied` : ''}`);

    // 1b. The same devices at 80% of the saturated rate: the lag a cluster shows below saturation.
    const target = PACED_SHARE * results.ingest.completeRate;
    log(`\n[1b/3] paced ingest: ${fmt(target)} msg/s (${PACED_SHARE * 100}% of the rate above) for ${P.pacedSeconds} s`);
    results.paced = await pacedIngest({
      nodes,
      devs: ingestDevs,
      before: perDevice,
      rate: target,
      seconds: P.pacedSeconds,
      complete: (expected) =>
        waitShadows(
          apiB,
          ingestDevs,
          expected,
          () => errors[0],
          180_000,
          () => undefined,
        ),
    });
    log(
      `  ${fmt(results.paced.rate)} msg/s sent; ingest lag p50 ${fmt(results.paced.lagP50Ms)} ms, p99 ${fmt(results.paced.lagP99Ms)} ms; Hearth CPU per 1000 reports ${fmt(results.paced.cpuMsPer1k)} ms`,
    );

    // 2. Commands ---------------------------------------------------------------------------
    log(
      `\n[2/3] cluster commands: REST on ${b.name} to devices on ${a.name}; ${P.commands} sequential, then ${P.commands} with ${P.concurrency} in flight (after ${WARMUP_COMMANDS} warm-up)`,
    );
    const devClients = await connectAll(a.mqttUrl, cmdDevs, P.batch, answerCommands);
    try {
      await waitOnline(
        apiB,
        cmdDevs.map((d) => d.id),
      );
      const hearthCpu = () => nodes.reduce((s, n) => s + cpuMs(n.pid), 0);
      const c0 = hearthCpu();
      results.commands = await runCommands({
        devs: cmdDevs,
        count: P.commands,
        concurrency: P.concurrency,
        warmup: WARMUP_COMMANDS,
        serverPid: b.pid,
        send: (id) => apiB.toggle(id),
      });
      results.commandsCpuMsPerCommand = (hearthCpu() - c0) / (WARMUP_COMMANDS + 2 * P.commands);
      // The same through the devices' own node, for the cost of the extra hop.
      results.commandsSameNode = await runCommands({
        devs: cmdDevs,
        count: P.commands,
        concurrency: P.concurrency,
        warmup: WARMUP_COMMANDS,
        serverPid: a.pid,
        send: (id) => apiA.toggle(id),
      });
    } finally {
      await closeClients(devClients);
    }
    const hc = results.commands;
    log(
      `  p50 ${fmt(hc.sequential.p50)} ms, p95 ${fmt(hc.sequential.p95)} ms, p99 ${fmt(hc.sequential.p99)} ms; x${hc.concurrency}: ${fmt(hc.concurrentRate)} cmd/s, p99 ${fmt(hc.concurrent.p99)} ms`,
    );
    const hs = results.commandsSameNode;
    log(
      `  the same through ${a.name} (the devices' node): p50 ${fmt(hs.sequential.p50)} ms, p99 ${fmt(hs.sequential.p99)} ms; x${hs.concurrency}: ${fmt(hs.concurrentRate)} cmd/s, p99 ${fmt(hs.concurrent.p99)} ms`,
    );
    return connDevs;
  } finally {
    apiA.close();
    apiB.close();
  }
}

interface PacedResult {
  /** Reports per second actually sent. */
  rate: number;
  lagP50Ms: number;
  lagP99Ms: number;
  cpuMsPer1k: number;
}

/**
 * Each device publishes QoS 1 reports at an even pace (rate / devices per second, on a timer, not
 * waiting for acknowledgements) for `seconds`; then waits until every report was applied. The lag
 * quantiles are those of `hearth_ingest_lag_seconds` over the run, from both nodes.
 */
async function pacedIngest(opts: {
  nodes: ClusterNode[];
  devs: DeviceCred[];
  /** Each device's shadow version before the run. */
  before: number[];
  rate: number;
  seconds: number;
  complete: (expected: number[]) => Promise<void>;
}): Promise<PacedResult> {
  const { nodes, devs } = opts;
  const clients = await connectAll((i) => nodes[i % nodes.length].mqttUrl, devs, P.batch);
  try {
    const sent = devs.map(() => 0);
    const lag0 = await ingestLag(nodes);
    const hearthCpu = () => nodes.reduce((s, n) => s + cpuMs(n.pid), 0);
    const cpu0 = hearthCpu();
    const t0 = now();
    const end = t0 + opts.seconds * 1000;
    const perDeviceRate = opts.rate / devs.length;
    // A tick every 10 ms: each device sends what its pace owes it by then.
    await new Promise<void>((resolve) => {
      const tick = setInterval(() => {
        const t = Math.min(now(), end);
        const owed = Math.floor(((t - t0) / 1000) * perDeviceRate);
        clients.forEach((c, i) => {
          while (sent[i] < owed) {
            sent[i]++;
            c.publish(`devices/${devs[i].id}/properties`, report(opts.before[i] + sent[i]), { qos: 1 });
          }
        });
        if (t >= end) {
          clearInterval(tick);
          resolve();
        }
      }, 10);
    });
    const total = sent.reduce((a, b) => a + b, 0);
    await opts.complete(opts.before.map((b, i) => b + sent[i]));
    const cpu = hearthCpu() - cpu0;
    const lag1 = await ingestLag(nodes);
    const lag: Buckets = new Map([...lag1].map(([le, n]) => [le, n - (lag0.get(le) ?? 0)]));
    return {
      rate: total / opts.seconds,
      lagP50Ms: quantile(lag, 0.5) * 1000,
      lagP99Ms: quantile(lag, 0.99) * 1000,
      cpuMsPer1k: (cpu / total) * 1000,
    };
  } finally {
    await closeClients(clients);
  }
}

async function gatewayCapacity(tmp: string, infra: Infra, devs: DeviceCred[], results: Results): Promise<void> {
  const shared = { databaseUrl: infra.databaseUrl, natsUrl: infra.nats.url };
  const warm = devs.slice(0, WARMUP_CONNECTIONS);
  const conn = devs.slice(WARMUP_CONNECTIONS);
  log(
    `\n[3/3] gateway capacity: a fresh HEARTH_ROLES=gateway node; ${conn.length} idle devices (connect + subscribe, ${P.batch} at a time; open-file limit ${fdLimit})`,
  );
  const raised = await startNode('gateway-raised', tmp, shared, {
    HEARTH_ROLES: 'gateway',
    HEARTH_CONNECT_RATE_PER_SECOND: '1000000',
    HEARTH_CONNECT_BURST: '1000000',
  });
  try {
    await sleep(1000);
    results.gateway = await runConnections({ url: raised.mqttUrl, devs: conn, warmup: warm, batch: P.batch, serverPid: raised.pid });
    const g = results.gateway;
    log(
      `  admission raised: ${fmt(g.rate)} conn/s, RSS ${fmt(g.rssBeforeKb / 1024)} → ${fmt(g.rssAfterKb / 1024)} MB, ${fmt(g.perConnectionKb)} KB per connection`,
    );
    results.waveRaised = await reconnectWave(raised, conn, P.wave, infra.db);
    const w = results.waveRaised;
    log(
      `  reconnect wave (${P.wave} at a time), admission raised: ${fmt(w.rate)} conn/s, ${w.refused} refused; all online in PostgreSQL after ${fmt(w.presenceMs / 1000)} s`,
    );
  } finally {
    const code = await raised.stop();
    if (code !== 0) log(`warning: ${raised.name} exited with ${code} after SIGTERM:\n${raised.output()}`);
  }
  const standard = await startNode('gateway-default', tmp, shared, { HEARTH_ROLES: 'gateway' });
  try {
    // An unmeasured wave first: the node above had served as many connections before its wave.
    await reconnectWave(standard, conn, P.wave, infra.db);
    await sleep(1000);
    results.waveDefault = await reconnectWave(standard, conn, P.wave, infra.db);
    const w = results.waveDefault;
    log(
      `  reconnect wave (${P.wave} at a time), default admission (${ADMISSION.rate}/s, burst ${ADMISSION.burst}): ${fmt(w.rate)} conn/s, ${w.refused} refused and retried; all online in PostgreSQL after ${fmt(w.presenceMs / 1000)} s`,
    );
  } finally {
    const code = await standard.stop();
    if (code !== 0) log(`warning: ${standard.name} exited with ${code} after SIGTERM:\n${standard.output()}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Documents

const BEGIN = '<!-- cluster:begin -->';
const END = '<!-- cluster:end -->';

/** Whether the admission limit, or this machine, bounded the reconnect wave. */
function admissionNote(r: Results): string {
  const w = r.waveDefault;
  if (!w) return '';
  if (w.refused === 0) {
    return `\n- The wave with the default admission was refused nothing: here a gateway connected ${fmt(w.rate)} devices/s,
  below the ${ADMISSION.rate}/s it admits, so this machine's CPU, not admission, bounded it.`;
  }
  return `\n- The wave with the default admission had ${w.refused.toLocaleString('en-US')} connects refused and retried: admission (${ADMISSION.rate}/s, burst ${ADMISSION.burst})
  bounded it at ${fmt(w.rate)} conn/s, against ${fmt(r.waveRaised?.rate)} conn/s with the limit raised.`;
}

function section(r: Results, elapsedS: number): string {
  const perConn = r.gateway?.perConnectionKb;
  const devices = devicesPerGateway(r);
  return `${BEGIN}
## Cluster mode

\`BENCH_MODE=cluster npm run bench\` runs Hearth as a cluster on the same machine: PostgreSQL,
NATS JetStream and Hearth nodes (\`node bin/hearth.js start\` with \`HEARTH_DATABASE_URL\` and
\`HEARTH_NATS_URL\`) as separate processes, simulated devices connecting straight to the nodes'
MQTT ports. It regenerates this section and the sizing table in docs/operations.md.

**${sharedNote()}**
Per-node figures divide the cluster's by its nodes; they are what a node did here, not what it
would do alone.

### Method

1. **Ingest.** ${NODES} nodes with all roles; ${P.devices} devices, alternately on each node's
   MQTT port, publish QoS 1 property reports as in the embedded benchmark, ${P.window} in flight
   each; a report's shard is often owned by the other node, so it crosses NATS. The clock stops
   when every device's shadow (read through the API) reaches a version equal to its report
   count. *Hearth CPU* is both nodes' user + system time over that window; NATS's and
   PostgreSQL's (the server and its connection processes) are shown apart. *Ingest lag* is
   \`hearth_ingest_lag_seconds\` (gateway to worker) from both nodes' \`/metrics\`, the run's
   observations up to completion, quantiles interpolated inside the buckets. Afterwards the run
   must settle: no uplink message left unacknowledged in JetStream, and PostgreSQL holding
   every history point (one per report) and every shadow at its final version, none past it.
   Lag observations beyond the reports sent, counted then, are reports handled more than once
   (delivered again by JetStream).
   *Paced ingest*: then the same devices publish at ${PACED_SHARE * 100}% of the rate just measured, evenly
   (each device on a 10 ms timer, not waiting for acknowledgements) for ${P.pacedSeconds} s, until every
   report was applied; its lag quantiles are those of that run alone: the lag of a cluster
   working below saturation, where a saturated run's lag is only its backlog.
2. **Commands.** ${P.concurrency} devices on node A answer commands; \`POST
   /api/v1/devices/{id}/commands\` goes to node B, which routes it over NATS; timed until the
   HTTP response (sent once the device answered). One at a time, then ${P.concurrency} in flight.
   Then the same through node A, the devices' own node, for the cost of the hop.
3. **Gateway.** A fresh node with \`HEARTH_ROLES=gateway\` and the admission limit raised:
   ${P.connections - WARMUP_CONNECTIONS} idle devices connect and subscribe, ${P.batch} at a time; memory per connection is the growth
   of its VmRSS divided by the connections, 2 s after the last. Then a reconnect wave (all
   devices at once, ${P.wave} connecting at a time, a refused connect retried after 100–300 ms),
   timed until every device is connected and until PostgreSQL's presence table shows every
   device online (the presence write path). The wave is run again on a fresh gateway with the
   default admission (\`HEARTH_CONNECT_RATE_PER_SECOND\` ${ADMISSION.rate}, \`HEARTH_CONNECT_BURST\` ${ADMISSION.burst}),
   after one unmeasured wave, so that both nodes are equally warm.

### Results

${markdownTable(r)}

↑ higher is better, ↓ lower is better.

Settling check after the ingest run: ${r.stored?.text ?? 'not run'}.
Whole benchmark: ${elapsedS.toFixed(0)} s.

Reading the table:

- *Ingest per worker node* is the cluster's rate divided by its ${NODES} nodes, each of which was
  also a gateway and an API node; they owned ${r.shardsOwned?.join(' and ') ?? 'n/a'} of the shards.
  *Hearth CPU per 1000 reports* is what the cluster spends on a report (gateway, bus, worker,
  and the API reads of the completion check), so a node with a core to itself would take
  about 10⁶ / ${fmt(r.ingest?.cpuMsPer1k)} ≈ ${fmt(r.ingest ? 1e6 / r.ingest.cpuMsPer1k : undefined)} reports/s, if NATS and PostgreSQL keep up.
- *Devices per gateway node* in the sizing table is derived, not measured at that count:
  (${Math.round(POD.headroom * 100)}% of ${POD.memoryGiB} GiB − ${fmt(mb(r.gateway?.rssBeforeKb))} MB idle) / ${fmt(perConn)} KB per connection ≈ ${fmt(devices)}.
  Idle connections only; devices that report, and the reconnect wave after losing a node,
  need CPU that this does not measure. At the default admission rate a gateway takes
  ${fmt(devices === undefined ? undefined : devices / ADMISSION.rate)} s to readmit that many devices.${admissionNote(r)}

### Parameters

- ingest: ${P.devices} devices (product \`light\`), ${P.messages} QoS 1 property reports in total (${perDevice[0]} per device), up to ${P.window} unacknowledged per client
- commands: ${P.commands} sequential to one device, then ${P.commands} with ${P.concurrency} in flight (one device each), after ${WARMUP_COMMANDS} warm-up commands
- gateway: ${P.connections - WARMUP_CONNECTIONS} idle devices (after ${WARMUP_CONNECTIONS} warm-up connections), ${P.batch} at a time; waves ${P.wave} at a time; open-file limit ${fdLimit}${requestedConnections !== P.connections ? ` (${requestedConnections} connections requested)` : ''}
- Hearth: ${NODES} nodes with \`HEARTH_ROLES=all\`, then gateway-only nodes; \`HEARTH_LOG_LEVEL=warn\`, the per-user request rate limit raised out of the way, defaults otherwise (\`HEARTH_SHARDS\` 32)
- ${ENV.postgres} (\`fsync=off\`, \`synchronous_commit=off\`: the test server of test/helpers/postgres.ts); nats-server ${ENV.nats} with JetStream (file store)

### Environment

- date: ${ENV.date}
- node: ${ENV.node}
- cpu: ${ENV.cpu}, ${ENV.cores} cores; ${ENV.memoryGb.toFixed(1)} GB RAM; load average at start ${ENV.loadavg}
- Hearth revision: ${ENV.revision}
${END}
`;
}

/** Replaces the text between `begin` and `end` in `file` (or appends the block when absent). */
function replaceBlock(file: string, begin: string, end: string, block: string, appendIfMissing: boolean): void {
  const text = readFileSync(file, 'utf8');
  const i = text.indexOf(begin);
  const j = text.indexOf(end);
  if (i >= 0 && j > i) {
    writeFileSync(file, text.slice(0, i) + block.trimEnd() + text.slice(j + end.length));
  } else if (appendIfMissing) {
    writeFileSync(file, `${text.trimEnd()}\n\n${block}`);
  } else {
    throw new Error(`${file} has no ${begin} … ${end} block`);
  }
}

/** Cluster sizes of the projection table. */
const PROJECTED_NODES = [1, 2, 4, 8, 16, 32];
/** The share of a node's cores the projection lets Hearth use (the rest: headroom, GC spikes, the reconnect wave). */
const CPU_BUDGET = 0.7;

/**
 * Ingest throughput projected for N nodes of 2 vCPU from the CPU a report cost (Hearth, NATS and
 * PostgreSQL apart), with the assumptions stated: this 2-core machine cannot show scaling itself.
 */
function projection(r: Results): string {
  const c = r.paced?.cpuMsPer1k ?? r.ingest?.cpuMsPer1k;
  if (c === undefined) return '';
  const perNode = (POD.cpus * CPU_BUDGET * 1_000_000) / c;
  const cores = (perK: number | undefined, rate: number) => (perK === undefined || !Number.isFinite(perK) ? 'n/a' : fmt((rate * perK) / 1_000_000));
  const lines = PROJECTED_NODES.map((n) => `| ${n} | ${fmt(n * perNode)} | ${cores(r.natsCpuMsPer1k, n * perNode)} | ${cores(r.pgCpuMsPer1k, n * perNode)} |`);
  return `**Projected ingest for N nodes** (every node with all roles, ${POD.cpus} vCPU each). Measured: a report costs ${fmt(c)} ms of Hearth CPU over the whole cluster (${r.paced ? `the paced run, at ${PACED_SHARE * 100}% of saturation` : 'the saturated run'}); a node gives Hearth ${Math.round(CPU_BUDGET * 100)}% of its cores, so it handles ${POD.cpus} × ${CPU_BUDGET} × 1000 / ${fmt(c)} ≈ ${fmt(perNode)} reports/s, and N nodes N times that. Assumed: devices and shards spread evenly over the nodes (rendezvous hashing; \`HEARTH_SHARDS\` well above N), a report crossing to another node costs what it cost here (here half of them did; with N nodes (N−1)/N do, so the figure is optimistic by up to the cost of that hop), and NATS and PostgreSQL get the cores the last two columns say (their CPU per report as measured here: ${fmt(r.natsCpuMsPer1k)} and ${fmt(r.pgCpuMsPer1k)} ms per 1000 reports), with PostgreSQL's write capacity, not its CPU, the first limit on one server in practice.

| nodes | reports/s | NATS cores | PostgreSQL cores |
|---:|---:|---:|---:|
${lines.join('\n')}`;
}

function sizingTable(r: Results): string {
  const day = ENV.date.slice(0, 10);
  const devices = devicesPerGateway(r);
  const w = r.waveDefault;
  return `<!-- sizing:begin -->
| Measure | Per node (2 vCPU, 4 GiB) | Limit reached by | Measured with |
|---|---|---|---|
| devices per gateway node | ~${fmt(devices)} (derived) | memory: ${Math.round(POD.headroom * 100)}% of ${POD.memoryGiB} GiB at ${fmt(r.gateway?.perConnectionKb)} KB per idle connection (${fmt(mb(r.gateway?.rssBeforeKb))} MB idle); readmitting them at the default ${ADMISSION.rate}/s takes ${fmt(devices === undefined ? undefined : devices / ADMISSION.rate)} s | ${P.connections - WARMUP_CONNECTIONS} idle connections on a \`HEARTH_ROLES=gateway\` node; a reconnect wave ran at ${fmt(w?.rate)} conn/s with the default admission (all online in PostgreSQL after ${fmt(w === undefined ? undefined : w.presenceMs / 1000)} s) |
| messages/s per worker | ${fmt(perWorker(r))} (measured, lower bound${r.stored?.ok ? '' : '; this run failed its settling check, see benchmarks.md'}) | CPU of the shared ${ENV.cores}-core machine; ingest lag p99 ${fmt(r.lagP99Ms)} ms | ${NODES} nodes with all roles, ${P.devices} devices × ${perDevice[0]} QoS 1 reports; cluster ${fmt(r.ingest?.completeRate)} msg/s persisted, Hearth ${fmt(r.ingest?.cpuMsPer1k)} ms CPU per 1000 reports |
| commands/s per API node | ${fmt(r.commands?.concurrentRate)} (measured, lower bound) | CPU of the shared ${ENV.cores}-core machine; p99 ${fmt(r.commands?.concurrent.p99)} ms | ${P.concurrency} in flight through one API node to devices on another node; one at a time p50 ${fmt(r.commands?.sequential.p50)} ms |

${projection(r)}

_Measured by \`BENCH_MODE=cluster npm run bench\` on ${day}, one ${ENV.cores}-core machine (${ENV.cpu}) running the load generator, ${NODES} nodes, NATS and PostgreSQL together; details in [benchmarks.md](benchmarks.md#cluster-mode)._
<!-- sizing:end -->`;
}

// ---------------------------------------------------------------------------------------------
// Main

/** Runs the cluster benchmark; resolves with the process exit code. */
export async function main(): Promise<number> {
  const startedAt = Date.now();
  const tmp = mkdtempSync(join(tmpdir(), 'hearth-bench-cluster-'));
  let infra: Infra | undefined;
  let cleaningUp: Promise<void> | undefined;
  let interrupted = false;
  const cleanup = () => {
    cleaningUp ??= (async () => {
      await closeClients().catch(() => undefined);
      await killAll(10_000).catch(() => undefined);
      if (infra) {
        await infra.db.end().catch(() => undefined);
        await infra.nc.close().catch(() => undefined);
        await Promise.all([infra.nats.stop(), infra.pg.stop()]).catch(() => undefined);
      }
      if (process.env.BENCH_KEEP !== '1') rmSync(tmp, { recursive: true, force: true });
    })();
    return cleaningUp;
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      interrupted = true;
      log(`\n${sig}: stopping`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  const watchdog = setTimeout(() => {
    log(`\nbenchmark did not finish within ${TIMEOUT_S} s; aborting`);
    void cleanup().finally(() => process.exit(1));
  }, TIMEOUT_S * 1000);

  log(`Hearth cluster benchmark${QUICK ? ' (quick mode)' : ''}: node ${ENV.node}, ${ENV.cpu} x${ENV.cores}, load ${ENV.loadavg}`);
  log(sharedNote());
  if (P.connections < requestedConnections) log(`note: ${requestedConnections} connections requested; using ${P.connections} (open-file limit ${fdLimit})`);

  const results: Results = {};
  try {
    infra = await startInfra();
    ENV.postgres = (await infra.db.query<{ v: string }>("SELECT 'PostgreSQL ' || current_setting('server_version') AS v")).rows[0].v;
    const connDevs = await ingestAndCommands(tmp, infra, results);
    await gatewayCapacity(tmp, infra, connDevs, results);
  } catch (err) {
    if (!interrupted) {
      log(`\ncluster benchmark failed: ${(err as Error).stack ?? err}`);
      for (const n of started) if (n.output().trim()) log(`\n--- ${n.name} (last lines) ---\n${n.output().trimEnd()}`);
    }
    await cleanup();
    clearTimeout(watchdog);
    return 1;
  }
  await cleanup();
  clearTimeout(watchdog);
  if (openClientCount() > 0) log(`warning: ${openClientCount()} MQTT clients still open`);

  const elapsed = (Date.now() - startedAt) / 1000;
  log('\n' + textTable(results));
  log(`\n${sharedNote()}`);
  log(`settling check after the ingest run: ${results.stored?.text}`);
  log(`devices per gateway node (derived, ${Math.round(POD.headroom * 100)}% of ${POD.memoryGiB} GiB): ~${fmt(devicesPerGateway(results))}`);
  log(`whole run: ${elapsed.toFixed(0)} s`);
  if (WRITE_DOCS) {
    replaceBlock(join(ROOT, 'docs', 'benchmarks.md'), BEGIN, END, section(results, elapsed), true);
    replaceBlock(join(ROOT, 'docs', 'operations.md'), '<!-- sizing:begin -->', '<!-- sizing:end -->', sizingTable(results), false);
    log('wrote the cluster section of docs/benchmarks.md and the sizing table of docs/operations.md');
  } else {
    log(`docs not written (${QUICK ? 'quick mode; ' : ''}BENCH_WRITE_DOCS=1 to write them)`);
  }
  return results.stored?.ok ? 0 : 1;
}
