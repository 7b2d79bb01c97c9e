import { Kysely, Migrator, SqliteDialect, type MigrationProvider, type SqliteDatabase, type SqliteStatement } from 'kysely';
import SQLite from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Database } from './schema.ts';
import { migrations } from './migrations/index.ts';

export type Db = Kysely<Database>;

export interface SqliteStoreOptions {
  dataDir: string;
  /** File name inside dataDir; `:memory:` for throwaway stores. */
  file?: string;
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
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: cachingStatements(raw) }) });
  return { db, raw };
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
