import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { migrate, type Store } from '../core/store/db.ts';
import { createLogger } from '../core/logger.ts';
import { AuditService } from '../audit/audit-service.ts';
import { CommandLedger, type SentRow } from './command-ledger.ts';
import { testStores } from '../../test/helpers/stores.ts';

const stores = testStores('hearth-ledger-');

async function open(engine: 'sqlite' | 'postgres'): Promise<Store> {
  const store = await stores.open(engine);
  await migrate(store.db);
  return store;
}

const sent = (id: string): SentRow => ({ id, deviceId: 'd1', action: 'toggle', params: '{}', source: 'user:u1', acceptedAt: Date.now(), sentAt: Date.now() });

for (const engine of ['sqlite', 'postgres'] as const) {
  describe(`command ledger (${engine})`, () => {
    test('writes of one moment share a transaction; a write the store refuses fails alone, and every audit entry is kept', async () => {
      const store = await open(engine);
      const log = createLogger('silent');
      const audit = new AuditService({ db: store.db, log, flushMs: 60_000 });
      const ledger = new CommandLedger({ db: store.db, audit });
      try {
        const entry = (n: string) => audit.entry({ actor: 'user:u1', action: 'device.command', targetType: 'device', targetId: 'd1', details: { n } });
        await ledger.sent(sent('c_first'));
        // Same moment: a duplicate id (refused by the store) between two good ones, and an answer.
        const results = await Promise.allSettled([
          ledger.sent(sent('c_a'), entry('a')),
          ledger.sent(sent('c_first'), entry('dup')),
          ledger.sent(sent('c_b'), entry('b')),
          ledger.answered({ id: 'c_first', status: 'answered', answeredAt: Date.now(), ok: 1, result: null, error: null, latency: 3, warnings: null }),
        ]);
        assert.deepEqual(
          results.map((r) => r.status),
          ['fulfilled', 'rejected', 'fulfilled', 'fulfilled'],
        );
        const rows = await store.db.selectFrom('commands').select(['id', 'status']).orderBy('id').execute();
        assert.deepEqual(rows, [
          { id: 'c_a', status: 'sent' },
          { id: 'c_b', status: 'sent' },
          { id: 'c_first', status: 'answered' },
        ]);
        // The refused command's request is audited all the same (by the audit log itself).
        await audit.committed();
        const entries = await audit.list({ limit: 10 });
        assert.deepEqual(entries.map((e) => (e.details as { n: string }).n).sort(), ['a', 'b', 'dup']);
      } finally {
        await ledger.drain();
        await audit.stop();
        await store.close();
      }
    });

    test('drain waits for the writes asked for', async () => {
      const store = await open(engine);
      const ledger = new CommandLedger({ db: store.db });
      try {
        const done = [ledger.sent(sent('c_1')), ledger.sent(sent('c_2'))];
        await ledger.drain();
        assert.equal((await store.db.selectFrom('commands').select('id').execute()).length, 2);
        await Promise.all(done);
      } finally {
        await store.close();
      }
    });
  });
}
