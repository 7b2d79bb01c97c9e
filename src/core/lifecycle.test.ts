import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Lifecycles, startOrder, type Lifecycle } from './lifecycle.ts';

/** Units that write what they do to `log`. */
function units(specs: Array<[name: string, after?: string[]]>, log: string[]): Lifecycle[] {
  return specs.map(([name, after]) => ({
    name,
    after,
    start: async () => void log.push(`start ${name}`),
    stop: async () => void log.push(`stop ${name}`),
  }));
}

test('the start order puts every unit after its dependencies and keeps the listed order otherwise', () => {
  const order = startOrder(units([['http', ['mqtt', 'store']], ['store'], ['mqtt', ['shards']], ['audit', ['store']], ['shards', ['store']]], []));
  assert.deepEqual(
    order.map((u) => u.name),
    ['store', 'shards', 'mqtt', 'http', 'audit'],
  );
});

test('a cycle, an unknown dependency or a duplicate name is an error at construction', () => {
  assert.throws(
    () =>
      new Lifecycles(
        units(
          [
            ['a', ['c']],
            ['b', ['a']],
            ['c', ['b']],
          ],
          [],
        ),
      ),
    /dependency cycle a → c → b → a/,
  );
  assert.throws(() => new Lifecycles(units([['a', ['a']]], [])), /dependency cycle a → a/);
  assert.throws(() => new Lifecycles(units([['a', ['nope']]], [])), /"a" starts after "nope", which is not a unit/);
  assert.throws(() => new Lifecycles(units([['a'], ['a']], [])), /two units are named "a"/);
});

test('stop runs the start order backwards, once, over every unit even when the start failed half-way', async () => {
  const log: string[] = [];
  const list = units([['store'], ['bus'], ['shards', ['store', 'bus']], ['http', ['shards']]], log);
  list[2] = {
    ...list[2],
    start: async () => {
      throw new Error('shards: no lease');
    },
  };
  const timed: string[] = [];
  const l = new Lifecycles(list, (name, ms) => timed.push(`${name} ${ms >= 0}`));
  await assert.rejects(l.start(), /no lease/);
  assert.deepEqual(log, ['start store', 'start bus'], 'nothing after the failed unit starts');
  await Promise.all([l.stop(), l.stop()]);
  assert.deepEqual(log.slice(2), ['stop http', 'stop shards', 'stop bus', 'stop store']);
  assert.deepEqual(timed, ['http true', 'shards true', 'bus true', 'store true'], 'each stop is timed once');
});
