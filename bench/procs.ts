/**
 * Child processes of the benchmark (the Hearth server, the reference broker, helpers):
 * starting them, reading their memory, and making sure none outlives the benchmark.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sleep } from './stats.ts';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Every child still running; killed (SIGKILL) when the benchmark exits for any reason. */
const live = new Set<ChildProcess>();

process.on('exit', () => {
  for (const c of live) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

/** Tracks a child so that it is killed if the benchmark exits before stopping it. */
export function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/** Kills every tracked child (SIGTERM, then SIGKILL after `graceMs`). */
export async function killAll(graceMs = 5000): Promise<void> {
  await Promise.all([...live].map((c) => stopChild(c, 'SIGTERM', graceMs)));
}

/** Sends `signal` and waits for the exit; SIGKILL after `graceMs`. Resolves with the exit code (or signal name). */
export function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<number | string | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode ?? child.signalCode);
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', (code, sig) => {
      clearTimeout(force);
      resolve(code ?? sig);
    });
    child.kill(signal);
  });
}

/**
 * A free TCP port on 127.0.0.1, below the ephemeral range (Linux: 32768 and up): the load
 * generator's tens of thousands of client connections take ephemeral ports, and one of them could
 * take a port chosen free a moment before a server binds it.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const free = await new Promise<boolean>((resolve) => {
      const srv = createServer();
      srv.unref();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (free) return port;
    if (attempt >= 50) throw new Error('no free port found between 20000 and 32000');
  }
}

/** Resident set size of a process in KB (VmRSS of /proc/PID/status). */
export function rssKb(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}

let clkTck: number | undefined;

/** CPU time (user + system) a process has used so far, in ms (from /proc/PID/stat). */
export function cpuMs(pid: number): number {
  clkTck ??= (() => {
    try {
      return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      return 100;
    }
  })();
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces): state is field 3, utime 14, stime 15.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(rest[11]) + Number(rest[12])) * 1000) / clkTck;
}

/** Keeps the last `max` lines of a child's output, for error reports. */
class Tail {
  private lines: string[] = [];
  private partial = '';
  constructor(private readonly max = 40) {}
  push(chunk: Buffer): void {
    const parts = (this.partial + chunk.toString('utf8')).split('\n');
    this.partial = parts.pop() ?? '';
    this.lines.push(...parts);
    if (this.lines.length > this.max) this.lines.splice(0, this.lines.length - this.max);
  }
  text(): string {
    return [...this.lines, this.partial].filter(Boolean).join('\n');
  }
}

export interface Server {
  name: string;
  pid: number;
  mqttUrl: string;
  /** Last lines of the server's output. */
  output(): string;
  stop(): Promise<number | string | null>;
}

function watchOutput(child: ChildProcess): Tail {
  const tail = new Tail();
  child.stdout?.on('data', (c: Buffer) => tail.push(c));
  child.stderr?.on('data', (c: Buffer) => tail.push(c));
  return tail;
}

/** Rejects as soon as the child exits (used while waiting for readiness). */
function exitPromise(child: ChildProcess, name: string, tail: Tail): Promise<never> {
  return new Promise((_, reject) => {
    child.once('exit', (code, sig) => reject(new Error(`${name} exited early (${code ?? sig}):\n${tail.text()}`)));
    child.once('error', (err) => reject(new Error(`${name} could not be started: ${err.message}`)));
  });
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

export interface HearthServer extends Server {
  httpUrl: string;
  dataDir: string;
  /** From the spawn of `node bin/hearth.js start` to the first 200 from /readyz. */
  readyMs: number;
}

export const BENCH_ADMIN = { email: 'bench@hearth.local', password: 'bench-password-1' };

/**
 * Starts `node bin/hearth.js start` as a child process on free loopback ports with `dataDir`,
 * and waits until GET /readyz answers 200. `nodeArgs` go to the child's node (e.g. --cpu-prof).
 */
export async function startHearth(dataDir: string, nodeArgs: string[] = [], env: Record<string, string> = {}): Promise<HearthServer> {
  const [httpPort, mqttPort] = [await freePort(), await freePort()];
  const spawnedAt = performance.now();
  const child = track(
    spawn(process.execPath, [...nodeArgs, join(ROOT, 'bin/hearth.js'), 'start'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        // Hearth's defaults apart from what is set here: HEARTH_* settings of the calling shell are not passed on.
        ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HEARTH_'))),
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
  const tail = watchOutput(child);
  const httpUrl = `http://127.0.0.1:${httpPort}`;
  const exited = exitPromise(child, 'hearth', tail);
  exited.catch(() => undefined);
  await Promise.race([exited, waitFor(async () => (await fetch(`${httpUrl}/readyz`)).status === 200, 60_000, 'hearth /readyz')]);
  return {
    readyMs: performance.now() - spawnedAt,
    name: 'hearth',
    pid: child.pid!,
    httpUrl,
    dataDir,
    mqttUrl: `mqtt://127.0.0.1:${mqttPort}`,
    output: () => tail.text(),
    stop: () => stopChild(child, 'SIGTERM', 30_000),
  };
}

/** The reference broker's binary; BENCH_MOSQUITTO=<path> picks another (a missing path means "not installed"). */
export const MOSQUITTO_BIN = (
  process.env.BENCH_MOSQUITTO
    ? [process.env.BENCH_MOSQUITTO]
    : ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto', '/usr/local/bin/mosquitto']
).find((p) => existsSync(p));

/** `mosquitto version 2.0.11`, or undefined. */
export function mosquittoVersion(): string | undefined {
  if (!MOSQUITTO_BIN) return undefined;
  try {
    // `mosquitto -h` prints its version first and exits with status 3.
    execFileSync(MOSQUITTO_BIN, ['-h'], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const out = String((err as { stdout?: Buffer }).stdout ?? '');
    return out.split('\n')[0]?.trim() || undefined;
  }
  return undefined;
}

/**
 * Starts the reference broker on a free loopback port with Nagle off and no queue limit,
 * and waits until it accepts TCP connections.
 */
export async function startMosquitto(dir: string): Promise<Server> {
  if (!MOSQUITTO_BIN) throw new Error('mosquitto is not installed');
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence false',
      'set_tcp_nodelay true',
      'max_queued_messages 0',
      'max_connections -1',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      '',
    ].join('\n'),
  );
  const child = track(spawn(MOSQUITTO_BIN, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const tail = watchOutput(child);
  const exited = exitPromise(child, 'mosquitto', tail);
  exited.catch(() => undefined);
  const tcpOpen = () =>
    new Promise<boolean>((resolve) => {
      const s = netConnect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
  await Promise.race([exited, waitFor(tcpOpen, 10_000, 'mosquitto to listen')]);
  return {
    name: 'mosquitto',
    pid: child.pid!,
    mqttUrl: `mqtt://127.0.0.1:${port}`,
    output: () => tail.text(),
    stop: () => stopChild(child, 'SIGTERM', 10_000),
  };
}

/** Spawns a TypeScript helper of the benchmark (run through tsx) with an IPC channel. */
export function spawnHelper(script: string, args: string[]): ChildProcess {
  return track(
    spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', script), ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    }),
  );
}

/** Where Hearth processes write their CPU profiles with BENCH_HEARTH_PROF=1. */
export const PROFILE_DIR = join(tmpdir(), 'hearth-bench-profiles');

/** Node options of a Hearth process: with BENCH_HEARTH_PROF=1, a CPU profile named `name` written when it stops. */
export function cpuProfileArgs(name: string): string[] {
  if (process.env.BENCH_HEARTH_PROF !== '1') return [];
  mkdirSync(PROFILE_DIR, { recursive: true });
  return ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`, `--cpu-prof-name=${name}-${Date.now()}.cpuprofile`];
}
