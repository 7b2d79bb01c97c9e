import type { Database } from '../core/store/schema.ts';
import type { Db } from '../core/store/db.ts';
import { fromJson, toJson } from '../core/store/db.ts';
import type { Bus, Unsubscribe } from '../core/bus/bus.ts';
import { subjects, type DeviceErrorPayload, type DownlinkMessage } from '../core/bus/subjects.ts';
import type { Logger } from '../core/logger.ts';
import type { Clock } from '../core/clock.ts';
import { HearthError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { zonedFields } from '../core/zoned-time.ts';
import type { ShardManager } from '../core/cluster/shards.ts';
import type { TimerService } from '../timers/timer-service.ts';
import type { DeviceService, DeviceRecord } from '../devices/device-service.ts';
import type { PresenceService } from '../devices/presence-service.ts';
import type { AccessService } from '../access/access-service.ts';
import type { AuditService } from '../audit/audit-service.ts';
import type { StreamService } from '../stream/stream-service.ts';
import type { NotifyRequest } from '../notify/notify-service.ts';
import type { Firmware, FirmwareService } from './firmware-service.ts';
import { compareSemVer, inRange, isSemVer } from './semver.ts';
import { ALL_AT_ONCE, inWindow, trippedGate, waveOf, wavesProblem, type AbortGates, type UpdateWindow, type Wave } from './ota-plan.ts';

export type CampaignState = 'scheduled' | 'running' | 'paused' | 'aborted' | 'completed' | 'cancelled';
/** queued: not sent yet (its wave has not come, or the device is offline); sent: on its way, unanswered; then what the device reports. */
export type JobState = 'queued' | 'sent' | 'downloading' | 'verifying' | 'installing' | 'rebooting' | 'succeeded' | 'failed' | 'cancelled';

export const PROGRESS_STATES = ['downloading', 'verifying', 'installing', 'rebooting', 'succeeded', 'failed'] as const;
const ACTIVE: JobState[] = ['sent', 'downloading', 'verifying', 'installing', 'rebooting'];
const ENDED: JobState[] = ['succeeded', 'failed', 'cancelled'];
const LIVE: CampaignState[] = ['scheduled', 'running', 'paused'];

/** Which devices a campaign is for (all of them given: every condition holds). */
export interface CampaignTarget {
  /** Current firmware version range: `min` inclusive, `below` exclusive. */
  versions?: { min?: string; below?: string };
  /** Devices in these homes. */
  homes?: string[];
  /** These devices only. */
  devices?: string[];
  /** Operator tags every target device carries. */
  tags?: Record<string, string>;
}

export interface CreateCampaign {
  name: string;
  product: string;
  firmware: string;
  target?: CampaignTarget;
  waves?: Wave[];
  abort?: AbortGates;
  window?: UpdateWindow;
  /** A job not finished this long after it was sent (or after its wave started, for a device that stayed offline) fails (default 1 h). */
  timeoutMinutes?: number;
  /** Allows a package older than a device's version (a rollback). */
  allowDowngrade?: boolean;
  /** Start later (ISO time); default now. */
  startAt?: string;
}

export interface CampaignCounts {
  pending: number;
  inProgress: number;
  succeeded: number;
  failed: number;
  cancelled: number;
}

export interface Campaign {
  id: string;
  name: string;
  product: string;
  firmware: string;
  version: string;
  state: CampaignState;
  /** The wave under way (0-based). */
  wave: number;
  waves: Wave[];
  target: CampaignTarget;
  abort: AbortGates | null;
  window: UpdateWindow | null;
  timeoutMinutes: number;
  allowDowngrade: boolean;
  /** Until when the current wave soaks (its jobs ended; gates still watched), or null. */
  soakUntil: string | null;
  /** Why it was aborted or cancelled. */
  reason: string | null;
  counts: CampaignCounts;
  createdBy: string;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
}

export interface Job {
  id: string;
  campaign: string;
  device: string;
  /** The hub the job goes through (a sub-device's), or null. */
  hub: string | null;
  wave: number;
  state: JobState;
  progress: number | null;
  error: string | null;
  fromVersion: string | null;
  createdAt: string;
  sentAt: string | null;
  updatedAt: string;
  finishedAt: string | null;
}

/** Counters of OTA job transitions (the metrics module implements it). */
export interface OtaObserver {
  otaJob(state: string): void;
}

type CampaignRow = Database['ota_campaigns'];
type JobRow = Database['ota_jobs'];

const iso = (n: number | null | undefined) => (n == null ? null : new Date(Number(n)).toISOString());
const TIMER_OWNER = 'ota';
const timerKey = (campaignId: string) => `ota:${campaignId}`;
/** Jobs inserted per statement at creation. */
const INSERT_BATCH = 500;
/** Queued jobs looked at per tick (the rest on the next ticks, or when their device subscribes). */
const DISPATCH_BATCH = 2000;
const DEFAULT_TIMEOUT_MINUTES = 60;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Update campaigns and their jobs. A campaign freezes its target at creation: one job row per
 * device, with the device's wave from a stable hash (ota-plan.ts). It advances on a persistent
 * timer (`ota:{id}`, TimerService), so one node advances it once per tick across a cluster: the
 * tick re-arms itself first (a node dying mid-tick leaves the next tick armed), then fails jobs
 * past their timeout, sends queued jobs of the waves under way to devices that are online and in
 * their window, evaluates the wave's abort gates, and starts the next wave once the current one
 * ended and soaked. Every state is in the store, so a node killed mid-campaign loses nothing.
 *
 * Devices report on `devices/{id}/ota/progress` (through the ingest, on the worker owning the
 * device's shard): `handleProgress` checks the job is theirs and moves it. A device that was
 * offline gets its job when it comes back (presence) or subscribes to its OTA topic (`resend`).
 */
export class CampaignService {
  private readonly unsubs: Unsubscribe[] = [];

  constructor(
    private readonly deps: {
      db: Db;
      bus: Bus;
      log: Logger;
      clock: Clock;
      timers: TimerService;
      shards: ShardManager;
      devices: DeviceService;
      presence: PresenceService;
      access: AccessService;
      firmware: FirmwareService;
      audit: AuditService;
      stream: StreamService;
      /** A home's zone and owner (no access check). */
      home: (homeId: string) => Promise<{ timezone: string; ownerId: string } | undefined>;
      notify: (req: NotifyRequest) => Promise<unknown>;
      /** A device's operator tags (the fleet's), for targets by tag. */
      tagsOf?: (deviceId: string) => Promise<Record<string, string>>;
      observer?: OtaObserver;
      tickMs: number;
    },
  ) {}

  /** Takes the OTA timers and presence changes; on workers only (devices' shards live there). */
  start(): void {
    this.unsubs.push(this.deps.timers.onFire(TIMER_OWNER, (f) => this.tick((f.payload as { campaign: string }).campaign)));
    this.unsubs.push(
      this.deps.bus.subscribe(
        subjects.presence('*'),
        (m) => {
          // The worker owning the device's shard sends its waiting jobs (every node hears the event).
          if (m.data.online && this.deps.shards.ownsDevice(m.data.deviceId)) {
            void this.resend(m.data.deviceId).catch((err) => this.deps.log.warn({ err, deviceId: m.data.deviceId }, 'ota: could not send waiting jobs'));
          }
        },
        { name: 'ota.presence' },
      ),
    );
    this.unsubs.push(
      this.deps.bus.subscribe(
        subjects.reported('*'),
        (m) => {
          const v = m.data.values.firmware;
          if (typeof v === 'string' && this.deps.shards.ownsDevice(m.data.deviceId)) {
            void this.versionReported(m.data.deviceId, v, m.data.at).catch((err) =>
              this.deps.log.warn({ err, deviceId: m.data.deviceId }, 'ota: firmware version not recorded'),
            );
          }
        },
        { name: 'ota.firmware-property' },
      ),
    );
  }

  stop(): void {
    for (const u of this.unsubs.splice(0)) u();
  }

  // ── campaigns ──────────────────────────────────────────────────────────────────────────

  async create(input: CreateCampaign, actor: string): Promise<Campaign & { skipped: Record<string, number> }> {
    const { db, clock } = this.deps;
    const fw = await this.deps.firmware.require(input.firmware);
    if (fw.product !== input.product)
      throw new HearthError('E_VALIDATION', `firmware ${fw.id} is for product "${fw.product}", not "${input.product}"`, { field: 'body.firmware' });
    const waves = input.waves ?? ALL_AT_ONCE;
    const wp = wavesProblem(waves);
    if (wp) throw new HearthError('E_VALIDATION', wp, { field: 'body.waves' });
    const target = input.target ?? {};
    for (const k of ['min', 'below'] as const) {
      const v = target.versions?.[k];
      if (v !== undefined && !isSemVer(v))
        throw new HearthError('E_VALIDATION', `target.versions.${k} "${v}" is not a semantic version`, { field: `body.target.versions.${k}` });
    }
    const now = clock.now();
    const startAt = input.startAt === undefined ? now : Date.parse(input.startAt);
    if (!Number.isFinite(startAt)) throw new HearthError('E_VALIDATION', 'startAt must be an ISO date-time', { field: 'body.startAt' });

    const { jobs, skipped } = await this.plan(fw, target, waves, input.allowDowngrade === true);
    const id = newId('ota');
    const row: CampaignRow = {
      id,
      name: input.name,
      product_key: input.product,
      firmware_id: fw.id,
      target: toJson(target),
      waves: toJson(waves),
      abort: input.abort ? toJson(input.abort) : null,
      window: input.window ? toJson(input.window) : null,
      timeout_ms: Math.round((input.timeoutMinutes ?? DEFAULT_TIMEOUT_MINUTES) * 60_000),
      allow_downgrade: input.allowDowngrade ? 1 : 0,
      state: startAt > now ? 'scheduled' : 'running',
      wave: 0,
      soak_until: null,
      reason: null,
      created_by: actor,
      created_at: now,
      updated_at: now,
      finished_at: null,
    };
    await db.transaction().execute(async (tx) => {
      await tx.insertInto('ota_campaigns').values(row).execute();
      for (let i = 0; i < jobs.length; i += INSERT_BATCH) {
        await tx
          .insertInto('ota_jobs')
          .values(
            jobs.slice(i, i + INSERT_BATCH).map((j) => ({
              id: newId('j'),
              campaign_id: id,
              device_id: j.device.id,
              hub_id: j.device.parentId,
              wave: j.wave,
              state: 'queued',
              progress: null,
              error: null,
              from_version: j.fromVersion,
              created_at: now,
              sent_at: null,
              updated_at: now,
              finished_at: null,
            })),
          )
          .execute();
      }
    });
    this.deps.observer?.otaJob('queued');
    this.deps.audit.record({
      actor,
      action: 'ota.campaign.create',
      targetType: 'ota-campaign',
      targetId: id,
      details: { name: input.name, product: input.product, firmware: fw.id, version: fw.version, devices: jobs.length, skipped },
    });
    this.announce(row, 'created');
    await this.deps.timers.upsert({
      key: timerKey(id),
      owner: TIMER_OWNER,
      shardKey: id,
      spec: { kind: 'at', at: Math.max(now, startAt) },
      payload: { campaign: id },
    });
    return { ...(await this.require(id)), skipped };
  }

  /** The devices a campaign takes, each with its wave, and how many were left out and why. */
  private async plan(fw: Firmware, target: CampaignTarget, waves: Wave[], allowDowngrade: boolean) {
    const { devices, access } = this.deps;
    const candidates: DeviceRecord[] = [];
    if (target.devices) {
      for (const id of new Set(target.devices)) {
        const d = await devices.get(id);
        if (!d) throw new HearthError('E_DEVICE_NOT_FOUND', `device "${id}" does not exist`, { field: 'body.target.devices' });
        if (d.productKey !== fw.product)
          throw new HearthError('E_VALIDATION', `device "${id}" is a "${d.productKey}", not a "${fw.product}"`, { field: 'body.target.devices' });
        candidates.push(d);
      }
    } else {
      for (let offset = 0; ; offset += 1000) {
        const page = await devices.list({ product: fw.product, limit: 1000, offset });
        candidates.push(...page.items);
        if (page.items.length < 1000) break;
      }
    }
    const versions = await this.versionsOf(candidates.map((d) => d.id));
    const skipped: Record<string, number> = {};
    const skip = (why: string) => void (skipped[why] = (skipped[why] ?? 0) + 1);
    const homes = target.homes ? new Set(target.homes) : undefined;
    const wantTags = Object.entries(target.tags ?? {});
    const jobs: Array<{ device: DeviceRecord; wave: number; fromVersion: string | null }> = [];
    for (const d of candidates) {
      const current = versions.get(d.id) ?? null;
      if (homes && !homes.has((await access.placement(d.id))?.homeId ?? '')) continue;
      if (wantTags.length) {
        const has = (await this.deps.tagsOf?.(d.id)) ?? {};
        if (!wantTags.every(([k, v]) => has[k] === v)) continue;
      }
      if (target.versions && !inRange(current, target.versions)) continue;
      if (current !== null && isSemVer(current)) {
        const cmp = compareSemVer(current, fw.version);
        if (cmp === 0) {
          skip('alreadyOnVersion');
          continue;
        }
        if (cmp > 0 && !allowDowngrade) {
          skip('newerVersion');
          continue;
        }
        if (fw.minVersion && compareSemVer(current, fw.minVersion) < 0) {
          skip('belowMinVersion');
          continue;
        }
      } else if (fw.minVersion) {
        skip('unknownVersion');
        continue;
      }
      jobs.push({ device: d, wave: waveOf(waves, fw.product, d.id), fromVersion: current });
    }
    return { jobs, skipped };
  }

  private async versionsOf(ids: string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (let i = 0; i < ids.length; i += 500) {
      const rows = await this.deps.db
        .selectFrom('ota_device_versions')
        .select(['device_id', 'version'])
        .where('device_id', 'in', ids.slice(i, i + 500))
        .execute();
      for (const r of rows) out.set(r.device_id, r.version);
    }
    return out;
  }

  async get(id: string): Promise<Campaign | undefined> {
    const row = await this.deps.db.selectFrom('ota_campaigns').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) return undefined;
    const fw = await this.deps.firmware.get(row.firmware_id);
    return this.view(row, fw?.version ?? '', await this.counts(id));
  }

  async require(id: string): Promise<Campaign> {
    const c = await this.get(id);
    if (!c) throw new HearthError('E_CAMPAIGN_NOT_FOUND', `campaign "${id}" does not exist`);
    return c;
  }

  async list(filter: { product?: string; state?: string; limit: number; offset: number }): Promise<{ items: Campaign[]; total: number }> {
    let q = this.deps.db.selectFrom('ota_campaigns');
    if (filter.product) q = q.where('product_key', '=', filter.product);
    if (filter.state) q = q.where('state', '=', filter.state);
    const [{ n }] = await q.select((eb) => eb.fn.countAll<number>().as('n')).execute();
    const rows = await q.selectAll().orderBy('created_at', 'desc').orderBy('id').limit(filter.limit).offset(filter.offset).execute();
    const items: Campaign[] = [];
    for (const r of rows) items.push(this.view(r, (await this.deps.firmware.get(r.firmware_id))?.version ?? '', await this.counts(r.id)));
    return { items, total: Number(n) };
  }

  async jobs(campaignId: string, filter: { state?: string; limit: number; offset: number }): Promise<{ items: Job[]; total: number }> {
    await this.require(campaignId);
    let q = this.deps.db.selectFrom('ota_jobs').where('campaign_id', '=', campaignId);
    if (filter.state) q = q.where('state', '=', filter.state);
    const [{ n }] = await q.select((eb) => eb.fn.countAll<number>().as('n')).execute();
    const rows = await q.selectAll().orderBy('wave').orderBy('device_id').limit(filter.limit).offset(filter.offset).execute();
    return { items: rows.map(jobView), total: Number(n) };
  }

  private async counts(campaignId: string, wave?: number): Promise<CampaignCounts & Record<JobState, number>> {
    let q = this.deps.db
      .selectFrom('ota_jobs')
      .select(['state', (eb) => eb.fn.countAll<number>().as('n')])
      .where('campaign_id', '=', campaignId);
    if (wave !== undefined) q = q.where('wave', '=', wave);
    const rows = await q.groupBy('state').execute();
    const by = Object.fromEntries(['queued', ...ACTIVE, ...ENDED].map((s) => [s, 0])) as Record<JobState, number>;
    for (const r of rows) by[r.state as JobState] = Number(r.n);
    return {
      ...by,
      pending: by.queued,
      inProgress: ACTIVE.reduce((s, k) => s + by[k], 0),
      succeeded: by.succeeded,
      failed: by.failed,
      cancelled: by.cancelled,
    };
  }

  private view(r: CampaignRow, version: string, counts: CampaignCounts): Campaign {
    return {
      id: r.id,
      name: r.name,
      product: r.product_key,
      firmware: r.firmware_id,
      version,
      state: r.state as CampaignState,
      wave: Number(r.wave),
      waves: fromJson<Wave[]>(r.waves),
      target: fromJson<CampaignTarget>(r.target),
      abort: fromJson<AbortGates | null>(r.abort),
      window: fromJson<UpdateWindow | null>(r.window),
      timeoutMinutes: Number(r.timeout_ms) / 60_000,
      allowDowngrade: Number(r.allow_downgrade) === 1,
      soakUntil: iso(r.soak_until),
      reason: r.reason,
      counts: { pending: counts.pending, inProgress: counts.inProgress, succeeded: counts.succeeded, failed: counts.failed, cancelled: counts.cancelled },
      createdBy: r.created_by,
      createdAt: iso(r.created_at)!,
      updatedAt: iso(r.updated_at)!,
      finishedAt: iso(r.finished_at),
    };
  }

  /** Pause: no job is sent and no wave starts; jobs already sent go on. */
  pause(id: string, actor: string): Promise<Campaign> {
    return this.transition(id, actor, ['running', 'scheduled'], 'paused', 'ota.campaign.pause');
  }

  resume(id: string, actor: string): Promise<Campaign> {
    return this.transition(id, actor, ['paused'], 'running', 'ota.campaign.resume');
  }

  /** Cancel: jobs not sent yet are cancelled; sent ones end as their devices report. */
  cancel(id: string, actor: string): Promise<Campaign> {
    return this.transition(id, actor, LIVE, 'cancelled', 'ota.campaign.cancel', 'cancelled by ' + actor);
  }

  private async transition(id: string, actor: string, from: CampaignState[], to: CampaignState, action: string, reason?: string): Promise<Campaign> {
    const c = await this.require(id);
    const now = this.deps.clock.now();
    const done = to === 'cancelled' || to === 'aborted' || to === 'completed';
    const r = await this.deps.db
      .updateTable('ota_campaigns')
      .set({ state: to, updated_at: now, ...(done ? { finished_at: now, reason: reason ?? null } : {}) })
      .where('id', '=', id)
      .where('state', 'in', from)
      .executeTakeFirst();
    if (Number(r.numUpdatedRows) === 0) throw new HearthError('E_CONFLICT', `campaign ${id} is ${c.state}: it cannot become ${to}`, { state: c.state });
    if (done) await this.cancelQueued(id, reason ?? to);
    this.deps.audit.record({ actor, action, targetType: 'ota-campaign', targetId: id, details: { from: c.state, to } });
    const after = await this.require(id);
    this.announceView(after, to);
    // A resumed campaign goes on at once, not at the next tick.
    if (to === 'running') await this.arm(id, now);
    if (done) await this.deps.timers.cancel(timerKey(id));
    return after;
  }

  private async cancelQueued(campaignId: string, reason: string): Promise<void> {
    const now = this.deps.clock.now();
    const r = await this.deps.db
      .updateTable('ota_jobs')
      .set({ state: 'cancelled', error: reason, updated_at: now, finished_at: now })
      .where('campaign_id', '=', campaignId)
      .where('state', '=', 'queued')
      .executeTakeFirst();
    for (let i = 0; i < Number(r.numUpdatedRows); i++) this.deps.observer?.otaJob('cancelled');
  }

  private arm(id: string, at: number): Promise<unknown> {
    return this.deps.timers.upsert({ key: timerKey(id), owner: TIMER_OWNER, shardKey: id, spec: { kind: 'at', at }, payload: { campaign: id } });
  }

  // ── the tick (exactly once per due time across the cluster: TimerService's claim) ─────

  /** Advances one campaign; run by the timer `ota:{id}` on the node owning its shard. */
  async tick(id: string): Promise<void> {
    const { db, clock } = this.deps;
    const row = await db.selectFrom('ota_campaigns').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row || !LIVE.includes(row.state as CampaignState)) return;
    const now = clock.now();
    // The next tick first: a node that dies in the middle of this one leaves it armed.
    await this.arm(id, now + this.deps.tickMs);
    let state = row.state as CampaignState;
    if (state === 'scheduled') {
      const moved = await db
        .updateTable('ota_campaigns')
        .set({ state: 'running', updated_at: now })
        .where('id', '=', id)
        .where('state', '=', 'scheduled')
        .executeTakeFirst();
      if (Number(moved.numUpdatedRows) === 0) return;
      state = 'running';
      this.announce({ ...row, state }, 'running');
    }
    const wave = Number(row.wave);
    await this.expire(row, now);
    if (state !== 'running') return;
    const waves = fromJson<Wave[]>(row.waves);
    const gates = fromJson<AbortGates | null>(row.abort) ?? undefined;
    const c = await this.counts(id, wave);
    const offline = gates?.maxOfflineAfterUpdate !== undefined ? await this.offlineAfterUpdate(id, wave) : 0;
    const tripped = trippedGate(gates, { ended: c.succeeded + c.failed, failed: c.failed, succeeded: c.succeeded, offlineAfterUpdate: offline });
    if (tripped) return this.abort(row, wave, tripped.reason);
    await this.dispatch(row, wave, now);
    if (c.queued + c.inProgress > 0) return;
    // The wave's jobs all ended: soak, then the next wave (or done).
    const soakMs = (waves[wave]?.soakMinutes ?? 0) * 60_000;
    if (row.soak_until == null && soakMs > 0) {
      await db
        .updateTable('ota_campaigns')
        .set({ soak_until: now + soakMs, updated_at: now })
        .where('id', '=', id)
        .where('wave', '=', wave)
        .execute();
      this.announce({ ...row, soak_until: now + soakMs }, 'soaking');
      return;
    }
    if (row.soak_until != null && now < Number(row.soak_until)) return;
    if (wave + 1 >= waves.length) {
      const done = await db
        .updateTable('ota_campaigns')
        .set({ state: 'completed', updated_at: now, finished_at: now, soak_until: null })
        .where('id', '=', id)
        .where('state', '=', 'running')
        .where('wave', '=', wave)
        .executeTakeFirst();
      if (Number(done.numUpdatedRows) > 0) {
        this.deps.audit.record({
          actor: 'system',
          action: 'ota.campaign.complete',
          targetType: 'ota-campaign',
          targetId: id,
          details: { waves: waves.length },
        });
        this.announce({ ...row, state: 'completed' }, 'completed');
        await this.deps.timers.cancel(timerKey(id));
      }
      return;
    }
    // Compare-and-set on the wave: a tick that raced this one (it cannot, but a hand-over might) starts it once.
    const next = await db
      .updateTable('ota_campaigns')
      .set({ wave: wave + 1, soak_until: null, updated_at: now })
      .where('id', '=', id)
      .where('state', '=', 'running')
      .where('wave', '=', wave)
      .executeTakeFirst();
    if (Number(next.numUpdatedRows) === 0) return;
    // Timeouts of devices that stay offline count from here.
    await db
      .updateTable('ota_jobs')
      .set({ updated_at: now })
      .where('campaign_id', '=', id)
      .where('wave', '=', wave + 1)
      .where('state', '=', 'queued')
      .execute();
    this.deps.audit.record({
      actor: 'system',
      action: 'ota.campaign.wave',
      targetType: 'ota-campaign',
      targetId: id,
      details: { wave: wave + 1, percent: waves[wave + 1].percent },
    });
    this.announce({ ...row, wave: wave + 1 }, 'wave');
    await this.dispatch({ ...row, wave: wave + 1 }, wave + 1, now);
  }

  /** Jobs past their deadline fail: sent ones `timeoutMs` after sending, queued ones (device offline) after their wave started. */
  private async expire(row: CampaignRow, now: number): Promise<void> {
    const limit = now - Number(row.timeout_ms);
    const { db } = this.deps;
    const sent = await db
      .updateTable('ota_jobs')
      .set({ state: 'failed', error: 'timeout: the device did not finish in time', updated_at: now, finished_at: now })
      .where('campaign_id', '=', row.id)
      .where('state', 'in', ACTIVE)
      .where('sent_at', '<', limit)
      .returning(['id', 'device_id'])
      .execute();
    // With a window, a device may wait up to a day for its window to open before its time runs.
    const queuedLimit = row.window ? limit - 86_400_000 : limit;
    const queued = await db
      .updateTable('ota_jobs')
      .set({ state: 'failed', error: 'timeout: the device was offline for its whole turn', updated_at: now, finished_at: now })
      .where('campaign_id', '=', row.id)
      .where('state', '=', 'queued')
      .where('wave', '<=', Number(row.wave))
      .where('updated_at', '<', queuedLimit)
      .returning(['id', 'device_id'])
      .execute();
    for (const j of [...sent, ...queued]) {
      this.deps.observer?.otaJob('failed');
      this.jobEvent(row.id, j.id, j.device_id, 'failed', null, 'timeout');
    }
  }

  private async offlineAfterUpdate(campaignId: string, wave: number): Promise<number> {
    const rows = await this.deps.db
      .selectFrom('ota_jobs')
      .select('device_id')
      .where('campaign_id', '=', campaignId)
      .where('wave', '=', wave)
      .where('state', '=', 'succeeded')
      .execute();
    let n = 0;
    for (const r of rows) if (!(await this.deps.presence.get(r.device_id)).online) n++;
    return n;
  }

  private async abort(row: CampaignRow, wave: number, reason: string): Promise<void> {
    const now = this.deps.clock.now();
    const r = await this.deps.db
      .updateTable('ota_campaigns')
      .set({ state: 'aborted', reason, updated_at: now, finished_at: now })
      .where('id', '=', row.id)
      .where('state', '=', 'running')
      .executeTakeFirst();
    if (Number(r.numUpdatedRows) === 0) return;
    await this.cancelQueued(row.id, `campaign aborted: ${reason}`);
    await this.deps.timers.cancel(timerKey(row.id));
    this.deps.log.warn({ campaign: row.id, wave, reason }, 'ota campaign aborted by its gates');
    this.deps.audit.record({ actor: 'system', action: 'ota.campaign.abort', targetType: 'ota-campaign', targetId: row.id, details: { wave, reason } });
    this.announce({ ...row, state: 'aborted', reason }, 'aborted');
    await this.notifyOwners(row, wave, reason).catch((err) => this.deps.log.warn({ err, campaign: row.id }, 'ota: abort notifications failed'));
  }

  /**
   * The owners of homes with a device that got a job in the tripping wave hear of it (its update
   * failed, or may still fail); the operators see the live stream and the audit log.
   */
  private async notifyOwners(row: CampaignRow, wave: number, reason: string): Promise<void> {
    const failed = await this.deps.db
      .selectFrom('ota_jobs')
      .select('device_id')
      .where('campaign_id', '=', row.id)
      .where('wave', '=', wave)
      .where('state', 'not in', ['queued', 'cancelled'])
      .limit(10_000)
      .execute();
    const homes = new Set<string>();
    for (const f of failed) {
      const h = (await this.deps.access.placement(f.device_id))?.homeId;
      if (h) homes.add(h);
    }
    for (const homeId of homes) {
      const info = await this.deps.home(homeId);
      if (!info) continue;
      await this.deps.notify({
        homeId,
        kind: 'device',
        severity: 'warning',
        users: [info.ownerId],
        title: 'A firmware update was stopped',
        body: `The update "${row.name}" was stopped because ${reason}. Devices whose update failed keep their previous firmware.`,
        data: { campaign: row.id },
        dedupeKey: `ota:${row.id}`,
        source: `ota:${row.id}`,
      });
    }
  }

  /** Sends queued jobs of waves up to `wave` to devices that are online and inside the window. */
  private async dispatch(row: CampaignRow, wave: number, now: number): Promise<void> {
    const queued = await this.deps.db
      .selectFrom('ota_jobs')
      .selectAll()
      .where('campaign_id', '=', row.id)
      .where('state', '=', 'queued')
      .where('wave', '<=', wave)
      .orderBy('id')
      .limit(DISPATCH_BATCH)
      .execute();
    if (queued.length === 0) return;
    const fw = await this.deps.firmware.get(row.firmware_id);
    if (!fw) return;
    const window = fromJson<UpdateWindow | null>(row.window);
    for (const j of queued) await this.trySend(j, fw, window, now);
  }

  /** Sends one job if its device can take it now; marks it sent. */
  private async trySend(j: JobRow, fw: Firmware, window: UpdateWindow | null, now: number): Promise<boolean> {
    const { presence } = this.deps;
    if (!(await presence.get(j.device_id)).online) return false;
    if (j.hub_id && !(await presence.get(j.hub_id)).online) return false;
    if (window && !inWindow(window, await this.localHour(j.device_id, now))) return false;
    if (j.state === 'queued') {
      const r = await this.deps.db
        .updateTable('ota_jobs')
        .set({ state: 'sent', sent_at: now, updated_at: now })
        .where('id', '=', j.id)
        .where('state', '=', 'queued')
        .executeTakeFirst();
      if (Number(r.numUpdatedRows) === 0) return false;
      this.deps.observer?.otaJob('sent');
      this.jobEvent(j.campaign_id, j.id, j.device_id, 'sent', null, null);
    }
    await this.publishJob(j, fw);
    return true;
  }

  private async publishJob(j: JobRow, fw: Firmware): Promise<void> {
    const url = await this.deps.firmware.downloadUrl(fw.id, j.hub_id ?? j.device_id);
    const payload: Record<string, unknown> = {
      job: j.id,
      version: fw.version,
      url,
      size: fw.size,
      sha256: fw.sha256,
      signature: fw.signature,
      ...(fw.makerSignature ? { makerSignature: fw.makerSignature } : {}),
      ...(j.hub_id ? { child: j.device_id } : {}),
    };
    const down: DownlinkMessage = { deviceId: j.hub_id ?? j.device_id, kind: 'ota', payload };
    this.deps.bus.publish(subjects.down(down.deviceId), down);
  }

  private async localHour(deviceId: string, now: number): Promise<number> {
    const homeId = (await this.deps.access.placement(deviceId))?.homeId;
    const tz = homeId ? (await this.deps.home(homeId))?.timezone : undefined;
    return zonedFields(now, tz ?? 'UTC').h;
  }

  /**
   * Sends the jobs waiting for a device (or, for a hub, for it and its sub-devices) that its
   * campaign's current wave reached: queued ones, and sent ones it never answered (the device
   * was not listening yet). Called when it comes online and when it subscribes to its OTA topic.
   */
  async resend(deviceId: string): Promise<void> {
    const { db, clock } = this.deps;
    const rows = await db
      .selectFrom('ota_jobs')
      .innerJoin('ota_campaigns', 'ota_campaigns.id', 'ota_jobs.campaign_id')
      .selectAll('ota_jobs')
      .select(['ota_campaigns.firmware_id as fw', 'ota_campaigns.window as win'])
      .where((eb) => eb.or([eb('ota_jobs.device_id', '=', deviceId), eb('ota_jobs.hub_id', '=', deviceId)]))
      .where('ota_jobs.state', 'in', ['queued', 'sent'])
      .where('ota_campaigns.state', '=', 'running')
      .whereRef('ota_jobs.wave', '<=', 'ota_campaigns.wave')
      .execute();
    const now = clock.now();
    for (const r of rows) {
      const fw = await this.deps.firmware.get(r.fw);
      if (fw) await this.trySend(r, fw, fromJson<UpdateWindow | null>(r.win), now);
    }
  }

  // ── device reports ─────────────────────────────────────────────────────────────────────

  /**
   * A device (or its hub) reported progress on `devices/{id}/ota/progress`. Returns the problem
   * the device hears on its error topic, or undefined. A job that already ended stays as it is
   * (a repeated report changes nothing).
   */
  async handleProgress(deviceId: string, payload: unknown, receivedAt: number): Promise<DeviceErrorPayload | undefined> {
    const bad = (message: string): DeviceErrorPayload => ({ code: 'E_BAD_MESSAGE', message });
    if (!isObject(payload))
      return bad(
        'OTA progress is {"job": "<id>", "state": "downloading|verifying|installing|rebooting|succeeded|failed", "progress"?: 0-100, "error"?: "…", "version"?: "…"}',
      );
    const { job, state, progress, error, version } = payload;
    if (typeof job !== 'string' || job.length > 64) return bad('"job" must be the job id the OTA message carried');
    if (typeof state !== 'string' || !(PROGRESS_STATES as readonly string[]).includes(state))
      return bad(`"state" must be one of ${PROGRESS_STATES.join(', ')}`);
    if (progress !== undefined && !(Number.isInteger(progress) && (progress as number) >= 0 && (progress as number) <= 100))
      return bad('"progress" must be an integer from 0 to 100');
    if (error !== undefined && (typeof error !== 'string' || error.length > 500)) return bad('"error" must be a string of at most 500 characters');
    if (version !== undefined && (typeof version !== 'string' || version.length > 64)) return bad('"version" must be the firmware version string');
    const { db } = this.deps;
    const row = await db.selectFrom('ota_jobs').selectAll().where('id', '=', job).where('device_id', '=', deviceId).executeTakeFirst();
    if (!row) return { code: 'E_UNKNOWN_OTA_JOB', message: `device "${deviceId}" has no OTA job "${job}"`, ref: job };
    if (ENDED.includes(row.state as JobState) || row.state === 'queued') return undefined;
    let next = state as JobState;
    let why = typeof error === 'string' ? error : null;
    const campaign = await db.selectFrom('ota_campaigns').select(['firmware_id', 'product_key']).where('id', '=', row.campaign_id).executeTakeFirst();
    const fw = campaign ? await this.deps.firmware.get(campaign.firmware_id) : undefined;
    if (next === 'succeeded') {
      if (version === undefined) return bad('"succeeded" needs the "version" the device runs now');
      if (fw && version !== fw.version) {
        next = 'failed';
        why = `the device reports version ${version as string} after the update, not ${fw.version}`;
      }
    }
    const ended = next === 'succeeded' || next === 'failed';
    const r = await db
      .updateTable('ota_jobs')
      .set({
        state: next,
        progress: typeof progress === 'number' ? progress : next === 'succeeded' ? 100 : row.progress,
        error: why,
        updated_at: receivedAt,
        ...(ended ? { finished_at: receivedAt } : {}),
      })
      .where('id', '=', job)
      .where('state', 'not in', ENDED)
      .executeTakeFirst();
    if (Number(r.numUpdatedRows) === 0) return undefined;
    if (typeof version === 'string' && fw) await this.recordVersion(deviceId, fw.product, version, receivedAt, next === 'succeeded' ? job : undefined);
    if (next !== row.state) this.deps.observer?.otaJob(next);
    this.jobEvent(row.campaign_id, job, deviceId, next, typeof progress === 'number' ? progress : null, why);
    return next === 'failed' && state === 'succeeded' ? { code: 'E_BAD_MESSAGE', message: why!, ref: job } : undefined;
  }

  /** A device reported its `firmware` property. */
  private async versionReported(deviceId: string, version: string, at: number): Promise<void> {
    const d = await this.deps.devices.get(deviceId);
    if (!d) return;
    await this.recordVersion(deviceId, d.productKey, version, at);
    // A job waiting for the device to come back with its new version ends here.
    const rows = await this.deps.db
      .selectFrom('ota_jobs')
      .innerJoin('ota_campaigns', 'ota_campaigns.id', 'ota_jobs.campaign_id')
      .select(['ota_jobs.id as id', 'ota_campaigns.firmware_id as fw'])
      .where('ota_jobs.device_id', '=', deviceId)
      .where('ota_jobs.state', 'in', ['installing', 'rebooting'])
      .execute();
    for (const r of rows) {
      const fw = await this.deps.firmware.get(r.fw);
      if (fw) await this.handleProgress(deviceId, { job: r.id, state: 'succeeded', version }, at);
    }
  }

  private async recordVersion(deviceId: string, product: string, version: string, at: number, jobId?: string): Promise<void> {
    await this.deps.db
      .insertInto('ota_device_versions')
      .values({ device_id: deviceId, product_key: product, version, reported_at: at, last_job_id: jobId ?? null })
      .onConflict((oc) => oc.column('device_id').doUpdateSet({ version, reported_at: at, product_key: product, ...(jobId ? { last_job_id: jobId } : {}) }))
      .execute();
  }

  // ── inventory ──────────────────────────────────────────────────────────────────────────

  /** Devices per firmware version of a product (devices that never reported one: `unknown`). */
  async versions(product: string): Promise<{ product: string; total: number; versions: Array<{ version: string; devices: number }> }> {
    const rows = await this.deps.db
      .selectFrom('ota_device_versions')
      .select(['version', (eb) => eb.fn.countAll<number>().as('n')])
      .where('product_key', '=', product)
      .groupBy('version')
      .execute();
    const total = (await this.deps.devices.list({ product, limit: 1, offset: 0 })).total;
    const known = rows
      .map((r) => ({ version: r.version, devices: Number(r.n) }))
      .sort((a, b) => (isSemVer(a.version) && isSemVer(b.version) ? compareSemVer(b.version, a.version) : a.version < b.version ? 1 : -1));
    const counted = known.reduce((s, v) => s + v.devices, 0);
    return { product, total, versions: total > counted ? [...known, { version: 'unknown', devices: total - counted }] : known };
  }

  /** The firmware version each of these devices last reported (devices that never did are absent). */
  deviceVersions(ids: readonly string[]): Promise<Map<string, string>> {
    return this.versionsOf([...ids]);
  }

  /** A device's firmware version and its last OTA job (for the device view). */
  async deviceFirmware(deviceId: string): Promise<{ version: string | null; reportedAt: string | null; lastJob: Job | null }> {
    const v = await this.deps.db.selectFrom('ota_device_versions').selectAll().where('device_id', '=', deviceId).executeTakeFirst();
    const last = await this.deps.db
      .selectFrom('ota_jobs')
      .selectAll()
      .where('device_id', '=', deviceId)
      .where('state', '!=', 'queued')
      .orderBy('updated_at', 'desc')
      .limit(1)
      .executeTakeFirst();
    return { version: v?.version ?? null, reportedAt: iso(v?.reported_at), lastJob: last ? jobView(last) : null };
  }

  // ── events ─────────────────────────────────────────────────────────────────────────────

  private announce(row: CampaignRow, change: string): void {
    this.deps.stream.publish('ota', null, null, {
      campaign: row.id,
      name: row.name,
      product: row.product_key,
      state: row.state,
      wave: Number(row.wave),
      change,
      ...(row.reason ? { reason: row.reason } : {}),
    });
  }

  private announceView(c: Campaign, change: string): void {
    this.deps.stream.publish('ota', null, null, { campaign: c.id, name: c.name, product: c.product, state: c.state, wave: c.wave, change });
  }

  private jobEvent(campaignId: string, jobId: string, deviceId: string, state: JobState, progress: number | null, error: string | null): void {
    void this.deps.access.placement(deviceId).then(
      (p) => {
        this.deps.stream.publish('ota', deviceId, p?.homeId ?? null, {
          campaign: campaignId,
          job: jobId,
          state,
          ...(progress !== null ? { progress } : {}),
          ...(error ? { error } : {}),
        });
      },
      () => undefined,
    );
  }
}

function jobView(r: JobRow): Job {
  return {
    id: r.id,
    campaign: r.campaign_id,
    device: r.device_id,
    hub: r.hub_id,
    wave: Number(r.wave),
    state: r.state as JobState,
    progress: r.progress == null ? null : Number(r.progress),
    error: r.error,
    fromVersion: r.from_version,
    createdAt: iso(r.created_at)!,
    sentAt: iso(r.sent_at),
    updatedAt: iso(r.updated_at)!,
    finishedAt: iso(r.finished_at),
  };
}
