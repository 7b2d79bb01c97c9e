import { Kysely, Migrator, PostgresDialect, SqliteDialect, type KyselyConfig, type MigrationProvider, type SqliteDatabase, type SqliteStatement } from 'kysely';
import SQLite from 'better-sqlite3';
import { createRequire } from 'node:module';
import type pg from 'pg';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Database } from './schema.ts';
import { migrations } from './migrations/index.ts';

export type Db = Kysely<Database>;

/** The engines behind `Db`: SQLite embedded, PostgreSQL for cluster mode. */
export type StoreEngine = 'sqlite' | 'postgres';

/** An open store: capabilities get `db`; the composition root closes it. */
export interface Store {
  db: Db;
  engine: StoreEngine;
  /** Closes the SQLite file or ends the PostgreSQL pool (the same as `db.destroy()`). */
  close(): Promise<void>;
}

/** Called after every query with its duration (also after failed ones), for latency metrics. */
export type QueryHook = (durationMs: number, sql: string) => void;

/**
 * SQLite's `synchronous` level for every SQLite file of an embedded Hearth (always in WAL mode).
 * `normal`: a commit is in the operating system's hands when it returns, so it survives Hearth
 * crashing or being killed at any point; an OS crash or power cut may lose the transactions since
 * the last checkpoint (never corrupts). `full`: each commit is also fsynced, so it survives those
 * too, at one fsync per transaction (group commit shares it among the messages of a batch).
 */
export type SqliteSynchronous = 'normal' | 'full';

export interface StoreOptions {
  dataDir: string;
  /** SQLite only (default `normal`). */
  synchronous?: SqliteSynchronous;
  /** `postgres://…`: PostgreSQL instead of the SQLite file in dataDir. */
  databaseUrl?: string;
  /** Left unset, queries are not timed at all. */
  onQuery?: QueryHook;
}

/** Opens PostgreSQL when a database URL is configured, otherwise SQLite in the data directory. */
export function openStore(opts: StoreOptions): Store {
  if (opts.databaseUrl) return openPostgres({ url: opts.databaseUrl, onQuery: opts.onQuery });
  const { db } = openSqlite({ dataDir: opts.dataDir, onQuery: opts.onQuery, synchronous: opts.synchronous });
  return { db, engine: 'sqlite', close: () => db.destroy() };
}

export interface SqliteStoreOptions {
  dataDir: string;
  /** File name inside dataDir; `:memory:` for throwaway stores. */
  file?: string;
  onQuery?: QueryHook;
  /** Default `normal` (see SqliteSynchronous). */
  synchronous?: SqliteSynchronous;
}

/**
 * Opens a SQLite file of the data directory (created if missing) in WAL mode with the given
 * `synchronous` level: the store, and the bus's stream log beside it.
 */
export function openSqliteFile(dataDir: string, file: string, synchronous: SqliteSynchronous = 'normal'): SQLite.Database {
  let path = file;
  if (path !== ':memory:') {
    mkdirSync(dataDir, { recursive: true });
    path = join(dataDir, path);
  }
  const raw = new SQLite(path);
  raw.pragma('journal_mode = WAL');
  raw.pragma(`synchronous = ${synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
  raw.pragma('busy_timeout = 5000');
  return raw;
}

/** Opens the embedded SQLite store (`hearth.sqlite`) in WAL mode; see SqliteSynchronous for what a commit survives. */
export function openSqlite(opts: SqliteStoreOptions): { db: Db; raw: SQLite.Database } {
  const raw = openSqliteFile(opts.dataDir, opts.file ?? 'hearth.sqlite', opts.synchronous);
  raw.pragma('foreign_keys = ON');
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: cachingStatements(raw) }), ...logging(opts.onQuery) });
  return { db, raw };
}

export interface PostgresStoreOptions {
  url: string;
  /** Connections per node; every node of a cluster opens its own pool. */
  poolSize?: number;
  /** The server cancels a statement running longer than this, so a stuck query cannot hold a connection forever. */
  statementTimeoutMs?: number;
  onQuery?: QueryHook;
}

const PG_INT8 = 20;
const PG_NUMERIC = 1700;

/**
 * bigint columns hold epoch milliseconds and counters, and `count(*)`/`avg()` return int8 or
 * numeric: node-postgres hands those out as strings, so they are parsed as JS numbers here
 * (exact below 2^53, far beyond any timestamp or counter of ours). float8 is a number already.
 * Per pool, not through the global `pg.types`, so that other users of `pg` in the process are left alone.
 */
function pgTypes(pgModule: typeof pg): pg.CustomTypesConfig {
  return {
    getTypeParser(oid: number, format?: 'text' | 'binary') {
      if (oid === PG_INT8 || oid === PG_NUMERIC) return (v: string) => Number(v);
      return pgModule.types.getTypeParser(oid, format);
    },
  } as pg.CustomTypesConfig;
}

/** node-postgres, loaded when a PostgreSQL store is opened (an embedded node never holds it). */
const requirePg = (): typeof pg => createRequire(import.meta.url)('pg') as typeof pg;

/** Opens a pool on PostgreSQL. Nothing connects until the first query. */
export function openPostgres(opts: PostgresStoreOptions): Store {
  const pgModule = requirePg();
  const pool = new pgModule.Pool({
    connectionString: opts.url,
    max: opts.poolSize ?? 10,
    statement_timeout: opts.statementTimeoutMs ?? 30_000,
    // a request waiting for a free connection fails instead of queueing forever
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    types: pgTypes(pgModule),
  });
  // An idle connection that breaks (server restart, network) is dropped by the pool; without a
  // listener its 'error' would crash the process. Queries that need a new one fail on their own.
  pool.on('error', () => undefined);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }), ...logging(opts.onQuery) });
  return { db, engine: 'postgres', close: () => db.destroy() };
}

/** Kysely's `log` only when there is a hook: without it Kysely does not even time the queries. */
function logging(onQuery: QueryHook | undefined): Pick<KyselyConfig, 'log'> {
  if (!onQuery) return {};
  return { log: (e) => onQuery(e.queryDurationMillis, e.query.sql) };
}

/**
 * Kysely prepares every statement anew; preparing costs more than running a small one, so keep
 * the prepared statements by SQL text. Bounded: multi-row inserts of varying sizes make many texts.
 */
function cachingStatements(raw: SQLite.Database, max = 512): SqliteDatabase {
  const cache = new Map<string, SQLite.Statement>();
  return {
    close: () => raw.close(),
    prepare(sqlText: string) {
      let stmt = cache.get(sqlText);
      if (!stmt) {
        if (cache.size >= max) cache.delete(cache.keys().next().value!);
        stmt = raw.prepare(sqlText);
        cache.set(sqlText, stmt);
      }
      return stmt as unknown as SqliteStatement;
    },
  };
}

const provider: MigrationProvider = {
  async getMigrations() {
    return migrations;
  },
};

/** Runs all pending migrations; throws with the failing migration's name. */
export async function migrate(db: Db): Promise<string[]> {
  const migrator = new Migrator({ db, provider });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error');
    throw new Error(`migration ${failed?.migrationName ?? '?'} failed: ${(error as Error).message ?? error}`);
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/**
 * Whether a failed write was refused because of the record itself (a constraint, a value the
 * column cannot hold, a row too large), not because the store failed (connection lost, disk
 * full, I/O error, busy). Writing the same record again cannot succeed; writing others can.
 * Batch writers use it to drop one bad record instead of retrying the whole batch forever.
 */
export function isRecordError(err: unknown): boolean {
  if (err instanceof TypeError || err instanceof RangeError) return true; // serialisation, bindings
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return false;
  // better-sqlite3: SQLITE_CONSTRAINT_*, a value of the wrong type, a string or blob too big.
  if (code.startsWith('SQLITE_'))
    return code.startsWith('SQLITE_CONSTRAINT') || code === 'SQLITE_MISMATCH' || code === 'SQLITE_TOOBIG' || code === 'SQLITE_RANGE';
  // PostgreSQL SQLSTATE: 22 data exception, 23 integrity constraint violation, 54 program limit exceeded.
  return /^(22|23|54)[0-9A-Z]{3}$/.test(code);
}

/** Serialises a JSON column value. */
export const toJson = (v: unknown): string => JSON.stringify(v ?? null);
/** Parses a JSON column value. */
export const fromJson = <T>(s: string | null): T => (s == null ? (null as T) : (JSON.parse(s) as T));
