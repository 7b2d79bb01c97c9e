import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEVICE_ERRORS, ERRORS, INTERNAL_CODES } from '../src/core/errors.ts';

const read = (rel: string) => readFileSync(new URL(rel, import.meta.url), 'utf8');

/** The lines of the markdown section that starts with `heading` (up to the next heading of its level). */
function section(doc: string, heading: string): string {
  const level = heading.match(/^#+/)![0];
  const start = doc.indexOf(`\n${heading}`);
  assert.ok(start >= 0, `no section "${heading}"`);
  const rest = doc.slice(start + heading.length + 1);
  const end = rest.search(new RegExp(`\\n${level} `));
  return end < 0 ? rest : rest.slice(0, end);
}

/** The codes in the first column of a markdown table, with or without backticks. */
const tableCodes = (text: string) => [...text.matchAll(/^\| `?(E_[A-Z_]+)`? \|/gm)].map((m) => m[1]).sort();

test('docs/errors.md documents every error code with its status, and no others', () => {
  const rows = new Map<string, number>();
  for (const m of section(read('../docs/errors.md'), '## REST API codes').matchAll(/^\| (E_[A-Z_]+) \| (\d{3}) \|/gm)) rows.set(m[1], Number(m[2]));
  const catalogue = new Map(Object.entries(ERRORS).map(([code, e]) => [code, e.status]));
  assert.deepEqual(Object.fromEntries(rows), Object.fromEntries(catalogue));
});

test('the device error tables of docs/errors.md and docs/protocol.md list exactly the device catalogue', () => {
  const catalogue = Object.keys(DEVICE_ERRORS).sort();
  assert.deepEqual(tableCodes(section(read('../docs/errors.md'), '## Device error codes (MQTT `devices/{id}/errors`)')), catalogue, 'docs/errors.md');
  assert.deepEqual(tableCodes(section(read('../docs/protocol.md'), '## Errors')), catalogue, 'docs/protocol.md');
});

test('every error code written in src/ is in a catalogue', () => {
  const known = new Set([...Object.keys(ERRORS), ...Object.keys(DEVICE_ERRORS), ...Object.keys(INTERNAL_CODES)]);
  // The simulator's label for an error message that came without a code: shown to its user, never sent.
  const notCodes = new Set(['E_UNKNOWN']);
  const unknown: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) {
        for (const m of readFileSync(p, 'utf8').matchAll(/['"`](E_[A-Z][A-Z0-9_]*)['"`]/g)) {
          if (!known.has(m[1]) && !notCodes.has(m[1])) unknown.push(`${m[1]} in ${p}`);
        }
      }
    }
  };
  walk(fileURLToPath(new URL('../src', import.meta.url)));
  assert.deepEqual(unknown, [], 'add the code to src/core/errors.ts (ERRORS for REST, DEVICE_ERRORS for devices) and to docs/errors.md');
});
