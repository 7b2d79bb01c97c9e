/**
 * A simulated directly connected device that takes firmware updates (docs/ota.md) over real
 * MQTT and HTTP: it reports its `firmware` version on every connect, listens on its OTA topic,
 * downloads (with resume), verifies, "installs", reboots (a new connection) and reports the new
 * version. `failureRate` makes some installs fail, as a bad build would. Used by tests, the bench
 * and `hearth simulate --ota-failure-rate`.
 */
import { connect, type MqttClient } from 'mqtt';
import { seededRng } from './device-sims.ts';
import { downloadFirmware, fetchProductKey, isOtaJob, verifyFirmware, type OtaJob, type ProgressState } from './ota-client.ts';

export interface OtaDeviceOptions {
  mqttUrl: string;
  id: string;
  secret: string;
  product: string;
  /** The version it runs at first. */
  version: string;
  /** Share of installs that fail (0..1), seeded by the device id (the same devices fail on every run). */
  failureRate?: number;
  /** How long the "reboot" keeps it offline (default 50 ms). */
  rebootMs?: number;
  /** Subscribe to the OTA topic (default true; false: a device that never listens). */
  listen?: boolean;
  /** Connect again when the connection is lost (a node of a cluster died), as real devices do (default false). */
  reconnect?: boolean;
  /** Where every connection after the first goes (e.g. a load balancer in front of a cluster); default mqttUrl. */
  reconnectUrl?: string;
  log?: (msg: string) => void;
}

export interface OtaDevice {
  readonly id: string;
  /** The version it runs now. */
  readonly version: string;
  /** Jobs it received, in order (ids). */
  readonly jobs: string[];
  /** Resolves once connected, reported and subscribed. */
  ready: Promise<void>;
  /** Goes offline (as a power cut: no clean disconnect). */
  powerOff(): Promise<void>;
  /** Comes back (a new connection). */
  powerOn(): Promise<void>;
  stop(): Promise<void>;
}

export function startOtaDevice(opts: OtaDeviceOptions): OtaDevice {
  const log = opts.log ?? (() => {});
  const rng = seededRng(`ota:${opts.id}`);
  let version = opts.version;
  let client: MqttClient | undefined;
  let stopped = false;
  const jobs: string[] = [];
  const finished = new Map<string, { state: ProgressState; version?: string; error?: string }>();
  let running: string | undefined;
  /** Reported after the next connect (the reboot's outcome). */
  let afterBoot: { job: string; state: ProgressState; version?: string; error?: string } | undefined;
  let key: Promise<string> | undefined;

  const publish = (topic: string, payload: unknown): void => {
    if (client?.connected) client.publish(topic, JSON.stringify(payload), { qos: 1 });
  };
  const progress = (job: string, state: ProgressState, extra: Record<string, unknown> = {}): void => {
    publish(`devices/${opts.id}/ota/progress`, { job, state, ...extra });
  };

  /** The connection is ours to close (reboot, power off, stop): no reconnect. */
  let closing = false;
  const open = (): Promise<void> =>
    new Promise((resolve, reject) => {
      closing = false;
      const c = connect(client === undefined ? opts.mqttUrl : (opts.reconnectUrl ?? opts.mqttUrl), {
        clientId: opts.id,
        username: opts.id,
        password: opts.secret,
        reconnectPeriod: 0,
        connectTimeout: 10_000,
        clean: true,
        protocolVersion: 4,
      });
      client = c;
      c.once('connect', () => {
        (c.stream as { setNoDelay?: (v: boolean) => void } | undefined)?.setNoDelay?.(true);
        publish(`devices/${opts.id}/properties`, { firmware: version });
        if (afterBoot) {
          const { job, state, ...rest } = afterBoot;
          progress(job, state, rest);
          finished.set(job, afterBoot);
          afterBoot = undefined;
          running = undefined;
        }
        const topics = opts.listen === false ? [`devices/${opts.id}/errors`] : [`devices/${opts.id}/ota`, `devices/${opts.id}/errors`];
        c.subscribeAsync(topics, { qos: 1 }).then(() => resolve(), reject);
      });
      c.once('error', reject);
      c.once('close', () => {
        if (!opts.reconnect || closing || stopped || client !== c) return;
        const retry = (): void => {
          if (stopped || closing) return;
          open().catch(() => setTimeout(retry, 200));
        };
        setTimeout(retry, 200);
      });
      c.on('message', (topic, buf) => {
        if (!topic.endsWith('/ota')) return;
        let job: unknown;
        try {
          job = JSON.parse(buf.toString());
        } catch {
          return;
        }
        if (isOtaJob(job)) void onJob(job);
      });
    });

  const onJob = async (job: OtaJob): Promise<void> => {
    const done = finished.get(job.job);
    if (done) {
      // A job sent again (a reconnect): say again how it ended.
      const { state, ...rest } = done;
      return progress(job.job, state, rest);
    }
    if (running === job.job) return;
    running = job.job;
    jobs.push(job.job);
    log(`${opts.id}: job ${job.job} → ${job.version}`);
    try {
      progress(job.job, 'downloading', { progress: 0 });
      if (!key) {
        // Fetched while the image downloads; a failure is the job's (and the next job asks again).
        const k = fetchProductKey(job, opts.product);
        k.catch(() => {
          if (key === k) key = undefined;
        });
        key = k;
      }
      const image = await downloadFirmware(job, { onProgress: (pct) => progress(job.job, 'downloading', { progress: pct }) });
      progress(job.job, 'verifying');
      const why = verifyFirmware(image, job, await key);
      if (why) throw new Error(why);
      progress(job.job, 'installing');
      if (opts.failureRate && rng() < opts.failureRate) throw new Error('install failed (injected by the simulator)');
      progress(job.job, 'rebooting');
      afterBoot = { job: job.job, state: 'succeeded', version: job.version };
      version = job.version;
      await reboot();
    } catch (err) {
      const error = (err as Error).message;
      log(`${opts.id}: job ${job.job} failed: ${error}`);
      finished.set(job.job, { state: 'failed', error });
      running = undefined;
      progress(job.job, 'failed', { error });
    }
  };

  /** After a reboot a device keeps trying to connect until it is back (a busy server may refuse or time out). */
  const reboot = async (): Promise<void> => {
    const c = client;
    closing = true;
    await c?.endAsync().catch(() => undefined);
    await new Promise((r) => setTimeout(r, opts.rebootMs ?? 50));
    for (let delay = 200; !stopped; delay = Math.min(5000, delay * 2)) {
      try {
        await open();
        return;
      } catch {
        closing = true;
        client?.end(true);
        await new Promise((r) => setTimeout(r, delay * (0.5 + Math.random() / 2)));
      }
    }
  };

  const ready = open();
  ready.catch(() => undefined);

  return {
    id: opts.id,
    get version() {
      return version;
    },
    jobs,
    ready,
    async powerOff() {
      closing = true;
      const c = client;
      client = undefined;
      c?.stream?.destroy();
      await c?.endAsync(true).catch(() => undefined);
    },
    powerOn: () => open(),
    async stop() {
      stopped = true;
      closing = true;
      await client?.endAsync(true).catch(() => undefined);
    },
  };
}
