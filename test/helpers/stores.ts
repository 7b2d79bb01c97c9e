import { before, after } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore, type Store } from '../../src/core/store/db.ts';
import { startPostgres, type PostgresServer } from './postgres.ts';

/**
 * Stores of both engines for tests of store code below the HTTP edge: `open(engine)` gives an
 * empty store (SQLite in a fresh directory, or a fresh database on one test PostgreSQL server,
 * started before the file's tests and stopped after them with the directories removed). The
 * caller closes what it opens.
 */
export function testStores(prefix: string): { open(engine: 'sqlite' | 'postgres'): Promise<Store> } {
  let server: PostgresServer;
  const dirs: string[] = [];
  before(async () => {
    server = await startPostgres();
  });
  after(async () => {
    await server.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  return {
    async open(engine) {
      const dataDir = mkdtempSync(join(tmpdir(), prefix));
      dirs.push(dataDir);
      return openStore({ dataDir, ...(engine === 'postgres' ? { databaseUrl: await server.createDatabase() } : {}) });
    },
  };
}
