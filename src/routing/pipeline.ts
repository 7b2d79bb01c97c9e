import { percentSpot } from '../core/hash.ts';
import type { UplinkMessage } from '../core/bus/subjects.ts';
import type { CompiledModel } from '../products/thing-model.ts';
import type { Delivery, Envelope, RouteSpec, Source, Target } from './envelope.ts';
import { defaultGatewayConfig, type GatewayConfig, type Lane } from './config-schema.ts';
import { FilterChain, type FilterObserver, type FilterStep } from './filters.ts';
import { Router, type RouterObserver } from './router.ts';

/** What the gateway counts (the metrics module implements it). */
export interface PipelineObserver extends FilterObserver, RouterObserver {}

/** What the pipeline decided for one message. */
export interface PipelineResult {
  /** drop: refused (the sender hears `code` and `reason`; no code: dropped silently, e.g. a duplicate); delay: hand it in again after `delayMs`. */
  action: 'pass' | 'drop' | 'delay';
  code?: string;
  reason?: string;
  delayMs?: number;
  envelope: Envelope;
  /** Jobs for the external targets it reached; enqueue them before acknowledging the message. */
  deliveries: Delivery[];
  /** Whether a route sent it to the device core (the ingest's own handling). */
  builtin: boolean;
}

/** A dry run: what the pipeline would do with a message. */
export interface DryRunResult {
  filters: FilterStep[];
  action: 'pass' | 'drop' | 'delay';
  code?: string;
  reason?: string;
  delayMs?: number;
  tags: Record<string, string>;
  lane: string | null;
  routes: Array<{ id: string; name: string; targets: Array<{ index: number; target: Target; body?: unknown }> }>;
}

/** FNV-1a and MurmurHash3's finaliser, salted so that lanes do not follow device shards: a stable spot in [0, 100) per device. */
function laneSpot(deviceId: string): number {
  return percentSpot(deviceId, 0x9e3779b9);
}

/**
 * Which lane a message belongs to: an explicit `lane` tag (the API's `x-hearth-lane` header, or
 * a classification rule) that names a defined lane wins; else the first lane listing the device,
 * the user or the product, or whose percentage covers the device. A lane tag naming no defined
 * lane is removed, so a stale header cannot send traffic nowhere.
 */
export class Lanes {
  private readonly lanes: Array<{ name: string; percent: number; devices?: Set<string>; users?: Set<string>; products?: Set<string> }>;
  private readonly names: Set<string>;
  private readonly anyPercent: boolean;

  constructor(lanes: readonly Lane[]) {
    const set = (v?: string[]) => (v?.length ? new Set(v) : undefined);
    this.lanes = lanes.map((l) => ({ name: l.name, percent: l.percent ?? 0, devices: set(l.devices), users: set(l.users), products: set(l.products) }));
    this.names = new Set(lanes.map((l) => l.name));
    this.anyPercent = this.lanes.some((l) => l.percent > 0);
  }

  /** Sets (or clears) `env.tags.lane`; returns the lane. */
  assign(env: Envelope): string | undefined {
    const explicit = env.tags.lane;
    if (explicit !== undefined && this.names.has(explicit)) return explicit;
    if (this.lanes.length !== 0) {
      const spot = this.anyPercent ? laneSpot(env.deviceId) : 100;
      for (const l of this.lanes) {
        if (
          l.devices?.has(env.deviceId) ||
          (env.userId !== undefined && l.users?.has(env.userId)) ||
          (env.product !== undefined && l.products?.has(env.product)) ||
          spot < l.percent
        ) {
          env.tags.lane = l.name;
          return l.name;
        }
      }
    }
    if (explicit !== undefined) delete env.tags.lane;
    return undefined;
  }
}

interface Compiled {
  version: number;
  config: GatewayConfig;
  chain: FilterChain;
  lanes: Lanes;
  router: Router;
  routes: RouteSpec[];
}

const NO_DELIVERIES: Delivery[] = Object.freeze([]) as unknown as Delivery[];

/** The envelope of an uplink message; `product` is the device's. */
export function toEnvelope(msg: UplinkMessage, product: string | undefined): Envelope {
  return {
    id: msg.id,
    source: (msg.source ?? 'mqtt') as Source,
    deviceId: msg.deviceId,
    product,
    kind: msg.kind,
    topic: msg.topic,
    payload: msg.payload,
    receivedAt: msg.receivedAt,
    sourceId: msg.sourceId,
    // A copy: the stored message hands out the same object again on a redelivery.
    tags: msg.tags !== undefined ? { ...msg.tags } : {},
    via: msg.via,
    userId: msg.userId,
    trace: msg.trace,
  };
}

/**
 * The message gateway in one call per message, run by the worker that owns the device's shard:
 * the envelope, the filter chain (the controller), the lane, the router, and the delivery jobs of
 * the external targets, each body rendered (and serialised) once. The configuration it runs is
 * swapped whole by `configure` (RoutingConfigService does, on every node, for every version).
 */
export class RoutingPipeline {
  private current: Compiled;

  constructor(private readonly deps: { observer?: PipelineObserver; now?: () => number } = {}) {
    this.current = this.compile(defaultGatewayConfig(), 0);
  }

  /** Switches to a validated configuration; filters that did not change keep their state (rate-limit buckets, seen ids). */
  configure(config: GatewayConfig, version: number): void {
    this.current = this.compile(config, version);
  }

  get version(): number {
    return this.current.version;
  }

  get config(): GatewayConfig {
    return this.current.config;
  }

  /**
   * Whether any enabled route could take API commands to an external target: the command path
   * skips the pipeline (a stored message and a worker's handling per command) when none does.
   */
  get routesCommands(): boolean {
    return this.current.config.routes.some(
      (r) =>
        r.enabled !== false &&
        (r.match.kind === undefined || (Array.isArray(r.match.kind) ? r.match.kind.includes('command') : r.match.kind === 'command')) &&
        r.targets.some((t) => t.type !== 'builtin'),
    );
  }

  /** The enabled routes, as the delivery side needs them. */
  get routes(): RouteSpec[] {
    return this.current.routes;
  }

  process(msg: UplinkMessage, device: { productKey: string }, model: CompiledModel | undefined): PipelineResult {
    const c = this.current;
    const env = toEnvelope(msg, device.productKey);
    const v = c.chain.run(env, model);
    if (v.effect === 'drop') return { action: 'drop', code: v.code, reason: v.reason, envelope: env, deliveries: NO_DELIVERIES, builtin: false };
    if (v.effect === 'delay') return { action: 'delay', delayMs: v.delayMs, reason: v.reason, envelope: env, deliveries: NO_DELIVERIES, builtin: false };
    const lane = c.lanes.assign(env);
    const hits = c.router.match(env);
    let builtin = false;
    let deliveries = NO_DELIVERIES;
    let json: string | undefined;
    for (let i = 0; i < hits.length; i++) {
      const { route, targets } = hits[i];
      route.routed.inc();
      for (let j = 0; j < targets.length; j++) {
        const { index, target, template } = targets[j];
        if (target.type === 'builtin') {
          builtin = true;
          continue;
        }
        const body = template !== undefined ? JSON.stringify(template(env) ?? null) : (json ??= JSON.stringify(env));
        if (deliveries === NO_DELIVERIES) deliveries = [];
        deliveries.push({ routeId: route.id, routeName: route.name, targetIndex: index, target, envelope: env, body, ...(lane !== undefined ? { lane } : {}) });
      }
    }
    return { action: 'pass', envelope: env, deliveries, builtin };
  }

  /** What `process` would do with `msg`, step by step, without remembering or counting anything. */
  dryRun(msg: UplinkMessage, product: string | undefined, model: CompiledModel | undefined): DryRunResult {
    const c = this.current;
    const env = toEnvelope(msg, product);
    const steps: FilterStep[] = [];
    const v = c.chain.run(env, model, steps);
    const out: DryRunResult = { filters: steps, action: 'pass', tags: env.tags, lane: null, routes: [] };
    if (v.effect === 'drop' || v.effect === 'delay') {
      return {
        ...out,
        action: v.effect,
        ...(v.code !== undefined ? { code: v.code } : {}),
        ...(v.reason !== undefined ? { reason: v.reason } : {}),
        ...(v.delayMs !== undefined ? { delayMs: v.delayMs } : {}),
      };
    }
    out.lane = c.lanes.assign(env) ?? null;
    for (const { route, targets } of c.router.match(env)) {
      out.routes.push({
        id: route.id,
        name: route.name,
        targets: targets.map(({ index, target, template }) => ({
          index,
          target,
          ...(target.type === 'builtin' ? {} : { body: template !== undefined ? (template(env) ?? null) : JSON.parse(JSON.stringify(env)) }),
        })),
      });
    }
    return out;
  }

  private compile(config: GatewayConfig, version: number): Compiled {
    const router = new Router(config.routes, this.deps.observer);
    return {
      version,
      config,
      router,
      chain: new FilterChain(config.filters, { observer: this.deps.observer, now: this.deps.now, previous: this.current?.chain }),
      lanes: new Lanes(config.lanes),
      routes: router.routes.map((r) => ({ id: r.id, name: r.name, targets: r.spec.targets as Target[] })),
    };
  }
}
