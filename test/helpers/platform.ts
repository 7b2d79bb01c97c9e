import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient, type IClientOptions } from 'mqtt';
import { Hearth } from '../../src/app.ts';
import { loadConfig } from '../../src/core/config/config-schema.ts';
import { createLogger } from '../../src/core/logger.ts';
import { startPostgres, type PostgresServer } from './postgres.ts';
import type { Clock } from '../../src/core/clock.ts';

export const ADMIN = { email: 'operator@test.local', password: 'operator-password-1' };

export interface ApiResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

export interface Platform {
  hearth: Hearth;
  dataDir: string;
  httpUrl: string;
  mqttUrl: string;
  token: string;
  /** Every log line the platform wrote, parsed (e-mails without SMTP are logged with a `mail` field). */
  logs: any[];
  api<T = any>(method: string, path: string, body?: unknown, token?: string | null): Promise<ApiResponse<T>>;
  provision(product: string, name?: string, parentId?: string): Promise<{ id: string; secret: string; pairingCode: string }>;
  connect(id: string, secret: string, opts?: IClientOptions): Promise<MqttClient>;
  /** `GET /api/v1/devices/{id}` as the operator. */
  device(id: string): Promise<any>;
  /** Polls the device until `pred` holds. */
  until(id: string, pred: (d: any) => boolean, what: string, timeoutMs?: number): Promise<any>;
  /** Stops the platform (keeps the data directory unless `cleanup`). */
  stop(cleanup?: boolean): Promise<void>;
}

/**
 * The store the end-to-end suites run on. `HEARTH_TEST_STORE=postgres` puts every platform on a
 * fresh database of a PostgreSQL server that this test process starts on first use.
 */
export const TEST_STORE: 'sqlite' | 'postgres' = (() => {
  const v = process.env.HEARTH_TEST_STORE ?? 'sqlite';
  if (v !== 'sqlite' && v !== 'postgres') throw new Error(`HEARTH_TEST_STORE must be "sqlite" or "postgres", got "${v}"`);
  return v;
})();

let postgres: Promise<PostgresServer> | undefined;
/** Keyed by data directory: a platform restarted on the same data directory gets its database back. */
const databases = new Map<string, string>();

/**
 * The HEARTH_* variables that put a platform with this data directory on the test store: none
 * for SQLite (the file is in the data directory), HEARTH_DATABASE_URL of its own database for
 * PostgreSQL. For tests that start `hearth` as a child process, too.
 */
export async function storeEnv(dataDir: string): Promise<Record<string, string>> {
  if (TEST_STORE === 'sqlite') return {};
  let url = databases.get(dataDir);
  if (!url) {
    postgres ??= startPostgres();
    url = await (await postgres).createDatabase();
    databases.set(dataDir, url);
  }
  return { HEARTH_DATABASE_URL: url };
}

/** Drops the database of a data directory (PostgreSQL), as removing the directory drops the SQLite file. */
async function dropStore(dataDir: string): Promise<void> {
  const url = databases.get(dataDir);
  if (!url || !postgres) return;
  databases.delete(dataDir);
  await (await postgres).dropDatabase(url);
}

/**
 * Starts a real platform on free loopback ports with its own data directory, logged in as the
 * operator. Tests talk to it only through HTTP and MQTT (and may drive its clock: `clock`).
 */
export async function startPlatform(opts: { dataDir?: string; env?: Record<string, string>; clock?: Clock } = {}): Promise<Platform> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'hearth-test-'));
  // Suites make requests (and sign-ups) much faster than a person; a test of a rate limit sets its own.
  const env = {
    HEARTH_RATE_LIMIT_PER_MINUTE: '1000000',
    HEARTH_RATE_LIMIT_BURST: '100000',
    HEARTH_SIGNUPS_PER_HOUR: '1000000',
    HEARTH_SIGNUP_BURST: '100000',
    ...(await storeEnv(dataDir)),
    ...opts.env,
  };
  const config = loadConfig(env, {
    httpPort: 0,
    mqttPort: 0,
    httpHost: '127.0.0.1',
    mqttHost: '127.0.0.1',
    dataDir,
    demo: false,
    adminEmail: ADMIN.email,
    adminPassword: ADMIN.password,
  });
  const { log, logs } = capturingLogger();
  const hearth = new Hearth(config, { log, clock: opts.clock });
  await hearth.start();
  const httpUrl = `http://127.0.0.1:${hearth.httpPort}`;
  const clients: MqttClient[] = [];

  const api = <T>(method: string, path: string, body?: unknown, token?: string | null): Promise<ApiResponse<T>> =>
    requestJson<T>(httpUrl + path, method, body, token === undefined ? p.token : token);

  const p: Platform = {
    hearth,
    dataDir,
    httpUrl,
    mqttUrl: `mqtt://127.0.0.1:${hearth.mqttPort}`,
    token: '',
    logs,
    api,
    async provision(product, name = `${product} under test`, parentId) {
      const r = await api<{ id: string; secret: string; pairingCode: string }>('POST', '/api/v1/devices', { product, name, ...(parentId ? { parentId } : {}) });
      if (r.status !== 201) throw new Error(`provisioning failed: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body;
    },
    async connect(id, secret, o = {}) {
      const c = await connectDevice(p.mqttUrl, id, secret, o);
      clients.push(c);
      return c;
    },
    async device(id) {
      return (await api('GET', `/api/v1/devices/${id}`)).body;
    },
    until(id, pred, what, timeoutMs = 3000) {
      return eventually(
        async () => {
          const d = await p.device(id);
          return pred(d) ? d : undefined;
        },
        timeoutMs,
        what,
      );
    },
    async stop(cleanup = true) {
      await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
      await hearth.stop();
      if (cleanup) {
        rmSync(dataDir, { recursive: true, force: true });
        await dropStore(dataDir);
      }
    },
  };
  const login = await api<{ token: string }>('POST', '/api/v1/auth/login', ADMIN, null);
  if (login.status !== 200) throw new Error(`login failed: ${login.status} ${JSON.stringify(login.body)}`);
  p.token = login.body.token;
  return p;
}

/** Collects the messages a client receives, and waits for one that matches. */
export function inbox(client: MqttClient) {
  const messages: Array<{ topic: string; payload: any }> = [];
  const waiters: Array<{ pred: (m: { topic: string; payload: any }) => boolean; resolve: (m: { topic: string; payload: any }) => void }> = [];
  client.on('message', (topic, buf) => {
    let payload: any = buf.toString();
    try {
      payload = JSON.parse(payload);
    } catch {
      /* raw */
    }
    const m = { topic, payload };
    messages.push(m);
    for (const w of [...waiters])
      if (w.pred(m)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
  });
  return {
    messages,
    next(pred: (m: { topic: string; payload: any }) => boolean, timeoutMs = 3000): Promise<{ topic: string; payload: any }> {
      const found = messages.find(pred);
      if (found) {
        messages.splice(messages.indexOf(found), 1);
        return Promise.resolve(found);
      }
      return new Promise((resolve, reject) => {
        const t = setTimeout(
          () => reject(new Error(`no matching message within ${timeoutMs} ms; got ${JSON.stringify(messages.map((x) => x.topic))}`)),
          timeoutMs,
        );
        waiters.push({
          pred,
          resolve: (m) => {
            clearTimeout(t);
            messages.splice(messages.indexOf(m), 1);
            resolve(m);
          },
        });
      });
    },
  };
}

/** Polls `fn` until it returns a truthy value or the time runs out. */
export async function eventually<T>(fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 3000, what = 'condition'): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A logger that keeps every line it writes, parsed, in `logs` (e-mails without SMTP are logged
 * with a `mail` field); `HEARTH_TEST_LOG=<level>` also echoes them.
 */
export function capturingLogger(): { log: ReturnType<typeof createLogger>; logs: any[] } {
  const logs: any[] = [];
  const echo = process.env.HEARTH_TEST_LOG !== undefined;
  const sink = {
    write(line: string) {
      try {
        logs.push(JSON.parse(line));
      } catch {
        /* not JSON */
      }
      if (echo) process.stdout.write(line);
    },
  };
  return { log: createLogger((process.env.HEARTH_TEST_LOG as 'info') || 'info', {}, sink), logs };
}

/** One HTTP request with a JSON body (when given) and a bearer token (when given); the answer parsed as JSON when it is. */
export async function requestJson<T = any>(url: string, method: string, body?: unknown, token?: string | null): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    /* keep text */
  }
  return { status: res.status, headers: res.headers, body: parsed as T };
}

/** A device's MQTT connection (client id = user name = device id, no reconnects), once CONNACKed. */
/**
 * A device connected over MQTT. `before` sees the client before the CONNACK: a resumed session's
 * stored messages may arrive in the same read as the CONNACK, so listen there for them.
 */
export async function connectDevice(
  mqttUrl: string,
  id: string,
  secret: string,
  opts: IClientOptions = {},
  before?: (c: MqttClient) => void,
): Promise<MqttClient> {
  const c = mqtt.connect(mqttUrl, { clientId: id, username: id, password: secret, reconnectPeriod: 0, connectTimeout: 5000, ...opts });
  before?.(c);
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve());
    c.once('error', reject);
  });
  return c;
}
