import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';
import { API_TYPES_PATH, apiTypes } from '../scripts/gen-api-types.ts';
import { en } from '../web/src/i18n/en.ts';
import { zhCN } from '../web/src/i18n/zh-CN.ts';

/**
 * The console's build checks: its typed API client matches the live OpenAPI document, it
 * typechecks against it, and no string a person reads is left out of the translations.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const WEB_SRC = join(ROOT, 'web', 'src');

test('web/src/api/schema.d.ts is what scripts/gen-api-types.ts makes of the OpenAPI document of this checkout', async () => {
  const fresh = await apiTypes();
  const checkedIn = readFileSync(API_TYPES_PATH, 'utf8');
  assert.ok(fresh === checkedIn, 'the REST API changed: run `npm run console:api-types`, then fix what `tsc -p web` reports');
});

test('the console typechecks against the generated API types (tsc -p web)', async () => {
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const run = await promisify(execFile)(process.execPath, [tsc, '-p', join(ROOT, 'web')], { cwd: ROOT }).then(
    () => '',
    (err: { stdout?: string }) => err.stdout ?? String(err),
  );
  assert.equal(run, '', run);
});

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return /\.tsx?$/.test(name) && !name.endsWith('.d.ts') && !path.includes(`${join('src', 'i18n')}`) ? [path] : [];
  });
}

/** Props whose string values people read (the rest are class names, keys, routes, test ids). */
const READ_PROPS = new Set([
  'title',
  'label',
  'placeholder',
  'tooltip',
  'message',
  'description',
  'subTitle',
  'okText',
  'cancelText',
  'emptyText',
  'text',
  'aria-label',
  'alt',
  'extra',
  'tip',
  'help',
]);
/** Text that is the same in every language: brand and protocol names, symbols, numbers. */
const UNTRANSLATED_OK = /^(Hearth|ID|JSON|MQTT|[\s\d\p{P}\p{S}]*|…|·)$/u;

function keysOf(obj: Record<string, unknown>, prefix = ''): string[] {
  return Object.entries(obj).flatMap(([k, v]) => (typeof v === 'string' ? [prefix + k] : keysOf(v as Record<string, unknown>, `${prefix}${k}.`)));
}

test('every string of web/src a person reads comes from the translations, and every key used exists in en and zh-CN', () => {
  const problems: string[] = [];
  const known = new Set(keysOf(en));
  assert.deepEqual(keysOf(zhCN).sort(), [...known].sort(), 'zh-CN has the keys of en');
  for (const key of keysOf(zhCN)) {
    const value = key.split('.').reduce<any>((o, k) => o[k], zhCN);
    assert.ok(typeof value === 'string' && value.length > 0, `zh-CN ${key} is empty`);
  }
  const files = sources(WEB_SRC);
  assert.ok(files.length > 10, 'found the console sources');
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, file.endsWith('.tsx') ? ts.ScriptKind.TSX : ts.ScriptKind.TS);
    const registry = file.endsWith('registry.tsx');
    const where = (n: ts.Node) => `${relative(ROOT, file)}:${sf.getLineAndCharacterOfPosition(n.getStart()).line + 1}`;
    const visit = (n: ts.Node) => {
      // Text between JSX tags.
      if (ts.isJsxText(n)) {
        const s = n.text.trim();
        if (s && !UNTRANSLATED_OK.test(s)) problems.push(`${where(n)} text "${s}" is not translated`);
      }
      // A string literal given to a prop people read: <Button title="Save">, {title: 'Save'}.
      if (ts.isJsxAttribute(n) && n.initializer && ts.isStringLiteral(n.initializer) && READ_PROPS.has(n.name.getText())) {
        const s = n.initializer.text.trim();
        if (s && !UNTRANSLATED_OK.test(s)) problems.push(`${where(n)} ${n.name.getText()}="${s}" is not translated`);
      }
      if (ts.isPropertyAssignment(n) && READ_PROPS.has(n.name.getText().replace(/['"]/g, '')) && ts.isStringLiteral(n.initializer) && !registry) {
        const s = n.initializer.text.trim();
        if (s && !UNTRANSLATED_OK.test(s)) problems.push(`${where(n)} ${n.name.getText()}: "${s}" is not translated`);
      }
      // t('a.b'): the key exists (a template t(`form.${code}`) is checked by its prefix).
      if (ts.isCallExpression(n) && ts.isIdentifier(n.expression) && n.expression.text === 't' && n.arguments.length) {
        const a = n.arguments[0];
        if (ts.isStringLiteral(a) && !known.has(a.text)) problems.push(`${where(n)} t('${a.text}'): no such key in i18n/en.ts`);
        if (ts.isTemplateExpression(a) && ![...known].some((k) => k.startsWith(a.head.text))) problems.push(`${where(n)} t(\`${a.head.text}…\`): no such keys`);
      }
      // The page registry's menu labels are keys, translated by the layout.
      if (ts.isPropertyAssignment(n) && n.name.getText() === 'label' && ts.isStringLiteral(n.initializer) && registry && !known.has(n.initializer.text)) {
        problems.push(`${where(n)} menu label '${n.initializer.text}' is not a key of i18n/en.ts`);
      }
      ts.forEachChild(n, visit);
    };
    visit(sf);
  }
  assert.deepEqual(problems, [], problems.join('\n'));
});
