import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Bus } from '../src/core/bus/bus.ts';
import { BusError, subjectMatches } from '../src/core/bus/bus.ts';
import { MemoryBus } from '../src/core/bus/memory-bus.ts';
import { createLogger } from '../src/core/logger.ts';

/**
 * The contract every Bus implementation passes. Cluster mode adds its NATS bus to `engines`;
 * the tests themselves do not change.
 */
const engines: Array<{ name: string; make: () => Promise<Bus> }> = [
  { name: 'memory', make: async () => new MemoryBus(createLogger('silent')) },
];

const tick = (ms = 30) => new Promise((r) => setTimeout(r, ms));

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
      await bus.flush();
      await tick();
      assert.deepEqual(got.sort(), ['exact:x.a.1:7', 'gt:x.a.1:t1', 'star:x.a.1']);
    });

    test('unsubscribe stops delivery', async () => {
      const bus = await make();
      let n = 0;
      const off = bus.subscribe('u.1', () => void n++);
      bus.publish('u.1', {});
      await bus.flush();
      await tick();
      off();
      bus.publish('u.1', {});
      await bus.flush();
      await tick();
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
      await tick(50);
      assert.equal(counts.reduce((a, b) => a + b, 0), 60);
      assert.ok(counts.every((c) => c > 0), `work was shared: ${counts}`);
      assert.equal(plain, 60, 'a plain subscriber still sees everything');
    });

    test('messages to one subscriber arrive in publish order', async () => {
      const bus = await make();
      const seen: number[] = [];
      bus.subscribe('o.1', (m) => void seen.push((m.data as { i: number }).i));
      for (let i = 0; i < 100; i++) bus.publish('o.1', { i });
      await bus.flush();
      await tick();
      assert.deepEqual(seen, Array.from({ length: 100 }, (_, i) => i));
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
      bus.subscribe('f.1', () => {
        throw new Error('boom');
      }, { name: 'thrower' });
      bus.subscribe('f.1', async () => {
        throw new Error('async boom');
      });
      bus.subscribe('f.1', () => void ok++);
      bus.publish('f.1', {});
      bus.publish('f.1', {});
      await bus.flush();
      await tick();
      assert.equal(ok, 2);
    });
  });
}
