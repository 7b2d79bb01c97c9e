#!/usr/bin/env bash
# npm test: typecheck, lint, every suite on SQLite, then the end-to-end suites (test/*.test.ts) again
# on PostgreSQL (each test process starts a throwaway server; see test/helpers/postgres.ts).
# Both passes run even when the first fails, so that one run shows everything.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
tsc --noEmit || exit 1
# Lint and format (biome.json: recommended rules, import boundaries, no import cycles, the house format).
command -v biome >/dev/null || { echo 'biome is not installed (a devDependency): run npm install' >&2; exit 1; }
biome check --error-on-warnings . || exit 1
status=0
echo "# pass 1: SQLite"
node --import tsx --test --test-concurrency=2 $(find src test -name '*.test.ts' | sort) || status=1
echo "# pass 2: PostgreSQL (HEARTH_TEST_STORE=postgres)"
# Suites that never open the embedded store (the cluster runs on PostgreSQL already) run once.
HEARTH_TEST_STORE=postgres node --import tsx --test --test-concurrency=2 \
  $(find test -maxdepth 1 -name '*.test.ts' | grep -v -e cluster.test.ts -e bus-contract.test.ts -e deploy.test.ts | sort) || status=1
exit $status
