import type { Db } from '../core/store/db.ts';
import type { Database } from '../core/store/schema.ts';
import { prepared } from '../core/store/prepared-query.ts';
import type { AuditRow } from '../audit/audit-service.ts';

/** A command sent at once, as the ledger first records it (status `sent`). */
export interface SentRow {
  id: string;
  deviceId: string;
  action: string;
  /** JSON. */
  params: string;
  source: string;
  acceptedAt: number;
  sentAt: number;
}

/** A device's answer to a command sent at once. */
export interface AnswerRow {
  id: string;
  status: 'answered' | 'timeout';
  answeredAt: number;
  ok: 0 | 1;
  /** JSON or null. */
  result: string | null;
  error: string | null;
  latency: number;
  /** JSON or null. */
  warnings: string | null;
}

/** What the ledger needs of the audit log: its entries written in the ledger's transaction, or handed back. */
export interface AuditWriter {
  writeIn(trx: Db, rows: readonly AuditRow[]): Promise<void>;
  requeue(rows: readonly AuditRow[]): void;
}

const insertSent = prepared<Database, unknown, keyof SentRow>((db, p) =>
  db.insertInto('commands').values({
    id: p('id'),
    device_id: p('deviceId'),
    action: p('action'),
    params: p('params'),
    source: p('source'),
    status: 'sent',
    accepted_at: p('acceptedAt'),
    sent_at: p('sentAt'),
    answered_at: null,
    timed_out_at: null,
    ok: null,
    result: null,
    error: null,
    latency_ms: null,
  }),
);
const settleAnswer = prepared<Database, unknown, keyof AnswerRow>((db, p) =>
  db
    .updateTable('commands')
    .set({
      status: p('status'),
      answered_at: p('answeredAt'),
      ok: p('ok'),
      result: p('result'),
      error: p('error'),
      latency_ms: p('latency'),
      warnings: p('warnings'),
    })
    .where('id', '=', p('id')),
);

type Op = { kind: 'sent'; row: SentRow; audit: AuditRow | undefined } | { kind: 'answer'; row: AnswerRow };
interface Waiting {
  op: Op;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * The ledger writes of commands sent at once, with group commit: a write waits for the event loop
 * to be free, and the writes of that moment (commands of many callers, their audit entries, the
 * answers of devices) share one transaction. Each write resolves once committed: a command is
 * sent only after its entry is stored, its caller answered only after the answer is.
 *
 * If the shared transaction fails, each write is tried again alone, so a write that the store
 * refuses fails by itself. An audit entry whose transaction failed goes back to the audit log,
 * which writes (and retries) it the usual way.
 */
export class CommandLedger {
  private waiting: Waiting[] = [];
  private scheduled: NodeJS.Immediate | undefined;
  /** The last flush started. */
  private flushing: Promise<void> = Promise.resolve();

  constructor(private readonly deps: { db: Db; audit?: AuditWriter }) {}

  /** Records a command sent at once (status `sent`), with the audit entry of its request if any. */
  sent(row: SentRow, audit?: AuditRow): Promise<void> {
    return this.add({ kind: 'sent', row, audit });
  }

  /** Records a device's answer. */
  answered(row: AnswerRow): Promise<void> {
    return this.add({ kind: 'answer', row });
  }

  /** Resolves once every write asked for so far has been tried (on stop). */
  async drain(): Promise<void> {
    if (this.scheduled) {
      clearImmediate(this.scheduled);
      this.startFlush();
    }
    await this.flushing;
  }

  private add(op: Op): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ op, resolve, reject });
      this.scheduled ??= setImmediate(() => this.startFlush());
    });
  }

  /** Flushes may overlap (PostgreSQL: several connections); `flushing` settles when all have. */
  private startFlush(): void {
    this.scheduled = undefined;
    const run = this.flush();
    const before = this.flushing;
    this.flushing = Promise.all([before, run]).then(() => undefined);
  }

  /** Never throws: each write's own promise tells how it went. */
  private async flush(): Promise<void> {
    const batch = this.waiting;
    this.waiting = [];
    if (batch.length === 1) return this.alone(batch[0]);
    try {
      await this.deps.db.transaction().execute(async (trx) => {
        for (const w of batch) await this.write(trx, w.op);
        const audit = batch.flatMap((w) => (w.op.kind === 'sent' && w.op.audit ? [w.op.audit] : []));
        if (audit.length) await this.deps.audit!.writeIn(trx, audit);
      });
    } catch {
      // One of them, or the store: each alone tells which.
      for (const w of batch) await this.alone(w);
      return;
    }
    for (const w of batch) w.resolve();
  }

  /**
   * One write in its own transaction, with its audit entry. If that fails, the entry goes back to
   * the audit log (which writes it alone: the request is audited whatever became of the command)
   * and the ledger write is tried once more by itself.
   */
  private async alone(w: Waiting): Promise<void> {
    const { op } = w;
    try {
      if (op.kind === 'sent' && op.audit) {
        const audit = op.audit;
        try {
          await this.deps.db.transaction().execute(async (trx) => {
            await this.write(trx, op);
            await this.deps.audit!.writeIn(trx, [audit]);
          });
          return w.resolve();
        } catch {
          this.deps.audit!.requeue([audit]);
        }
      }
      await this.write(this.deps.db, op);
      w.resolve();
    } catch (err) {
      w.reject(err);
    }
  }

  private async write(db: Db, op: Op): Promise<void> {
    if (op.kind === 'sent') await insertSent.run(db, op.row);
    else await settleAnswer.run(db, op.row);
  }
}
