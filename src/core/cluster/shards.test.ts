import { test } from 'node:test';
import assert from 'node:assert/strict';
import { preferredOwner, shardOf } from './shards.ts';

test('a device always maps to the same shard, within range', () => {
  for (const id of ['d_9x2k7m4p1q8r0t', 'd_a', 'hub-1']) {
    const s = shardOf(id, 32);
    assert.ok(s >= 0 && s < 32);
    assert.equal(shardOf(id, 32), s);
  }
});

test('rendezvous hashing spreads shards evenly and moves only what a new worker wins', () => {
  const spread: number[] = [];
  for (let run = 0; run < 50; run++) {
    const two = [`node-a-${run.toString(16).padStart(6, '0')}`, `node-b-${(run * 7919).toString(16).padStart(6, '0')}`];
    const owners = Array.from({ length: 32 }, (_, s) => preferredOwner(s, two)!);
    spread.push(owners.filter((o) => o === two[0]).length);
    const three = [...two, `node-c-${run}`];
    for (let s = 0; s < 32; s++) {
      const now = preferredOwner(s, three)!;
      assert.ok(now === owners[s] || now === three[2], 'a shard moves only to the new worker');
    }
  }
  const worst = Math.max(...spread.map((n) => Math.abs(n - 16)));
  assert.ok(worst <= 10, `no lopsided split over 50 random pairs of node ids (worst ${16 + worst}/${16 - worst})`);
  const mean = spread.reduce((a, b) => a + b, 0) / spread.length;
  assert.ok(Math.abs(mean - 16) < 2, `balanced on average (${mean})`);
});
