import { Kysely, Migrator, PostgresDialect, SqliteDialect, type KyselyConfig, type MigrationProvider, type SqliteDatabase, type SqliteStatement } from 'kysely';
import SQLite from 'better-sqlite3';
import pg from 'pg';
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

export interface StoreOptions {
  dataDir: string;
  /** `postgres://…`: PostgreSQL instead of the SQLite file in dataDir. */
  databaseUrl?: string;
  /** Left unset, queries are not timed at all. */
  onQuery?: QueryHook;
}

/** Opens PostgreSQL when a database URL is configured, otherwise SQLite in the data directory. */
export function openStore(opts: StoreOptions): Store {
  if (opts.databaseUrl) return openPostgres({ url: opts.databaseUrl, onQuery: opts.onQuery });
  const { db } = openSqlite({ dataDir: opts.dataDir, onQuery: opts.onQuery });
  return { db, engine: 'sqlite', close: () => db.destroy() };
}

export interface SqliteStoreOptions {
  dataDir: string;
  /** File name inside dataDir; `:memory:` for throwaway stores. */
  file?: string;
  onQuery?: QueryHook;
}

/**
 * Opens the embedded SQLite store in WAL mode. `synchronous=NORMAL` with WAL keeps commits
 * durable across process crashes (only an OS crash may lose the last transactions).
 */
export function openSqlite(opts: SqliteStoreOptions): { db: Db; raw: SQLite.Database } {
  let path = opts.file ?? 'hearth.sqlite';
  if (path !== ':memory:') {
    mkdirSync(opts.dataDir, { recursive: true });
    path = join(opts.dataDir, path);
  }
  const raw = new SQLite(path);
  raw.pragma('journal_mode = WAL');
  raw.pragma('synchronous = NORMAL');
  raw.pragma('foreign_keys = ON');
  raw.pragma('busy_timeout = 5000');
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
const pgTypes = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === PG_INT8 || oid === PG_NUMERIC) return (v: string) => Number(v);
    return pg.types.getTypeParser(oid, format);
  },
} as pg.CustomTypesConfig;

/** Opens a pool on PostgreSQL. Nothing connects until the first query. */
export function openPostgres(opts: PostgresStoreOptions): Store {
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.poolSize ?? 10,
    statement_timeout: opts.statementTimeoutMs ?? 30_000,
    // a request waiting for a free connection fails instead of queueing forever
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    types: pgTypes,
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

/** Serialises a JSON column value. */
export const toJson = (v: unknown): string => JSON.stringify(v ?? null);
/** Parses a JSON column value. */
export const fromJson = <T>(s: string | null): T => (s == null ? (null as T) : (JSON.parse(s) as T));
