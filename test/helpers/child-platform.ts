import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { IClientOptions, MqttClient } from 'mqtt';
import { freePort } from './ports.ts';
import { ADMIN, connectDevice, requestJson, storeEnv, type ApiResponse } from './platform.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(ROOT, 'bin', 'hearth.js');

/**
 * A real `hearth start` in a child process, for tests that must look at the server's own
 * process (its resident memory, whether it is still alive) from outside, as an operator would.
 */
export interface ChildPlatform {
  pid: number;
  httpUrl: string;
  mqttUrl: string;
  httpPort: number;
  mqttPort: number;
  /** The server's resident set size (VmRSS of /proc/<pid>/status), in bytes. */
  rss(): number;
  alive(): boolean;
  api<T = any>(method: string, path: string, body?: unknown): Promise<ApiResponse<T>>;
  provision(product: string, name?: string): Promise<{ id: string; secret: string }>;
  connect(id: string, secret: string, opts?: IClientOptions): Promise<MqttClient>;
  stop(): Promise<void>;
}

export async function startChildPlatform(opts: { env?: Record<string, string> } = {}): Promise<ChildPlatform> {
  const dataDir = mkdtempSync(join(tmpdir(), 'hearth-child-'));
  const [httpPort, mqttPort] = [await freePort(), await freePort()];
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('HEARTH_')) env[k] = v;
  const child: ChildProcess = spawn(process.execPath, [BIN, 'start'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...env,
      HEARTH_HTTP_PORT: String(httpPort),
      HEARTH_MQTT_PORT: String(mqttPort),
      HEARTH_HTTP_HOST: '127.0.0.1',
      HEARTH_MQTT_HOST: '127.0.0.1',
      HEARTH_DATA_DIR: dataDir,
      HEARTH_DEMO: '0',
      HEARTH_ADMIN_EMAIL: ADMIN.email,
      HEARTH_ADMIN_PASSWORD: ADMIN.password,
      HEARTH_LOG_LEVEL: 'warn',
      HEARTH_RATE_LIMIT_PER_MINUTE: '1000000',
      HEARTH_RATE_LIMIT_BURST: '100000',
      ...(await storeEnv(dataDir)),
      ...opts.env,
    },
  });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (out += s));
  const end = Date.now() + 30_000;
  while (!out.includes('Hearth is running.')) {
    if (child.exitCode !== null) throw new Error(`the server exited (${child.exitCode}):\n${out}`);
    if (Date.now() > end) throw new Error(`the server did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const httpUrl = `http://127.0.0.1:${httpPort}`;
  let token = '';
  const clients: MqttClient[] = [];
  const api = <T>(method: string, path: string, body?: unknown): Promise<ApiResponse<T>> => requestJson<T>(httpUrl + path, method, body, token);
  const login = await api<{ token: string }>('POST', '/api/v1/auth/login', ADMIN);
  if (login.status !== 200) throw new Error(`login failed: ${login.status}`);
  token = login.body.token;
  const p: ChildPlatform = {
    pid: child.pid!,
    httpUrl,
    mqttUrl: `mqtt://127.0.0.1:${mqttPort}`,
    httpPort,
    mqttPort,
    rss() {
      const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      if (!m) throw new Error('no VmRSS');
      return Number(m[1]) * 1024;
    },
    alive: () => child.exitCode === null && child.signalCode === null,
    api,
    async provision(product, name = `${product} under test`) {
      const r = await api<{ id: string; secret: string }>('POST', '/api/v1/devices', { product, name });
      if (r.status !== 201) throw new Error(`provisioning failed: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body;
    },
    async connect(id, secret, o = {}) {
      const c = await connectDevice(p.mqttUrl, id, secret, o);
      clients.push(c);
      return c;
    },
    async stop() {
      await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
      if (p.alive()) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return p;
}
