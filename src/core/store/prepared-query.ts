import type { CompiledQuery, Compilable, Kysely, QueryResult } from 'kysely';

/** Marks where a named parameter goes while the query is built once (see `prepared`). */
const MARK = '\u0000hearth-param:';

/**
 * A query built and compiled once, then run with new parameters: building a Kysely query costs
 * tens of microseconds, which a hot path (a command, a request) should not pay each time. The
 * builder gets `p(name)` for each value that changes; `run` takes the values by name, so the order
 * of the parameters in the SQL never matters. Portable: the SQL is compiled by the store it first
 * runs on (SQLite or PostgreSQL), inside a transaction too (`run(trx, …)`).
 *
 *   const byId = prepared((db, p) => db.selectFrom('things').selectAll().where('id', '=', p('id')));
 *   const rows = (await byId.run(db, { id })).rows;
 *
 * Values written into the builder as they are (a null, a fixed status) stay as compiled. Only plain
 * values may be named (no lists whose length varies: those change the SQL); a named value may be
 * null but not undefined.
 */
export function prepared<DB, R, N extends string = string>(
  build: (db: Kysely<DB>, p: (name: N) => any) => Compilable<R>,
): { run(db: Kysely<DB>, values: Readonly<Record<N, unknown>>): Promise<QueryResult<R>> } {
  // Per store (its dialect's adapter, shared by its transactions): one process may open several.
  const byStore = new WeakMap<object, { compiled: CompiledQuery<R>; names: Array<N | undefined> }>();
  const compile = (db: Kysely<DB>) => {
    const compiled = build(db, (name) => MARK + name).compile();
    // A value written into the builder as it is (a null, a status) stays what it was compiled with.
    const names = compiled.parameters.map((v) => (typeof v === 'string' && v.startsWith(MARK) ? (v.slice(MARK.length) as N) : undefined));
    return { compiled, names };
  };
  return {
    async run(db, values) {
      const store = db.getExecutor().adapter;
      let q = byStore.get(store);
      if (!q) byStore.set(store, (q = compile(db)));
      const { compiled, names } = q;
      const parameters = new Array<unknown>(names.length);
      for (let i = 0; i < names.length; i++) {
        const name = names[i];
        if (name === undefined) {
          parameters[i] = compiled.parameters[i];
          continue;
        }
        const v = values[name];
        if (v === undefined) throw new Error(`prepared query: no value for "${name}"`);
        parameters[i] = v;
      }
      return db.executeQuery({ ...compiled, parameters });
    },
  };
}
