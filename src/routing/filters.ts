import type { CompiledModel } from '../products/thing-model.ts';
import type { Envelope } from './envelope.ts';
import type { Filter } from './config-schema.ts';
import { compileTopic, type TopicMatcher } from './router.ts';
import { ExpiringKeys } from '../core/expiring-keys.ts';

/** What one filter did to a message: let it through, refuse it, put it off, or let it through with tags set. */
export type FilterEffect = 'pass' | 'drop' | 'delay' | 'tagged';

/**
 * A filter's verdict. A `drop` with a `code` is a rejection the sender hears about (the device on
 * its error topic); one without (a duplicate) is dropped silently. A `delay` asks for the message
 * again after `delayMs`.
 */
export interface FilterVerdict {
  readonly effect: FilterEffect;
  readonly code?: string;
  readonly reason?: string;
  readonly delayMs?: number;
  /** For the dry run: what the filter looked at or set. */
  readonly detail?: string;
}

/** One stage of a dry run. */
export interface FilterStep {
  filter: string;
  effect: FilterEffect;
  detail?: string;
}

/** What the chain counts (the metrics implement it). */
export interface FilterObserver {
  /** The counter of a filter's effect; kept by the chain, so counting is a field increment. */
  filterCounter(filter: string, effect: FilterEffect): { inc(): void };
}

interface CompiledFilter {
  readonly name: string;
  /** `dry`: decide without remembering anything (no tokens taken, no ids recorded). */
  run(env: Envelope, model: CompiledModel | undefined, dry: boolean): FilterVerdict;
}

const PASS: FilterVerdict = Object.freeze({ effect: 'pass' });
const TAGGED: FilterVerdict = Object.freeze({ effect: 'tagged' });
/** The last millisecond a Date can hold. */
const MAX_EPOCH_MS = 8.64e15;
/** Most keys a filter remembers (buckets, message ids); beyond it the oldest go. */
const MAX_KEYS = 100_000;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const drop = (code: string | undefined, reason: string): FilterVerdict => ({ effect: 'drop', code, reason });
const setOf = (v: string | string[] | undefined) => (v === undefined ? undefined : new Set(typeof v === 'string' ? [v] : v));

/** `mqtt`, `partner:*`: exact names, or prefixes ending in `*`. */
function sourceMatcher(patterns: string[] | undefined): ((s: string) => boolean) | undefined {
  if (patterns === undefined) return undefined;
  const exact = new Set(patterns.filter((p) => !p.endsWith('*')));
  const prefixes = patterns.filter((p) => p.endsWith('*')).map((p) => p.slice(0, -1));
  return (s) => exact.has(s) || prefixes.some((p) => s.startsWith(p));
}

function sourceFilter(name: string, f: Extract<Filter, { type: 'source' }>): CompiledFilter {
  const allow = sourceMatcher(f.allow);
  const deny = sourceMatcher(f.deny);
  return {
    name,
    run(env) {
      if (deny?.(env.source) || (allow !== undefined && !allow(env.source))) return drop('E_FILTERED', `messages from source "${env.source}" are not accepted`);
      return PASS;
    },
  };
}

/** The thing-model check of the device core, done before routing so that no target gets a message that breaks the model. */
function validateFilter(name: string): CompiledFilter {
  return {
    name,
    run(env, model) {
      const p = env.payload;
      if (model === undefined) return PASS;
      if (env.kind === 'properties') {
        if (!isObject(p)) return drop('E_BAD_MESSAGE', 'a property report must be a JSON object');
        let values = p;
        if ('ts' in p) {
          const { ts, ...rest } = p;
          if (ts !== undefined && (typeof ts !== 'number' || !(ts > 0 && ts <= MAX_EPOCH_MS)))
            return drop('E_BAD_MESSAGE', '"ts" must be a positive epoch time in milliseconds');
          values = rest;
        }
        const check = model.checkReport(values);
        return check.ok ? PASS : drop('E_MODEL_MISMATCH', check.problems.join('; '));
      }
      if (env.kind === 'events') {
        if (!isObject(p) || typeof p.event !== 'string') return drop('E_BAD_MESSAGE', 'an event is {"event": "<id>", "params": {...}}');
        const params = p.params ?? {};
        if (!isObject(params)) return drop('E_BAD_MESSAGE', '"params" must be an object');
        const check = model.checkEvent(p.event, params);
        return check.ok ? PASS : drop('E_MODEL_MISMATCH', check.problems.join('; '));
      }
      return PASS;
    },
  };
}

/** Drops a message whose sender id the same device used within the window; a redelivery of the same message is not a duplicate. */
function dedupeFilter(name: string, f: Extract<Filter, { type: 'dedupe' }>, now: () => number): CompiledFilter {
  /** Keyed by device id and sender id: the id of the message that used it first. */
  const seen = new ExpiringKeys<string>(f.windowMs, MAX_KEYS);
  return {
    name,
    run(env, _model, dry) {
      if (env.sourceId === undefined) return PASS;
      const t = now();
      const key = `${env.deviceId}\u0000${env.sourceId}`;
      const prev = seen.get(key, t);
      if (prev !== undefined && prev !== env.id)
        return {
          effect: 'drop',
          reason: `duplicate: message ${prev} had the sender id "${env.sourceId}" within ${f.windowMs} ms`,
          detail: `duplicate of ${prev}`,
        };
      if (!dry && prev === undefined) seen.set(key, env.id, t);
      return PASS;
    },
  };
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * Token buckets by key. Unlike the HTTP limiter (core/rate-limiter.ts) a bucket can go into
 * debt: a delayed message reserves its token, and the debt says when it may come back. Memory
 * stays bounded: past MAX_KEYS buckets, the full ones (no different from a new bucket) are
 * dropped in one pass, and if that is not enough the longest-held ones not in debt, then (only if
 * still needed) those in debt, which forgets their debt; buckets are never
 * re-inserted per message (deleting from a Map leaves entries V8 walks over later).
 */
class Buckets {
  private readonly map = new Map<string, Bucket>();
  private readonly perMs: number;

  constructor(
    perSecond: number,
    private readonly burst: number,
    private readonly now: () => number,
  ) {
    this.perMs = perSecond / 1000;
  }

  /** Ms until `key` has a token (0: it has one now); `take`: take it, `debt`: take it even if it is not there yet. */
  take(key: string, mode: 'peek' | 'take' | 'debt'): number {
    const t = this.now();
    let b = this.map.get(key);
    const known = b !== undefined;
    if (b !== undefined) {
      b.tokens = Math.min(this.burst, b.tokens + (t - b.at) * this.perMs);
      b.at = t;
    } else {
      b = { tokens: this.burst, at: t };
    }
    const wait = b.tokens >= 1 ? 0 : Math.ceil((1 - b.tokens) / this.perMs);
    if (mode === 'debt' || (mode === 'take' && wait === 0)) b.tokens -= 1;
    if (mode !== 'peek' && !known) {
      if (this.map.size >= MAX_KEYS) this.shrink(t);
      this.map.set(key, b);
    }
    return wait;
  }

  private shrink(t: number): void {
    for (const [k, b] of this.map) if (b.tokens + (t - b.at) * this.perMs >= this.burst) this.map.delete(k);
    let excess = this.map.size - Math.floor(MAX_KEYS * 0.9);
    if (excess <= 0) return;
    // Then the longest-held buckets not in debt (forgetting one lets its key burst again), and only
    // if that is still not enough, buckets in debt too (their delayed messages still pass when they return).
    for (const [k, b] of this.map) {
      if (excess <= 0) return;
      if (b.tokens + (t - b.at) * this.perMs >= 0) {
        this.map.delete(k);
        excess--;
      }
    }
    for (const k of this.map.keys()) {
      if (excess-- <= 0) return;
      this.map.delete(k);
    }
  }
}

function rateLimitFilter(name: string, f: Extract<Filter, { type: 'rateLimit' }>, now: () => number): CompiledFilter {
  const buckets = new Buckets(f.perSecond, f.burst, now);
  const [tagKey, tagValue] = f.action === 'tag' ? splitTag(f.tag ?? 'rate=exceeded') : ['', ''];
  const keyOf = f.scope === 'device' ? (e: Envelope) => e.deviceId : f.scope === 'product' ? (e: Envelope) => e.product ?? '' : (e: Envelope) => e.source;
  /** Messages that reserved a token and were put off: when they come back, they pass. */
  const reserved = new ExpiringKeys(Infinity, MAX_KEYS);
  const over = (key: string) => `over ${f.perSecond}/s (burst ${f.burst}) for ${f.scope} "${key}"`;
  return {
    name,
    run(env, _model, dry) {
      if (reserved.get(env.id, 0)) {
        if (!dry) reserved.delete(env.id);
        return PASS;
      }
      const key = keyOf(env);
      if (f.action === 'delay') {
        const wait = buckets.take(key, dry ? 'peek' : 'debt');
        if (wait === 0) return PASS;
        if (!dry) {
          reserved.set(env.id, true, 0); // no expiry: kept until the message returns, or MAX_KEYS newer push it out
        }
        return { effect: 'delay', delayMs: wait, reason: over(key), detail: `${over(key)}: again in ${wait} ms` };
      }
      if (buckets.take(key, dry ? 'peek' : 'take') === 0) return PASS;
      if (f.action === 'drop') return drop('E_RATE_LIMITED', `too many messages: ${over(key)}`);
      env.tags[tagKey] = tagValue;
      return dry ? { effect: 'tagged', detail: `${tagKey}=${tagValue} (${over(key)})` } : TAGGED;
    },
  };
}

function listFilter(name: string, f: Extract<Filter, { type: 'list' }>): CompiledFilter {
  const products = new Set(f.products ?? []);
  const devices = new Set(f.devices ?? []);
  return {
    name,
    run(env) {
      const listed = devices.has(env.deviceId) || (env.product !== undefined && products.has(env.product));
      if (f.mode === 'allow' && !listed) return drop('E_FILTERED', `device "${env.deviceId}" (product "${env.product}") is not on the allow-list`);
      if (f.mode === 'deny' && listed)
        return drop('E_FILTERED', devices.has(env.deviceId) ? `device "${env.deviceId}" is on the deny-list` : `product "${env.product}" is on the deny-list`);
      return PASS;
    },
  };
}

function splitTag(tag: string): [string, string] {
  const i = tag.indexOf('=');
  return [tag.slice(0, i), tag.slice(i + 1)];
}

function classifyFilter(name: string, f: Extract<Filter, { type: 'classify' }>): CompiledFilter {
  const rules = f.rules.map((r) => ({
    kinds: setOf(r.when.kind),
    products: setOf(r.when.product),
    events: setOf(r.when.event),
    topic: r.when.topic === undefined ? undefined : (compileTopic(r.when.topic) as TopicMatcher),
    set: Object.entries(r.set),
  }));
  return {
    name,
    run(env, _model, dry) {
      let set: string[] | undefined;
      let tagged = false;
      for (const r of rules) {
        if (r.kinds !== undefined && !r.kinds.has(env.kind)) continue;
        if (r.products !== undefined && (env.product === undefined || !r.products.has(env.product))) continue;
        if (r.events !== undefined) {
          const p = env.payload;
          if (env.kind !== 'events' || !isObject(p) || typeof p.event !== 'string' || !r.events.has(p.event)) continue;
        }
        if (r.topic !== undefined && !r.topic(env.topic)) continue;
        for (const [k, v] of r.set) {
          env.tags[k] = v;
          if (dry) (set ??= []).push(`${k}=${v}`);
        }
        tagged = true;
      }
      if (!tagged) return PASS;
      return dry ? { effect: 'tagged', detail: set!.join(', ') } : TAGGED;
    },
  };
}

function compileFilter(name: string, f: Filter, now: () => number): CompiledFilter {
  switch (f.type) {
    case 'source':
      return sourceFilter(name, f);
    case 'validate':
      return validateFilter(name);
    case 'dedupe':
      return dedupeFilter(name, f, now);
    case 'rateLimit':
      return rateLimitFilter(name, f, now);
    case 'list':
      return listFilter(name, f);
    case 'classify':
      return classifyFilter(name, f);
  }
}

const EFFECTS: readonly FilterEffect[] = ['pass', 'drop', 'delay', 'tagged'];

/**
 * The controller's ordered filter chain, built once per configuration version. Each filter
 * passes, tags, drops or delays a message; the first drop or delay ends the chain. The cost per
 * message is the filters' own work: verdicts that pass are shared objects, and each filter's
 * counters are looked up once, here.
 *
 * Filters that remember (dedupe, rate limits) keep their state per node and per configuration
 * version: a device's messages all go to the worker owning its shard, so per-device limits hold.
 */
export class FilterChain {
  private readonly filters: CompiledFilter[];
  /** Each filter's name and spec, so that the next version can keep the ones that did not change. */
  private readonly keys: string[];
  private readonly counters: Array<Record<FilterEffect, { inc(): void }>>;

  /**
   * `previous`: the chain of the configuration version before; its filters that are unchanged
   * (same spec, same name) are kept with their state, so that shifting a lane, say, does not
   * refill every rate-limit bucket.
   */
  constructor(filters: readonly Filter[], opts: { observer?: FilterObserver; now?: () => number; previous?: FilterChain } = {}) {
    const now = opts.now ?? Date.now;
    const seen = new Map<string, number>();
    const kept = new Map<string, CompiledFilter>();
    opts.previous?.keys.forEach((k, i) => kept.set(k, opts.previous!.filters[i]));
    this.keys = [];
    this.filters = filters.map((f) => {
      const n = (seen.get(f.type) ?? 0) + 1;
      seen.set(f.type, n);
      const name = n === 1 ? f.type : `${f.type}-${n}`;
      const key = `${name} ${JSON.stringify(f)}`;
      this.keys.push(key);
      return kept.get(key) ?? compileFilter(name, f, now);
    });
    const none = { inc() {} };
    this.counters = this.filters.map(
      (f) => Object.fromEntries(EFFECTS.map((e) => [e, opts.observer?.filterCounter(f.name, e) ?? none])) as Record<FilterEffect, { inc(): void }>,
    );
  }

  /** The filters' names, in order (the metrics' `filter` label). */
  get names(): string[] {
    return this.filters.map((f) => f.name);
  }

  /**
   * Runs the chain over `env` (tags are set on it): the drop or delay that ended it, else a pass.
   * With `steps`, a dry run: each filter's effect is recorded there, nothing is remembered and
   * nothing counted.
   */
  run(env: Envelope, model: CompiledModel | undefined, steps?: FilterStep[]): FilterVerdict {
    const dry = steps !== undefined;
    for (let i = 0; i < this.filters.length; i++) {
      const f = this.filters[i];
      const v = f.run(env, model, dry);
      if (dry) steps.push({ filter: f.name, effect: v.effect, ...((v.detail ?? v.reason) ? { detail: v.detail ?? v.reason } : {}) });
      else this.counters[i][v.effect].inc();
      if (v.effect === 'drop' || v.effect === 'delay') return v;
    }
    return PASS;
  }
}
