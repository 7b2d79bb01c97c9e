import { CompiledQuery, PostgresAdapter } from 'kysely';
import type { Db } from './db.ts';
import type { Database } from './schema.ts';

/**
 * Statements of the hot write paths, written once as SQL text instead of built per call.
 *
 * Kysely builds a query as a tree of frozen nodes and compiles it to text at every call: for a
 * multi-row insert that is a few objects per value, about as much CPU as SQLite spends storing
 * the rows. The statements here are plain SQL that SQLite and PostgreSQL both accept (double
 * quoted identifiers, ON CONFLICT, RETURNING); only the parameter placeholders differ (`?` and
 * `$n`), and each text is made once per row count and kept. They run through Kysely's executor,
 * so transactions, the statement cache and the query metrics apply as to any other query.
 */

/** `?` for SQLite, `$n` (1-based) for PostgreSQL. */
export type Placeholder = (n: number) => string;

const sqlitePlaceholder: Placeholder = () => '?';
const postgresPlaceholder: Placeholder = (n) => `$${n}`;

/** The placeholder style of the store behind `db` (a transaction has its store's). */
export function placeholderOf(db: Db): Placeholder {
  return db.getExecutor().adapter instanceof PostgresAdapter ? postgresPlaceholder : sqlitePlaceholder;
}

/** Runs a statement written as SQL text with its parameters; resolves with the rows it returns. */
export async function runSql<R = Record<string, unknown>>(db: Db, text: string, parameters: readonly unknown[]): Promise<R[]> {
  const result = await db.executeQuery<R>(CompiledQuery.raw(text, [...parameters]));
  return result.rows;
}

/** Keeps the texts of a statement by key (a row count and a placeholder style): a few per statement. */
export class TextCache {
  private readonly texts = new Map<string, string>();
  constructor(private readonly max = 64) {}

  get(key: string, make: () => string): string {
    let text = this.texts.get(key);
    if (text === undefined) {
      if (this.texts.size >= this.max) this.texts.delete(this.texts.keys().next().value!);
      text = make();
      this.texts.set(key, text);
    }
    return text;
  }
}

/**
 * `INSERT INTO table (columns) VALUES (…), (…) <suffix>` for any number of rows, the suffix being
 * an ON CONFLICT and/or RETURNING clause written for both engines. The rows' values are taken by
 * column name; a row may carry other properties, which are ignored.
 */
export class BulkInsert<T extends keyof Database & string, C extends keyof Database[T] & string> {
  private readonly texts = new TextCache();
  private readonly head: string;

  constructor(
    table: T,
    private readonly columns: readonly C[],
    private readonly suffix = '',
  ) {
    this.head = `insert into "${table}" (${columns.map((c) => `"${c}"`).join(', ')}) values `;
  }

  /** Inserts the rows in one statement (the caller keeps it under the engines' parameter limits). */
  async run<R = Record<string, unknown>>(db: Db, rows: ReadonlyArray<Pick<Database[T], C>>): Promise<R[]> {
    if (rows.length === 0) return [];
    const ph = placeholderOf(db);
    const width = this.columns.length;
    const text = this.texts.get(`${ph(1)}${rows.length}`, () => {
      const tuples: string[] = [];
      let n = 1;
      for (let r = 0; r < rows.length; r++) {
        const cells: string[] = [];
        for (let c = 0; c < width; c++) cells.push(ph(n++));
        tuples.push(`(${cells.join(', ')})`);
      }
      return this.head + tuples.join(', ') + (this.suffix ? ` ${this.suffix}` : '');
    });
    const parameters: unknown[] = new Array(rows.length * width);
    let i = 0;
    for (const row of rows) for (const c of this.columns) parameters[i++] = row[c] ?? null;
    return runSql<R>(db, text, parameters);
  }
}
