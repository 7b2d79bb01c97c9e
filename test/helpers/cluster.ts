/**
 * A real Hearth cluster for tests: PostgreSQL and NATS (JetStream) on loopback, N Hearth nodes as
 * separate processes (`bin/hearth.js start`), and a load balancer in front of them that sends
 * new HTTP requests and MQTT connections only to ready nodes — what a Kubernetes Service does.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest, type Server as HttpServer } from 'node:http';
import { connect as netConnect, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startNats } from './nats.ts';
import { startPostgres } from './postgres.ts';
import mqtt, { type MqttClient } from 'mqtt';
import { ADMIN } from './platform.ts';
import { freePort } from './ports.ts';

export { freePort };

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(ROOT, 'bin', 'hearth.js');

export interface ClusterNode {
  name: string;
  httpUrl: string;
  httpPort: number;
  mqttPort: number;
  /** Output so far (JSON log lines and the banner). */
  output(): string;
  /** Starts the process (again, on the same ports). Resolves when /readyz says ready. */
  start(): Promise<void>;
  /** SIGTERM and wait for the exit; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL: no goodbye, no flush. */
  kill(): Promise<void>;
  running(): boolean;
}

export interface Cluster {
  nodes: ClusterNode[];
  databaseUrl: string;
  natsUrl: string;
  /** Load balancer addresses. */
  httpUrl: string;
  mqttUrl: string;
  /** HTTP requests the balancer could not place on any ready node. */
  unplaced(): number;
  stop(): Promise<void>;
}

function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('HEARTH_')) out[k] = v;
  return { ...out, ...extra };
}

async function isReady(url: string): Promise<boolean> {
  try {
    const r = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(500) });
    return r.status === 200;
  } catch {
    return false;
  }
}

function makeNode(name: string, httpPort: number, mqttPort: number, env: Record<string, string>, dirs: string[]): ClusterNode {
  let child: ChildProcess | undefined;
  let out = '';
  let exited: Promise<number | null> = Promise.resolve(null);
  const httpUrl = `http://127.0.0.1:${httpPort}`;
  const node: ClusterNode = {
    name,
    httpUrl,
    httpPort,
    mqttPort,
    output: () => out,
    running: () => !!child && child.exitCode === null && child.signalCode === null,
    async start() {
      const dataDir = mkdtempSync(join(tmpdir(), `hearth-${name}-`));
      dirs.push(dataDir);
      child = spawn(process.execPath, [BIN, 'start'], {
        cwd: ROOT,
        env: childEnv({
          HEARTH_NODE_NAME: name,
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
          ...env,
        }),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const c = child;
      c.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
      c.stderr!.setEncoding('utf8').on('data', (s: string) => (out += s));
      exited = new Promise((resolve) => c.once('exit', (code) => resolve(code)));
      const deadline = Date.now() + 30_000;
      while (!(await isReady(httpUrl))) {
        if (c.exitCode !== null) throw new Error(`node ${name} exited with ${c.exitCode} while starting:\n${out.slice(-3000)}`);
        if (Date.now() > deadline) throw new Error(`node ${name} not ready after 30 s:\n${out.slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async stop() {
      if (!node.running()) return child?.exitCode ?? null;
      child!.kill('SIGTERM');
      return exited;
    },
    async kill() {
      if (!node.running()) return;
      child!.kill('SIGKILL');
      await exited;
    },
  };
  return node;
}

/**
 * Routes each HTTP request and each new TCP connection to a ready node, round robin; readiness
 * is polled every 100 ms. A request whose node refuses the connection is tried on another one
 * (as Envoy and kube-proxy with retries do); nothing is retried once a node accepted it.
 */
class Balancer {
  private ready: ClusterNode[] = [];
  private next = 0;
  private timer: NodeJS.Timeout | undefined;
  private http!: HttpServer;
  private mqtt!: NetServer;
  private readonly sockets = new Set<Socket>();
  unplaced = 0;
  httpPort = 0;
  mqttPort = 0;

  constructor(private readonly nodes: ClusterNode[]) {}

  async start(): Promise<void> {
    await this.poll();
    this.timer = setInterval(() => void this.poll(), 100);
    this.http = createHttpServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const attempt = (tries: number) => {
          const node = this.pick();
          if (!node) {
            if (tries < 50) return void setTimeout(() => attempt(tries + 1), 100);
            this.unplaced++;
            res.writeHead(503).end('no ready node');
            return;
          }
          const up = httpRequest({ host: '127.0.0.1', port: node.httpPort, method: req.method, path: req.url, headers: req.headers, agent: false }, (r) => {
            res.writeHead(r.statusCode ?? 502, r.headers);
            r.pipe(res);
          });
          up.on('error', (err: NodeJS.ErrnoException) => {
            if (!res.headersSent && err.code === 'ECONNREFUSED' && tries < 50) return void setTimeout(() => attempt(tries + 1), 50);
            if (!res.headersSent) res.writeHead(502).end(`upstream ${node.name}: ${err.message}`);
            else res.destroy();
          });
          up.end(body);
        };
        attempt(0);
      });
    });
    this.mqtt = createNetServer({ noDelay: true }, (down) => {
      this.sockets.add(down);
      down.on('close', () => this.sockets.delete(down));
      const node = this.pick();
      if (!node) return void down.destroy();
      const up = netConnect({ host: '127.0.0.1', port: node.mqttPort, noDelay: true });
      this.sockets.add(up);
      up.on('close', () => {
        this.sockets.delete(up);
        down.destroy();
      });
      down.on('close', () => up.destroy());
      up.on('error', () => down.destroy());
      down.on('error', () => up.destroy());
      down.pipe(up).pipe(down);
    });
    await Promise.all([new Promise<void>((r) => this.http.listen(0, '127.0.0.1', r)), new Promise<void>((r) => this.mqtt.listen(0, '127.0.0.1', r))]);
    this.httpPort = (this.http.address() as { port: number }).port;
    this.mqttPort = (this.mqtt.address() as { port: number }).port;
  }

  private pick(): ClusterNode | undefined {
    if (this.ready.length === 0) return undefined;
    return this.ready[this.next++ % this.ready.length];
  }

  private async poll(): Promise<void> {
    const states = await Promise.all(this.nodes.map((n) => (n.running() ? isReady(n.httpUrl) : false)));
    this.ready = this.nodes.filter((_, i) => states[i]);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    for (const s of this.sockets) s.destroy();
    this.http.closeAllConnections();
    await Promise.all([new Promise((r) => this.http.close(r)), new Promise((r) => this.mqtt.close(r))]);
  }
}

/** Starts PostgreSQL, NATS, `count` nodes (in parallel) and the balancer. */
export async function startCluster(opts: { nodes?: number; env?: Record<string, string> } = {}): Promise<Cluster> {
  const count = opts.nodes ?? 2;
  const [pg, nats] = await Promise.all([startPostgres(), startNats()]);
  const databaseUrl = await pg.createDatabase();
  const dirs: string[] = [];
  const env = { HEARTH_DATABASE_URL: databaseUrl, HEARTH_NATS_URL: nats.url, ...opts.env };
  const nodes: ClusterNode[] = [];
  for (let i = 0; i < count; i++) nodes.push(makeNode(`node-${String.fromCharCode(97 + i)}`, await freePort(), await freePort(), env, dirs));
  const lb = new Balancer(nodes);
  try {
    // The first node migrates the fresh database alone; the others start together.
    await nodes[0].start();
    await Promise.all(nodes.slice(1).map((n) => n.start()));
    await lb.start();
  } catch (err) {
    // A start that fails half-way lets go of what it started: running children would keep the
    // test process alive after its failure is reported.
    await lb.stop().catch(() => undefined);
    await Promise.allSettled(nodes.map((n) => n.kill()));
    await Promise.allSettled([nats.stop(), pg.stop()]);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    throw err;
  }
  return {
    nodes,
    databaseUrl,
    natsUrl: nats.url,
    httpUrl: `http://127.0.0.1:${lb.httpPort}`,
    mqttUrl: `mqtt://127.0.0.1:${lb.mqttPort}`,
    unplaced: () => lb.unplaced,
    async stop() {
      await lb.stop();
      await Promise.all(nodes.map((n) => n.kill()));
      await Promise.all([nats.stop(), pg.stop()]);
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    },
  };
}

/** The operator's REST client on one node (or the balancer): signs in, then `call(method, path, body)` answers status and JSON body. */
export async function adminApi(baseUrl: string) {
  let token = '';
  const call = async (method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> => {
    const headers: Record<string, string> = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(baseUrl + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
  const login = await call('POST', '/api/v1/auth/login', ADMIN);
  assert.equal(login.status, 200, JSON.stringify(login.body));
  token = login.body.token;
  return call;
}

/** A device's MQTT connection to one node (or the balancer). */
export function connectMqtt(url: string, dev: { id: string; secret: string }): Promise<MqttClient> {
  const c = mqtt.connect(url, { clientId: dev.id, username: dev.id, password: dev.secret, reconnectPeriod: 0, connectTimeout: 5000 });
  return new Promise((resolve, reject) => {
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
}
