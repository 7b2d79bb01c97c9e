import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql, type Kysely } from 'kysely';
import type { Store } from './db.ts';
import { prepared } from './prepared-query.ts';
import { testStores } from '../../../test/helpers/stores.ts';

interface T {
  t: { id: string; a: string; b: number | null; c: string };
}

// One builder for every store of the process: each store compiles it for its own dialect.
const insert = prepared<T, unknown>((db, p) => db.insertInto('t').values({ id: p('id'), c: 'fixed', b: p('b'), a: p('a') }));
const byBAndA = prepared<T, T['t']>((db, p) => db.selectFrom('t').selectAll().where('b', '=', p('b')).where('a', '=', p('a')).orderBy('id'));
const setA = prepared<T, unknown>((db, p) =>
  db
    .updateTable('t')
    .set({ a: p('a'), b: null })
    .where('id', '=', p('id')),
);

const stores = testStores('hearth-prepared-');

async function open(engine: 'sqlite' | 'postgres'): Promise<Store> {
  const store = await stores.open(engine);
  await sql`create table t (id text primary key, a text not null, b integer, c text not null)`.execute(store.db as unknown as Kysely<T>);
  return store;
}

describe('prepared queries', () => {
  test('run with values by name, keep the values written into the builder, on SQLite and PostgreSQL side by side, and in transactions', async () => {
    const stores = [await open('sqlite'), await open('postgres')];
    try {
      for (const store of stores) {
        const db = store.db as unknown as Kysely<T>;
        await insert.run(db, { a: 'x', b: 1, id: 'r1' });
        await insert.run(db, { id: 'r2', a: 'y', b: 1 });
        await db.transaction().execute(async (trx) => {
          await insert.run(trx, { id: 'r3', a: 'x', b: 1 });
          await setA.run(trx, { id: 'r2', a: 'z' });
        });
        const rows = (await byBAndA.run(db, { a: 'x', b: 1 })).rows;
        assert.deepEqual(
          rows.map((r) => [r.id, r.a, Number(r.b), r.c]),
          [
            ['r1', 'x', 1, 'fixed'],
            ['r3', 'x', 1, 'fixed'],
          ],
          store.engine,
        );
        const r2 = await db.selectFrom('t').selectAll().where('id', '=', 'r2').executeTakeFirstOrThrow();
        assert.equal(r2.a, 'z');
        assert.equal(r2.b, null, 'a null written into the builder stays null');
        // A rolled-back transaction leaves nothing behind.
        await assert.rejects(
          db.transaction().execute(async (trx) => {
            await insert.run(trx, { id: 'r4', a: 'x', b: 1 });
            throw new Error('roll back');
          }),
        );
        assert.equal((await byBAndA.run(db, { a: 'x', b: 1 })).rows.length, 2);
      }
    } finally {
      for (const s of stores) await s.close();
    }
  });

  test('a missing value is an error, not a NULL written by mistake', async () => {
    const store = await open('sqlite');
    try {
      await assert.rejects(insert.run(store.db as unknown as Kysely<T>, { id: 'r1', a: 'x' } as never), /no value for "b"/);
    } finally {
      await store.close();
    }
  });
});
