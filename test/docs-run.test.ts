/**
 * Docs that run. Every shell block of README.md and docs/*.md marked runnable is executed against a
 * started platform, in order, so that a doc change that breaks a command breaks the build.
 *
 * How to mark a block (docs/contributing.md says the same):
 *
 *   <!-- runnable -->
 *   ```sh
 *   curl -s localhost:8080/readyz
 *   ```
 *   ```text
 *   {"status":"ready"}
 *   ```
 *
 * - The HTML comment (invisible on GitHub) must be the line right before the ```sh fence; the
 *   block may be indented (inside a list item).
 * - A ```text block right after it (only blank lines between) is its expected output: each of its
 *   lines must appear, in order, each within a line of what the block printed (stdout and stderr;
 *   a line may run into the next command's output when it has no final newline, as curl's);
 *   `…` in a line matches anything. Lines printed in between are allowed. `# →` comments are
 *   illustrations and are not checked. Code blocks (of any fence length) are skipped when looking
 *   for markers.
 * - The blocks of one file run in order in one bash (`set -eo pipefail`), so variables carry from
 *   block to block; each file starts a fresh bash in a fresh directory. A block fails when a command
 *   fails, when any HTTP request made while it runs is answered with a status of 400 or more, or
 *   when its expected output is missing.
 * - Before running, the defaults are swapped for the test's: `localhost:8080` → the platform's HTTP
 *   address, `-p 1883` / `localhost:1883` → its MQTT port, and the placeholders `<password>` and
 *   `<printed at first start>` → the operator's generated password (read from the start banner),
 *   `<code from the banner>` → the demo hub's pairing code. `npx hearth` runs this checkout's
 *   bin/hearth.js with HEARTH_DATA_DIR (and on PostgreSQL HEARTH_DATABASE_URL) of the platform.
 *
 * The platform is `hearth start` as a child process with the demo on, as a new user gets it.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, startServer, tempDir, exitWithin } from './helpers/cli.ts';
import { storeEnv } from './helpers/platform.ts';

export interface DocBlock {
  file: string;
  /** 1-based line of the ```sh fence. */
  line: number;
  code: string;
  expected?: string[];
}

/** The runnable blocks of one Markdown text, with their expected output. */
export function runnableBlocks(file: string, text: string): DocBlock[] {
  const lines = text.split('\n');
  const blocks: DocBlock[] = [];
  const fence = (i: number) => /^(\s*)```(\w*)\s*$/.exec(lines[i] ?? '');
  const body = (start: number, indent: string): { code: string[]; end: number } => {
    const code: string[] = [];
    let i = start;
    for (; i < lines.length && !/^\s*```\s*$/.test(lines[i]); i++)
      code.push(lines[i].startsWith(indent) ? lines[i].slice(indent.length) : lines[i].trimStart());
    return { code, end: i };
  };
  let inFence: string | undefined; // the fence of a code block being skipped (its text is not Markdown)
  for (let i = 0; i < lines.length; i++) {
    const f = /^\s*(`{3,})/.exec(lines[i]);
    if (inFence) {
      if (f && f[1] === inFence && lines[i].trim() === inFence) inFence = undefined;
      continue;
    }
    if (f && lines[i].trim() !== '<!-- runnable -->') {
      inFence = f[1];
      continue;
    }
    if (lines[i].trim() !== '<!-- runnable -->') continue;
    const open = fence(i + 1);
    if (open?.[2] !== 'sh') throw new Error(`${file}:${i + 1}: <!-- runnable --> must be right above a \`\`\`sh block`);
    const { code, end } = body(i + 2, open[1]);
    const block: DocBlock = { file, line: i + 2, code: code.join('\n') };
    let j = end + 1;
    while (j < lines.length && lines[j].trim() === '') j++;
    const out = fence(j);
    if (out && out[2] === 'text') block.expected = body(j + 1, out[1]).code.filter((l) => l.trim() !== '');
    blocks.push(block);
    i = end;
  }
  return blocks;
}

/** Whether `expected` lines appear in order as whole lines of `output` (`…` matches anything). */
export function findExpected(expected: string[], output: string): string | undefined {
  const got = output.split('\n').map((l) => l.trimEnd());
  let at = 0;
  for (const want of expected) {
    // within a line: output without a final newline (curl's) runs into the next command's
    const re = new RegExp(
      want
        .trim()
        .split('…')
        .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
        .join('.*'),
    );
    while (at < got.length && !re.test(got[at].trim())) at++;
    if (at === got.length) return want;
    at++;
  }
  return undefined;
}

/** The documents whose runnable blocks run, README first. */
function documents(): string[] {
  return [
    'README.md',
    ...readdirSync(join(ROOT, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .sort()
      .map((f) => `docs/${f}`),
  ];
}

test('the parser finds marked blocks, indented ones and their expected output', () => {
  const md = [
    'text',
    '<!-- runnable -->',
    '```sh',
    'echo hi',
    '```',
    '',
    '```text',
    'hi',
    '```',
    '- item',
    '  <!-- runnable -->',
    '  ```sh',
    '  echo "x  y"',
    '  ```',
    '```sh',
    'not marked',
    '```',
  ].join('\n');
  const blocks = runnableBlocks('x.md', md);
  assert.deepEqual(blocks, [
    { file: 'x.md', line: 3, code: 'echo hi', expected: ['hi'] },
    { file: 'x.md', line: 12, code: 'echo "x  y"' },
  ]);
  assert.equal(findExpected(['a', '{"id":"…","ok":true}'], 'a\nb\n{"id":"c_1","ok":true}\n'), undefined);
  assert.equal(findExpected(['b', 'a'], 'a\nb\n'), 'a', 'in order');
  assert.equal(findExpected(['{"status":"ready"}'], '{"status":"ready"}next output\n'), undefined, 'curl prints no final newline');
  assert.deepEqual(
    runnableBlocks('z.md', ['````md', '<!-- runnable -->', '```sh', 'inside an example', '```', '````'].join('\n')),
    [],
    'examples inside code blocks are not run',
  );
  assert.throws(() => runnableBlocks('y.md', '<!-- runnable -->\n```js\nx\n```'), /must be right above/);
});

const requested = ['README.md', 'docs/api.md', 'docs/protocol.md'];

test('every runnable block of the docs runs as written against a fresh platform', { timeout: 180_000 }, async (t) => {
  const all = documents().map((file) => ({ file, blocks: runnableBlocks(file, readFileSync(join(ROOT, file), 'utf8')) }));
  for (const f of requested) assert.ok(all.find((d) => d.file === f)!.blocks.length > 0, `${f} has runnable blocks`);

  const s = await startServer({ HEARTH_DEMO: '1', HEARTH_LOG_LEVEL: 'info' });
  after(async () => {
    s.proc.child.kill('SIGTERM');
    await exitWithin(s.proc, 8000);
  });
  const operator = /Operator login:\s+(\S+)\s+password: (\S+)/.exec(s.banner);
  assert.ok(operator && operator[1] === 'admin@hearth.local', `the banner shows the default operator and its password:\n${s.banner}`);
  const pairing = /[Pp]airing code (\S+?)[.,:;)]?(\s|$)/.exec(s.banner);
  assert.ok(pairing, `the banner shows the demo hub's pairing code:\n${s.banner}`);
  const swap = (code: string) =>
    code
      .replaceAll('localhost:8080', `127.0.0.1:${s.httpPort}`)
      .replaceAll('localhost:1883', `127.0.0.1:${s.mqttPort}`)
      .replace(/-p 1883\b/g, `-p ${s.mqttPort}`)
      .replaceAll('<printed at first start>', operator[2])
      .replaceAll('<password>', operator[2])
      .replaceAll('<code from the banner>', pairing[1]);

  /** Status of every HTTP request the platform answered so far, from its JSON log lines. */
  const statuses = () =>
    s.proc
      .stdout()
      .split('\n')
      .flatMap((l) => {
        if (!l.startsWith('{')) return [];
        try {
          const r = JSON.parse(l) as { msg?: string; status?: number; method?: string; path?: string };
          return r.msg === 'request' && typeof r.status === 'number' ? [{ status: r.status, what: `${r.method} ${r.path}` }] : [];
        } catch {
          return [];
        }
      });

  for (const { file, blocks } of all) {
    if (blocks.length === 0) continue;
    await t.test(file, async () => {
      const dir = tempDir('hearth-docs-');
      const script = [
        'set -eo pipefail',
        'exec 2>&1',
        `npx() { if [ "$1" = hearth ]; then shift; node ${JSON.stringify(join(ROOT, 'bin', 'hearth.js'))} "$@"; else command npx "$@"; fi; }`,
        ...blocks.flatMap((b, i) => [`printf '\\n@@block ${i}@@\\n'`, swap(b.code)]),
        `printf '\\n@@block end@@\\n'`,
      ].join('\n');
      writeFileSync(join(dir, 'run.sh'), script);
      const env: NodeJS.ProcessEnv = {};
      for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('HEARTH_')) env[k] = v;
      Object.assign(env, { HEARTH_DATA_DIR: s.dataDir }, await storeEnv(s.dataDir));
      const bash = spawn('bash', ['run.sh'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      let out = '';
      /** Index into the platform's requests when each block started. */
      const marks: number[] = [];
      bash.stdout.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        for (const _m of d.matchAll(/@@block (\d+|end)@@/g)) marks.push(statuses().length);
      });
      const code = await new Promise<number | null>((resolve) => {
        const timer = setTimeout(() => process.kill(-bash.pid!, 'SIGKILL'), 120_000);
        bash.once('exit', (c) => {
          clearTimeout(timer);
          resolve(c);
        });
      });
      try {
        process.kill(-bash.pid!, 'SIGKILL'); // background jobs the blocks left running
      } catch {
        /* all gone */
      }
      const parts = out.split(/\n?@@block (?:\d+|end)@@\n/).slice(1);
      const where = (i: number) => `${blocks[i].file}:${blocks[i].line}`;
      const started = parts.length;
      if (code !== 0) {
        const i = Math.min(started, blocks.length) - 1;
        assert.fail(`the block at ${where(i)} failed (exit ${code}):\n${swap(blocks[i].code)}\n--- output:\n${parts[i] ?? out}`);
      }
      const requests = statuses();
      for (let i = 0; i < blocks.length; i++) {
        const failed = requests.slice(marks[i], marks[i + 1] ?? requests.length).filter((r) => r.status >= 400);
        assert.deepEqual(failed, [], `HTTP errors while the block at ${where(i)} ran:\n${swap(blocks[i].code)}\n--- output:\n${parts[i]}`);
        if (blocks[i].expected) {
          const missing = findExpected(blocks[i].expected!, parts[i] ?? '');
          assert.equal(missing, undefined, `the block at ${where(i)} did not print "${missing}":\n--- output:\n${parts[i]}`);
        }
      }
    });
  }
});
