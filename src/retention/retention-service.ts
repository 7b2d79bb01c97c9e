import type { Db } from '../core/store/db.ts';
import { fromJson, toJson } from '../core/store/db.ts';
import type { Logger } from '../core/logger.ts';
import { HearthError } from '../core/errors.ts';
import type { ProductService } from '../products/product-service.ts';
import type { DeviceService } from '../devices/device-service.ts';
import type { HistoryService } from '../history/history-service.ts';
import type { CommandService } from '../commands/command-service.ts';
import type { AuditService } from '../audit/audit-service.ts';
import { customKeys, durationMs, effectivePolicy, type RetentionDefaults, type RetentionInput, type RetentionPolicy } from './retention-policy.ts';

/** What one pruning pass deleted, by kind. */
export interface PruneReport {
  points: number;
  /** Day partitions of raw history dropped whole (PostgreSQL), and their rows as PostgreSQL estimated them. */
  partitions: number;
  partitionRows: number;
  rollups: number;
  events: number;
  /** Recorded presence changes (kept as long as the product's device events). */
  presence: number;
  commands: number;
  audit: number;
  startedAt: number;
  durationMs: number;
}

export interface RetentionServiceDeps {
  db: Db;
  log: Logger;
  products: ProductService;
  devices: DeviceService;
  history: HistoryService;
  commands: CommandService;
  audit: AuditService;
  /** The record of presence changes, pruned with the device events. */
  presence?: { prune(deviceIds: readonly string[], before: number, batch: number): Promise<number> };
  defaults: RetentionDefaults;
  /** Between two pruning passes (HEARTH_RETENTION_INTERVAL_MS). */
  intervalMs: number;
  /** Rows per DELETE statement (HEARTH_RETENTION_BATCH). */
  batch: number;
  /**
   * Whether this node prunes now: exactly one node of a cluster does, the holder of shard 0's
   * lease (every node in embedded mode).
   */
  isPruner: () => boolean;
  /** Devices per pruning statement. */
  devicesPerStep?: number;
  now?: () => number;
}

/**
 * Retention: products' policies (raw points, per property, device events, rollup tiers) over the
 * configured defaults, and the background pass that deletes what is older, in small batches
 * through the owning services (history, commands, audit), on one node of the cluster.
 */
export class RetentionService {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<PruneReport | undefined> | undefined;
  private stopped = false;
  /** The last completed pass (for logs and the operator). */
  last: PruneReport | undefined;

  constructor(private readonly deps: RetentionServiceDeps) {}

  start(): void {
    this.stopped = false;
    this.timer = setInterval(() => void this.tick(), this.deps.intervalMs);
    this.timer.unref();
  }

  /** Stops scheduling and waits for a pass under way (it stops between two batches). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }

  /** The product's effective policy, in the shape PUT takes, with the keys it sets itself. */
  async get(product: string): Promise<RetentionPolicy & { product: string; custom: string[] }> {
    await this.deps.products.require(product);
    const own = await this.own(product);
    return { product, ...effectivePolicy(own, this.deps.defaults), custom: customKeys(own) };
  }

  /** Replaces the product's own policy (keys left out follow the defaults again). Unknown properties are refused. */
  async put(product: string, input: RetentionInput): Promise<RetentionPolicy & { product: string; custom: string[] }> {
    await this.deps.products.require(product);
    const model = await this.deps.products.model(product);
    const unknown = Object.keys(input.properties ?? {}).filter((p) => !model?.properties.has(p));
    if (unknown.length) {
      throw new HearthError('E_VALIDATION', `product "${product}" has no property ${unknown.map((u) => `"${u}"`).join(', ')}`, {
        field: `body.properties.${unknown[0]}`,
      });
    }
    const now = Date.now();
    await this.deps.db
      .insertInto('retention_policies')
      .values({ product_key: product, policy: toJson(input), updated_at: now })
      .onConflict((oc) => oc.column('product_key').doUpdateSet({ policy: toJson(input), updated_at: now }))
      .execute();
    return this.get(product);
  }

  private async own(product: string): Promise<RetentionInput> {
    const row = await this.deps.db.selectFrom('retention_policies').select('policy').where('product_key', '=', product).executeTakeFirst();
    return row ? fromJson<RetentionInput>(row.policy) : {};
  }

  private tick(): void {
    if (this.stopped || this.running || !this.deps.isPruner()) return;
    void this.prune().catch((err: unknown) => this.deps.log.error({ err }, 'retention pass failed; the next one tries again'));
  }

  /**
   * One pass over every product and the global logs. Deletes run in batches of `batch` rows with
   * a turn of the event loop between them. A pass already under way is joined, not repeated.
   */
  prune(): Promise<PruneReport | undefined> {
    this.running ??= this.pass().finally(() => (this.running = undefined));
    return this.running;
  }

  private async pass(): Promise<PruneReport | undefined> {
    const { history, devices, products, defaults, batch } = this.deps;
    const now = (this.deps.now ?? Date.now)();
    const r: PruneReport = {
      points: 0,
      partitions: 0,
      partitionRows: 0,
      rollups: 0,
      events: 0,
      presence: 0,
      commands: 0,
      audit: 0,
      startedAt: now,
      durationMs: 0,
    };
    const step = this.deps.devicesPerStep ?? 200;
    const policies = new Map<string, RetentionPolicy>();
    for (const product of await products.list()) policies.set(product.key, effectivePolicy(await this.own(product.key), defaults));
    // PostgreSQL: partitions for the days ahead, and the day partitions older than every raw
    // retention dropped whole; the shorter retentions are deleted row by row below.
    // A failure here (a lock not had in time) leaves it to the next pass; the deletes go on.
    try {
      await history.preparePartitions(now);
      const longest = longestRaw([...policies.values()], defaults);
      if (longest !== null) {
        const dropped = await history.dropPartitionsBefore(now - longest);
        r.partitions = dropped.length;
        r.partitionRows = dropped.reduce((n, p) => n + Math.max(0, p.rows), 0);
        if (dropped.length)
          this.deps.log.info({ partitions: dropped.map((p) => p.name), rows: r.partitionRows }, 'retention dropped expired history partitions whole');
      }
    } catch (err) {
      this.deps.log.warn({ err }, 'history partitions not made or dropped this pass; the next one tries again');
    }
    for (const [key, policy] of policies) {
      const raw = durationMs(policy.raw);
      const events = durationMs(policy.events);
      const overridden = Object.keys(policy.properties);
      for (let after = ''; ; ) {
        if (this.stopped) return undefined;
        const ids = await devices.idsOfProduct(key, after, step);
        if (ids.length === 0) break;
        after = ids[ids.length - 1];
        if (raw !== null) r.points += await history.prunePoints(ids, now - raw, { except: overridden }, batch);
        for (const [property, p] of Object.entries(policy.properties)) {
          const ms = durationMs(p.raw);
          if (ms !== null) r.points += await history.prunePoints(ids, now - ms, { only: [property] }, batch);
        }
        if (events !== null) r.events += await history.pruneEvents(ids, now - events, batch);
        if (events !== null && this.deps.presence) r.presence += await this.deps.presence.prune(ids, now - events, batch);
      }
      for (const [tier, d] of Object.entries(policy.rollups)) {
        const ms = durationMs(d);
        if (ms !== null) r.rollups += await history.pruneRollups(key, tier, now - ms, batch);
      }
    }
    const commands = durationMs(defaults.commands);
    if (commands !== null) r.commands = await this.deps.commands.pruneBefore(now - commands, batch);
    const audit = durationMs(defaults.audit);
    if (audit !== null) r.audit = await this.deps.audit.pruneBefore(now - audit, batch);
    r.durationMs = (this.deps.now ?? Date.now)() - now;
    this.last = r;
    if (r.points + r.partitions + r.rollups + r.events + r.presence + r.commands + r.audit > 0)
      this.deps.log.info({ pruned: r }, 'retention pass deleted expired data');
    return r;
  }
}

/**
 * The longest raw retention that applies to any point: every product's `raw` and its properties'
 * (the configured default when there is no product yet); null when one keeps points forever.
 */
export function longestRaw(policies: readonly RetentionPolicy[], defaults: RetentionDefaults): number | null {
  const all = policies.length
    ? policies.flatMap((p) => [p.raw, ...Object.values(p.properties).map((q) => q.raw)])
    : [defaults.raw === 'forever' ? null : defaults.raw];
  let longest = 0;
  for (const d of all) {
    const ms = durationMs(d);
    if (ms === null) return null;
    longest = Math.max(longest, ms);
  }
  return longest;
}
