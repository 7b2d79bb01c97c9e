import { after } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { storeEnv } from './platform.ts';
import { freePort } from './ports.ts';

/** The `hearth` command run as a child process, the way a person runs it. */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = join(ROOT, 'bin', 'hearth.js');

const tempDirs: string[] = [];
const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

/** A temporary directory removed after the file's tests. */
export function tempDir(prefix = 'hearth-cli-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}

/** The parent's environment without any HEARTH_* variable, plus `extra`. */
export function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('HEARTH_')) out[k] = v;
  return { ...out, ...extra };
}

export interface Proc {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `hearth <args>` with only `extra` as HEARTH_* variables. */
export function start(args: string[], extra: Record<string, string>, opts: { cwd?: string } = {}): Proc {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: opts.cwd ?? ROOT, env: cleanEnv(extra), stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Runs `hearth <args>` to its end (SIGKILL after `timeoutMs`). */
export async function run(args: string[], extra: Record<string, string>, timeoutMs = 60_000, opts: { cwd?: string } = {}) {
  const p = start(args, extra, opts);
  const timer = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs);
  const { code, signal } = await p.exited;
  clearTimeout(timer);
  return { code, signal, stdout: p.stdout(), stderr: p.stderr() };
}

/** The lines of stdout that are not JSON log records. */
export function plainLines(stdout: string): string[] {
  return stdout.split('\n').filter((l) => {
    const t = l.trim();
    if (!t.startsWith('{')) return true;
    try {
      JSON.parse(t);
      return false;
    } catch {
      return true;
    }
  });
}

/** Polls `fn` until it returns something; fails early when the process exits. */
export async function waitFor<T>(what: string, fn: () => T | undefined, proc: Proc, timeoutMs = 60_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (proc.child.exitCode !== null || proc.child.signalCode !== null)
      throw new Error(
        `the process exited (${proc.child.exitCode ?? proc.child.signalCode}) before ${what}\nstdout:\n${proc.stdout()}\nstderr:\n${proc.stderr()}`,
      );
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\nstdout:\n${proc.stdout()}\nstderr:\n${proc.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits for the exit; SIGKILLs the process after `timeoutMs` (and says so). */
export async function exitWithin(proc: Proc, timeoutMs: number) {
  let killed = false;
  const timer = setTimeout(() => {
    killed = true;
    proc.child.kill('SIGKILL');
  }, timeoutMs);
  const r = await proc.exited;
  clearTimeout(timer);
  return { ...r, killed };
}

/**
 * `hearth start` on free loopback ports with its own data directory (demo on unless `extra` says
 * otherwise); resolves with the banner once it is printed.
 */
export async function startServer(extra: Record<string, string> = {}, opts: { dataDir?: string; until?: RegExp } = {}) {
  const [httpPort, mqttPort] = [await freePort(), await freePort()];
  const dataDir = opts.dataDir ?? tempDir();
  const startedAt = Date.now();
  const proc = start(['start'], {
    HEARTH_HTTP_PORT: String(httpPort),
    HEARTH_MQTT_PORT: String(mqttPort),
    HEARTH_HTTP_HOST: '127.0.0.1',
    HEARTH_MQTT_HOST: '127.0.0.1',
    HEARTH_DATA_DIR: dataDir,
    HEARTH_DEMO: '1',
    ...(await storeEnv(dataDir)),
    ...extra,
  });
  const until = opts.until ?? /mosquitto_sub/;
  const banner = await waitFor(
    'the banner',
    () => {
      const text = plainLines(proc.stdout()).join('\n');
      return until.test(text) ? text : undefined;
    },
    proc,
  );
  return { proc, banner, httpPort, mqttPort, dataDir, startedAt, base: `http://127.0.0.1:${httpPort}` };
}
