import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ConfigSchema, envName } from '../src/core/config/config-schema.ts';
import { startPlatform, type Platform } from './helpers/platform.ts';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

test('every test docs/security.md cites for a promise exists, under the name it gives', () => {
  const doc = readFileSync(new URL('../docs/security.md', import.meta.url), 'utf8').replace(/\s*\n\s*/g, ' ');
  const cited: Array<{ file: string; name: string }> = [];
  // "Held by `test/x.test.ts`: "name", "name" and "name"; and by `src/y.test.ts`, "name"": names follow their file.
  for (const m of doc.matchAll(/`((?:test|src)\/[\w./-]+\.test\.ts)`[:,]?((?:[^`]*?"[^"]+")+)/g)) {
    for (const n of m[2].matchAll(/"([^"]+)"/g)) cited.push({ file: m[1], name: n[1] });
  }
  assert.ok(cited.length >= 30, `found ${cited.length} citations`);
  const missing = cited.filter(({ file, name }) => {
    let text: string;
    try {
      text = readFileSync(new URL(`../${file}`, import.meta.url), 'utf8').replace(/\\'/g, "'");
    } catch {
      return true;
    }
    // A citation may name the suite (`suite › test`), or end with … where the name goes on.
    return !name.split(' › ').every((part) => text.includes(part.replace(/…$/, '')));
  });
  assert.deepEqual(missing, [], 'docs/security.md cites tests that do not exist (renamed?)');
});

test('every configuration variable is in a table of the README, and HEARTH_CONFIG is explained', () => {
  const rows = readme.split('\n').filter((l) => l.startsWith('|'));
  const missing = Object.keys(ConfigSchema.properties)
    .map(envName)
    .filter((v) => !rows.some((r) => r.includes(`\`${v}\``)));
  assert.deepEqual(missing, [], 'README.md lists these variables in its tables');
  assert.match(readme, /`HEARTH_CONFIG`/);
  // and nothing in the tables that does not exist
  const named = new Set(rows.flatMap((r) => [...r.matchAll(/`(HEARTH_[A-Z_]+)`/g)].map((m) => m[1])));
  const known = new Set([...Object.keys(ConfigSchema.properties).map(envName), 'HEARTH_CONFIG']);
  assert.deepEqual(
    [...named].filter((v) => !known.has(v)),
    [],
    'README.md tables name only real variables',
  );
});

let p: Platform;
before(async () => {
  p = await startPlatform();
});
after(async () => {
  await p.stop();
});

test('every tag an operation of the OpenAPI document uses is declared with a description', async () => {
  const doc = (await p.api('GET', '/docs/json', undefined, null)).body as {
    tags: Array<{ name: string; description?: string }>;
    paths: Record<string, Record<string, { tags?: string[] }>>;
  };
  const declared = new Map(doc.tags.map((t) => [t.name, t.description]));
  const used = new Set(Object.values(doc.paths).flatMap((ops) => Object.values(ops).flatMap((op) => op.tags ?? [])));
  assert.deepEqual([...used].filter((t) => !declared.has(t)).sort(), [], 'undeclared tags');
  for (const [name, description] of declared) assert.ok(description, `tag ${name} has a description`);
});
