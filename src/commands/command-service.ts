import type { Db } from '../core/store/db.ts';
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
import type { GatewayIngress } from '../gateway/ingress.ts';

export type CommandStatus = 'sent' | 'answered' | 'timeout';

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

  constructor(private readonly deps: {
    db: Db; bus: Bus; log: Logger; devices: DeviceService; products: ProductService; presence: PresenceService; defaultTimeoutMs: number;
    observer?: {
      commandFinished(outcome: 'ok' | 'error' | 'timeout' | 'offline', ms: number): void;
      /** A device's answer carried something the model does not declare (counted, not failed). */
      commandResultWarning?(kind: 'undeclared-field'): void;
    };
    /** The message gateway's way in: commands are routed like device messages. */
    ingress?: Pick<GatewayIngress, 'submit'>;
    /** Whether a route could want commands at all (when not, they don't enter the pipeline). */
    routesCommands?: () => boolean;
  }) {}

  start(): void {
    this.unsub = this.deps.bus.subscribe(subjects.allCommandResults, (msg) => {
      const p = this.pending.get(msg.data.id);
      if (p) {
        this.pending.delete(msg.data.id);
        p.resolve(msg.data);
      }
    }, { name: 'commands.results' });
  }

  stop(): void {
    this.unsub?.();
  }

  /** Sends a command and waits for the result. */
  async send(
    deviceId: string, input: { action: string; params?: Record<string, unknown>; timeoutMs?: number }, source: string,
    route: { userId?: string; lane?: string } = {},
  ): Promise<CommandOutcome> {
    const device = await this.deps.devices.requireEnabled(deviceId);
    const model = await this.deps.products.model(device.productKey);
    const params = input.params ?? {};
    const check = model!.checkAction(input.action, params);
    if (!check.ok) throw new HearthError('E_MODEL_MISMATCH', check.problems.join('; '), { problems: check.problems });
    if (!(await this.deps.presence.get(deviceId)).online) {
      this.deps.observer?.commandFinished('offline', 0);
      throw new HearthError('E_DEVICE_OFFLINE', `device "${deviceId}" is offline`);
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
      this.pending.set(id, { startedAt: acceptedAt, resolve: (r) => { clearTimeout(timer); resolve(r); } });
    });
    await this.deps.db.insertInto('commands').values({
      id, device_id: deviceId, action: input.action, params: toJson(params), source, status: 'sent',
      accepted_at: acceptedAt, sent_at: Date.now(), answered_at: null, timed_out_at: null, ok: null, result: null, error: null, latency_ms: null,
    }).execute();
    // `params` is on the wire only when there are some (docs/protocol.md: absent for parameterless actions).
    const down: DownlinkMessage = { deviceId, kind: 'commands', payload: { id, action: input.action, ...(Object.keys(params).length ? { params } : {}) } };
    this.deps.bus.publish(subjects.down(deviceId), down);
    this.deps.bus.publish(subjects.command(deviceId), { id, deviceId, action: input.action, status: 'sent', source });
    // The message gateway routes commands too (to partners, in the caller's lane); the device doesn't wait for it.
    const routed = this.deps.routesCommands?.() === false ? undefined : this.deps.ingress?.submit({
      source: 'api', deviceId, kind: 'command', payload: { id, action: input.action, params }, via: source,
      ...(route.userId ? { userId: route.userId } : {}), ...(route.lane ? { tags: { lane: route.lane } } : {}),
    }).catch((err) => this.deps.log.warn({ err, deviceId, commandId: id }, 'command could not be routed'));

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
    return { id, ok: r.ok, ...(r.result !== undefined ? { result: r.result } : {}), ...(r.error !== undefined ? { error: r.error } : {}), ...(r.warnings?.length ? { warnings: r.warnings } : {}), latencyMs };
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
    const row = flight && flight.deviceId === deviceId
      ? { action: flight.action, accepted_at: flight.acceptedAt, status: flight.timedOut ? 'timeout' : 'sent' }
      : await this.deps.db.selectFrom('commands').select(['action', 'accepted_at', 'status']).where('id', '=', p.id).where('device_id', '=', deviceId).executeTakeFirst();
    if (!row) return { code: 'E_UNKNOWN_COMMAND', message: `unknown command id "${p.id}"` };
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
      if (warnings.length) this.deps.log.warn({ deviceId, commandId: p.id, action: row.action, warnings }, 'command result does not fit the model (recorded as a warning)');
    }
    const latency = answeredAt - Number(row.accepted_at);
    await this.deps.db.updateTable('commands').set({
      status: row.status === 'timeout' ? 'timeout' : 'answered', answered_at: answeredAt, ok: ok ? 1 : 0,
      result: result !== undefined ? toJson(result) : null, error: error ?? null, latency_ms: latency,
      warnings: warnings.length ? toJson(warnings) : null,
    }).where('id', '=', p.id).execute();
    const ev: ResultEvent = { id: p.id, deviceId, ok, result, error, ...(warnings.length ? { warnings } : {}), answeredAt };
    this.deps.bus.publish(subjects.commandResult(p.id), ev);
    this.deps.bus.publish(subjects.command(deviceId), { id: p.id, deviceId, action: row.action, status: 'answered', ok, result, error, ...(warnings.length ? { warnings } : {}) });
    return ok === p.ok ? undefined : bad(error!);
  }

  /**
   * A deleted device's commands: those still waiting for an answer go (their callers get the
   * timeout); with `all`, its whole ledger (a purge).
   */
  async forget(deviceId: string, all: boolean): Promise<void> {
    let q = this.deps.db.deleteFrom('commands').where('device_id', '=', deviceId);
    if (!all) q = q.where('status', '=', 'sent');
    await q.execute();
  }

  async list(deviceId: string, limit: number, before?: number): Promise<CommandRecord[]> {
    let q = this.deps.db.selectFrom('commands').selectAll().where('device_id', '=', deviceId);
    if (before !== undefined) q = q.where('accepted_at', '<', before);
    const rows = await q.orderBy('accepted_at', 'desc').limit(limit).execute();
    return rows.map((r) => ({
      id: r.id, deviceId: r.device_id, action: r.action, params: fromJson(r.params), source: r.source, status: r.status as CommandStatus,
      acceptedAt: iso(r.accepted_at)!, sentAt: iso(r.sent_at), answeredAt: iso(r.answered_at), timedOutAt: iso(r.timed_out_at),
      ok: r.ok == null ? null : r.ok === 1, result: r.result == null ? null : fromJson(r.result), error: r.error,
      warnings: r.warnings == null ? [] : fromJson<string[]>(r.warnings), latencyMs: r.latency_ms == null ? null : Number(r.latency_ms),
    }));
  }
}
