/** The benchmark's clients: simulated MQTT devices and a keep-alive REST client for Hearth. */
import { Agent, request } from 'node:http';
import type { Socket } from 'node:net';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { withTimeout } from './stats.ts';

/** Device credentials; `secret` is empty for the reference broker (anonymous). */
export interface DeviceCred {
  id: string;
  secret: string;
  /** For claiming into a home (Hearth's provisioning answer). */
  pairingCode?: string;
}

/** Every MQTT client opened by the benchmark, so that they can all be closed at the end. */
const openClients = new Set<MqttClient>();

/**
 * Connects one MQTT 3.1.1 client (clientId = username = device id, password = secret) and
 * turns Nagle off on its socket. No automatic reconnect: a failure surfaces as an error.
 */
export async function connectDevice(url: string, dev: DeviceCred, opts: IClientOptions = {}): Promise<MqttClient> {
  const client = mqtt.connect(url, {
    protocolVersion: 4,
    clientId: dev.id,
    ...(dev.secret ? { username: dev.id, password: dev.secret } : {}),
    clean: true,
    keepalive: 300,
    reconnectPeriod: 0,
    connectTimeout: 30_000,
    ...opts,
  });
  openClients.add(client);
  client.on('close', () => openClients.delete(client));
  // Nagle off, as early as possible (the stream exists right after connect()).
  (client.stream as Socket | undefined)?.setNoDelay?.(true);
  client.on('connect', () => (client.stream as Socket).setNoDelay?.(true));
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(new Error(`MQTT connect of ${dev.id} to ${url} failed: ${err.message}`));
      client.once('error', onError);
      client.once('close', () => reject(new Error(`MQTT connection of ${dev.id} to ${url} closed before CONNACK`)));
      client.once('connect', () => {
        client.off('error', onError);
        resolve();
      });
    }),
    35_000,
    `MQTT connect of ${dev.id}`,
  );
  // Later errors must not crash the benchmark; they show up as missing acks/answers.
  client.on('error', (err) => {
    if (!closing) process.stderr.write(`mqtt client ${dev.id}: ${err.message}\n`);
  });
  return client;
}

export async function subscribe(client: MqttClient, topic: string, qos: 0 | 1 = 1): Promise<void> {
  const granted = await client.subscribeAsync(topic, { qos });
  if (granted.some((g) => g.qos === 128)) throw new Error(`subscription to ${topic} refused`);
}

/** Publishes QoS 1 and resolves on PUBACK. */
export function publish1(client: MqttClient, topic: string, payload: string): Promise<void> {
  return new Promise((resolve, reject) => client.publish(topic, payload, { qos: 1 }, (err) => (err ? reject(err) : resolve())));
}

let closing = false;

/** Ends `clients` (or every open client) without waiting for in-flight messages. */
export async function closeClients(clients: Iterable<MqttClient> = openClients, quiet = true): Promise<void> {
  closing = quiet;
  const list = [...clients];
  await Promise.all(list.map((c) => withTimeout(c.endAsync(true), 5000, 'mqtt end').catch(() => c.stream?.destroy())));
  for (const c of list) openClients.delete(c);
  closing = false;
}

export function openClientCount(): number {
  return openClients.size;
}

export interface ApiResponse<T> {
  status: number;
  body: T;
}

/** A JSON REST client over a keep-alive agent (no Nagle, reused sockets). */
export class Api {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 64, noDelay: true } as ConstructorParameters<typeof Agent>[0]);
  private token = '';
  private readonly host: string;
  private readonly port: number;

  constructor(baseUrl: string) {
    const u = new URL(baseUrl);
    this.host = u.hostname;
    this.port = Number(u.port);
  }

  call<T = any>(method: string, path: string, body?: unknown): Promise<ApiResponse<T>> {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string | number> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (data) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = data.length;
    }
    return new Promise((resolve, reject) => {
      const req = request({ host: this.host, port: this.port, method, path, headers, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            /* keep text */
          }
          resolve({ status: res.statusCode ?? 0, body: parsed as T });
        });
      });
      req.on('error', reject);
      req.setTimeout(60_000, () => req.destroy(new Error(`${method} ${path} timed out`)));
      req.end(data);
    });
  }

  /** Like `call`, but throws unless the status is `expect`. */
  async expect<T = any>(status: number, method: string, path: string, body?: unknown): Promise<T> {
    const r = await this.call<T>(method, path, body);
    if (r.status !== status) throw new Error(`${method} ${path} answered ${r.status} (expected ${status}): ${JSON.stringify(r.body).slice(0, 500)}`);
    return r.body;
  }

  /** `POST /api/v1/devices/{id}/commands` `{"action":"toggle"}`; throws unless the device answered ok. */
  async toggle(id: string): Promise<void> {
    const r = await this.call<{ ok?: boolean }>('POST', `/api/v1/devices/${id}/commands`, { action: 'toggle', timeoutMs: 5000 });
    if (r.status !== 200 || r.body.ok !== true) throw new Error(`command to ${id} answered ${r.status}: ${JSON.stringify(r.body).slice(0, 300)}`);
  }

  async login(email: string, password: string): Promise<void> {
    this.token = '';
    const r = await this.expect<{ token: string }>(200, 'POST', '/api/v1/auth/login', { email, password });
    this.token = r.token;
  }

  /** Provisions `count` devices of `product` in bulk calls of up to 1000. */
  async provision(count: number, product: string, namePrefix: string): Promise<DeviceCred[]> {
    const out: DeviceCred[] = [];
    for (let i = 0; i < count; i += 1000) {
      const items = Array.from({ length: Math.min(1000, count - i) }, (_, j) => ({ product, name: `${namePrefix} ${i + j}` }));
      const r = await this.expect<{ items: Array<{ id: string; secret: string; pairingCode?: string }> }>(201, 'POST', '/api/v1/devices/bulk', { items });
      out.push(...r.items.map((d) => ({ id: d.id, secret: d.secret, ...(d.pairingCode ? { pairingCode: d.pairingCode } : {}) })));
    }
    return out;
  }

  close(): void {
    this.agent.destroy();
  }
}
