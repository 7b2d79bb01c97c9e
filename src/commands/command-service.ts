import type { Selectable } from 'kysely';
import type { Db } from '../core/store/db.ts';
import type { Database } from '../core/store/schema.ts';
import { fromJson, toJson } from '../core/store/db.ts';
import type { Bus, Unsubscribe } from '../core/bus/bus.ts';
import { subjects, type DownlinkMessage } from '../core/bus/subjects.ts';
import type { CommandResult as ResultEvent } from '../core/bus/events.ts';
import type { Logger } from '../core/logger.ts';
import { HearthError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import type { DeviceService } from '../devices/device-service.ts';
import type { PresenceService } from '../devices/presence-service.ts';
import type { ProductService } from '../products/product-service.ts';
import { checkValue } from '../products/thing-model.ts';
import type { UplinkIngress } from '../ingress/ingress.ts';
import type { CommandQueue, QueueRow, QueuedState } from './command-queue.ts';
import type { AuditEntry, AuditService } from '../audit/audit-service.ts';
import { CommandLedger } from './command-ledger.ts';

export type CommandStatus = 'sent' | 'answered' | 'timeout' | QueuedState;

/** A queued command's answer to its POST when the device has not answered (yet): 202. */
export interface QueuedView {
  id: string;
  state: QueuedState;
  expiresAt: string;
}

/** How a queued command's POST is answered: 200 with the outcome once answered, else 202. */
export type EnqueueReply = { status: 200; body: CommandOutcome } | { status: 202; body: QueuedView };

/** Queued commands' settings (config: HEARTH_COMMAND_QUEUE_*). */
export interface QueueSettings {
  defaultTtlMs: number;
  maxTtlMs: number;
}

export interface CommandOutcome {
  id: string;
  ok: boolean;
  result?: Record<string, unknown>;
  error?: string;
  /** The answer did not fit the model in ways that do not change its outcome (undeclared result fields). */
  warnings?: string[];
  latencyMs: number;
}

/** One entry of the command ledger. */
export interface CommandRecord {
  id: string;
  deviceId: string;
  action: string;
  params: Record<string, unknown>;
  source: string;
  status: CommandStatus;
  acceptedAt: string;
  sentAt: string | null;
  answeredAt: string | null;
  timedOutAt: string | null;
  ok: boolean | null;
  result: Record<string, unknown> | null;
  error: string | null;
  /** See CommandOutcome.warnings; empty when the answer fit the model. */
  warnings: string[];
  latencyMs: number | null;
  /** Queued commands: when an unanswered one expires; null for a command sent at once. */
  expiresAt: string | null;
}

interface Pending {
  resolve: (r: ResultEvent) => void;
  startedAt: number;
}

/** What the ingest needs to settle a result without reading the ledger back. */
interface Inflight {
  deviceId: string;
  action: string;
  acceptedAt: number;
  timedOut: boolean;
}

const iso = (n: number | null) => (n == null ? null : new Date(Number(n)).toISOString());

/**
 * Commands to devices with acknowledgements. A command is validated against the product's
 * model, recorded in the ledger, sent, and the caller waits for the device's result (or a
 * timeout). Results travel on the bus so the node holding the API request need not be the
 * one that received the device's answer.
 */
export class CommandService {
  private readonly pending = new Map<string, Pending>();
  /** Commands sent from this node and not yet answered; dropped a while after their timeout. */
  private readonly inflight = new Map<string, Inflight>();
  private unsub: Unsubscribe | undefined;
  private readonly ledger: CommandLedger;

  constructor(
    private readonly deps: {
      db: Db;
      bus: Bus;
      log: Logger;
      devices: DeviceService;
      products: ProductService;
      presence: PresenceService;
      defaultTimeoutMs: number;
      observer?: {
        commandFinished(outcome: 'ok' | 'error' | 'timeout' | 'offline', ms: number): void;
        /** A device's answer carried something the model does not declare (counted, not failed). */
        commandResultWarning?(kind: 'undeclared-field'): void;
      };
      /** The message gateway's way in: commands are routed like device messages. */
      ingress?: Pick<UplinkIngress, 'submit'>;
      /** Whether a route could want commands at all (when not, they don't enter the pipeline). */
      routesCommands?: () => boolean;
      /** Queued commands (ttlMs / queue); without it, POSTs that ask for a queue are refused. */
      queue?: CommandQueue;
      queueSettings?: QueueSettings;
      /** The audit log, for the entries of requests that send a command (written with the ledger's entry: one commit). */
      audit?: Pick<AuditService, 'entry' | 'writeIn' | 'requeue' | 'record'>;
    },
  ) {
    this.ledger = new CommandLedger({ db: deps.db, audit: deps.audit });
  }

  start(): void {
    this.unsub = this.deps.bus.subscribe(
      subjects.allCommandResults,
      (msg) => {
        const p = this.pending.get(msg.data.id);
        if (p) {
          this.pending.delete(msg.data.id);
          p.resolve(msg.data);
        }
      },
      { name: 'commands.results' },
    );
    this.deps.queue?.start();
  }

  async stop(): Promise<void> {
    this.unsub?.();
    await this.deps.queue?.stop();
    await this.ledger.drain();
  }

  /**
   * Sends a command and waits for the result. `audit`: the entry of the request, recorded whatever
   * the outcome (with the ledger's entry, in one commit, when the command is sent).
   */
  async send(
    deviceId: string,
    input: { action: string; params?: Record<string, unknown>; timeoutMs?: number },
    source: string,
    route: { userId?: string; lane?: string } = {},
    audit?: AuditEntry,
  ): Promise<CommandOutcome> {
    const auditLog = this.deps.audit;
    if (audit && !auditLog) throw new Error('CommandService.send: an audit entry needs the audit log (deps.audit)');
    const auditRow = audit && auditLog?.entry(audit);
    const params = input.params ?? {};
    try {
      const device = await this.deps.devices.requireEnabled(deviceId);
      const model = await this.deps.products.model(device.productKey);
      const check = model!.checkAction(input.action, params);
      if (!check.ok) throw new HearthError('E_MODEL_MISMATCH', check.problems.join('; '), { problems: check.problems });
      if (!(await this.deps.presence.get(deviceId)).online) {
        this.deps.observer?.commandFinished('offline', 0);
        throw new HearthError('E_DEVICE_OFFLINE', `device "${deviceId}" is offline`);
      }
    } catch (err) {
      if (auditRow) auditLog!.requeue([auditRow]);
      throw err;
    }

    const id = newId('c');
    const acceptedAt = Date.now();
    const timeoutMs = input.timeoutMs ?? this.deps.defaultTimeoutMs;
    const flight: Inflight = { deviceId, action: input.action, acceptedAt, timedOut: false };
    this.inflight.set(id, flight);
    const answer = new Promise<ResultEvent | undefined>((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        flight.timedOut = true;
        setTimeout(() => this.inflight.delete(id), 60_000).unref();
        resolve(undefined);
      }, timeoutMs);
      this.pending.set(id, {
        startedAt: acceptedAt,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      });
    });
    try {
      await this.ledger.sent({ id, deviceId, action: input.action, params: toJson(params), source, acceptedAt, sentAt: Date.now() }, auditRow);
    } catch (err) {
      // Not sent: nothing to wait for.
      const waiter = this.pending.get(id);
      this.pending.delete(id);
      waiter?.resolve({ id, deviceId, ok: false, answeredAt: Date.now() });
      this.inflight.delete(id);
      throw err;
    }
    // `params` is on the wire only when there are some (docs/protocol.md: absent for parameterless actions).
    const down: DownlinkMessage = { deviceId, kind: 'commands', payload: { id, action: input.action, ...(Object.keys(params).length ? { params } : {}) } };
    this.deps.bus.publish(subjects.down(deviceId), down);
    this.deps.bus.publish(subjects.command(deviceId), { id, deviceId, action: input.action, status: 'sent', source });
    // The message gateway routes commands too (to partners, in the caller's lane); the device doesn't wait for it.
    const routed =
      this.deps.routesCommands?.() === false
        ? undefined
        : this.deps.ingress
            ?.submit({
              source: 'api',
              deviceId,
              kind: 'command',
              payload: { id, action: input.action, params },
              via: source,
              ...(route.userId ? { userId: route.userId } : {}),
              ...(route.lane ? { tags: { lane: route.lane } } : {}),
            })
            .catch((err) => this.deps.log.warn({ err, deviceId, commandId: id }, 'command could not be routed'));

    const r = await answer;
    await routed;
    if (!r) {
      const now = Date.now();
      await this.deps.db.updateTable('commands').set({ status: 'timeout', timed_out_at: now }).where('id', '=', id).where('status', '=', 'sent').execute();
      this.deps.bus.publish(subjects.command(deviceId), { id, deviceId, action: input.action, status: 'timeout', source });
      this.deps.observer?.commandFinished('timeout', Date.now() - acceptedAt);
      throw new HearthError('E_COMMAND_TIMEOUT', `device "${deviceId}" did not answer command ${id} within ${timeoutMs} ms`, { commandId: id });
    }
    const latencyMs = Math.max(0, r.answeredAt - acceptedAt);
    this.deps.observer?.commandFinished(r.ok ? 'ok' : 'error', latencyMs);
    return {
      id,
      ok: r.ok,
      ...(r.result !== undefined ? { result: r.result } : {}),
      ...(r.error !== undefined ? { error: r.error } : {}),
      ...(r.warnings?.length ? { warnings: r.warnings } : {}),
      latencyMs,
    };
  }

  /**
   * Queues a command for the device (docs/api.md, queued commands): stored first, then sent in
   * order when the device is (or comes) online. When it is online now, waits up to `timeoutMs` for
   * the answer (200 with the outcome); otherwise, or without an answer in time, 202 with the state.
   * A POST retried with the same caller and Idempotency-Key gets the first one's command.
   */
  async enqueue(
    deviceId: string,
    input: { action: string; params?: Record<string, unknown>; timeoutMs?: number; ttlMs?: number; queue?: boolean },
    source: string,
    route: { userId?: string; lane?: string; idempotencyKey?: string } = {},
  ): Promise<EnqueueReply> {
    const queue = this.deps.queue;
    const settings = this.deps.queueSettings;
    if (!queue || !settings) throw new HearthError('E_UNAVAILABLE', 'queued commands are not available on this node');
    const device = await this.deps.devices.require(deviceId);
    const model = await this.deps.products.model(device.productKey);
    const params = input.params ?? {};
    const check = model!.checkAction(input.action, params);
    if (!check.ok) throw new HearthError('E_MODEL_MISMATCH', check.problems.join('; '), { problems: check.problems });
    // The product's TTL is the maker's wish, bounded by the operator's limit; an explicit ttlMs over the limit is refused.
    const ttlMs = input.ttlMs ?? Math.min(model!.model.commandTtlMs ?? settings.defaultTtlMs, settings.maxTtlMs);
    if (ttlMs > settings.maxTtlMs) {
      throw new HearthError('E_VALIDATION', `ttlMs ${ttlMs} is longer than the limit of ${settings.maxTtlMs} ms (HEARTH_COMMAND_QUEUE_MAX_TTL_MS)`, {
        field: 'body.ttlMs',
        limit: settings.maxTtlMs,
      });
    }
    const key = route.idempotencyKey !== undefined ? `${source} ${route.idempotencyKey}` : null;
    if (key) {
      const earlier = await queue.byKey(deviceId, key);
      if (earlier) return this.replyFor(earlier);
    }
    const id = newId('c');
    const acceptedAt = Date.now();
    const online = (await this.deps.presence.get(deviceId)).online;
    // Waiting starts before the command can be sent: an answer faster than the insert is not missed.
    const timeoutMs = input.timeoutMs ?? this.deps.defaultTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const answer = online
      ? new Promise<ResultEvent | undefined>((resolve) => {
          timer = setTimeout(() => {
            this.pending.delete(id);
            resolve(undefined);
          }, timeoutMs);
          this.pending.set(id, {
            startedAt: acceptedAt,
            resolve: (r) => {
              clearTimeout(timer);
              resolve(r);
            },
          });
        })
      : undefined;
    let added: Awaited<ReturnType<CommandQueue['add']>>;
    try {
      added = await queue.add({ id, deviceId, action: input.action, params, source, acceptedAt, expiresAt: acceptedAt + ttlMs, idempotencyKey: key });
    } catch (err) {
      clearTimeout(timer);
      this.pending.delete(id);
      throw err;
    }
    if (!added.created) {
      clearTimeout(timer);
      this.pending.delete(id);
      return this.replyFor(added.row);
    }
    if (this.deps.routesCommands?.() !== false && this.deps.ingress) {
      await this.deps.ingress
        .submit({
          source: 'api',
          deviceId,
          kind: 'command',
          payload: { id, action: input.action, params },
          via: source,
          ...(route.userId ? { userId: route.userId } : {}),
          ...(route.lane ? { tags: { lane: route.lane } } : {}),
        })
        .catch((err) => this.deps.log.warn({ err, deviceId, commandId: id }, 'command could not be routed'));
    }
    if (answer && (await answer)) return this.replyFor((await queue.get(deviceId, id))!);
    return this.replyFor((await queue.get(deviceId, id)) ?? added.row);
  }

  private replyFor(row: QueueRow): EnqueueReply {
    if ((row.status === 'answered' || row.status === 'failed') && row.ok != null) {
      const body: CommandOutcome = {
        id: row.id,
        ok: row.ok === 1,
        ...(row.result != null ? { result: fromJson(row.result) } : {}),
        ...(row.error != null ? { error: row.error } : {}),
        ...(row.warnings != null ? { warnings: fromJson<string[]>(row.warnings) } : {}),
        latencyMs: Number(row.latency_ms ?? 0),
      };
      return { status: 200, body };
    }
    return { status: 202, body: { id: row.id, state: row.status as QueuedState, expiresAt: iso(row.expires_at)! } };
  }

  /** One command of the device's ledger. */
  async get(deviceId: string, id: string): Promise<CommandRecord> {
    const row = await this.deps.db.selectFrom('commands').selectAll().where('id', '=', id).where('device_id', '=', deviceId).executeTakeFirst();
    if (!row) throw new HearthError('E_COMMAND_NOT_FOUND', `device "${deviceId}" has no command "${id}"`);
    return toRecord(row);
  }

  /** Cancels a queued command that has not been sent yet (409 once sent or settled). */
  async cancel(deviceId: string, id: string): Promise<CommandRecord> {
    if (!this.deps.queue) throw new HearthError('E_COMMAND_NOT_FOUND', `device "${deviceId}" has no command "${id}"`);
    await this.deps.queue.cancel(deviceId, id);
    return this.get(deviceId, id);
  }

  /** The device subscribed to its commands topic (the gateway's `subscribed` uplink, on its shard's owner). */
  async subscribed(deviceId: string): Promise<void> {
    await this.deps.queue?.subscribed(deviceId);
  }

  /** The device left its home: its queue is dropped. */
  async dropQueue(deviceId: string): Promise<void> {
    await this.deps.queue?.drop(deviceId);
  }

  /**
   * A device answered (uplink `commands/result`). Returns a problem when the answer is
   * malformed or unknown, so that the ingest can tell the device.
   *
   * A declared result field with a value outside the model makes the outcome a failure (a caller
   * would read a wrong value). A field the model does not declare changes nothing the caller relies
   * on: the device did the action, so `ok` stays as it said, the field is recorded as sent, and the
   * mismatch is a warning in the ledger and in `hearth_command_result_warnings_total`.
   */
  async handleResult(deviceId: string, payload: unknown, answeredAt: number): Promise<{ code: string; message: string } | undefined> {
    const bad = (message: string) => ({ code: 'E_BAD_MESSAGE', message });
    if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) return bad('a command result must be a JSON object');
    const p = payload as Record<string, unknown>;
    if (typeof p.id !== 'string') return bad('a command result needs the command "id"');
    if (typeof p.ok !== 'boolean') return bad('a command result needs "ok": true or false');
    if (p.result !== undefined && (typeof p.result !== 'object' || p.result === null || Array.isArray(p.result))) return bad('"result" must be an object');
    if (p.error !== undefined && typeof p.error !== 'string') return bad('"error" must be a string');
    const flight = this.inflight.get(p.id);
    const row =
      flight && flight.deviceId === deviceId
        ? { action: flight.action, accepted_at: flight.acceptedAt, status: flight.timedOut ? 'timeout' : 'sent' }
        : await this.deps.db
            .selectFrom('commands')
            .select(['action', 'accepted_at', 'status', 'expires_at'])
            .where('id', '=', p.id)
            .where('device_id', '=', deviceId)
            .executeTakeFirst();
    if (!row) return { code: 'E_UNKNOWN_COMMAND', message: `unknown command id "${p.id}"` };
    const queued = 'expires_at' in row && row.expires_at != null;
    // A queued command answered again (a redelivery after a lost PUBACK): the first answer stands.
    if (queued && (row.status === 'answered' || row.status === 'failed' || row.status === 'cancelled')) {
      this.deps.log.debug({ deviceId, commandId: p.id }, 'repeated answer to a queued command ignored');
      return undefined;
    }
    if (flight && !flight.timedOut) this.inflight.delete(p.id);
    let ok = p.ok;
    let error = p.error as string | undefined;
    const result = p.result as Record<string, unknown> | undefined;
    const warnings: string[] = [];
    if (result) {
      const device = await this.deps.devices.get(deviceId);
      const spec = (await this.deps.products.model(device!.productKey))?.actions.get(row.action);
      const problems: string[] = [];
      for (const key in result) {
        const rs = spec?.result?.find((s) => s.id === key);
        if (!rs) {
          warnings.push(`result field "${key}" is not declared by action "${row.action}" of the model`);
          this.deps.observer?.commandResultWarning?.('undeclared-field');
          continue;
        }
        const why = checkValue(rs, result[key]);
        if (why) problems.push(`result "${key}": ${why}`);
      }
      if (ok && problems.length) {
        ok = false;
        error = `invalid result: ${problems.join('; ')}`;
      }
      if (warnings.length)
        this.deps.log.warn({ deviceId, commandId: p.id, action: row.action, warnings }, 'command result does not fit the model (recorded as a warning)');
    }
    const latency = answeredAt - Number(row.accepted_at);
    if (queued) {
      const status = ok ? 'answered' : 'failed';
      // Conditional: of two answers racing (two nodes, a redelivery), one settles the command.
      const res = await this.deps.db
        .updateTable('commands')
        .set({
          status,
          answered_at: answeredAt,
          ok: ok ? 1 : 0,
          result: result !== undefined ? toJson(result) : null,
          error: error ?? null,
          latency_ms: latency,
          warnings: warnings.length ? toJson(warnings) : null,
        })
        .where('id', '=', p.id)
        .where('status', 'in', ['sent', 'expired', 'queued'])
        .executeTakeFirst();
      if (Number(res.numUpdatedRows) === 0) return undefined;
      const ev: ResultEvent = { id: p.id, deviceId, ok, result, error, ...(warnings.length ? { warnings } : {}), answeredAt };
      this.deps.bus.publish(subjects.commandResult(p.id), ev);
      this.deps.bus.publish(subjects.command(deviceId), {
        id: p.id,
        deviceId,
        action: row.action,
        status,
        ok,
        result,
        error,
        ...(warnings.length ? { warnings } : {}),
      });
      this.deps.observer?.commandFinished(ok ? 'ok' : 'error', Math.max(0, latency));
      await this.deps.queue?.answered(deviceId);
      return ok === p.ok ? undefined : bad(error!);
    }
    await this.ledger.answered({
      id: p.id,
      status: row.status === 'timeout' ? 'timeout' : 'answered',
      answeredAt,
      ok: ok ? 1 : 0,
      result: result !== undefined ? toJson(result) : null,
      error: error ?? null,
      latency,
      warnings: warnings.length ? toJson(warnings) : null,
    });
    const ev: ResultEvent = { id: p.id, deviceId, ok, result, error, ...(warnings.length ? { warnings } : {}), answeredAt };
    this.deps.bus.publish(subjects.commandResult(p.id), ev);
    this.deps.bus.publish(subjects.command(deviceId), {
      id: p.id,
      deviceId,
      action: row.action,
      status: 'answered',
      ok,
      result,
      error,
      ...(warnings.length ? { warnings } : {}),
    });
    return ok === p.ok ? undefined : bad(error!);
  }

  /**
   * A deleted device's commands: those still waiting for an answer go (their callers get the
   * timeout); with `all`, its whole ledger (a purge).
   */
  async forget(deviceId: string, all: boolean): Promise<void> {
    // A deleted device's queue goes too: nothing queued for it is ever sent.
    await this.dropQueue(deviceId);
    let q = this.deps.db.deleteFrom('commands').where('device_id', '=', deviceId);
    if (!all) q = q.where('status', 'in', ['sent', 'queued']);
    await q.execute();
  }

  async list(deviceId: string, limit: number, before?: number): Promise<CommandRecord[]> {
    let q = this.deps.db.selectFrom('commands').selectAll().where('device_id', '=', deviceId);
    if (before !== undefined) q = q.where('accepted_at', '<', before);
    const rows = await q.orderBy('accepted_at', 'desc').limit(limit).execute();
    return rows.map(toRecord);
  }

  /**
   * Commands sent to these devices in [from, to], per action: how many, how many the device
   * answered with a failure, how many timed out (fleet analytics).
   */
  async outcomes(deviceIds: readonly string[], from: number, to: number): Promise<Array<{ action: string; total: number; failed: number; timeouts: number }>> {
    if (deviceIds.length === 0) return [];
    const rows = await this.deps.db
      .selectFrom('commands')
      .select([
        'action',
        (eb) => eb.fn.countAll<number>().as('total'),
        (eb) => eb.fn.sum<number>(eb.case().when('ok', '=', 0).then(1).else(0).end()).as('failed'),
        (eb) => eb.fn.sum<number>(eb.case().when('status', '=', 'timeout').then(1).else(0).end()).as('timeouts'),
      ])
      .where('device_id', 'in', [...deviceIds])
      .where('accepted_at', '>=', from)
      .where('accepted_at', '<=', to)
      .groupBy('action')
      .execute();
    return rows.map((r) => ({ action: r.action, total: Number(r.total), failed: Number(r.failed ?? 0), timeouts: Number(r.timeouts ?? 0) }));
  }

  /**
   * Deletes ledger entries accepted before `before` (a command still unanswered that long ago never will be),
   * `batch` rows per statement with a turn of the event loop between them. Returns the rows deleted.
   */
  async pruneBefore(before: number, batch: number): Promise<number> {
    const { db } = this.deps;
    let total = 0;
    for (;;) {
      const ids = db.selectFrom('commands').select('id').where('accepted_at', '<', before).limit(batch);
      const n = Number((await db.deleteFrom('commands').where('id', 'in', ids).executeTakeFirst()).numDeletedRows);
      total += n;
      if (n < batch) return total;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

function toRecord(r: Selectable<Database['commands']>): CommandRecord {
  return {
    id: r.id,
    deviceId: r.device_id,
    action: r.action,
    params: fromJson(r.params),
    source: r.source,
    status: r.status as CommandStatus,
    acceptedAt: iso(r.accepted_at)!,
    sentAt: iso(r.sent_at),
    answeredAt: iso(r.answered_at),
    timedOutAt: iso(r.timed_out_at),
    ok: r.ok == null ? null : r.ok === 1,
    result: r.result == null ? null : fromJson(r.result),
    error: r.error,
    warnings: r.warnings == null ? [] : fromJson<string[]>(r.warnings),
    latencyMs: r.latency_ms == null ? null : Number(r.latency_ms),
    expiresAt: iso(r.expires_at),
  };
}
