import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, chownSync, closeSync, constants, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { connect } from 'amqplib';
import { freePort } from './ports.ts';

/** A RabbitMQ node that a test owns: free loopback ports, its own data directory and epmd. */
export interface RabbitServer {
  /** `amqp://guest:guest@127.0.0.1:<port>` (guest works from loopback only, which is all we use). */
  url: string;
  /** Stops the node and its epmd, and removes its directory. */
  stop(): Promise<void>;
}

/** Debian's layout: the real scripts live here; /usr/sbin only has a wrapper that insists on /var/lib/rabbitmq. */
const BIN = '/usr/lib/rabbitmq/bin';

function requireBinaries(): void {
  for (const file of [join(BIN, 'rabbitmq-server'), join(BIN, 'rabbitmqctl')]) {
    try {
      accessSync(file, constants.X_OK);
    } catch {
      throw new Error(`${file} is missing: the AMQP tests need RabbitMQ. Install it with \`apt-get install -y rabbitmq-server\` (Debian/Ubuntu).`);
    }
  }
}

/**
 * Starts Debian's rabbitmq-server for one test file. As root it runs as the `rabbitmq` user (the
 * Erlang cookie lands in the temp dir, the node's HOME); otherwise as the current user. The node
 * gets its own epmd port so it never meets another test's (or the system's) Erlang nodes.
 * Ready when an AMQP connection opens (~5–8 s).
 */
export async function startRabbit(): Promise<RabbitServer> {
  requireBinaries();
  // A port that was free a moment ago can be taken before the node binds it (another test's
  // outgoing connection gets it as its ephemeral port); the node then exits at boot. Try again
  // with fresh ports: a node that exits early has left nothing behind.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce();
    } catch (err) {
      if (!(err instanceof EarlyExit) || attempt === 3) throw err;
    }
  }
}

class EarlyExit extends Error {}

async function startOnce(): Promise<RabbitServer> {
  const dir = mkdtempSync(join(tmpdir(), 'hearth-rabbit-'));
  const [port, distPort, epmdPort] = [await freePort(), await freePort(), await freePort()];
  const node = `hearth-${randomBytes(4).toString('hex')}@localhost`;
  mkdirSync(join(dir, 'mnesia'));
  mkdirSync(join(dir, 'log'));
  // No plugins: the management plugin alone doubles the boot time.
  writeFileSync(join(dir, 'enabled_plugins'), '[].\n');
  const asRoot = userInfo().uid === 0;
  if (asRoot) {
    const ids = spawnSync('id', ['-u', 'rabbitmq'], { encoding: 'utf8' });
    if (ids.status !== 0) throw new Error('the rabbitmq user does not exist: install RabbitMQ with `apt-get install -y rabbitmq-server`');
    const uid = Number(ids.stdout.trim());
    const gid = Number(spawnSync('id', ['-g', 'rabbitmq'], { encoding: 'utf8' }).stdout.trim());
    for (const p of [dir, join(dir, 'mnesia'), join(dir, 'log'), join(dir, 'enabled_plugins')]) chownSync(p, uid, gid);
  }
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: dir,
    LANG: 'C.UTF-8',
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    RABBITMQ_PID_FILE: join(dir, 'pid'),
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq'),
    ERL_EPMD_PORT: String(epmdPort),
  };
  const run = (cmd: string, args: string[]) =>
    asRoot ? { cmd: 'runuser', args: ['-u', 'rabbitmq', '--', 'env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), cmd, ...args] } : { cmd, args };
  const server = run(join(BIN, 'rabbitmq-server'), []);
  const out = join(dir, 'out.log');
  const fd = openSync(out, 'w');
  const child = spawn(server.cmd, server.args, { cwd: dir, env, detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const url = `amqp://guest:guest@127.0.0.1:${port}`;

  const stop = async () => {
    const ctl = run(join(BIN, 'rabbitmqctl'), ['-n', node, 'stop']);
    spawnSync(ctl.cmd, ctl.args, { cwd: dir, env, timeout: 10_000, stdio: 'ignore' });
    await exited(child, 10_000);
    const epmd = run('epmd', ['-kill']);
    spawnSync(epmd.cmd, epmd.args, { cwd: dir, env, timeout: 5_000, stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) {
      const log = tail(join(dir, 'log', `${node}.log`)) || tail(out);
      const epmd = run('epmd', ['-kill']);
      spawnSync(epmd.cmd, epmd.args, { cwd: dir, env, timeout: 5_000, stdio: 'ignore' });
      rmSync(dir, { recursive: true, force: true });
      throw new EarlyExit(`rabbitmq-server exited (code ${child.exitCode}) before it was ready:\n${log}`);
    }
    try {
      const c = await connect(url);
      await c.close();
      return { url, stop };
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) {
      const log = tail(join(dir, 'log', `${node}.log`));
      await stop();
      throw new Error(`rabbitmq-server did not accept AMQP connections on port ${port} within 30 s:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Waits for the server's process tree to end, killing the group when it takes too long. */
async function exited(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  }, ms);
  await done;
  clearTimeout(timer);
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-4000);
  } catch {
    return '';
  }
}
