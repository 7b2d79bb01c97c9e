import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { freePort } from './ports.ts';

/** A nats-server with JetStream that a test owns: its own free port on loopback and store directory. */
export interface NatsServer {
  url: string;
  /** Stops the server and removes its store directory. */
  stop(): Promise<void>;
  /** Stops the server and starts it again on the same port with the same store (streams and consumers survive). */
  restart(): Promise<void>;
}

/** Debian installs the server in /usr/sbin, which is not on every user's PATH. */
function findBinary(): string {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/bin', '/usr/local/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const file = join(dir, 'nats-server');
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      /* not here */
    }
  }
  throw new Error(
    'nats-server is not installed (looked on PATH and in /usr/sbin, /usr/local/bin, /usr/local/sbin). ' +
      'The NATS tests need it: install it with `apt-get install -y nats-server` (Debian/Ubuntu) ' +
      'or put a nats-server 2.9+ binary on PATH.',
  );
}

/** Spawns the server and resolves once it logs that it is ready; rejects with its output if it exits first. */
function spawnServer(bin: string, port: number, dir: string): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`nats-server did not become ready within 10 s:\n${output}`));
    }, 10_000);
    const onData = (chunk: Buffer) => {
      if (output.length < 20_000) output += chunk.toString();
      if (output.includes('Server is ready')) {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        child.stderr!.off('data', onData);
        // Keep draining the pipes so a chatty server never blocks on a full one.
        child.stdout!.resume();
        child.stderr!.resume();
        child.off('exit', onExit);
        resolve(child);
      }
    };
    const onExit = (code: number | null, signal: string | null) => {
      clearTimeout(timer);
      reject(new Error(`nats-server exited (code ${code}, signal ${signal}) before it was ready:\n${output}`));
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', onExit);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

/**
 * Starts `nats-server -js` on a free loopback port with a temporary store directory. Throws a
 * message saying how to install the server when the binary is missing.
 */
export async function startNats(): Promise<NatsServer> {
  const bin = findBinary();
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'hearth-nats-'));
  let child: ChildProcess;
  try {
    child = await spawnServer(bin, port, dir);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    async stop() {
      await stopServer(child);
      rmSync(dir, { recursive: true, force: true });
    },
    async restart() {
      await stopServer(child);
      child = await spawnServer(bin, port, dir);
    },
  };
}
