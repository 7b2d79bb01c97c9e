#!/usr/bin/env node
// The `hearth` command. Hearth is written in TypeScript and runs through tsx, so no build step is needed.
import { register } from 'tsx/esm/api';

register();
const { runCli } = await import('../src/cli/cli.ts');
process.exitCode = await runCli(process.argv.slice(2));
