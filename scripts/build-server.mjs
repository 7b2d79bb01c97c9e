// Compiles the server (src/, TypeScript) into dist/: plain JavaScript bundled by esbuild from the
// `hearth` command's entry (dist/cli/cli.js), with chunks for what is loaded lazily, so that the
// serving process runs no compiler and loads a few files instead of hundreds of modules. esbuild
// only strips the types (`npx tsc --noEmit` checks them). Packages stay in node_modules but for
// the few in INLINE.
//
// `npm install` runs it (the `prepare` script), and bin/hearth.js runs it in a child process when
// src/ changed since the last build (a content hash in dist/.source-hash), so a fresh clone, an edit
// and a `git pull` all run what src/ says. Written in JavaScript so that it needs no loader itself.
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SRC = join(ROOT, 'src');
export const DIST = join(ROOT, 'dist');
const STAMP = '.source-hash';
const LOCK = join(ROOT, '.dist-lock');
/** Bumped when this script's output changes for the same sources. */
const FORMAT = '4';

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
  // the bundled packages' versions
  if (existsSync(join(ROOT, 'package-lock.json'))) h.update(readFileSync(join(ROOT, 'package-lock.json')));
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

/**
 * Packages bundled into dist/ with the server instead of loaded from node_modules: ESM packages of
 * hundreds of small modules each (TypeBox about 680, Kysely about 260), which cost tens of MB and
 * a good part of the start when Node loads them one by one. Every other package stays external.
 */
const INLINE = new Set(['typebox', 'kysely']);

const dependencies = {
  name: 'dependencies',
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.path.startsWith('node:')) return { external: true };
      const name = args.path.startsWith('@') ? args.path.split('/').slice(0, 2).join('/') : args.path.split('/')[0];
      return INLINE.has(name) ? undefined : { external: true };
    });
  },
};

function sleep(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * One build at a time: tests start many servers at once, and each may find dist/ out of date. A
 * lock directory serialises them; a waiter finds dist/ current when the lock is let go, and a lock
 * left by a killed build is taken over after a minute.
 */
async function withLock(fn) {
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
    return await fn();
  } finally {
    rmSync(LOCK, { recursive: true, force: true });
  }
}

/** Builds dist/ unless it is current (or `force`); returns whether it built. */
export async function buildServer({ force = false, quiet = false } = {}) {
  const { build } = await import('esbuild');
  return withLock(async () => {
    const files = sources();
    const hash = sourceHash(files);
    if (!force && existsSync(join(DIST, STAMP)) && readFileSync(join(DIST, STAMP), 'utf8') === hash) return false;
    const started = Date.now();
    // Built beside dist/, then moved in: the chunks first (their names carry a content hash, so
    // they never replace a file in use), the entry and the stamp last. A server starting meanwhile
    // runs the old build or the new one; a server running from the old one still finds the chunks
    // it loads later (the demo, the NATS bus). Chunks no build has used for a day are removed.
    const next = join(ROOT, '.dist-next');
    rmSync(next, { recursive: true, force: true });
    await build({
      entryPoints: [join(SRC, 'cli/cli.ts')],
      outbase: SRC,
      outdir: next,
      bundle: true,
      // Modules loaded with import() (cluster-only, the demo, optional senders) become chunks of their own.
      splitting: true,
      chunkNames: 'chunks/[name]-[hash]',
      format: 'esm',
      platform: 'node',
      target: 'node20',
      plugins: [dependencies],
      // Identifiers are not renamed, so class and function names stay as written for logs and stack
      // traces without esbuild's keepNames (which wraps every function made at run time, hot paths too).
      minifyWhitespace: true,
      minifySyntax: true,
      // Maps beside the files: NODE_OPTIONS=--enable-source-maps maps stack traces to src/.
      sourcemap: 'linked',
      sourcesContent: false,
      legalComments: 'none',
      logLevel: 'warning',
    });
    writeFileSync(join(next, 'package.json'), '{ "type": "module" }\n');
    const fresh = new Set(readdirSync(join(next, 'chunks')));
    mkdirSync(join(DIST, 'chunks'), { recursive: true });
    for (const name of fresh) {
      if (!existsSync(join(DIST, 'chunks', name))) renameSync(join(next, 'chunks', name), join(DIST, 'chunks', name));
      else utimesSync(join(DIST, 'chunks', name), new Date(), new Date());
    }
    for (const name of readdirSync(join(DIST, 'chunks'))) {
      const path = join(DIST, 'chunks', name);
      if (!fresh.has(name) && Date.now() - statSync(path).mtimeMs > 86_400_000) rmSync(path, { force: true });
    }
    rmSync(join(next, 'chunks'), { recursive: true, force: true });
    rmSync(join(DIST, STAMP), { force: true });
    cpSync(next, DIST, { recursive: true });
    writeFileSync(join(DIST, STAMP), hash);
    rmSync(next, { recursive: true, force: true });
    if (!quiet) process.stderr.write(`hearth: compiled src/ (${files.length} files) into dist/ in ${Date.now() - started} ms\n`);
    return true;
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await buildServer({ force: process.argv.includes('--force'), quiet: process.argv.includes('--quiet') });
}
