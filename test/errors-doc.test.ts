import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERRORS } from '../src/core/errors.ts';

test('docs/errors.md documents every error code with its status, and no others', () => {
  const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
  const section = doc.split('## REST API codes')[1].split('\n## ')[0];
  const rows = new Map<string, number>();
  for (const m of section.matchAll(/^\| (E_[A-Z_]+) \| (\d{3}) \|/gm)) rows.set(m[1], Number(m[2]));
  const catalogue = new Map(Object.entries(ERRORS).map(([code, e]) => [code, e.status]));
  assert.deepEqual(Object.fromEntries(rows), Object.fromEntries(catalogue));
});
