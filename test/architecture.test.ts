/**
 * The shape of src/, checked: which folder imports which. Biome (biome.json) keeps services off
 * Fastify/Aedes/ws and forbids cycles between files; it cannot see folders, so this test reads the
 * import graph of src/ and fails on any cycle between capability folders (KNOWN_CYCLE_EDGES is
 * empty since the access/ work: keep it so), and on a listed edge that no longer closes a cycle.
 *
 * It also checks that each table of the store is queried from one capability folder only (each
 * capability owns its tables; the others call its service), beyond today's shared tables in
 * KNOWN_SHARED_TABLES.
 *
 * Type-only cycles are tolerated (`import type` is erased, so they cannot change what loads first):
 * capabilities name each other's record and service types (devices ↔ homes ↔ access, the bus
 * catalogue in core/bus naming every capability's payloads).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SRC = join(ROOT, 'src');

/**
 * Folder → folder imports that close a cycle today, each written "from -> to". A runtime import
 * only: `import type` is erased by the compiler and cuts a cycle (as Biome's noImportCycles counts it).
 */
const KNOWN_CYCLE_EDGES: readonly string[] = [];

/** The capability a file belongs to: `core/<x>` and `transports/<x>` are one each, else the top folder; the root files are the composition root. */
export function folderOf(file: string): string | undefined {
  const parts = relative(SRC, file).split(/[\\/]/);
  if (parts.length === 1) return undefined;
  if ((parts[0] === 'core' || parts[0] === 'transports') && parts.length > 2) return `${parts[0]}/${parts[1]}`;
  return parts[0];
}

/** Module specifiers a source imports at run time (static imports, re-exports, dynamic imports); `import type` and `export type` are left out. */
export function runtimeImports(source: string): string[] {
  const out: string[] = [];
  const stmt = /(?:^|[\n;])\s*(import|export)\s+(type\s+)?(?:[^'";]*?\s+from\s+)?['"]([^'"]+)['"]/g;
  for (const m of source.matchAll(stmt)) if (!m[2]) out.push(m[3]);
  for (const m of source.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) out.push(m[1]);
  return out;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

/** Folder graph of src/: from → (to → an example `file -> file` import, for the failure message). */
function folderGraph(): Map<string, Map<string, string>> {
  const graph = new Map<string, Map<string, string>>();
  for (const file of sourceFiles(SRC)) {
    const from = folderOf(file);
    if (!from) continue;
    for (const spec of runtimeImports(readFileSync(file, 'utf8'))) {
      if (!spec.startsWith('.')) continue;
      const to = folderOf(resolve(dirname(file), spec));
      if (!to || to === from) continue;
      const edges = graph.get(from) ?? new Map<string, string>();
      if (!edges.has(to)) edges.set(to, `${relative(SRC, file)} -> ${relative(SRC, resolve(dirname(file), spec))}`);
      graph.set(from, edges);
    }
  }
  return graph;
}

/** Edges that lie on a cycle: both ends in the same strongly connected component (Tarjan). */
export function cycleEdges(graph: Map<string, Map<string, string>>): string[] {
  let index = 0;
  const idx = new Map<string, number>(),
    low = new Map<string, number>(),
    comp = new Map<string, number>();
  const stack: string[] = [],
    on = new Set<string>();
  let comps = 0;
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v)?.keys() ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        comp.set(w, comps);
      } while (w !== v);
      comps++;
    }
  };
  const nodes = new Set<string>([...graph.keys(), ...[...graph.values()].flatMap((e) => [...e.keys()])]);
  for (const v of [...nodes].sort()) if (!idx.has(v)) visit(v);
  const out: string[] = [];
  for (const [from, edges] of graph) for (const to of edges.keys()) if (comp.get(from) === comp.get(to)) out.push(`${from} -> ${to}`);
  return out.sort();
}

test('the cycle finder sees a cycle between folders and nothing else', () => {
  const g = new Map([
    ['a', new Map([['b', '']])],
    ['b', new Map([['c', '']])],
    ['c', new Map([['a', '']])],
    ['d', new Map([['a', '']])],
  ]);
  assert.deepEqual(cycleEdges(g), ['a -> b', 'b -> c', 'c -> a']);
  assert.deepEqual(
    runtimeImports(
      "import type { A } from './a.ts';\nimport { b, type C } from '../b.ts';\nexport * from './c.ts';\nexport type { D } from './d.ts';\nconst e = await import('./e.ts');",
    ),
    ['../b.ts', './c.ts', './e.ts'],
  );
});

test('no import cycle between folders of src/ beyond the known ones', () => {
  const graph = folderGraph();
  const cycles = cycleEdges(graph);
  const example = (edge: string) => {
    const [from, to] = edge.split(' -> ');
    return graph.get(from)?.get(to);
  };
  const added = cycles.filter((e) => !KNOWN_CYCLE_EDGES.includes(e));
  assert.deepEqual(
    added,
    [],
    `new import cycle(s) between folders (an import that closes each: ${added.map((e) => `${e} via ${example(e)}`).join('; ')}); ` +
      'break it (move the shared piece to the folder both depend on, or use `import type`), do not add it to KNOWN_CYCLE_EDGES',
  );
  const gone = KNOWN_CYCLE_EDGES.filter((e) => !cycles.includes(e));
  assert.deepEqual(gone, [], 'these edges no longer close a cycle: remove them from KNOWN_CYCLE_EDGES in test/architecture.test.ts');
});

/**
 * Tables queried from more than one folder (the folders, sorted). None since the access/ work and
 * notify's forgetPushTargets: keep it so, call the owning service (or a function it exports that
 * takes the caller's transaction) instead.
 */
const KNOWN_SHARED_TABLES: Readonly<Record<string, readonly string[]>> = {};

/** Table → folders of src/ that name it in a Kysely query (core/store, which holds the migrations, aside). */
function tableUsers(): Map<string, Set<string>> {
  const users = new Map<string, Set<string>>();
  const query = /\b(?:selectFrom|insertInto|updateTable|deleteFrom|replaceInto|mergeInto|innerJoin|leftJoin|rightJoin|fullJoin)\(\s*'([a-z_]+)/g;
  for (const file of sourceFiles(SRC)) {
    const folder = folderOf(file);
    if (!folder || folder === 'core/store') continue;
    for (const m of readFileSync(file, 'utf8').matchAll(query)) {
      const set = users.get(m[1]) ?? new Set<string>();
      set.add(folder);
      users.set(m[1], set);
    }
  }
  return users;
}

test('each table is queried from one capability folder, beyond the known shared ones', () => {
  const users = tableUsers();
  assert.ok((users.get('shadows')?.size ?? 0) > 0, 'the query finder sees the queries');
  const shared = Object.fromEntries([...users].filter(([, f]) => f.size > 1).map(([t, f]) => [t, [...f].sort()]));
  assert.deepEqual(
    shared,
    KNOWN_SHARED_TABLES,
    "a table is queried from another capability's folder: call the owning service instead (or, when the sharing ended, shrink KNOWN_SHARED_TABLES in test/architecture.test.ts)",
  );
});
