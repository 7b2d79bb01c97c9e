import type { Envelope, Target } from './envelope.ts';
import type { Route } from './config-schema.ts';
import { compileTemplate, type CompiledTemplate } from '../core/template.ts';

/** A compiled topic pattern. */
export type TopicMatcher = (topic: string) => boolean;

/**
 * Compiles a route's topic pattern: an MQTT topic filter (`devices/+/events`, `devices/#`) or a
 * regular expression written between slashes (`/^devices\/d_[a-z0-9]+\/events$/i`). Throws an
 * Error saying what is wrong with a bad one. The common shapes (no wildcard, `a/b/#`) cost one
 * string comparison per message.
 */
export function compileTopic(pattern: string): TopicMatcher {
  const re = /^\/(.+)\/([a-z]*)$/s.exec(pattern);
  if (re) {
    if (/[gy]/.test(re[2])) throw new Error(`the flags "g" and "y" make a pattern stateful; leave them out of ${pattern}`);
    let rx: RegExp;
    try {
      rx = new RegExp(re[1], re[2]);
    } catch (err) {
      throw new Error(`not a valid regular expression: ${(err as Error).message}`);
    }
    return (topic) => rx.test(topic);
  }
  if (pattern.length === 0) throw new Error('an empty topic pattern matches nothing');
  const levels = pattern.split('/');
  levels.forEach((l, i) => {
    if (l.includes('#') && (l !== '#' || i !== levels.length - 1)) throw new Error(`"#" must be a whole level and the last one: ${pattern}`);
    if (l.includes('+') && l !== '+') throw new Error(`"+" must be a whole level: ${pattern}`);
  });
  if (!levels.includes('+') && !levels.includes('#')) return (topic) => topic === pattern;
  if (pattern === '#') return () => true;
  if (!levels.includes('+')) {
    const parent = pattern.slice(0, -2); // `a/b/#` also matches `a/b`
    const prefix = pattern.slice(0, -1);
    return (topic) => topic.startsWith(prefix) || topic === parent;
  }
  // Walks the topic level by level without splitting it; a literal last level is checked first,
  // which settles most topics that do not match (`devices/+/events` against `…/properties`).
  const last = levels[levels.length - 1];
  const tail = last !== '+' && last !== '#' ? `/${last}` : '';
  return (topic) => {
    if (!topic.endsWith(tail)) return false;
    let pos = 0;
    for (let i = 0; i < levels.length; i++) {
      const l = levels[i];
      if (l === '#') return true;
      if (pos > topic.length) return false;
      let end = topic.indexOf('/', pos);
      if (end < 0) end = topic.length;
      if (l !== '+' && (end - pos !== l.length || !topic.startsWith(l, pos))) return false;
      pos = end + 1;
    }
    return pos === topic.length + 1;
  };
}

const EQUALS = 0;
const NOT = 1;
const PRESENT = 2;
type TagTest = [key: string, how: number, value: string];

/** Compiles a tag condition: `value`, `!value` (anything else, or absent), `*` (present). */
export function compileTags(spec: Record<string, string>): (tags: Record<string, string>) => boolean {
  const tests: TagTest[] = Object.entries(spec).map(([k, v]) => (v === '*' ? [k, PRESENT, ''] : v.startsWith('!') ? [k, NOT, v.slice(1)] : [k, EQUALS, v]));
  return (tags) => {
    for (const [key, how, value] of tests) {
      const v = tags[key];
      if (how === EQUALS ? v !== value : how === NOT ? v === value : v === undefined) return false;
    }
    return true;
  };
}

/** A target of a route with its position in the route (deliveries name it) and its template. */
export interface RoutedTarget {
  index: number;
  target: Target;
  template?: CompiledTemplate;
}

/** One route a message matched, with the targets it goes to (chosen by the message's lane). */
export interface RouteHit {
  route: CompiledRoute;
  targets: readonly RoutedTarget[];
}

/** What the router counts (the metrics implement it). */
export interface RouterObserver {
  /** The counter of messages routed by `route`; kept by the route, so counting is a field increment. */
  routedCounter(route: string): { inc(): void };
}

/** A route, compiled once per configuration version. */
export class CompiledRoute {
  readonly id: string;
  readonly name: string;
  readonly kinds: ReadonlySet<string> | undefined;
  readonly products: ReadonlySet<string> | undefined;
  readonly topic: TopicMatcher | undefined;
  readonly tags: ((tags: Record<string, string>) => boolean) | undefined;
  /** The hit for messages without a lane, or with a lane this route has no targets for. */
  readonly base: RouteHit | undefined;
  /** Keyed by lane name. */
  readonly lanes = new Map<string, RouteHit>();
  readonly routed: { inc(): void };

  constructor(
    readonly spec: Route,
    observer?: RouterObserver,
  ) {
    this.id = spec.id;
    this.name = spec.name;
    const { kind, product, topic, tags } = spec.match;
    this.kinds = kind === undefined ? undefined : new Set(typeof kind === 'string' ? [kind] : kind);
    this.products = product === undefined ? undefined : new Set(typeof product === 'string' ? [product] : product);
    this.topic = topic === undefined ? undefined : compileTopic(topic);
    this.tags = tags === undefined || Object.keys(tags).length === 0 ? undefined : compileTags(tags);
    const base: RoutedTarget[] = [];
    const byLane = new Map<string, RoutedTarget[]>();
    spec.targets.forEach((target, index) => {
      const t: RoutedTarget = {
        index,
        target,
        ...(target.type !== 'builtin' && target.template !== undefined ? { template: compileTemplate(target.template) } : {}),
      };
      const lane = target.type === 'builtin' ? undefined : target.lane;
      if (lane === undefined) base.push(t);
      else byLane.set(lane, [...(byLane.get(lane) ?? []), t]);
    });
    this.base = base.length ? { route: this, targets: base } : undefined;
    for (const [lane, targets] of byLane) this.lanes.set(lane, { route: this, targets });
    this.routed = observer?.routedCounter(spec.name) ?? { inc() {} };
  }

  /** The route's hit for this message, or undefined when it does not match. */
  hit(env: Envelope): RouteHit | undefined {
    if (this.topic !== undefined && !this.topic(env.topic)) return undefined;
    if (this.tags !== undefined && !this.tags(env.tags)) return undefined;
    const lane = env.tags.lane;
    return (lane !== undefined ? this.lanes.get(lane) : undefined) ?? this.base;
  }
}

interface ProductIndex {
  byProduct: Map<string, CompiledRoute[]>;
  other: CompiledRoute[];
}

const NO_HITS: readonly RouteHit[] = Object.freeze([]);

/**
 * The router: which routes a message matches, and which of their targets it goes to. Routes are
 * indexed by kind and product (each combination named in any route, plus "any other"), so a
 * message is tested only against the routes that could take it, in configuration order; topic
 * and tag conditions are compiled matchers.
 *
 * Lanes: a message with lane L goes to a route's targets of lane L when the route has any, else
 * to its targets without a lane; a message without a lane never reaches a lane's targets.
 */
export class Router {
  readonly routes: readonly CompiledRoute[];
  private readonly byKind = new Map<string, ProductIndex>();
  private readonly otherKind: ProductIndex;

  constructor(routes: readonly Route[], observer?: RouterObserver) {
    this.routes = routes.filter((r) => r.enabled !== false).map((r) => new CompiledRoute(r, observer));
    const kinds = new Set<string>();
    const products = new Set<string>();
    for (const r of this.routes) {
      r.kinds?.forEach((k) => kinds.add(k));
      r.products?.forEach((p) => products.add(p));
    }
    const index = (kind: string | undefined): ProductIndex => {
      const fits = (p: string | undefined) =>
        this.routes.filter(
          (r) => (r.kinds === undefined || (kind !== undefined && r.kinds.has(kind))) && (r.products === undefined || (p !== undefined && r.products.has(p))),
        );
      return { byProduct: new Map([...products].map((p) => [p, fits(p)])), other: fits(undefined) };
    };
    for (const k of kinds) this.byKind.set(k, index(k));
    this.otherKind = index(undefined);
  }

  /** The routes `env` matches, in configuration order, with the targets it goes to. */
  match(env: Envelope): readonly RouteHit[] {
    const byProduct = this.byKind.get(env.kind) ?? this.otherKind;
    const candidates = (env.product !== undefined ? byProduct.byProduct.get(env.product) : undefined) ?? byProduct.other;
    let hits: RouteHit[] | undefined;
    for (let i = 0; i < candidates.length; i++) {
      const h = candidates[i].hit(env);
      if (h !== undefined) (hits ??= []).push(h);
    }
    return hits ?? NO_HITS;
  }
}
