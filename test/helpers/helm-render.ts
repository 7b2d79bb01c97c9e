import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';

/**
 * A renderer for the subset of Go templates and Sprig that the Hearth Helm chart uses, so the chart
 * can be rendered and checked in a test without the `helm` binary. It is stricter than Helm on
 * purpose: an unknown function, a key missing from the values (outside `default`/`required`), or
 * printing nil, a map or a list is an error, so a template mistake fails the test instead of
 * rendering an empty string. Numbers follow Go: values from YAML are float64 (JS `number`), template
 * integer literals and `int`/`add`/`mul`/`div` results are int64 (JS `bigint`); `eq` between the two
 * is an error as in Helm, and a float64 prints as Go does (1000000 → `1e+06`), hence `int` before
 * printing numbers.
 */

type Pipe = { decl: string[]; assign: boolean; cmds: Term[][] };
type Term =
  | { t: 'lit'; v: unknown }
  | { t: 'dot' }
  | { t: 'field'; path: string[] }
  | { t: 'var'; name: string; path: string[] }
  | { t: 'fn'; name: string }
  | { t: 'sub'; p: Pipe };
type Node =
  | { t: 'text'; s: string }
  | { t: 'out'; p: Pipe }
  | { t: 'if' | 'with'; branches: { p: Pipe; body: Node[] }[]; else?: Node[] }
  | { t: 'range'; p: Pipe; body: Node[]; else?: Node[] }
  | { t: 'template'; name: string; p?: Pipe };

/** Raised for template syntax errors, unknown functions, missing values and failed `required`/`fail`. */
export class TemplateError extends Error {
  /** Whether the message already says in which template it happened. */
  located = false;

  constructor(message: string) {
    super(message);
    this.name = 'TemplateError';
  }
}

type Scope = Map<string, unknown>[];
type Fn = (args: unknown[], env: Env) => unknown;
interface Env {
  templates: Map<string, Node[]>;
  where: string;
}

const MISSING = Symbol('missing');
const TOKEN = /\s+|"(?:[^"\\]|\\.)*"|`[^`]*`|:=|[=|(),]|-?\d+(?:\.\d+)?(?![\w.])|\$[\w]*(?:\.[\w]+)*|(?:\.[\w]+)+|\.|[A-Za-z_]\w*/y;

function tokenize(src: string, where: string): string[] {
  const out: string[] = [];
  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < src.length) {
    const at = TOKEN.lastIndex;
    const m = TOKEN.exec(src);
    if (!m) throw new TemplateError(`${where}: cannot parse "${src.slice(at)}"`);
    if (!/^\s+$/.test(m[0])) out.push(m[0]);
  }
  return out;
}

function parsePipe(tokens: string[], where: string): Pipe {
  let decl: string[] = [];
  let assign = false;
  const opAt = tokens.findIndex((t) => t === ':=' || t === '=');
  if (opAt > 0 && tokens.slice(0, opAt).every((t, i) => (i % 2 === 0 ? /^\$\w*$/.test(t) : t === ','))) {
    decl = tokens.slice(0, opAt).filter((t) => t !== ',');
    assign = tokens[opAt] === '=';
    tokens = tokens.slice(opAt + 1);
  }
  let i = 0;
  const pipe = (): Pipe => {
    const cmds: Term[][] = [[]];
    while (i < tokens.length && tokens[i] !== ')') {
      const tok = tokens[i++];
      if (tok === '|') cmds.push([]);
      else if (tok === '(') {
        cmds[cmds.length - 1].push({ t: 'sub', p: pipe() });
        if (tokens[i++] !== ')') throw new TemplateError(`${where}: unclosed "("`);
      } else cmds[cmds.length - 1].push(term(tok));
    }
    if (cmds.some((c) => c.length === 0)) throw new TemplateError(`${where}: empty command in pipeline`);
    return { decl: [], assign: false, cmds };
  };
  const term = (tok: string): Term => {
    if (tok === '.') return { t: 'dot' };
    if (tok.startsWith('"')) return { t: 'lit', v: JSON.parse(tok) };
    if (tok.startsWith('`')) return { t: 'lit', v: tok.slice(1, -1) };
    if (/^-?\d+$/.test(tok)) return { t: 'lit', v: BigInt(tok) };
    if (/^-?\d/.test(tok)) return { t: 'lit', v: Number(tok) };
    if (tok.startsWith('$')) {
      const [name, ...path] = tok.split('.');
      return { t: 'var', name, path };
    }
    if (tok.startsWith('.')) return { t: 'field', path: tok.slice(1).split('.') };
    if (tok === 'true' || tok === 'false') return { t: 'lit', v: tok === 'true' };
    if (tok === 'nil') return { t: 'lit', v: null };
    if (!/^[A-Za-z_]\w*$/.test(tok)) throw new TemplateError(`${where}: unexpected "${tok}"`);
    if (!(tok in FUNCS)) throw new TemplateError(`${where}: function "${tok}" not defined (not in the subset test/helpers/helm-render.ts implements)`);
    return { t: 'fn', name: tok };
  };
  const p = pipe();
  if (i < tokens.length) throw new TemplateError(`${where}: unexpected ")"`);
  return { ...p, decl, assign };
}

/** Parses one template file; `define`d templates go into `templates`, the rest is returned. */
function parse(src: string, where: string, templates: Map<string, Node[]>): Node[] {
  const root: Node[] = [];
  let cur = root;
  const stack: { kind: string; node?: Node; parent: Node[]; name?: string }[] = [];
  let trimNext = false;
  let i = 0;
  let line = 1;
  const text = (s: string) => {
    if (trimNext) s = s.replace(/^\s+/, '');
    if (s) cur.push({ t: 'text', s });
  };
  while (i < src.length) {
    const open = src.indexOf('{{', i);
    let chunk = src.slice(i, open < 0 ? src.length : open);
    if (open < 0) {
      text(chunk);
      break;
    }
    const trimLeft = /^\{\{-\s/.test(src.slice(open, open + 4));
    if (trimLeft) chunk = chunk.replace(/\s+$/, '');
    text(chunk);
    line += src.slice(i, open).split('\n').length - 1;
    let j = open + (trimLeft ? 3 : 2);
    let quote = '';
    for (; j < src.length; j++) {
      const c = src[j];
      if (quote) {
        if (c === '\\' && quote === '"') j++;
        else if (c === quote) quote = '';
      } else if (c === '"' || c === '`') quote = c;
      else if (src.startsWith('}}', j)) break;
    }
    if (j >= src.length) throw new TemplateError(`${where}:${line}: unclosed action`);
    let body = src.slice(open + (trimLeft ? 3 : 2), j);
    trimNext = /\s-$/.test(body);
    if (trimNext) body = body.slice(0, -1);
    i = j + 2;
    const at = `${where}:${line}`;
    line += body.split('\n').length - 1;
    body = body.trim();
    if (body.startsWith('/*')) {
      if (!body.endsWith('*/')) throw new TemplateError(`${at}: unclosed comment`);
      continue;
    }
    const toks = tokenize(body, at);
    const [kw, ...rest] = toks;
    const top = stack[stack.length - 1];
    if (kw === 'if' || kw === 'with') {
      const node: Node = { t: kw, branches: [{ p: parsePipe(rest, at), body: [] }] };
      cur.push(node);
      stack.push({ kind: kw, node, parent: cur });
      cur = node.branches[0].body;
    } else if (kw === 'range') {
      const node: Node = { t: 'range', p: parsePipe(rest, at), body: [] };
      cur.push(node);
      stack.push({ kind: kw, node, parent: cur });
      cur = node.body;
    } else if (kw === 'else') {
      if (!top?.node || top.node.t === 'text') throw new TemplateError(`${at}: "else" outside if/with/range`);
      const node = top.node as Extract<Node, { t: 'if' | 'with' | 'range' }>;
      if (node.else) throw new TemplateError(`${at}: a second "else"`);
      if (rest[0] === 'if' && node.t === 'if') {
        const branch = { p: parsePipe(rest.slice(1), at), body: [] };
        node.branches.push(branch);
        cur = branch.body;
      } else if (rest.length === 0) {
        node.else = [];
        cur = node.else;
      } else throw new TemplateError(`${at}: unsupported "else ${rest.join(' ')}"`);
    } else if (kw === 'end') {
      if (!top) throw new TemplateError(`${at}: "end" without a block`);
      stack.pop();
      if (top.kind === 'define') templates.set(top.name!, cur);
      cur = top.parent;
    } else if (kw === 'define') {
      if (stack.length || rest.length !== 1 || !rest[0].startsWith('"')) throw new TemplateError(`${at}: define takes one name, at top level`);
      stack.push({ kind: 'define', parent: cur, name: JSON.parse(rest[0]) as string });
      cur = [];
    } else if (kw === 'template') {
      if (!rest[0]?.startsWith('"')) throw new TemplateError(`${at}: template takes a quoted name`);
      cur.push({ t: 'template', name: JSON.parse(rest[0]) as string, p: rest.length > 1 ? parsePipe(rest.slice(1), at) : undefined });
    } else if (['block', 'break', 'continue'].includes(kw)) {
      throw new TemplateError(`${at}: "${kw}" is not in the subset`);
    } else cur.push({ t: 'out', p: parsePipe(toks, at) });
  }
  if (stack.length) throw new TemplateError(`${where}: "${stack[stack.length - 1].kind}" without "end"`);
  return root;
}

/** Go's truth: false, 0, nil and empty strings, lists and maps are false. */
function truth(v: unknown): boolean {
  if (v === null || v === undefined || v === MISSING) return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v).length > 0;
  return Boolean(v) && v !== 0n;
}

function kind(v: unknown): string {
  if (v === null || v === undefined) return 'nil';
  if (typeof v === 'bigint') return 'int';
  if (typeof v === 'number') return 'float';
  return Array.isArray(v) ? 'list' : typeof v === 'object' ? 'map' : typeof v;
}

/** fmt's %v of a float64: shortest digits, exponent form from 1e+06 on and below 1e-04. */
function goFloat(n: number): string {
  if (!Number.isFinite(n)) return n > 0 ? '+Inf' : n < 0 ? '-Inf' : 'NaN';
  const e = n.toExponential();
  const exp = Number(e.slice(e.indexOf('e') + 1));
  return exp < -4 || exp >= 6 ? e.replace(/e([+-])(\d)$/, 'e$10$2') : String(n);
}

/** Sprig's strval: what toString, quote and printf %v produce. */
function str(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return goFloat(v);
  if (typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  if (v === null || v === undefined) return '<nil>';
  throw new TemplateError(`cannot turn a ${kind(v)} into a string (use toYaml)`);
}

function toInt(v: unknown): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') return BigInt(Math.trunc(v));
  if (typeof v === 'boolean') return v ? 1n : 0n;
  if (v === null || v === undefined) return 0n;
  if (typeof v === 'string' && /^\s*-?\d+\s*$/.test(v)) return BigInt(v.trim());
  throw new TemplateError(`cannot turn ${JSON.stringify(v)} into an integer`);
}

function compare(a: unknown, b: unknown, op: string): number {
  const ka = kind(a);
  const kb = kind(b);
  if (ka !== kb) {
    if (op === 'eq' && (ka === 'nil' || kb === 'nil')) return 1;
    throw new TemplateError(`${op}: incompatible types for comparison (${ka} and ${kb}); convert with int or toString`);
  }
  if (!['string', 'int', 'float', 'boolean', 'nil'].includes(ka)) throw new TemplateError(`${op}: cannot compare ${ka} values`);
  if (ka === 'nil') return 0;
  return a === b ? 0 : (a as number) < (b as number) ? -1 : 1;
}

function plain(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v);
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

function printf(format: string, args: unknown[]): string {
  let n = 0;
  return format.replace(/%[-+# 0-9.]*([a-z%])/gi, (spec, verb: string) => {
    if (verb === '%') return '%';
    if (n >= args.length) throw new TemplateError(`printf "${format}": missing argument for ${spec}`);
    const a = args[n++];
    if (verb === 'd' && kind(a) !== 'int') throw new TemplateError(`printf %d given a ${kind(a)}; use int`);
    if (verb === 's' && typeof a !== 'string') throw new TemplateError(`printf %s given a ${kind(a)}; use toString or %v`);
    if (verb === 'q') return JSON.stringify(str(a));
    if (verb === 's' || verb === 'v' || verb === 'd') return str(a);
    throw new TemplateError(`printf verb ${spec} is not in the subset`);
  });
}

function indent(n: unknown, s: unknown): string {
  const pad = ' '.repeat(Number(toInt(n)));
  return pad + str(s).replaceAll('\n', '\n' + pad);
}

const arity = (name: string, args: unknown[], n: number) => {
  if (args.length !== n) throw new TemplateError(`${name} takes ${n} arguments, got ${args.length}`);
};
const int64 =
  (name: string, op: (a: bigint, b: bigint) => bigint): Fn =>
  (args) => {
    if (args.length < 2) throw new TemplateError(`${name} takes at least 2 arguments`);
    return args.map(toInt).reduce(op);
  };

/** The functions the chart may use; anything else is a parse error. */
const FUNCS: Record<string, Fn> = {
  default: (a) => (a.length === 1 || !truth(a[1]) ? a[0] : a[1]),
  required: (a) => {
    arity('required', a, 2);
    if (a[1] === null || a[1] === undefined || a[1] === MISSING || a[1] === '') throw new TemplateError(str(a[0]));
    return a[1];
  },
  fail: (a) => {
    throw new TemplateError(str(a[0]));
  },
  quote: (a) =>
    a
      .filter((x) => x !== null && x !== undefined)
      .map((x) => JSON.stringify(str(x)))
      .join(' '),
  toString: (a: unknown[]) => (arity('toString', a, 1), str(a[0])),
  toYaml: (a) => YAML.stringify(plain(a[0] ?? null), { sortMapEntries: true, lineWidth: 0 }).replace(/\n$/, ''),
  indent: (a) => (arity('indent', a, 2), indent(a[0], a[1])),
  nindent: (a) => (arity('nindent', a, 2), '\n' + indent(a[0], a[1])),
  printf: (a) => printf(str(a[0]), a.slice(1)),
  int: (a) => (arity('int', a, 1), toInt(a[0])),
  add: int64('add', (x, y) => x + y),
  mul: int64('mul', (x, y) => x * y),
  div: int64('div', (x, y) => {
    if (y === 0n) throw new TemplateError('div: division by zero');
    return x / y;
  }),
  sha256sum: (a) => createHash('sha256').update(str(a[0])).digest('hex'),
  b64enc: (a) => Buffer.from(str(a[0])).toString('base64'),
  lower: (a) => str(a[0]).toLowerCase(),
  trunc: (a) => {
    const n = Number(toInt(a[0]));
    const s = str(a[1]);
    return n >= 0 ? s.slice(0, n) : s.slice(s.length + n);
  },
  contains: (a) => (arity('contains', a, 2), str(a[1]).includes(str(a[0]))),
  trimSuffix: (a) => (str(a[1]).endsWith(str(a[0])) ? str(a[1]).slice(0, str(a[1]).length - str(a[0]).length) : str(a[1])),
  eq: (a) => a.slice(1).some((b) => compare(a[0], b, 'eq') === 0),
  ne: (a) => (arity('ne', a, 2), compare(a[0], a[1], 'ne') !== 0),
  lt: (a) => (arity('lt', a, 2), compare(a[0], a[1], 'lt') < 0),
  le: (a) => (arity('le', a, 2), compare(a[0], a[1], 'le') <= 0),
  gt: (a) => (arity('gt', a, 2), compare(a[0], a[1], 'gt') > 0),
  ge: (a) => (arity('ge', a, 2), compare(a[0], a[1], 'ge') >= 0),
  and: (a) => a.find((x) => !truth(x)) ?? a[a.length - 1],
  or: (a) => a.find((x) => truth(x)) ?? a[a.length - 1],
  not: (a) => (arity('not', a, 1), !truth(a[0])),
  include: (a, env) => {
    arity('include', a, 2);
    return execNamed(str(a[0]), a[1], env);
  },
};

/** Functions whose arguments may name keys that are not in the values. */
const LENIENT = new Set(['default', 'required']);

function walk(v: unknown, path: string[], lenient: boolean, what: string): unknown {
  for (const key of path) {
    if (v === MISSING) return MISSING;
    if (v === null || v === undefined) {
      if (lenient) return MISSING;
      throw new TemplateError(`nil pointer evaluating ${what}: "${key}" of nil`);
    }
    if (typeof v !== 'object' || Array.isArray(v)) throw new TemplateError(`cannot evaluate field "${key}" of a ${kind(v)} in ${what}`);
    if (!Object.hasOwn(v, key)) {
      if (lenient) return MISSING;
      throw new TemplateError(`missing value ${what} (no key "${key}"; declare it in values.yaml or use default)`);
    }
    v = (v as Record<string, unknown>)[key];
  }
  return v;
}

function evalTerm(t: Term, dot: unknown, scope: Scope, env: Env, lenient: boolean): unknown {
  switch (t.t) {
    case 'lit':
      return t.v;
    case 'dot':
      return dot;
    case 'field':
      return walk(dot, t.path, lenient, '.' + t.path.join('.'));
    case 'var': {
      const frame = [...scope].reverse().find((s) => s.has(t.name));
      if (!frame) throw new TemplateError(`undefined variable ${t.name}`);
      return walk(frame.get(t.name), t.path, lenient, [t.name, ...t.path].join('.'));
    }
    case 'fn':
      return FUNCS[t.name]([], env);
    case 'sub':
      return evalPipe(t.p, dot, scope, env, lenient);
  }
}

function evalPipe(p: Pipe, dot: unknown, scope: Scope, env: Env, lenient = false): unknown {
  let piped: unknown = MISSING;
  p.cmds.forEach((cmd, i) => {
    const next = p.cmds[i + 1]?.[0];
    const soft = lenient || (next?.t === 'fn' && LENIENT.has(next.name));
    const [head, ...rest] = cmd;
    if (head.t === 'fn') {
      const args = rest.map((a) => evalTerm(a, dot, scope, env, soft || LENIENT.has(head.name)));
      if (i > 0) args.push(piped);
      piped = FUNCS[head.name](args, env);
    } else {
      if (rest.length || i > 0) throw new TemplateError(`can't give arguments to a non-function`);
      piped = evalTerm(head, dot, scope, env, soft);
    }
  });
  if (p.decl.length) {
    if (p.assign) {
      const frame = [...scope].reverse().find((s) => s.has(p.decl[0]));
      if (!frame) throw new TemplateError(`assignment to undeclared variable ${p.decl[0]}`);
      frame.set(p.decl[0], piped);
    } else scope[scope.length - 1].set(p.decl[0], piped);
  }
  return piped === MISSING ? undefined : piped;
}

function exec(nodes: Node[], dot: unknown, scope: Scope, env: Env, out: string[]): void {
  try {
    execNodes(nodes, dot, scope, env, out);
  } catch (err) {
    if (err instanceof TemplateError && !err.located) {
      err.message = `${env.where}: ${err.message}`;
      err.located = true;
    }
    throw err;
  }
}

function execNodes(nodes: Node[], dot: unknown, scope: Scope, env: Env, out: string[]): void {
  for (const n of nodes) {
    if (n.t === 'text') out.push(n.s);
    else if (n.t === 'out') {
      const v = evalPipe(n.p, dot, scope, env);
      if (n.p.decl.length) continue;
      if (v === null || v === undefined || typeof v === 'object') {
        throw new TemplateError(`printing a ${kind(v)} (use default, quote or toYaml)`);
      }
      out.push(str(v));
    } else if (n.t === 'template') {
      out.push(execNamed(n.name, n.p ? evalPipe(n.p, dot, scope, env) : null, env));
    } else if (n.t === 'range') {
      const inner: Scope = [...scope, new Map()];
      const v = evalPipe({ ...n.p, decl: [] }, dot, inner, env);
      const entries: [unknown, unknown][] = Array.isArray(v)
        ? v.map((x, k) => [BigInt(k), x])
        : v && typeof v === 'object'
          ? Object.keys(v)
              .sort()
              .map((k) => [k, (v as Record<string, unknown>)[k]])
          : v === null || v === undefined
            ? []
            : (() => {
                throw new TemplateError(`range can't iterate over a ${kind(v)}`);
              })();
      if (!entries.length && n.else) exec(n.else, dot, inner, env, out);
      for (const [k, x] of entries) {
        const vars = new Map<string, unknown>();
        if (n.p.decl.length === 2) vars.set(n.p.decl[0], k).set(n.p.decl[1], x);
        else if (n.p.decl.length === 1) vars.set(n.p.decl[0], x);
        exec(n.body, x, [...scope, vars], env, out);
      }
    } else {
      const inner: Scope = [...scope, new Map()];
      let taken = false;
      for (const b of n.branches) {
        const v = evalPipe(b.p, dot, inner, env);
        if (!truth(v)) continue;
        exec(b.body, n.t === 'with' ? v : dot, inner, env, out);
        taken = true;
        break;
      }
      if (!taken && n.else) exec(n.else, dot, inner, env, out);
    }
  }
}

function execNamed(name: string, data: unknown, env: Env): string {
  const body = env.templates.get(name);
  if (!body) throw new TemplateError(`no template named "${name}"`);
  const out: string[] = [];
  exec(body, data, [new Map([['$', data]])], { ...env, where: `${env.where} → ${name}` }, out);
  return out.join('');
}

/** Deep merge as `helm -f` does: maps merge, everything else replaces, null deletes the key. */
export function mergeValues(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over ?? {})) {
    if (v === null) delete out[k];
    else if (v && typeof v === 'object' && !Array.isArray(v) && out[k] && typeof out[k] === 'object' && !Array.isArray(out[k])) {
      out[k] = mergeValues(out[k] as Record<string, unknown>, v as Record<string, unknown>);
    } else out[k] = v;
  }
  return out;
}

/** Renders template source against `data` (the root object); `defines` are extra template files. */
export function renderString(src: string, data: unknown, defines: Record<string, string> = {}): string {
  const templates = new Map<string, Node[]>();
  for (const [name, s] of Object.entries(defines)) parse(s, name, templates);
  const nodes = parse(src, 'inline', templates);
  const out: string[] = [];
  exec(nodes, data, [new Map([['$', data]])], { templates, where: 'inline' }, out);
  return out.join('');
}

export interface RenderOptions {
  /** Values files merged over the chart's values.yaml, in order (like `helm -f a -f b`). */
  valuesFiles?: string[];
  /** Values merged last (like `--set`). */
  set?: Record<string, unknown>;
  releaseName?: string;
  namespace?: string;
}

export interface Manifest {
  /** Template file the document came from, e.g. `templates/deployment.yaml`. */
  source: string;
  doc: any;
}

/**
 * `helm template` for the chart in `chartDir`: every file in templates/ is parsed (so `define`s in
 * `_helpers.tpl` are shared), files not starting with `_` are rendered, and the output is split into
 * YAML documents and parsed; empty documents are dropped and NOTES.txt is rendered but not parsed.
 */
export function renderChart(chartDir: string, opts: RenderOptions = {}): Manifest[] {
  const chart = YAML.parse(readFileSync(join(chartDir, 'Chart.yaml'), 'utf8')) as Record<string, unknown>;
  let values = YAML.parse(readFileSync(join(chartDir, 'values.yaml'), 'utf8')) as Record<string, unknown>;
  for (const f of opts.valuesFiles ?? []) values = mergeValues(values, YAML.parse(readFileSync(f, 'utf8')) ?? {});
  if (opts.set) values = mergeValues(values, opts.set);
  const root = {
    Values: values,
    Release: { Name: opts.releaseName ?? 'hearth', Namespace: opts.namespace ?? 'default', Service: 'Helm', IsInstall: true, IsUpgrade: false, Revision: 1n },
    Chart: Object.fromEntries(Object.entries(chart).map(([k, v]) => [k[0].toUpperCase() + k.slice(1), v])),
  };
  const templates = new Map<string, Node[]>();
  const dir = join(chartDir, 'templates');
  const files = readdirSync(dir).sort();
  const parsed = files.map((f) => ({ f, nodes: parse(readFileSync(join(dir, f), 'utf8'), `templates/${f}`, templates) }));
  const manifests: Manifest[] = [];
  for (const { f, nodes } of parsed) {
    if (f.startsWith('_')) continue;
    const out: string[] = [];
    exec(nodes, root, [new Map([['$', root]])], { templates, where: `templates/${f}` }, out);
    if (f === 'NOTES.txt') continue;
    for (const part of out.join('').split(/^---\s*$/m)) {
      if (!part.trim()) continue;
      const doc = YAML.parse(part);
      if (doc !== null) manifests.push({ source: `templates/${f}`, doc });
    }
  }
  return manifests;
}
