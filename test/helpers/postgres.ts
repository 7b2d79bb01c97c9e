import { spawnSync, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from './ports.ts';

/** A throwaway PostgreSQL server for tests. */
export interface PostgresServer {
  /** The connection URL of a database on this server. */
  url(dbName: string): string;
  /** Creates an empty database with a random name and returns its URL. */
  createDatabase(): Promise<string>;
  /** Drops a database made by createDatabase (given by URL), closing its connections. */
  dropDatabase(url: string): Promise<void>;
  /** Stops the server at once and removes its files. Safe to call twice. */
  stop(): Promise<void>;
}

const run = promisify(execFile);
const SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/**
 * Starts a PostgreSQL server of its own in a temporary directory, on a free loopback port,
 * tuned for tests (no fsync: the data is thrown away). It is stopped by `stop()` or, failing
 * that, when the process exits. initdb refuses to run as root, so as root the server runs as
 * the `postgres` user.
 */
export async function startPostgres(): Promise<PostgresServer> {
  const bin = serverBinaries();
  const asRoot = process.getuid?.() === 0;
  const as = (cmd: string, args: string[]): [string, string[]] => (asRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args]);
  if (asRoot && spawnSync('id', ['-u', 'postgres']).status !== 0) {
    throw new Error('running as root, PostgreSQL needs the "postgres" user to run as (apt-get install -y postgresql creates it)');
  }
  const dir = mkdtempSync(join(tmpdir(), 'hearth-pg-'));
  if (asRoot) {
    const uid = Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim());
    const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim());
    chownSync(dir, uid, gid);
  }
  const data = join(dir, 'data');
  const logFile = join(dir, 'server.log');
  const user = asRoot ? 'postgres' : userInfo().username;
  let stopped = false;
  const stopNow = () => {
    if (stopped) return;
    stopped = true;
    process.off('exit', stopNow);
    for (const sig of SIGNALS) process.off(sig, onSignal);
    spawnSync(...as(join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', 'stop']), { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  };
  // pg_ctl puts the server in a session of its own, so Ctrl-C does not reach it: stop it, then
  // let the signal do what it would have done.
  const onSignal = (sig: NodeJS.Signals) => {
    stopNow();
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
  };
  process.on('exit', stopNow);
  for (const sig of SIGNALS) process.once(sig, onSignal);

  let port = 0;
  try {
    await run(...as(join(bin, 'initdb'), ['-D', data, '-U', user, '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync']));
    // The free port is found before the server takes it: if another process wins the race, try again.
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      const opts = `-c listen_addresses=127.0.0.1 -p ${port} -k ${dir} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300`;
      try {
        await run(...as(join(bin, 'pg_ctl'), ['-D', data, '-w', '-t', '30', '-l', logFile, '-o', opts, 'start']));
        break;
      } catch (err) {
        if (attempt >= 3) throw err;
      }
    }
  } catch (err) {
    const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').slice(-2000) : '';
    stopNow();
    throw new Error(`the test PostgreSQL server did not start: ${(err as Error).message}${log ? `\nserver log:\n${log}` : ''}`);
  }

  const url = (dbName: string) => `postgres://${user}@127.0.0.1:${port}/${dbName}`;
  const admin = new pg.Pool({ connectionString: url('postgres'), max: 2, allowExitOnIdle: true });
  admin.on('error', () => undefined);
  return {
    url,
    async createDatabase() {
      const name = `hearth_${randomBytes(6).toString('hex')}`;
      // FILE_COPY: copying the few files of template1 beats logging them to the WAL (the default since 15)
      await admin.query(`CREATE DATABASE ${name} STRATEGY = FILE_COPY`);
      return url(name);
    },
    async dropDatabase(dbUrl) {
      const name = new URL(dbUrl).pathname.slice(1);
      if (!/^hearth_[0-9a-f]+$/.test(name)) throw new Error(`not a test database: ${dbUrl}`);
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
    async stop() {
      if (stopped) return;
      await admin.end().catch(() => undefined);
      stopNow();
    },
  };
}

const NEEDED = ['initdb', 'pg_ctl', 'postgres'];

/**
 * The directory of initdb, pg_ctl and postgres: HEARTH_PG_BIN, else Debian's
 * /usr/lib/postgresql/<newest>/bin, else the PATH. Throws saying what is missing and how to get it.
 */
function serverBinaries(): string {
  const complete = (dir: string) => NEEDED.every((b) => existsSync(join(dir, b)));
  const env = process.env.HEARTH_PG_BIN;
  if (env) {
    if (complete(env)) return env;
    throw new Error(`HEARTH_PG_BIN=${env} lacks ${NEEDED.filter((b) => !existsSync(join(env, b))).join(', ')}`);
  }
  const debian = '/usr/lib/postgresql';
  const versions = existsSync(debian)
    ? readdirSync(debian)
        .filter((v) => /^\d+$/.test(v))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  for (const v of versions) if (complete(join(debian, v, 'bin'))) return join(debian, v, 'bin');
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, 'initdb'))) {
      const real = dirname(realpathSync(join(dir, 'initdb')));
      if (complete(real)) return real;
    }
  }
  throw new Error(
    `PostgreSQL server binaries (${NEEDED.join(', ')}) not found in ${debian}/<version>/bin nor on the PATH. ` +
      'Install them with "apt-get install -y postgresql" (Debian/Ubuntu), or set HEARTH_PG_BIN to the directory that holds them, ' +
      'or run the tests without HEARTH_TEST_STORE=postgres.',
  );
}
