import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Value } from 'typebox/value';
import type { TObject } from 'typebox';
import { triggerKinds, TriggerSchema } from './triggers/index.ts';
import { conditionKinds, ConditionSchema } from './conditions/index.ts';
import { actionKinds, ActionSchema } from './actions/index.ts';
import { documented, CreateAutomationBody } from './automation-schema.ts';
import { describeTrigger } from './automation-engine.ts';

/**
 * The plug-in registries: every kind's schema declares the types it handles, the unions the
 * OpenAPI document shows cover every kind, and the documented automations fit those schemas.
 */

/** The `type` values a kind's schema admits (a literal or a union of literals). */
function typesOf(schema: TObject): string[] {
  const t = schema.properties.type as { const?: string; anyOf?: Array<{ const: string }> };
  return t.anyOf ? t.anyOf.map((x) => x.const) : [t.const!];
}

for (const [what, reg, union] of [
  ['trigger', triggerKinds, TriggerSchema],
  ['condition', conditionKinds, ConditionSchema],
  ['action', actionKinds, ActionSchema],
] as const) {
  test(`${what} kinds: each schema declares the types its kind handles, and the documented union holds every kind`, () => {
    for (const k of reg.schemas) assert.deepEqual(typesOf(k.schema), [...k.types], `${k.types.join('/')}: schema and kind disagree`);
    const inUnion = (union as unknown as { anyOf: TObject[] }).anyOf.flatMap(typesOf).sort();
    assert.deepEqual(inUnion, [...reg.types].sort(), `the ${what} union is missing a kind`);
    for (const k of reg.schemas)
      assert.equal(
        (k.schema as { additionalProperties?: unknown }).additionalProperties,
        false,
        `${k.types[0]}: fields are closed, as validation refuses others`,
      );
  });
}

test('the automations of docs/automations.md and the API examples fit the documented schema', () => {
  const docs = readFileSync(new URL('../../docs/automations.md', import.meta.url), 'utf8');
  const blocks = [...docs.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => JSON.parse(m[1])).filter((b) => Array.isArray(b.triggers));
  assert.ok(blocks.length >= 4, 'the worked examples are found');
  for (const b of [...blocks, ...((CreateAutomationBody as { examples?: unknown[] }).examples ?? [])]) {
    assert.ok(Value.Check(documented.create, b), `${(b as { name: string }).name}: ${JSON.stringify([...Value.Errors(documented.create, b)].slice(0, 3))}`);
  }
});

test("the documented schema describes each kind's fields, not only a type", () => {
  const base = { name: 'x', actions: [{ type: 'delay', duration: '5s' }] };
  assert.ok(Value.Check(documented.create, { ...base, triggers: [{ type: 'sun', event: 'sunset', offset: '-30m' }] }));
  assert.ok(!Value.Check(documented.create, { ...base, triggers: [{ type: 'sun', event: 'noon' }] }), 'sun events are sunrise and sunset');
  assert.ok(!Value.Check(documented.create, { ...base, triggers: [{ type: 'manual', device: 'd_1' }] }), 'a manual trigger has no device');
  assert.ok(!Value.Check(documented.create, { ...base, triggers: [{ type: 'teleport' }] }), 'no such trigger kind');
});

test('each trigger kind describes what fired it', () => {
  assert.equal(describeTrigger('property', { device: 'd_1', property: 't', from: 24, to: 31 }), 'property t of d_1 became 31 (was 24)');
  assert.equal(describeTrigger('offline', { device: 'd_1', forMs: 60_000 }), 'd_1 went offline and stayed so for 60 s');
  assert.equal(describeTrigger('webhook', {}), 'the webhook was called');
  for (const type of triggerKinds.types) assert.equal(typeof describeTrigger(type as never, {}), 'string');
});
