// Builds the console (web/) into web/dist, unless web/dist was built from the same sources already.
// `npm install` runs it (the `prepare` script) and so does `npm start` (`prestart`), so a fresh clone
// serves the console with `npm install && npm start`. Without the dev dependencies (a production
// install) it says so and leaves the server to serve its plain page at /.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const WEB = join(ROOT, 'web');
const DIST = join(WEB, 'dist');
const STAMP = join(DIST, '.source-hash');

/** Every file the build reads from web/ (not dist), and the lockfile (versions of what it bundles). */
function sourceHash(): string {
  const h = createHash('sha256');
  const visit = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (path === DIST || name === 'node_modules' || name.startsWith('.dist-')) continue;
      if (statSync(path).isDirectory()) visit(path);
      else h.update(relative(WEB, path)).update('\0').update(readFileSync(path)).update('\0');
    }
  };
  visit(WEB);
  h.update(readFileSync(join(ROOT, 'package-lock.json')));
  return h.digest('hex');
}

/** Builds when the sources changed (or `force`); returns whether it built. */
export async function buildConsole(opts: { force?: boolean; quiet?: boolean } = {}): Promise<boolean> {
  const hash = sourceHash();
  if (!opts.force && existsSync(STAMP) && existsSync(join(DIST, 'index.html')) && readFileSync(STAMP, 'utf8') === hash) return false;
  let vite: typeof import('vite');
  try {
    vite = await import('vite');
  } catch {
    process.stderr.write('hearth: the console is not built (vite is a dev dependency: run `npm install` with them); / serves a plain page\n');
    return false;
  }
  const started = Date.now();
  // Built beside web/dist and swapped in when complete: a server starting meanwhile reads the old
  // build or the new one, never half of one.
  const next = join(WEB, '.dist-next');
  rmSync(next, { recursive: true, force: true });
  await vite.build({ configFile: join(WEB, 'vite.config.ts'), root: WEB, logLevel: opts.quiet ? 'error' : 'warn', build: { outDir: next, emptyOutDir: true } });
  // Gzip twins of the text assets: the server sends them to browsers that accept gzip.
  const assets = join(next, 'assets');
  for (const name of readdirSync(assets)) {
    if (!/\.(js|css|svg|json)$/.test(name)) continue;
    const path = join(assets, name);
    writeFileSync(path + '.gz', gzipSync(readFileSync(path), { level: 9 }));
  }
  writeFileSync(join(next, '.source-hash'), hash);
  const old = join(WEB, '.dist-old');
  rmSync(old, { recursive: true, force: true });
  if (existsSync(DIST)) renameSync(DIST, old);
  renameSync(next, DIST);
  rmSync(old, { recursive: true, force: true });
  if (!opts.quiet) process.stdout.write(`hearth: console built into web/dist in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  return true;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await buildConsole({ force: process.argv.includes('--force') });
}
