// Compiles the server (src/, TypeScript) into dist/ (JavaScript, one file per source file, the same
// layout), so that the serving process runs plain JavaScript with no compiler loaded. esbuild only
// strips the types (`npx tsc --noEmit` checks them); relative `.ts` imports become `.js`.
//
// `npm install` runs it (the `prepare` script), and bin/hearth.js runs it in a child process when
// src/ changed since the last build (a content hash in dist/.source-hash), so a fresh clone, an edit
// and a `git pull` all run what src/ says. Written in JavaScript so that it needs no loader itself.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SRC = join(ROOT, 'src');
export const DIST = join(ROOT, 'dist');
const STAMP = '.source-hash';
const LOCK = join(ROOT, '.dist-lock');
/** Bumped when this script's output changes for the same sources. */
const FORMAT = '1';

/** The sources that go into dist/: every .ts under src/ but the tests. */
function sources() {
  const out = [];
  const visit = (dir) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) visit(path);
      else if (name.endsWith('.ts') && !name.endsWith('.test.ts') && !name.endsWith('.d.ts')) out.push(path);
    }
  };
  visit(SRC);
  return out;
}

function sourceHash(files) {
  const h = createHash('sha256').update(FORMAT).update('\0');
  for (const f of files) h.update(relative(SRC, f)).update('\0').update(readFileSync(f)).update('\0');
  return h.digest('hex');
}

/** Whether dist/ was built from the sources as they are now (an image that ships dist/ without src/ is current). */
export function serverBuildIsCurrent() {
  if (!existsSync(SRC)) return existsSync(join(DIST, STAMP));
  try {
    return readFileSync(join(DIST, STAMP), 'utf8') === sourceHash(sources());
  } catch {
    return false;
  }
}

/** `./x.ts` → `./x.js` in static imports, re-exports and dynamic imports of relative paths. */
const RELATIVE_TS = /((?:\bfrom|\bimport)\s*\(?\s*)(["'])(\.{1,2}\/[^"'\n]*?)\.ts\2/g;

function sleep(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * One build at a time: tests start many servers at once, and each may find dist/ out of date. A
 * lock directory serialises them; a waiter finds dist/ current when the lock is let go, and a lock
 * left by a killed build is taken over after a minute.
 */
function withLock(fn) {
  for (;;) {
    try {
      mkdirSync(LOCK);
      break;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
      try {
        if (Date.now() - statSync(LOCK).mtimeMs > 60_000) rmSync(LOCK, { recursive: true, force: true });
      } catch {}
      sleep(50);
    }
  }
  try {
    return fn();
  } finally {
    rmSync(LOCK, { recursive: true, force: true });
  }
}

/** Builds dist/ unless it is current (or `force`); returns whether it built. */
export async function buildServer({ force = false, quiet = false } = {}) {
  const { transformSync } = await import('esbuild');
  return withLock(() => {
    const files = sources();
    const hash = sourceHash(files);
    if (!force && existsSync(join(DIST, STAMP)) && readFileSync(join(DIST, STAMP), 'utf8') === hash) return false;
    const started = Date.now();
    // Built beside dist/ and swapped in when complete: a server starting meanwhile reads the old
    // build or the new one, never half of one.
    const next = join(ROOT, '.dist-next');
    rmSync(next, { recursive: true, force: true });
    for (const file of files) {
      const rel = relative(SRC, file);
      const { code, map } = transformSync(readFileSync(file, 'utf8'), {
        loader: 'ts',
        format: 'esm',
        target: 'node20',
        platform: 'node',
        sourcefile: rel,
        // The serving process has no source maps on by default; NODE_OPTIONS=--enable-source-maps maps stacks to src/.
        // (kept in files of their own: an inline map would be held in memory with the code).
        sourcemap: 'external',
        sourcesContent: false,
      });
      const out = join(next, rel.replace(/\.ts$/, '.js'));
      mkdirSync(dirname(out), { recursive: true });
      const base = out.slice(dirname(out).length + 1);
      writeFileSync(out, `${code.replace(RELATIVE_TS, '$1$2$3.js$2')}//# sourceMappingURL=${base}.map\n`);
      // The map names the source relative to itself, so that stacks point at src/.
      const m = JSON.parse(map);
      m.sources = [relative(dirname(out.replace(next, DIST)), file)];
      writeFileSync(`${out}.map`, JSON.stringify(m));
    }
    writeFileSync(join(next, 'package.json'), '{ "type": "module" }\n');
    writeFileSync(join(next, STAMP), hash);
    const old = join(ROOT, '.dist-old');
    rmSync(old, { recursive: true, force: true });
    if (existsSync(DIST)) renameSync(DIST, old);
    renameSync(next, DIST);
    rmSync(old, { recursive: true, force: true });
    if (!quiet) process.stderr.write(`hearth: compiled ${files.length} files into dist/ in ${Date.now() - started} ms\n`);
    return true;
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await buildServer({ force: process.argv.includes('--force'), quiet: process.argv.includes('--quiet') });
}
