import { readFileSync } from 'node:fs';
import type { Bus } from '../core/bus/bus.ts';
import { broadcast, type Broadcast } from '../core/cluster/broadcast.ts';
import type { GatewayConfigChanged } from '../core/bus/events.ts';
import type { Db } from '../core/store/db.ts';
import type { Logger } from '../core/logger.ts';
import { HearthError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { DeviceService } from '../devices/device-service.ts';
import type { ProductService } from '../products/product-service.ts';
import { uplinkTopic, type UplinkKind } from '../core/bus/subjects.ts';
import type { DeliveryQueue } from './envelope.ts';
import { defaultGatewayConfig, validateGatewayConfig, validateRouteInput, type Filter, type GatewayConfig, type Lane, type Route } from './config-schema.ts';
import type { DryRunResult, RoutingPipeline } from './pipeline.ts';

/** The live configuration and where it came from. Version 0 is the built-in default (nothing stored yet). */
export interface GatewayConfigVersion {
  version: number;
  config: GatewayConfig;
  createdAt: number;
  createdBy: string;
}

/** A sample message for the dry run. */
export interface DryRunSample {
  deviceId: string;
  kind: UplinkKind;
  payload: unknown;
  source?: string;
  sourceId?: string;
  tags?: Record<string, string>;
  userId?: string;
  /** Needed only when the device does not exist (a message of a device still to come). */
  product?: string;
}

function fromRow(row: { version: number; doc: string; created_at: number; created_by: string }): GatewayConfigVersion {
  return { version: Number(row.version), config: validateGatewayConfig(JSON.parse(row.doc)), createdAt: Number(row.created_at), createdBy: row.created_by };
}

/** A problem the whole-document check found in the route being saved is reported as one in the request body (`routes[3].targets[0].lane` → `body.targets[0].lane`). */
async function asBody<T>(index: () => number, saving: Promise<T>): Promise<T> {
  try {
    return await saving;
  } catch (err) {
    const prefix = `routes[${index()}]`;
    const field = err instanceof HearthError ? (err.extras?.field as string | undefined) : undefined;
    if (err instanceof HearthError && err.code === 'E_VALIDATION' && field?.startsWith(prefix)) {
      const f = `body${field.slice(prefix.length)}`;
      const message = err.message.slice(err.message.indexOf(': ') + 2);
      throw new HearthError('E_VALIDATION', `${f}: ${message}`, { field: f, errors: [{ field: f, message }] });
    }
    throw err;
  }
}

/** Bus subject of the announcement of a new configuration version. */
export const GATEWAY_CONFIG_SUBJECT = 'cluster.gateway.config';

/**
 * The gateway's configuration: routes, filters and lanes as one versioned document. Every change
 * is validated whole and stored as a new version (who, when); the highest version is live. Every
 * node runs this service: a new version is announced on the bus, and each node loads it, rebuilds
 * its pipeline (filter chain, lanes, router) and tells its delivery side which targets exist now.
 */
export class RoutingConfigService {
  private live: GatewayConfigVersion = { version: 0, config: defaultGatewayConfig(), createdAt: 0, createdBy: 'default' };
  private announce: Broadcast<GatewayConfigChanged> | undefined;
  /** Loads and applies run one at a time, so versions are applied in order. */
  private loading: Promise<void> = Promise.resolve();

  constructor(
    private readonly deps: {
      db: Db;
      bus: Bus;
      log: Logger;
      pipeline: RoutingPipeline;
      devices: DeviceService;
      products: ProductService;
      deliveries?: DeliveryQueue;
      /** `config.gatewayConfig`: a JSON file applied at start when it differs from the live document. */
      file?: string;
    },
  ) {}

  /** Loads the live version (and applies the file's), then follows the versions other nodes store. */
  async start(): Promise<void> {
    // Listening first, so that no version stored while this node starts goes unnoticed.
    this.announce = broadcast(this.deps.bus, GATEWAY_CONFIG_SUBJECT, ({ version }) => {
      if (version > this.live.version) void this.reload();
    });
    this.announce.open();
    const row = await this.latest();
    if (row) await this.apply(fromRow(row));
    else await this.apply(this.live);
    if (this.deps.file !== undefined) await this.applyFile(this.deps.file);
  }

  stop(): void {
    this.announce?.close();
    this.announce = undefined;
  }

  /** The live configuration with its version. */
  get current(): GatewayConfigVersion {
    return this.live;
  }

  /** The stored versions, newest first. */
  async versions(limit = 100): Promise<Array<{ version: number; createdAt: number; createdBy: string }>> {
    const rows = await this.deps.db
      .selectFrom('gateway_config')
      .select(['version', 'created_at', 'created_by'])
      .orderBy('version', 'desc')
      .limit(limit)
      .execute();
    return rows.map((r) => ({ version: Number(r.version), createdAt: Number(r.created_at), createdBy: r.created_by }));
  }

  route(id: string): Route {
    const r = this.live.config.routes.find((x) => x.id === id);
    if (!r) throw new HearthError('E_NOT_FOUND', `route "${id}" does not exist`);
    return r;
  }

  async addRoute(input: unknown, by: string): Promise<{ route: Route; version: number }> {
    const route: Route = { id: newId('rt'), ...validateRouteInput(input) };
    let at = -1;
    const v = await asBody(
      () => at,
      this.save(by, (c) => {
        at = c.routes.length;
        return { ...c, routes: [...c.routes, route] };
      }),
    );
    return { route: v.config.routes.find((r) => r.id === route.id)!, version: v.version };
  }

  async updateRoute(id: string, input: unknown, by: string): Promise<{ route: Route; version: number }> {
    const route: Route = { id, ...validateRouteInput(input) };
    let at = -1;
    const v = await asBody(
      () => at,
      this.save(by, (c) => {
        at = c.routes.findIndex((r) => r.id === id);
        if (at < 0) throw new HearthError('E_NOT_FOUND', `route "${id}" does not exist`);
        return { ...c, routes: c.routes.map((r, k) => (k === at ? route : r)) };
      }),
    );
    return { route: v.config.routes.find((r) => r.id === id)!, version: v.version };
  }

  async removeRoute(id: string, by: string): Promise<{ version: number }> {
    const v = await this.save(by, (c) => {
      if (!c.routes.some((r) => r.id === id)) throw new HearthError('E_NOT_FOUND', `route "${id}" does not exist`);
      return { ...c, routes: c.routes.filter((r) => r.id !== id) };
    });
    return { version: v.version };
  }

  async setFilters(filters: Filter[], by: string): Promise<GatewayConfigVersion> {
    return this.save(by, (c) => ({ ...c, filters }));
  }

  async setLanes(lanes: Lane[], by: string): Promise<GatewayConfigVersion> {
    return this.save(by, (c) => ({ ...c, lanes }));
  }

  /** Replaces the whole document. */
  async replace(doc: unknown, by: string): Promise<GatewayConfigVersion> {
    return this.save(by, () => doc as GatewayConfig);
  }

  /** What the live pipeline would do with a sample message; changes nothing. */
  async dryRun(sample: DryRunSample): Promise<DryRunResult> {
    const device = await this.deps.devices.get(sample.deviceId);
    const product = device?.productKey ?? sample.product;
    if (product === undefined)
      throw new HearthError('E_DEVICE_NOT_FOUND', `device "${sample.deviceId}" does not exist; give "product" to try a message of a device still to come`);
    const model = await this.deps.products.model(product);
    if (!model) throw new HearthError('E_PRODUCT_NOT_FOUND', `product "${product}" does not exist`);
    return this.deps.pipeline.dryRun(
      {
        id: 'dry-run',
        deviceId: sample.deviceId,
        via: sample.deviceId,
        kind: sample.kind,
        topic: sample.kind === 'command' ? `api/devices/${sample.deviceId}/commands` : uplinkTopic(sample.deviceId, sample.kind),
        payload: sample.payload,
        receivedAt: Date.now(),
        source: sample.source ?? (sample.kind === 'command' ? 'api' : 'mqtt'),
        ...(sample.sourceId !== undefined ? { sourceId: sample.sourceId } : {}),
        ...(sample.tags ? { tags: sample.tags } : {}),
        ...(sample.userId ? { userId: sample.userId } : {}),
      },
      product,
      model,
    );
  }

  /**
   * Stores `change(latest)` as the next version, validated whole, and announces it. Two nodes
   * saving at once race for the version number: the loser builds its change again on the
   * winner's document.
   */
  private async save(by: string, change: (c: GatewayConfig) => GatewayConfig): Promise<GatewayConfigVersion> {
    for (let attempt = 1; ; attempt++) {
      const row = await this.latest();
      const base = row ? (JSON.parse(row.doc) as GatewayConfig) : defaultGatewayConfig();
      const config = validateGatewayConfig(change(base));
      const next: GatewayConfigVersion = { version: (row?.version ?? 0) + 1, config, createdAt: Date.now(), createdBy: by };
      try {
        await this.deps.db
          .insertInto('gateway_config')
          .values({ version: next.version, doc: JSON.stringify(config), created_at: next.createdAt, created_by: by })
          .execute();
      } catch (err) {
        if (attempt < 5 && (await this.latest())?.version !== row?.version) continue;
        throw err;
      }
      this.deps.log.info(
        { version: next.version, by, routes: config.routes.length, filters: config.filters.length, lanes: config.lanes.length },
        'gateway configuration changed',
      );
      await this.apply(next);
      this.announce?.send({ version: next.version });
      return next;
    }
  }

  private latest() {
    return this.deps.db.selectFrom('gateway_config').selectAll().orderBy('version', 'desc').limit(1).executeTakeFirst();
  }

  /** Another node stored a version: load the newest and apply it (in order with any load under way). */
  private reload(): Promise<void> {
    this.loading = this.loading
      .then(async () => {
        const row = await this.latest();
        if (row && row.version > this.live.version) await this.apply(fromRow(row));
      })
      .catch((err) => this.deps.log.error({ err }, 'the new gateway configuration could not be loaded; the previous one stays live'));
    return this.loading;
  }

  private async apply(v: GatewayConfigVersion): Promise<void> {
    if (v.version < this.live.version) return;
    this.live = v;
    this.deps.pipeline.configure(v.config, v.version);
    await this.deps.deliveries?.reconcile(this.deps.pipeline.routes);
  }

  /** The file is the operator's desired state: stored as a new version when it differs from the live one. */
  private async applyFile(path: string): Promise<void> {
    let doc: unknown;
    try {
      doc = JSON.parse(readFileSync(path, 'utf8'));
    } catch (err) {
      throw new Error(`gateway config file ${path} could not be read: ${(err as Error).message}`);
    }
    let config: GatewayConfig;
    try {
      config = validateGatewayConfig(doc);
    } catch (err) {
      throw new Error(`gateway config file ${path} is invalid: ${(err as Error).message}`);
    }
    if (JSON.stringify(config) === JSON.stringify(this.live.config)) return;
    await this.save(`file:${path}`, () => config);
  }
}
