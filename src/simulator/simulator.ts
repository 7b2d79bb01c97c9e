/**
 * A simulated Zigbee-style hub with sub-devices, speaking Hearth device protocol v1
 * (docs/protocol.md) over real MQTT. A library: the CLI calls `startSimulator()`.
 *
 * Flow on every (re)connect: report the hub's properties, subscribe `devices/{hub}/#`,
 * join every child (`children/join` → `children/joined`), mark each child online and report
 * its properties, then subscribe each child's `commands`, `desired` and `errors`.
 * Properties are reported before the desired topics are subscribed, so the desired delta the
 * cloud sends on subscribe always arrives after the snapshot (and is never seen as stale).
 */
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import { createDeviceSim, seededRng, type DeviceSim, type Props, type SimOutput } from './device-sims.ts';
import { downloadFirmware, fetchProductKey, isOtaJob, verifyFirmware, type OtaJob } from './ota-client.ts';

export interface SimulatorOptions {
  /** e.g. 'mqtt://127.0.0.1:1883' or 'ws://127.0.0.1:8080/mqtt' */
  mqttUrl: string;
  /** Credentials of an already provisioned hub device. */
  hubId: string;
  hubSecret: string;
  /** Sub-devices to join via the hub (catalog product keys). */
  children: Array<{ product: string; hwid: string }>;
  /** How often properties change (default 5000). */
  intervalMs?: number;
  /** Default: no output. */
  log?: (msg: string) => void;
  /** Share of sub-device firmware installs that fail (0..1; seeded by hwid, so the same ones fail every run). */
  otaFailureRate?: number;
  /** The firmware version the sub-devices report at first (default 1.0.0). */
  firmwareVersion?: string;
}

export interface RunningSimulator {
  hubId: string;
  /** Keyed by hwid, filled after join. */
  children: Map<string, { id: string; product: string; hwid: string }>;
  /** Resolves once connected, subscribed and all children joined; rejects on refused credentials or a refused join. */
  ready: Promise<void>;
  /** Ends the MQTT connection cleanly (DISCONNECT), clears timers. */
  stop(): Promise<void>;
}

/** The default demo set of children (Zigbee EUI-64 style hwids, stable). */
export const DEMO_CHILDREN: Array<{ product: string; hwid: string }> = [
  { product: 'light', hwid: '00:12:4b:00:1c:a5:00:01' },
  { product: 'plug', hwid: '00:12:4b:00:1c:a5:00:02' },
  { product: 'door-lock', hwid: '00:12:4b:00:1c:a5:00:03' },
  { product: 'temp-humidity-sensor', hwid: '00:12:4b:00:1c:a5:00:04' },
  { product: 'motion-sensor', hwid: '00:12:4b:00:1c:a5:00:05' },
  { product: 'contact-sensor', hwid: '00:12:4b:00:1c:a5:00:06' },
  { product: 'curtain', hwid: '00:12:4b:00:1c:a5:00:07' },
];

/** How often an unanswered join request is sent again (while connected). */
const JOIN_RETRY_MS = 5000;
/** Command results remembered to answer a redelivered command (QoS 1 dup) identically. */
const RESULT_MEMORY = 256;
/** CONNACK return codes that retrying cannot fix (2 bad client id, 4 bad credentials, 5 not authorized). */
const FATAL_CONNACK = new Set([2, 4, 5]);
/** How long stop() waits for in-flight messages before it drops the connection. */
const STOP_GRACE_MS = 3000;

interface Node {
  /** Device id; undefined for a child until it joined. */
  id: string | undefined;
  product: string;
  hwid: string;
  sim: DeviceSim;
  /** Reported its snapshot in the current connection (ticks are published only then). */
  live: boolean;
  /** The firmware version it runs. */
  firmware: string;
}

interface PendingJoin {
  node: Node;
  resolve: (id: string) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** The connection that started a join flow is gone; the next connect starts a new one. */
class Superseded extends Error {}

function parseJson(buf: Buffer): unknown {
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch {
    return undefined;
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function startSimulator(opts: SimulatorOptions): RunningSimulator {
  const log = opts.log ?? (() => {});
  const intervalMs = Math.max(10, opts.intervalMs ?? 5000);
  const { hubId } = opts;

  const firmware0 = opts.firmwareVersion ?? '1.0.0';
  const hub: Node = { id: hubId, product: 'hub', hwid: hubId, sim: createDeviceSim('hub', hubId), live: false, firmware: firmware0 };
  const nodes: Node[] = [];
  const byHwid = new Map<string, Node>();
  for (const c of opts.children) {
    if (byHwid.has(c.hwid)) {
      log(`ignoring duplicate child hwid ${c.hwid}`);
      continue;
    }
    const node: Node = { id: undefined, product: c.product, hwid: c.hwid, sim: createDeviceSim(c.product, c.hwid), live: false, firmware: firmware0 };
    if (!node.sim.known) log(`product "${c.product}" is not in the built-in catalog: ${c.hwid} will join but report nothing`);
    nodes.push(node);
    byHwid.set(c.hwid, node);
  }
  hub.sim.patch({ children: nodes.length }); // the hub knows what it has paired; corrected after the joins
  const byId = new Map<string, Node>([[hubId, hub]]);
  const children = new Map<string, { id: string; product: string; hwid: string }>();

  let readySettled = false;
  let resolveReady!: () => void;
  let rejectReady!: (err: Error) => void;
  const ready = new Promise<void>((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  ready.catch(() => {}); // callers that never await `ready` must not get an unhandled rejection
  const settleReady = (err?: Error): void => {
    if (readySettled) return;
    readySettled = true;
    if (err) rejectReady(err);
    else resolveReady();
  };

  let stopped = false;
  let generation = 0;
  const pendingJoins = new Map<string, PendingJoin>();
  const followUps = new Map<string, NodeJS.Timeout>();
  const results = new Map<string, Record<string, unknown>>();

  const clientOpts: IClientOptions = {
    clientId: hubId,
    username: hubId,
    password: opts.hubSecret,
    protocolVersion: 4,
    clean: true,
    keepalive: 30,
    reconnectPeriod: 1000,
    connectTimeout: 10_000,
    resubscribe: false, // the connect handler subscribes (and re-joins) itself
  };
  const client: MqttClient = connect(opts.mqttUrl, clientOpts);

  // -- publishing ------------------------------------------------------------------------

  const publish = (topic: string, payload: unknown, qos: 0 | 1 = 1): void => {
    if (stopped || !client.connected) return; // a new connection reports a fresh snapshot anyway
    client.publish(topic, JSON.stringify(payload), { qos }, (err) => {
      if (err && !stopped) log(`publish to ${topic} failed: ${err.message}`);
    });
  };

  const followKey = (node: Node, key: string): string => `${node.hwid}\u0000${key}`;

  /** Publishes what a sim operation produced and schedules its follow-ups. */
  const emit = (node: Node, out: SimOutput, report: Props = out.changed, qos: 0 | 1 = 1): void => {
    for (const key of out.cancel) {
      const k = followKey(node, key);
      clearTimeout(followUps.get(k));
      followUps.delete(k);
    }
    for (const f of out.followUps) {
      const k = followKey(node, f.key);
      clearTimeout(followUps.get(k));
      const t = setTimeout(() => {
        followUps.delete(k);
        if (stopped) return;
        emit(node, f.run());
      }, f.delayMs);
      followUps.set(k, t);
    }
    if (!node.live || node.id === undefined) return; // state moved on; the next snapshot carries it
    if (Object.keys(report).length > 0) publish(`devices/${node.id}/properties`, report, qos);
    for (const ev of out.events) publish(`devices/${node.id}/events`, ev, qos);
  };

  const reportSnapshot = (node: Node): void => {
    if (node.id === undefined) return;
    node.live = true;
    const snap = node.sim.known ? { firmware: node.firmware, ...node.sim.snapshot() } : node.sim.snapshot();
    if (Object.keys(snap).length > 0) publish(`devices/${node.id}/properties`, snap);
  };

  const updateChildCount = (): void => {
    emit(hub, hub.sim.patch({ children: children.size }));
  };

  // -- connection flow -------------------------------------------------------------------

  /** Subscribes; a filter the broker refuses (SUBACK 0x80) is logged, not thrown. */
  const subscribe = async (topics: string[]): Promise<void> => {
    try {
      await client.subscribeAsync(topics, { qos: 1 });
    } catch (err) {
      // mqtt.js rejects the whole call when any filter was refused; the SUBACK says which.
      const granted = (err as { packet?: { granted?: number[] } }).packet?.granted;
      if (!Array.isArray(granted)) throw err;
      topics.forEach((t, i) => {
        if ((granted[i] ?? 0) & 0x80) log(`subscription to ${t} refused by the broker`);
      });
    }
  };

  const join = (node: Node, gen: number): Promise<string> =>
    new Promise<string>((resolve, reject) => {
      const send = (): void => {
        if (gen === generation) publish(`devices/${hubId}/children/join`, { product: node.product, hwid: node.hwid });
      };
      const done = (): void => {
        clearInterval(pending.timer);
        pendingJoins.delete(node.hwid);
      };
      const pending: PendingJoin = {
        node,
        resolve: (id) => {
          done();
          resolve(id);
        },
        reject: (err) => {
          done();
          reject(err);
        },
        timer: setInterval(send, JOIN_RETRY_MS),
      };
      pendingJoins.get(node.hwid)?.reject(new Superseded('join superseded'));
      pendingJoins.set(node.hwid, pending);
      send();
    });

  const onConnect = async (gen: number): Promise<void> => {
    hub.live = true;
    reportSnapshot(hub);
    await subscribe([`devices/${hubId}/#`]);
    if (gen !== generation) return;
    const outcomes = await Promise.allSettled(
      nodes.map(async (node) => {
        const id = await join(node, gen);
        if (gen !== generation) throw new Superseded('connection replaced');
        if (node.id !== undefined && node.id !== id) byId.delete(node.id);
        node.id = id;
        byId.set(id, node);
        const isNew = !children.has(node.hwid);
        children.set(node.hwid, { id, product: node.product, hwid: node.hwid });
        if (isNew) log(`joined ${node.product} ${node.hwid} as ${id}`);
        publish(`devices/${id}/presence`, { online: true });
        reportSnapshot(node);
        return node;
      }),
    );
    if (gen !== generation) return;
    updateChildCount();
    const joined = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
    const topics = joined.flatMap((n) => [`devices/${n.id}/commands`, `devices/${n.id}/desired`, `devices/${n.id}/errors`]);
    if (topics.length > 0) await subscribe(topics);
    if (gen !== generation) return;
    const failures = outcomes.flatMap((o) => (o.status === 'rejected' && !(o.reason instanceof Superseded) ? [o.reason as Error] : []));
    if (outcomes.some((o) => o.status === 'rejected' && o.reason instanceof Superseded)) return;
    log(`ready: hub ${hubId} with ${joined.length} of ${nodes.length} children`);
    settleReady(failures.length > 0 ? new Error(`join failed: ${failures.map((f) => f.message).join('; ')}`) : undefined);
  };

  client.on('connect', () => {
    const gen = ++generation;
    (client.stream as { setNoDelay?: (v: boolean) => void } | undefined)?.setNoDelay?.(true);
    log(`connected to ${opts.mqttUrl} as ${hubId}`);
    onConnect(gen).catch((err: Error) => {
      if (gen === generation && !stopped && !(err instanceof Superseded)) log(`setup after connect failed: ${err.message}`);
    });
  });

  client.on('close', () => {
    generation++;
    hub.live = false;
    for (const n of nodes) n.live = false;
    for (const p of [...pendingJoins.values()]) p.reject(new Superseded('connection closed'));
    if (!stopped) log('connection closed');
  });

  client.on('reconnect', () => log('reconnecting'));

  client.on('error', (err: Error & { code?: unknown }) => {
    log(`mqtt error: ${err.message}`);
    if (typeof err.code === 'number' && FATAL_CONNACK.has(err.code)) {
      settleReady(err);
      if (!stopped) {
        log('giving up: the broker refused the hub credentials');
        void stop();
      }
    }
  });

  // -- incoming --------------------------------------------------------------------------

  const onCommand = (node: Node, payload: unknown): void => {
    if (!isRecord(payload) || typeof payload.id !== 'string') {
      log(`ignoring malformed command for ${node.id}`);
      return;
    }
    const topic = `devices/${node.id}/commands/result`;
    const memoKey = `${node.id}\u0000${payload.id}`;
    const earlier = results.get(memoKey);
    if (earlier) {
      publish(topic, earlier);
      return;
    }
    const action = typeof payload.action === 'string' ? payload.action : '';
    const out = node.sim.command(action, payload.params);
    const result: Record<string, unknown> = out.ok
      ? out.result !== undefined
        ? { id: payload.id, ok: true, result: out.result }
        : { id: payload.id, ok: true }
      : { id: payload.id, ok: false, error: out.error ?? 'failed' };
    results.set(memoKey, result);
    if (results.size > RESULT_MEMORY) results.delete(results.keys().next().value!);
    log(`command ${payload.id} ${action || '(no action)'} on ${node.product} ${node.id}: ${out.ok ? 'ok' : out.error}`);
    publish(topic, result);
    emit(node, out);
  };

  const onDesired = (node: Node, payload: unknown): void => {
    if (!isRecord(payload)) {
      log(`ignoring malformed desired state for ${node.id}`);
      return;
    }
    const out = node.sim.applyDesired(payload.state);
    for (const why of out.ignored) log(`desired on ${node.product} ${node.id} not applied: ${why}`);
    log(`desired v${String(payload.version)} on ${node.product} ${node.id}: ${JSON.stringify(out.report)}`);
    emit(node, out, out.report);
  };

  const onError = (deviceId: string, payload: unknown): void => {
    if (!isRecord(payload)) {
      log(`error from the cloud for ${deviceId} (unreadable)`);
      return;
    }
    const code = String(payload.code ?? 'E_UNKNOWN');
    const message = String(payload.message ?? '');
    const topic = typeof payload.topic === 'string' ? payload.topic : undefined;
    log(`error from the cloud for ${deviceId}: ${code} ${message}${topic ? ` (${topic})` : ''}`);
    if (deviceId !== hubId || !topic?.endsWith('/children/join') || pendingJoins.size === 0) return;
    // Which join failed? Prefer an explicit ref, then the hwid or product named in the message.
    const pending = [...pendingJoins.values()];
    let failed = pending.filter((p) => payload.ref === p.node.hwid || message.includes(p.node.hwid));
    if (failed.length === 0) failed = pending.filter((p) => message.includes(`"${p.node.product}"`));
    if (failed.length === 0 && pending.length === 1) failed = pending;
    for (const p of failed) p.reject(new Error(`${p.node.product} ${p.node.hwid}: ${code} ${message}`));
  };

  const onJoined = (payload: unknown): void => {
    if (!isRecord(payload) || typeof payload.hwid !== 'string' || typeof payload.id !== 'string') {
      log('ignoring malformed children/joined reply');
      return;
    }
    const pending = pendingJoins.get(payload.hwid);
    if (pending) pending.resolve(payload.id);
  };

  client.on('message', (topic: string, buf: Buffer) => {
    try {
      const m = /^devices\/([^/]+)\/(.+)$/.exec(topic);
      if (!m) return;
      const [, deviceId, suffix] = m;
      // Our own uplinks echo back through `devices/{hub}/#`; only downlink suffixes matter.
      if (suffix !== 'commands' && suffix !== 'desired' && suffix !== 'errors' && suffix !== 'children/joined' && suffix !== 'ota') return;
      const payload = parseJson(buf);
      if (payload === undefined) {
        log(`ignoring non-JSON message on ${topic}`);
        return;
      }
      if (suffix === 'ota') {
        if (deviceId === hubId && isOtaJob(payload)) void onOta(payload);
        return;
      }
      if (suffix === 'errors') return onError(deviceId, payload);
      if (suffix === 'children/joined') {
        if (deviceId === hubId) onJoined(payload);
        return;
      }
      const node = byId.get(deviceId);
      if (!node) return;
      if (suffix === 'commands') onCommand(node, payload);
      else onDesired(node, payload);
    } catch (err) {
      log(`failed to handle a message on ${topic}: ${(err as Error).message}`);
    }
  });

  // -- firmware updates of sub-devices (docs/ota.md, "Through a hub") ----------------------

  /** Images by SHA-256: the hub downloads a package once, whatever number of children take it. */
  const images = new Map<string, Promise<Buffer>>();
  const keys = new Map<string, Promise<string>>();
  /** Jobs under way or ended, by job id (a job sent again is answered with how it ended). */
  const otaJobs = new Map<string, { state: 'running' | 'succeeded' | 'failed'; version?: string; error?: string }>();
  const failRng = new Map<string, () => number>();

  const onOta = async (job: OtaJob): Promise<void> => {
    const node = job.child === undefined ? undefined : byId.get(job.child);
    if (!node || node === hub) {
      log(`ignoring an OTA job for ${job.child ?? 'the hub itself'}: not a sub-device of this hub`);
      return;
    }
    const childId = node.id!;
    const report = (state: string, extra: Record<string, unknown> = {}): void => publish(`devices/${childId}/ota/progress`, { job: job.job, state, ...extra });
    const known = otaJobs.get(job.job);
    if (known) {
      if (known.state !== 'running') report(known.state, known.state === 'succeeded' ? { version: known.version } : { error: known.error });
      return;
    }
    otaJobs.set(job.job, { state: 'running' });
    log(`OTA job ${job.job}: ${node.product} ${childId} → ${job.version}`);
    try {
      report('downloading', { progress: 0 });
      let image = images.get(job.sha256);
      if (!image) {
        image = downloadFirmware(job);
        images.set(job.sha256, image);
        image.catch(() => images.delete(job.sha256));
      }
      const bytes = await image;
      report('downloading', { progress: 100 });
      report('verifying');
      let key = keys.get(node.product);
      if (!key) {
        key = fetchProductKey(job, node.product);
        keys.set(node.product, key);
        key.catch(() => keys.delete(node.product));
      }
      const why = verifyFirmware(bytes, job, await key);
      if (why) throw new Error(why);
      report('installing');
      let rng = failRng.get(node.hwid);
      if (!rng) failRng.set(node.hwid, (rng = seededRng(`ota:${node.hwid}`)));
      if (opts.otaFailureRate && rng() < opts.otaFailureRate) throw new Error('install failed (injected by the simulator)');
      report('rebooting');
      // The sub-device restarts: it drops off the hub for a moment and comes back with the new version.
      publish(`devices/${childId}/presence`, { online: false });
      await new Promise((r) => setTimeout(r, 20));
      node.firmware = job.version;
      publish(`devices/${childId}/presence`, { online: true });
      publish(`devices/${childId}/properties`, { firmware: node.firmware });
      otaJobs.set(job.job, { state: 'succeeded', version: job.version });
      report('succeeded', { version: job.version });
    } catch (err) {
      const error = (err as Error).message;
      log(`OTA job ${job.job} on ${childId} failed: ${error}`);
      otaJobs.set(job.job, { state: 'failed', error });
      report('failed', { error });
    }
  };

  // -- periodic changes ------------------------------------------------------------------

  let lastTick = Date.now();
  const ticker = setInterval(() => {
    const now = Date.now();
    const dt = now - lastTick;
    lastTick = now;
    try {
      emit(hub, hub.sim.tick(dt), undefined, 0);
      for (const node of nodes) {
        const out = node.sim.tick(dt);
        emit(node, out, out.changed, 0);
      }
    } catch (err) {
      log(`simulation tick failed: ${(err as Error).message}`);
    }
  }, intervalMs);

  // -- stop ------------------------------------------------------------------------------

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      stopped = true;
      clearInterval(ticker);
      for (const t of followUps.values()) clearTimeout(t);
      followUps.clear();
      generation++;
      for (const p of [...pendingJoins.values()]) p.reject(new Superseded('stopped'));
      settleReady(new Error('simulator stopped before it was ready'));
      let grace: NodeJS.Timeout | undefined;
      const graceful = client.endAsync().then(
        () => true,
        (err: Error) => {
          log(`error while disconnecting: ${err.message}`);
          return true;
        },
      );
      // A silent broker never acknowledges in-flight messages; do not wait for it forever.
      const forced = new Promise<boolean>((resolve) => {
        grace = setTimeout(() => resolve(false), STOP_GRACE_MS);
      });
      const clean = await Promise.race([graceful, forced]);
      clearTimeout(grace);
      if (!clean) {
        log('the broker did not answer; closing the connection without DISCONNECT');
        client.stream?.destroy();
      }
      log('stopped');
    })();
    return stopping;
  };

  return { hubId, children, ready, stop };
}
