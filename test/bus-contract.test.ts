import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import type { BusEngine as Bus, DurableMessage } from '../src/core/bus/bus.ts';
import { BusError, subjectMatches } from '../src/core/bus/bus.ts';
import { MemoryBus } from '../src/core/bus/memory-bus.ts';
import { SqliteStreamStorage } from '../src/core/bus/sqlite-stream-storage.ts';
import { NatsBus } from '../src/core/bus/nats-bus.ts';
import { createLogger } from '../src/core/logger.ts';
import { startNats, type NatsServer } from './helpers/nats.ts';

/** One nats-server for the whole file, started by the first NATS test. */
let nats: Promise<NatsServer> | undefined;
const natsServer = () => (nats ??= startNats());
after(async () => {
  if (nats) await (await nats).stop();
});

/** Data directories of the persisted in-process buses, removed at the end. */
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const dataDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'hearth-bus-'));
  dirs.push(d);
  return d;
};
/** The embedded Hearth's bus: in-process, its durable streams in streams.sqlite. */
const persistedBus = (dir: string) => new MemoryBus(createLogger('silent'), { storage: new SqliteStreamStorage({ dataDir: dir }) });

/** The contract every Bus implementation passes: the tests are the same for every engine (driven untyped, as BusEngine: the subjects here are test subjects outside the catalogue). */
const engines: Array<{ name: string; make: () => Promise<Bus> }> = [
  { name: 'memory', make: async () => new MemoryBus(createLogger('silent')) },
  { name: 'memory+sqlite', make: async () => persistedBus(dataDir()) },
  { name: 'nats', make: async () => NatsBus.connect({ servers: (await natsServer()).url, log: createLogger('silent'), name: 'contract' }) },
];

const tick = (ms = 30) => new Promise((r) => setTimeout(r, ms));

/** Waits until `pred` holds; durable delivery goes through the server, so there is no flush for it. */
async function until(pred: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await tick(5);
  }
}

/** Stream and subject names no other test uses (the NATS server is shared by the file). */
let streams = 0;
function fresh(): { stream: string; subject: (s: string) => string; filter: string } {
  const n = ++streams;
  return { stream: `S${n}`, subject: (s) => `dur${n}.${s}`, filter: `dur${n}.>` };
}

test('subject wildcards', () => {
  assert.ok(subjectMatches('a.b.c', 'a.b.c'));
  assert.ok(subjectMatches('a.*.c', 'a.b.c'));
  assert.ok(!subjectMatches('a.*', 'a.b.c'));
  assert.ok(subjectMatches('a.>', 'a.b.c'));
  assert.ok(!subjectMatches('a.>', 'a'));
  assert.ok(subjectMatches('*.*.up.*', 'device.d_1.up.properties'));
  assert.ok(!subjectMatches('a.b', 'a.b.c'));
});

for (const engine of engines) {
  describe(`Bus contract: ${engine.name}`, () => {
    const buses: Bus[] = [];
    const make = async () => {
      const b = await engine.make();
      buses.push(b);
      return b;
    };
    after(async () => {
      for (const b of buses) await b.close();
    });

    test('publish reaches exact and wildcard subscribers with data and headers', async () => {
      const bus = await make();
      const got: string[] = [];
      bus.subscribe('x.a.1', (m) => void got.push(`exact:${m.subject}:${(m.data as { n: number }).n}`));
      bus.subscribe('x.*.1', (m) => void got.push(`star:${m.subject}`));
      bus.subscribe('x.>', (m) => void got.push(`gt:${m.subject}:${m.headers.trace}`));
      bus.publish('x.a.1', { n: 7 }, { headers: { trace: 't1' } });
      bus.publish('y.a.1', { n: 8 });
      bus.publish('x.a.1', { n: 9 }, { headers: { trace: 'last' } });
      await bus.flush();
      // the last publish reaches 'x.>' after everything published before it (one connection, in order)
      await until(() => got.includes('gt:x.a.1:last'), 'the last message');
      got.splice(got.indexOf('gt:x.a.1:last'), 1);
      await until(() => got.length >= 5, "the other subscribers' copies of the last message");
      for (const m of ['exact:x.a.1:9', 'star:x.a.1']) got.splice(got.indexOf(m), 1);
      assert.deepEqual(got.sort(), ['exact:x.a.1:7', 'gt:x.a.1:t1', 'star:x.a.1']);
    });

    test('unsubscribe stops delivery', async () => {
      const bus = await make();
      let n = 0;
      let witness = 0;
      const off = bus.subscribe('u.1', () => void n++);
      bus.subscribe('u.1', () => void witness++);
      bus.publish('u.1', {});
      await bus.flush();
      await until(() => n === 1, 'the first message');
      off();
      bus.publish('u.1', {});
      await bus.flush();
      // a subscriber that stayed gets the second message: by then the first would have too
      await until(() => witness === 2, 'the second message at the subscriber that stayed');
      assert.equal(n, 1);
    });

    test('a queue group shares messages: each goes to exactly one member', async () => {
      const bus = await make();
      const counts = [0, 0, 0];
      let plain = 0;
      for (let i = 0; i < 3; i++) bus.subscribe('q.>', () => void counts[i]++, { queue: 'workers' });
      bus.subscribe('q.>', () => void plain++);
      for (let i = 0; i < 60; i++) bus.publish(`q.${i}`, { i });
      await bus.flush();
      await until(() => plain === 60 && counts.reduce((a, b) => a + b, 0) >= 60, 'the 60 messages');
      assert.equal(
        counts.reduce((a, b) => a + b, 0),
        60,
      );
      assert.ok(
        counts.every((c) => c > 0),
        `work was shared: ${counts}`,
      );
      assert.equal(plain, 60, 'a plain subscriber still sees everything');
    });

    test('messages to one subscriber arrive in publish order', async () => {
      const bus = await make();
      const seen: number[] = [];
      bus.subscribe('o.1', (m) => void seen.push((m.data as { i: number }).i));
      for (let i = 0; i < 100; i++) bus.publish('o.1', { i });
      await bus.flush();
      await until(() => seen.length >= 100, 'the 100 messages');
      assert.deepEqual(
        seen,
        Array.from({ length: 100 }, (_, i) => i),
      );
    });

    test('request/reply, no responders, timeout', async () => {
      const bus = await make();
      bus.subscribe('svc.add', (m) => {
        const { a, b } = m.data as { a: number; b: number };
        m.respond?.({ sum: a + b });
      });
      bus.subscribe('svc.silent', () => undefined);
      assert.deepEqual(await bus.request('svc.add', { a: 2, b: 3 }), { sum: 5 });
      await assert.rejects(bus.request('svc.nobody', {}), (e: Error) => e instanceof BusError && e.code === 'NO_RESPONDERS');
      await assert.rejects(bus.request('svc.silent', {}, { timeoutMs: 50 }), (e: Error) => e instanceof BusError && e.code === 'TIMEOUT');
    });

    test('a failing handler does not stop other subscribers', async () => {
      const bus = await make();
      let ok = 0;
      bus.subscribe(
        'f.1',
        () => {
          throw new Error('boom');
        },
        { name: 'thrower' },
      );
      bus.subscribe('f.1', async () => {
        throw new Error('async boom');
      });
      bus.subscribe('f.1', () => void ok++);
      bus.publish('f.1', {});
      bus.publish('f.1', {});
      await bus.flush();
      await until(() => ok >= 2, 'both messages at the healthy subscriber');
      assert.equal(ok, 2);
    });

    test('durable: a stored message reaches the consumer with data, headers, seq and deliveryCount; acked, it stays done', async () => {
      const bus = await make();
      const { stream, subject, filter } = fresh();
      await bus.ensureStream({ name: stream, subjects: [filter] });
      const got: DurableMessage[] = [];
      await bus.consume({ stream, durable: 'd', filter, ackWaitMs: 300 }, (m) => {
        got.push(m);
        m.ack();
      });
      await bus.publishDurable(subject('a'), { n: 1 }, { headers: { trace: 't1' } });
      await bus.publishDurable(subject('b'), { n: 2 });
      await until(() => got.length === 2, 'two messages');
      assert.deepEqual(
        got.map((m) => [m.subject, m.data, m.deliveryCount]),
        [
          [subject('a'), { n: 1 }, 1],
          [subject('b'), { n: 2 }, 1],
        ],
      );
      assert.deepEqual(got[0].headers, { trace: 't1' });
      assert.deepEqual(got[1].headers, {});
      assert.ok(got[1].seq > got[0].seq, `stream sequence grows: ${got.map((m) => m.seq)}`);
      await tick(600);
      assert.equal(got.length, 2, 'acknowledged messages are not delivered again after ackWait');
    });

    test('durable: publishing to a subject no stream stores, or consuming a missing stream, is NO_RESPONDERS', async () => {
      const bus = await make();
      const { stream, subject, filter } = fresh();
      const noResponders = (e: Error) => e instanceof BusError && e.code === 'NO_RESPONDERS';
      await assert.rejects(bus.publishDurable(subject('x'), {}), noResponders);
      await assert.rejects(
        bus.consume({ stream, durable: 'd', filter }, () => undefined),
        noResponders,
      );
    });

    test('durable: ensureStream is idempotent and updates the subjects', async () => {
      const bus = await make();
      const { stream, subject } = fresh();
      await bus.ensureStream({ name: stream, subjects: [subject('a.>')] });
      await bus.ensureStream({ name: stream, subjects: [subject('a.>')] });
      await bus.ensureStream({ name: stream, subjects: [subject('a.>'), subject('b.>')] });
      const got: unknown[] = [];
      await bus.consume({ stream, durable: 'd', filter: subject('>') }, (m) => {
        got.push(m.data);
        m.ack();
      });
      await bus.publishDurable(subject('b.1'), 'b');
      await until(() => got.length === 1, 'the message on the added subject');
      assert.deepEqual(got, ['b']);
    });

    test('durable: a message published before any consumer exists is kept and delivered when one starts', async () => {
      const bus = await make();
      const { stream, subject, filter } = fresh();
      await bus.ensureStream({ name: stream, subjects: [filter] });
      await bus.publishDurable(subject('early'), { n: 1 });
      await bus.publishDurable(subject('early'), { n: 2 });
      const got: unknown[] = [];
      await bus.consume({ stream, durable: 'late', filter }, (m) => {
        got.push(m.data);
        m.ack();
      });
      await until(() => got.length === 2, 'the stored messages');
      assert.deepEqual(got, [{ n: 1 }, { n: 2 }]);
    });

    test('durable: subscribers of one durable share the messages, each delivered once', async () => {
      const bus = await make();
      const { stream, subject, filter } = fresh();
      await bus.ensureStream({ name: stream, subjects: [filter] });
      const seen = [new Set<number>(), new Set<number>()];
      const deliveries: number[] = [];
      for (const i of [0, 1]) {
        await bus.consume({ stream, durable: 'shared', filter, ackWaitMs: 2000 }, async (m) => {
          deliveries.push(m.seq);
          seen[i].add((m.data as { i: number }).i);
          await tick(2); // busy for a moment, so the other subscriber gets its share
          m.ack();
        });
      }
      for (let i = 0; i < 40; i++) await bus.publishDurable(subject('w'), { i });
      await until(() => deliveries.length >= 40, '40 deliveries');
      await tick(100);
      assert.equal(deliveries.length, 40, 'no message delivered twice');
      assert.equal(new Set(deliveries).size, 40);
      assert.equal(seen[0].size + seen[1].size, 40);
      assert.ok(seen[0].size > 0 && seen[1].size > 0, `both subscribers got work: ${seen[0].size} + ${seen[1].size}`);
    });

    test('durable: an unacknowledged message is delivered again after ackWait, with deliveryCount 2', async () => {
      const bus = await make();
      const { stream, subject, filter } = fresh();
      await bus.ensureStream({ name: stream, subjects: [filter] });
      const got: Array<{ seq: number; count: number; at: number }> = [];
      await bus.consume({ stream, durable: 'd', filter, ackWaitMs: 500 }, (m) => {
        got.push({ seq: m.seq, count: m.deliveryCount, at: Date.now() });
        if (m.deliveryCount > 1) m.ack();
      });
      await bus.publishDurable(subject('x'), {});
      await until(() => got.length === 2, 'the redelivery', 3000);
      assert.deepEqual(
        got.map((g) => g.count),
        [1, 2],
      );
      assert.equal(got[0].seq, got[1].seq, 'the same message');
      const gap = got[1].at - got[0].at;
      assert.ok(gap >= 400, `redelivered after ackWait, not before (${gap} ms)`);
      await tick(700);
      assert.equal(got.length, 2, 'acked on the second delivery: done');
    });

    test('durable: nak delivers again at once, or after the given delay', async () => {
      const bus = await make();
      const { stream, subject, filter } = fresh();
      await bus.ensureStream({ name: stream, subjects: [filter] });
      const got: Array<{ data: unknown; count: number; at: number }> = [];
      await bus.consume({ stream, durable: 'd', filter, ackWaitMs: 10_000 }, (m) => {
        got.push({ data: m.data, count: m.deliveryCount, at: Date.now() });
        if (m.deliveryCount > 1) m.ack();
        else if (m.data === 'now') m.nak();
        else m.nak(300);
      });
      await bus.publishDurable(subject('x'), 'now');
      await until(() => got.length === 2, 'the redelivery after nak()', 2000);
      assert.deepEqual(
        got.map((g) => [g.data, g.count]),
        [
          ['now', 1],
          ['now', 2],
        ],
      );
      await bus.publishDurable(subject('x'), 'later');
      await until(() => got.length === 4, 'the redelivery after nak(300)', 2000);
      assert.deepEqual(
        got.slice(2).map((g) => [g.data, g.count]),
        [
          ['later', 1],
          ['later', 2],
        ],
      );
      const gap = got[3].at - got[2].at;
      assert.ok(gap >= 250, `nak(300) waited (${gap} ms)`);
    });

    test('durable: a repeated msgId is stored once', async () => {
      const bus = await make();
      const { stream, subject, filter } = fresh();
      await bus.ensureStream({ name: stream, subjects: [filter] });
      await bus.publishDurable(subject('x'), 'first', { msgId: 'm1' });
      await bus.publishDurable(subject('x'), 'again', { msgId: 'm1' });
      await bus.publishDurable(subject('x'), 'other', { msgId: 'm2' });
      await bus.publishDurable(subject('x'), 'end');
      const got: unknown[] = [];
      await bus.consume({ stream, durable: 'd', filter }, (m) => {
        got.push(m.data);
        m.ack();
      });
      await until(() => got.includes('end'), 'the last message');
      assert.deepEqual(got, ['first', 'other', 'end']);
    });

    test('durable: after stop(), a new subscriber of the durable gets the unacknowledged messages', async () => {
      const bus = await make();
      const { stream, subject, filter } = fresh();
      await bus.ensureStream({ name: stream, subjects: [filter] });
      const first: unknown[] = [];
      const c1 = await bus.consume({ stream, durable: 'd', filter, ackWaitMs: 500 }, (m) => {
        first.push(m.data);
        if (m.data === 0) m.ack();
      });
      for (let i = 0; i < 3; i++) await bus.publishDurable(subject('x'), i);
      await until(() => first.length === 3, 'the first subscriber to get all three');
      await c1.stop();
      // Handed back when ackWait runs out (they could still have been acked meanwhile).
      const second: Array<[unknown, number]> = [];
      await bus.consume({ stream, durable: 'd', filter, ackWaitMs: 500 }, (m) => {
        second.push([m.data, m.deliveryCount]);
        m.ack();
      });
      await until(() => second.length === 2, 'the two unacknowledged messages', 500 + 2000);
      assert.deepEqual(second, [
        [1, 2],
        [2, 2],
      ]);
      await bus.publishDurable(subject('x'), 3);
      await until(() => second.length === 3, 'a new message');
      assert.deepEqual(first, [0, 1, 2], 'the stopped subscriber gets nothing more');
    });

    test('durable: a message handed out before stop() and acked after it is done: not delivered again', async () => {
      const bus = await make();
      const { stream, subject, filter } = fresh();
      await bus.ensureStream({ name: stream, subjects: [filter] });
      const held: DurableMessage[] = [];
      const c1 = await bus.consume({ stream, durable: 'd', filter, ackWaitMs: 400 }, (m) => void held.push(m));
      for (let i = 0; i < 3; i++) await bus.publishDurable(subject('x'), i);
      await until(() => held.length === 3, 'three messages handed out');
      await c1.stop();
      for (const m of held) m.ack();
      const again: unknown[] = [];
      await bus.consume({ stream, durable: 'd', filter, ackWaitMs: 400 }, (m) => {
        again.push(m.data);
        m.ack();
      });
      await bus.publishDurable(subject('x'), 'next');
      await until(() => again.includes('next'), 'a later message');
      await new Promise((r) => setTimeout(r, 800)); // past ackWait: nothing held comes back
      assert.deepEqual(again, ['next']);
    });

    test('durable: maxInFlight caps the unacknowledged messages', async () => {
      const bus = await make();
      const { stream, subject, filter } = fresh();
      await bus.ensureStream({ name: stream, subjects: [filter] });
      const held: DurableMessage[] = [];
      await bus.consume({ stream, durable: 'd', filter, maxInFlight: 2, ackWaitMs: 10_000 }, (m) => void held.push(m));
      for (let i = 0; i < 5; i++) await bus.publishDurable(subject('x'), i);
      await until(() => held.length === 2, 'two messages');
      await tick(200);
      assert.equal(held.length, 2, 'no third before an ack');
      held[0].ack();
      await until(() => held.length === 3, 'the third after one ack');
      await tick(100);
      assert.equal(held.length, 3);
      for (const m of held) m.ack();
      await until(() => held.length === 5, 'the rest');
      held[3].ack();
      held[4].ack();
      assert.deepEqual(
        held.map((m) => m.data),
        [0, 1, 2, 3, 4],
      );
    });

    test('durable: one subscriber gets the messages in publish order', async () => {
      const bus = await make();
      const { stream, subject, filter } = fresh();
      await bus.ensureStream({ name: stream, subjects: [filter] });
      await Promise.all(Array.from({ length: 50 }, (_, i) => bus.publishDurable(subject(`k${i % 3}`), i)));
      const got: number[] = [];
      const seqs: number[] = [];
      await bus.consume({ stream, durable: 'd', filter }, (m) => {
        got.push(m.data as number);
        seqs.push(m.seq);
        m.ack();
      });
      for (let i = 50; i < 100; i++) await bus.publishDurable(subject(`k${i % 3}`), i);
      await until(() => got.length === 100, '100 messages');
      assert.deepEqual(
        got,
        Array.from({ length: 100 }, (_, i) => i),
      );
      assert.ok(
        seqs.every((s, i) => i === 0 || s > seqs[i - 1]),
        'seq grows',
      );
    });
  });
}

describe('MemoryBus with a stream storage', () => {
  test('publish, close without ack, reopen: the message comes again, with what it carried', async () => {
    const dir = dataDir();
    const a = persistedBus(dir);
    await a.ensureStream({ name: 'S', subjects: ['p.>'] });
    const first: DurableMessage[] = [];
    await a.consume({ stream: 'S', durable: 'd', filter: 'p.>', ackWaitMs: 60_000 }, (m) => {
      first.push(m);
      if (m.data === 'acked') m.ack();
    });
    await a.publishDurable('p.1', 'acked', { msgId: 'm-acked' });
    await a.publishDurable('p.2', { deep: { n: 2 } }, { headers: { trace: 't2' }, msgId: 'm-2' });
    await a.publishDurable('p.3', 'never consumed in time');
    await until(() => first.length === 3, 'three deliveries');
    await a.close();

    const b = persistedBus(dir);
    await b.ensureStream({ name: 'S', subjects: ['p.>'] });
    // A repeat of a stored message id is still a duplicate after the restart.
    await b.publishDurable('p.2', 'duplicate', { msgId: 'm-2' });
    await b.publishDurable('p.4', 'after the restart');
    const second: DurableMessage[] = [];
    await b.consume({ stream: 'S', durable: 'd', filter: 'p.>', ackWaitMs: 60_000 }, (m) => {
      second.push(m);
      m.ack();
    });
    await until(() => second.length === 3, 'the unacknowledged messages and the new one');
    assert.deepEqual(
      second.map((m) => [m.subject, m.data]),
      [
        ['p.2', { deep: { n: 2 } }],
        ['p.3', 'never consumed in time'],
        ['p.4', 'after the restart'],
      ],
    );
    assert.deepEqual(second[0].headers, { trace: 't2' });
    assert.deepEqual(
      second.slice(0, 2).map((m) => m.seq),
      first.slice(1).map((m) => m.seq),
      'the same sequence numbers',
    );
    assert.ok(second[0].deliveryCount >= 2, 'a restart counts as a delivery');
    assert.ok(second[2].seq > second[1].seq, 'the sequence goes on after a restart');
    await b.close();

    const c = persistedBus(dir);
    await c.ensureStream({ name: 'S', subjects: ['p.>'] });
    const third: unknown[] = [];
    await c.consume({ stream: 'S', durable: 'd', filter: 'p.>' }, (m) => void third.push(m.data));
    // a message published now comes after anything the store still held
    await c.publishDurable('p.5', 'published after the second restart');
    await until(() => third.length >= 1, 'the new message');
    assert.deepEqual(third, ['published after the second restart'], 'acknowledged before the stop: gone');
    await c.close();
  });

  test('a message published before any consumer survives a restart and goes to the first consumer', async () => {
    const dir = dataDir();
    const a = persistedBus(dir);
    await a.ensureStream({ name: 'S', subjects: ['q.>'] });
    await a.publishDurable('q.1', 1);
    await a.close();
    const b = persistedBus(dir);
    await b.ensureStream({ name: 'S', subjects: ['q.>'] });
    const got: unknown[] = [];
    await b.consume({ stream: 'S', durable: 'late', filter: 'q.>' }, (m) => {
      got.push(m.data);
      m.ack();
    });
    await until(() => got.length === 1, 'the stored message');
    await b.close();
    const c = persistedBus(dir);
    await c.ensureStream({ name: 'S', subjects: ['q.>'] });
    const again: unknown[] = [];
    await c.consume({ stream: 'S', durable: 'late', filter: 'q.>' }, (m) => void again.push(m.data));
    await c.publishDurable('q.2', 2);
    await until(() => again.length >= 1, 'a message published after the restart');
    assert.deepEqual(again, [2], 'taken and acknowledged: not delivered again');
    await c.close();
  });

  test('group commit: publishes made together share one transaction; each resolves only once committed', async () => {
    const dir = dataDir();
    const storage = new SqliteStreamStorage({ dataDir: dir });
    const commits: number[] = [];
    const counting = {
      load: storage.load.bind(storage),
      close: storage.close.bind(storage),
      commit: (b: Parameters<typeof storage.commit>[0]) => {
        storage.commit(b);
        commits.push(b.put.length);
      },
    };
    const bus = new MemoryBus(createLogger('silent'), { storage: counting });
    await bus.ensureStream({ name: 'S', subjects: ['g.>'] });
    let resolved = 0;
    const all = Array.from({ length: 500 }, (_, i) => bus.publishDurable(`g.${i % 7}`, i).then(() => void resolved++));
    await Promise.resolve();
    assert.equal(resolved, 0, 'nothing is acknowledged before its commit');
    await Promise.all(all);
    assert.deepEqual(commits, [500], 'one commit for the 500');
    await bus.publishDurable('g.x', 'alone');
    assert.deepEqual(commits, [500, 1], 'a publish alone commits at once, without waiting for company');
    await bus.close();
  });

  test('a message that cannot be stored fails its own publish; the others of its batch are stored', async () => {
    const bus = persistedBus(dataDir());
    await bus.ensureStream({ name: 'S', subjects: ['b.>'] });
    let deep: unknown = 'bottom';
    for (let i = 0; i < 100_000; i++) deep = { d: deep };
    const results = await Promise.allSettled([
      bus.publishDurable('b.1', 'good 1'),
      bus.publishDurable('b.2', deep),
      bus.publishDurable('b.3', 'good 2'),
      bus.publishDurable('b.4', { n: 10n }),
    ]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'rejected', 'fulfilled', 'rejected'],
    );
    const got: unknown[] = [];
    await bus.consume({ stream: 'S', durable: 'd', filter: 'b.>' }, (m) => {
      got.push(m.data);
      m.ack();
    });
    await until(() => got.length === 2, 'the good messages');
    assert.deepEqual(got, ['good 1', 'good 2']);
    await bus.close();
  });

  test('a commit the storage refuses is retried message by message: only the refused publish fails', async () => {
    const storage = new SqliteStreamStorage({ dataDir: dataDir() });
    const refusing = {
      load: storage.load.bind(storage),
      close: storage.close.bind(storage),
      commit: (b: Parameters<typeof storage.commit>[0]) => {
        if (b.put.some((p) => p.subject === 'r.bad')) throw Object.assign(new Error('refused'), { code: 'SQLITE_CONSTRAINT_CHECK' });
        storage.commit(b);
      },
    };
    const bus = new MemoryBus(createLogger('silent'), { storage: refusing });
    await bus.ensureStream({ name: 'S', subjects: ['r.>'] });
    const results = await Promise.allSettled(['r.a', 'r.bad', 'r.b'].map((s) => bus.publishDurable(s, s)));
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'rejected', 'fulfilled'],
    );
    await bus.close();
  });

  test('a storage that fails (not a refused record) fails the whole batch at once, without a retry per message', async () => {
    const storage = new SqliteStreamStorage({ dataDir: dataDir() });
    let commits = 0;
    const failing = {
      load: storage.load.bind(storage),
      close: storage.close.bind(storage),
      commit: (b: Parameters<typeof storage.commit>[0]) => {
        if (b.put.length === 0) return storage.commit(b);
        commits++;
        throw Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR' });
      },
    };
    const bus = new MemoryBus(createLogger('silent'), { storage: failing });
    await bus.ensureStream({ name: 'S', subjects: ['f.>'] });
    const results = await Promise.allSettled(['f.a', 'f.b', 'f.c'].map((s) => bus.publishDurable(s, s)));
    assert.deepEqual(
      results.map((r) => r.status),
      ['rejected', 'rejected', 'rejected'],
    );
    assert.equal(commits, 1, 'one failed commit, not one per message');
    await bus.close();
  });
});

describe('NatsBus', () => {
  /** A bus whose log lines are kept, to wait for the connection's own reports. */
  const logged = async (url: string) => {
    const lines: Array<{ msg: string }> = [];
    const log = createLogger('warn', {}, { write: (line: string) => void lines.push(JSON.parse(line)) });
    return { bus: await NatsBus.connect({ servers: url, log, name: 'restart-test' }), lines };
  };

  test('subscribers on two connections share a durable', async () => {
    const { url } = await natsServer();
    const a = await NatsBus.connect({ servers: url, log: createLogger('silent') });
    const b = await NatsBus.connect({ servers: url, log: createLogger('silent') });
    try {
      const { stream, subject, filter } = fresh();
      await a.ensureStream({ name: stream, subjects: [filter] });
      const seqs: number[][] = [[], []];
      for (const [i, bus] of [a, b].entries()) {
        await bus.consume({ stream, durable: 'nodes', filter }, async (m) => {
          seqs[i].push(m.seq);
          await tick(2);
          m.ack();
        });
      }
      for (let i = 0; i < 30; i++) await a.publishDurable(subject('w'), i);
      await until(() => seqs[0].length + seqs[1].length >= 30, '30 deliveries');
      await tick(100);
      assert.equal(new Set([...seqs[0], ...seqs[1]]).size, 30);
      assert.equal(seqs[0].length + seqs[1].length, 30, 'each message once');
      assert.ok(seqs[0].length > 0 && seqs[1].length > 0, `both nodes got work: ${seqs[0].length} + ${seqs[1].length}`);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('a deleted consumer is declared again and the loop goes on', async () => {
    const { url } = await natsServer();
    const { bus, lines } = await logged(url);
    const admin = await connect({ servers: url });
    try {
      const { stream, subject, filter } = fresh();
      await bus.ensureStream({ name: stream, subjects: [filter] });
      const got: unknown[] = [];
      await bus.consume({ stream, durable: 'd', filter }, (m) => {
        got.push(m.data);
        m.ack();
      });
      await (await jetstreamManager(admin)).consumers.delete(stream, 'd');
      await until(() => lines.some((l) => l.msg.startsWith('durable consume loop ended')), 'the loop to notice', 5000);
      await bus.publishDurable(subject('x'), 'after');
      await until(() => got.includes('after'), 'the message after the consumer came back', 5000);
    } finally {
      await admin.close();
      await bus.close();
    }
  });

  test('core subscriptions and the consume loop keep working after nats-server restarts', async () => {
    const server = await startNats();
    const { bus, lines } = await logged(server.url);
    try {
      const { stream, subject, filter } = fresh();
      await bus.ensureStream({ name: stream, subjects: [filter] });
      const durable: unknown[] = [];
      const core: unknown[] = [];
      await bus.consume({ stream, durable: 'd', filter }, (m) => {
        durable.push(m.data);
        m.ack();
      });
      bus.subscribe('core.x', (m) => void core.push(m.data));
      await bus.publishDurable(subject('x'), 'before');
      await until(() => durable.length === 1, 'the message before the restart');

      await server.restart();
      await until(() => lines.some((l) => l.msg === 'NATS reconnected'), 'the reconnect', 10_000);
      assert.ok(
        lines.some((l) => l.msg.startsWith('NATS disconnected')),
        'the outage is logged',
      );
      await bus.publishDurable(subject('x'), 'after');
      bus.publish('core.x', 'after');
      await until(() => durable.length === 2 && core.length === 1, 'the messages after the restart', 10_000);
      assert.deepEqual(durable, ['before', 'after']);
      assert.deepEqual(core, ['after']);
    } finally {
      await bus.close();
      await server.stop();
    }
  });
});
