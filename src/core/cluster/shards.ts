import { fnv1a, mix32 } from '../hash.ts';
import type { Db } from '../store/db.ts';
import type { Logger } from '../logger.ts';

/** FNV-1a: a cheap, stable hash of a device id. Every node must map a device to the same shard. */
export function shardOf(deviceId: string, shards: number): number {
  return fnv1a(deviceId) % shards;
}

/** FNV-1a of the string, then MurmurHash3's finaliser: similar inputs (node-a-…#1, #2) get unrelated scores. */
function scoreOf(key: string): number {
  return mix32(fnv1a(key));
}

/** Rendezvous (highest random weight) hashing: which live worker should own `shard`. Stable when others come and go. */
export function preferredOwner(shard: number, workers: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestScore = -1;
  for (const w of workers) {
    const score = scoreOf(`${w}#${shard}`);
    if (score > bestScore || (score === bestScore && w < best!)) {
      best = w;
      bestScore = score;
    }
  }
  return best;
}

/** What a capability does when its node takes over or gives up a shard. */
export interface ShardListener {
  name: string;
  /** Start the shard's work (consume its messages, answer for its devices). */
  acquire(shard: number): Promise<void>;
  /** Stop the shard's work and make sure everything it accepted is stored. */
  release(shard: number): Promise<void>;
}

export interface ShardManagerOptions {
  db: Db;
  log: Logger;
  nodeId: string;
  roles: readonly string[];
  shards: number;
  /** One node owns every shard, without leases (embedded mode). */
  single: boolean;
  /** Lease and heartbeat lifetime: a node silent for this long is declared lost. */
  leaseMs?: number;
  tickMs?: number;
  /** A node stopped heartbeating: its device connections are gone. */
  onNodeLost?: (nodeId: string) => Promise<void>;
  /** The number of shards this node owns changed. */
  onOwnedChange?: (owned: number) => void;
}

/**
 * Divides device shards among the worker nodes. Each device's messages, shadow and in-flight
 * state belong to one worker at a time, so they can be cached and written in batches without
 * nodes overwriting each other.
 *
 * Nodes heartbeat in `cluster_nodes`. Every tick, a worker computes which shards it should own
 * (rendezvous hashing over the live workers), releases the others (flushing first) and claims
 * its own through conditional updates of `shard_leases`, so at most one node holds a lease at
 * any time. A node that dies keeps its leases until they expire; then others claim them.
 */
export class ShardManager {
  private readonly owned = new Set<number>();
  private readonly listeners: ShardListener[] = [];
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly leaseMs: number;
  private readonly tickMs: number;
  private readonly worker: boolean;

  constructor(private readonly o: ShardManagerOptions) {
    this.leaseMs = o.leaseMs ?? 6000;
    this.tickMs = o.tickMs ?? Math.max(200, Math.floor(this.leaseMs / 4));
    this.worker = o.roles.includes('worker');
  }

  get count(): number {
    return this.o.shards;
  }

  get ownedCount(): number {
    return this.owned.size;
  }

  shardOf(deviceId: string): number {
    return shardOf(deviceId, this.o.shards);
  }

  /** Whether this node currently owns the device's shard. */
  ownsDevice(deviceId: string): boolean {
    return this.owned.has(shardOf(deviceId, this.o.shards));
  }

  owns(shard: number): boolean {
    return this.owned.has(shard);
  }

  /** Registers a listener; call before start(). */
  on(listener: ShardListener): void {
    this.listeners.push(listener);
  }

  async start(): Promise<void> {
    if (this.o.single) {
      if (this.worker) for (let s = 0; s < this.o.shards; s++) await this.acquire(s);
      return;
    }
    const now = Date.now();
    await this.o.db
      .insertInto('cluster_nodes')
      .values({ id: this.o.nodeId, roles: this.o.roles.join(','), started_at: now, heartbeat_at: now })
      .onConflict((oc) => oc.column('id').doUpdateSet({ heartbeat_at: now }))
      .execute();
    if (this.worker) {
      const rows = Array.from({ length: this.o.shards }, (_, shard) => ({ shard, owner: null, expires_at: 0 }));
      await this.o.db
        .insertInto('shard_leases')
        .values(rows)
        .onConflict((oc) => oc.column('shard').doNothing())
        .execute();
    }
    await this.tick();
    this.timer = setInterval(() => {
      this.ticking = this.ticking.then(() => this.tick()).catch((err) => this.o.log.error({ err }, 'shard tick failed'));
    }, this.tickMs);
    this.timer.unref();
  }

  /** Waits until this worker owns the shards it should (used by readiness after start). */
  async settle(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.o.single && this.worker && Date.now() < deadline) {
      const want = await this.wanted();
      if ([...want].every((s) => this.owned.has(s))) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Gives every shard back (after its listeners stored their work) and leaves the cluster. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.ticking;
    for (const s of [...this.owned]) await this.release(s);
    if (!this.o.single) await this.o.db.deleteFrom('cluster_nodes').where('id', '=', this.o.nodeId).execute();
  }

  private async liveNodes(now: number) {
    const rows = await this.o.db.selectFrom('cluster_nodes').selectAll().execute();
    return rows.map((r) => ({ id: r.id, roles: r.roles.split(','), alive: Number(r.heartbeat_at) > now - this.leaseMs }));
  }

  private async wanted(): Promise<Set<number>> {
    const now = Date.now();
    const workers = (await this.liveNodes(now)).filter((n) => n.alive && n.roles.includes('worker')).map((n) => n.id);
    if (!workers.includes(this.o.nodeId)) workers.push(this.o.nodeId);
    const want = new Set<number>();
    for (let s = 0; s < this.o.shards; s++) if (preferredOwner(s, workers) === this.o.nodeId) want.add(s);
    return want;
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    const { db, nodeId } = this.o;
    const now = Date.now();
    await db.updateTable('cluster_nodes').set({ heartbeat_at: now }).where('id', '=', nodeId).execute();
    const nodes = await this.liveNodes(now);
    if (!nodes.some((n) => n.id === nodeId)) {
      // Declared lost by another node (we stalled): come back.
      await db
        .insertInto('cluster_nodes')
        .values({ id: nodeId, roles: this.o.roles.join(','), started_at: now, heartbeat_at: now })
        .onConflict((oc) => oc.column('id').doUpdateSet({ heartbeat_at: now }))
        .execute();
    }
    for (const n of nodes) {
      if (n.alive || n.id === nodeId) continue;
      // Any node may notice; deleting the row first makes one of them handle it.
      const res = await db
        .deleteFrom('cluster_nodes')
        .where('id', '=', n.id)
        .where('heartbeat_at', '<=', now - this.leaseMs)
        .executeTakeFirst();
      if (Number(res.numDeletedRows) > 0) {
        this.o.log.warn({ node: n.id }, 'node lost: no heartbeat');
        await this.o.onNodeLost?.(n.id);
      }
    }
    if (!this.worker) return;

    // Renew what we hold; a lease we lost while stalled is given up locally.
    await db
      .updateTable('shard_leases')
      .set({ expires_at: now + this.leaseMs })
      .where('owner', '=', nodeId)
      .execute();
    const held = new Set((await db.selectFrom('shard_leases').select('shard').where('owner', '=', nodeId).execute()).map((r) => Number(r.shard)));
    for (const s of [...this.owned])
      if (!held.has(s)) {
        this.o.log.warn({ shard: s }, 'shard lease lost');
        await this.release(s, false);
      }
    const workers = nodes.filter((n) => n.alive && n.roles.includes('worker')).map((n) => n.id);
    if (!workers.includes(nodeId)) workers.push(nodeId);
    for (let s = 0; s < this.o.shards; s++) {
      if (this.stopped) return;
      const mine = preferredOwner(s, workers) === nodeId;
      if (!mine && this.owned.has(s)) await this.release(s);
      else if (mine && !this.owned.has(s)) {
        const res = await db
          .updateTable('shard_leases')
          .set({ owner: nodeId, expires_at: now + this.leaseMs })
          .where('shard', '=', s)
          .where((eb) => eb.or([eb('owner', 'is', null), eb('owner', '=', nodeId), eb('expires_at', '<', now)]))
          .executeTakeFirst();
        if (Number(res.numUpdatedRows) > 0) await this.acquire(s);
      }
    }
  }

  private async acquire(shard: number): Promise<void> {
    this.owned.add(shard);
    for (const l of this.listeners) await l.acquire(shard);
    this.o.onOwnedChange?.(this.owned.size);
    this.o.log.debug({ shard }, 'shard acquired');
  }

  private async release(shard: number, clearLease = true): Promise<void> {
    for (const l of [...this.listeners].reverse()) {
      try {
        await l.release(shard);
      } catch (err) {
        this.o.log.error({ err, shard, listener: l.name }, 'shard release failed');
      }
    }
    this.owned.delete(shard);
    this.o.onOwnedChange?.(this.owned.size);
    if (clearLease && !this.o.single) {
      await this.o.db.updateTable('shard_leases').set({ owner: null, expires_at: 0 }).where('shard', '=', shard).where('owner', '=', this.o.nodeId).execute();
    }
    this.o.log.debug({ shard }, 'shard released');
  }
}
