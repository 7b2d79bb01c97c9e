import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, chownSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { connect } from 'amqplib';
import { freePort } from './ports.ts';

/** A RabbitMQ node that a test owns: its own ports on loopback, its own epmd and data directory. */
export interface RabbitServer {
  /** `amqp://guest:guest@127.0.0.1:<port>` (guest may log in over loopback). */
  url: string;
  /** Stops the node and its epmd, and removes its directory. */
  stop(): Promise<void>;
}

const SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server';
const INSTALL_HINT = 'The AMQP tests need RabbitMQ: install it with `apt-get install -y rabbitmq-server` (Debian/Ubuntu).';

function uidOf(user: string): { uid: number; gid: number } | undefined {
  const r = spawnSync('id', ['-u', user], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', user], { encoding: 'utf8' });
  return r.status === 0 && g.status === 0 ? { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) } : undefined;
}

/** Resolves once an AMQP connection succeeds; the node opens its listener last, when it is ready. */
async function waitReady(url: string, child: ChildProcess, output: () => string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`rabbitmq-server exited (code ${child.exitCode}, signal ${child.signalCode}) before it was ready:\n${output()}`);
    try {
      const c = await connect(url);
      await c.close();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`rabbitmq-server did not become ready within ${timeoutMs / 1000} s:\n${output()}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/**
 * Starts a RabbitMQ node (Debian's rabbitmq-server) on free loopback ports in a temporary
 * directory, as the `rabbitmq` user when run as root (the package's files and Erlang cookie
 * belong to that user). Its epmd runs on a port of its own, so parallel
 * test files never share one, and is killed on `stop()`. No plugins (the management UI would
 * take a fixed port). Takes a few seconds.
 */
export async function startRabbit(): Promise<RabbitServer> {
  try {
    accessSync(SERVER, constants.X_OK);
  } catch {
    throw new Error(`rabbitmq-server is not installed (${SERVER} is missing). ${INSTALL_HINT}`);
  }
  const asRoot = userInfo().uid === 0;
  const owner = asRoot ? uidOf('rabbitmq') : undefined;
  if (asRoot && !owner) throw new Error(`the rabbitmq user is missing (it comes with the package). ${INSTALL_HINT}`);
  const [port, distPort, epmdPort] = [await freePort(), await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), 'hearth-rabbit-'));
  writeFileSync(join(dir, 'enabled_plugins'), '[].\n');
  writeFileSync(join(dir, '.erlang.cookie'), `HEARTHTEST${Math.random().toString(36).slice(2).toUpperCase()}`, { mode: 0o400 });
  if (owner) {
    chownSync(dir, owner.uid, owner.gid);
    for (const f of ['enabled_plugins', '.erlang.cookie']) chownSync(join(dir, f), owner.uid, owner.gid);
  }
  const env: Record<string, string> = {
    PATH: `${process.env.PATH ?? ''}:/usr/sbin:/usr/bin:/sbin:/bin`,
    HOME: dir,
    LANG: 'C.UTF-8',
    ERL_EPMD_PORT: String(epmdPort),
    RABBITMQ_NODENAME: `hearth-test-${Math.random().toString(36).slice(2, 10)}@localhost`,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_LOGS: '-',
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq'),
    RABBITMQ_ADVANCED_CONFIG_FILE: join(dir, 'advanced.config'),
    RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
    RABBITMQ_PID_FILE: join(dir, 'rabbit.pid'),
  };
  const [cmd, args] = owner ? ['runuser', ['-u', 'rabbitmq', '--', SERVER]] : [SERVER, []];
  const child = spawn(cmd, args as string[], { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const collect = (chunk: Buffer) => {
    if (output.length < 40_000) output += chunk.toString();
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const spawnError = new Promise<never>((_, reject) => child.once('error', (err) => reject(new Error(`could not start rabbitmq-server: ${err.message}. ${INSTALL_HINT}`))));
  const url = `amqp://guest:guest@127.0.0.1:${port}`;

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      // The whole process group: the shell script, the Erlang VM and its helpers.
      try {
        process.kill(-child.pid!, 'SIGTERM');
      } catch {
        /* gone already */
      }
      const timer = setTimeout(() => {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          /* gone */
        }
      }, 10_000);
      await exited;
      clearTimeout(timer);
    }
    spawnSync('epmd', ['-kill'], { env: { ...process.env, ERL_EPMD_PORT: String(epmdPort) }, stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    await Promise.race([waitReady(url, child, () => output, 30_000), spawnError]);
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, stop };
}
