#!/usr/bin/env node
// The `hearth` command. Hearth is written in TypeScript (src/) and runs as JavaScript compiled into
// dist/ (scripts/build-server.mjs: `npm install` builds it). When src/ changed since that build, it
// is rebuilt first, in a child process (under a second), so the serving process never loads a compiler.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { serverBuildIsCurrent } from '../scripts/build-server.mjs';

if (!serverBuildIsCurrent()) {
  try {
    execFileSync(process.execPath, [fileURLToPath(new URL('../scripts/build-server.mjs', import.meta.url)), '--quiet'], { stdio: 'inherit' });
  } catch {
    process.stderr.write('hearth: could not compile src/ into dist/ (esbuild comes with `npm install`)\n');
    process.exit(1);
  }
}
const { runCli } = await import('../dist/cli/cli.js');
process.exitCode = await runCli(process.argv.slice(2));
