import type SQLite from 'better-sqlite3';
import { openSqliteFile, type SqliteSynchronous } from '../store/db.ts';
import type { PersistedMessage, StreamBatch, StreamStorage } from './stream-storage.ts';

/**
 * The embedded bus's stream log: `streams.sqlite` in the data directory, beside the store.
 *
 * A file of its own, not a table of `hearth.sqlite`: SQLite has one writer per file, and the
 * store's connection runs Kysely transactions that span awaits. A synchronous commit of the log on
 * that connection would land inside whatever transaction is open (and be rolled back with it); on
 * a second connection to the same file it would wait for that transaction while blocking the
 * event loop that has to finish it. Its own file has neither problem, and its WAL stays small
 * (rows live only until they are acknowledged).
 *
 * Prepared statements on better-sqlite3, run synchronously: a commit of a few hundred messages
 * takes well under a millisecond (plus one fsync with `synchronous=full`). Rows are keyed by an
 * integer the bus keeps with each message, so an acknowledgement is a delete by rowid. No other
 * index: the table is read only when the process starts, and is small (unacknowledged messages).
 */
export class SqliteStreamStorage implements StreamStorage {
  private readonly db: SQLite.Database;
  private readonly stmts: {
    put: SQLite.Statement;
    take: SQLite.Statement;
    ack: SQLite.Statement;
    seq: SQLite.Statement;
    expire: SQLite.Statement;
    bump: SQLite.Statement;
    load: SQLite.Statement;
    lastSeq: SQLite.Statement;
  };
  private readonly apply: (batch: StreamBatch) => void;

  constructor(opts: { dataDir: string; file?: string; synchronous?: SqliteSynchronous }) {
    const db = (this.db = openSqliteFile(opts.dataDir, opts.file ?? 'streams.sqlite', opts.synchronous));
    db.exec(`
      CREATE TABLE IF NOT EXISTS stream_messages (
        id INTEGER PRIMARY KEY,
        stream TEXT NOT NULL,
        consumer TEXT NOT NULL,
        seq INTEGER NOT NULL,
        subject TEXT NOT NULL,
        data TEXT NOT NULL,
        headers TEXT,
        msg_id TEXT,
        stored_at INTEGER NOT NULL,
        deliveries INTEGER NOT NULL DEFAULT 0
      );
      CREATE TABLE IF NOT EXISTS stream_seq (stream TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
    `);
    this.stmts = {
      put: db.prepare(
        'INSERT INTO stream_messages (stream, consumer, seq, subject, data, headers, msg_id, stored_at, deliveries) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      take: db.prepare('UPDATE stream_messages SET consumer = ? WHERE id = ?'),
      ack: db.prepare('DELETE FROM stream_messages WHERE id = ?'),
      seq: db.prepare('INSERT INTO stream_seq (stream, seq) VALUES (?, ?) ON CONFLICT (stream) DO UPDATE SET seq = max(seq, excluded.seq)'),
      expire: db.prepare('DELETE FROM stream_messages WHERE stream = ? AND stored_at < ?'),
      bump: db.prepare('UPDATE stream_messages SET deliveries = deliveries + 1 WHERE stream = ?'),
      load: db.prepare(
        'SELECT id AS rowId, stream, consumer, seq, subject, data, headers, msg_id AS msgId, stored_at AS storedAt, deliveries FROM stream_messages WHERE stream = ? ORDER BY seq, consumer',
      ),
      lastSeq: db.prepare(
        'SELECT max(seq) AS seq FROM (SELECT seq FROM stream_seq WHERE stream = ? UNION ALL SELECT max(seq) FROM stream_messages WHERE stream = ?)',
      ),
    };
    const { put, take, ack, seq } = this.stmts;
    this.apply = db.transaction((batch: StreamBatch) => {
      for (const m of batch.put)
        m.rowId = Number(put.run(m.stream, m.consumer, m.seq, m.subject, m.data, m.headers, m.msgId, m.storedAt, m.deliveries).lastInsertRowid);
      for (const t of batch.take) take.run(t.consumer, t.rowId);
      for (const id of batch.ack) ack.run(id);
      for (const [stream, last] of batch.lastSeq) seq.run(stream, last);
    });
  }

  load(stream: string, notBefore: number): { lastSeq: number; messages: PersistedMessage[] } {
    return this.db.transaction(() => {
      this.stmts.expire.run(stream, notBefore);
      this.stmts.bump.run(stream);
      const messages = this.stmts.load.all(stream) as PersistedMessage[];
      const row = this.stmts.lastSeq.get(stream, stream) as { seq: number | null };
      return { lastSeq: row.seq ?? 0, messages };
    })();
  }

  commit(batch: StreamBatch): void {
    this.apply(batch);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
