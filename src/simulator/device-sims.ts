/**
 * Pure, in-memory behaviour of simulated catalog devices: initial state, periodic drift,
 * commands and desired state. No I/O and no timers: everything that should happen later
 * is returned as a follow-up for the caller (the MQTT simulator) to schedule.
 *
 * Every value a sim produces fits the product's thing model from the built-in catalog
 * (ranges, integers, enums); `set()` enforces that as a last line of defence.
 */
import { fnv1a } from '../core/hash.ts';
import { CATALOG } from '../products/catalog.ts';
import { CompiledModel, checkValue, type PropertySpec } from '../products/thing-model.ts';

export type PropValue = boolean | number | string;
export type Props = Record<string, PropValue>;

export interface SimEvent {
  event: string;
  params?: Record<string, unknown>;
}

/** Something the caller should run after `delayMs`; a new follow-up with the same key replaces the old one. */
export interface FollowUp {
  key: string;
  delayMs: number;
  run: () => SimOutput;
}

export interface SimOutput {
  /** Properties whose value changed. */
  changed: Props;
  /** Events to publish, in order. */
  events: SimEvent[];
  /** Timers to (re)schedule. */
  followUps: FollowUp[];
  /** Keys of scheduled follow-ups to cancel. */
  cancel: string[];
}

export interface CommandOutput extends SimOutput {
  ok: boolean;
  result?: Record<string, unknown>;
  error?: string;
}

export interface DesiredOutput extends SimOutput {
  /**
   * What to report: every accepted key with its value after applying (even when it did not
   * change, so that the cloud sees the desired value fulfilled), plus side effects. Keys whose
   * desired value could not be applied are reported with their current value.
   */
  report: Props;
  /** Keys not applied, with the reason (unknown, read-only or invalid value). */
  ignored: string[];
}

export interface DeviceSim {
  readonly product: string;
  readonly hwid: string;
  /** Whether the product is in the built-in catalog (otherwise the sim is inert). */
  readonly known: boolean;
  /** A copy of every current property value. */
  snapshot(): Props;
  /** Advances the simulation by `dtMs` (properties drift, sensors trigger). */
  tick(dtMs: number): SimOutput;
  /** Runs an action. Unknown actions give `{ ok: false, error: 'unsupported action' }`. */
  command(action: string, params?: unknown): CommandOutput;
  /** Applies a desired-state delta (`state` of a `desired` message). */
  applyDesired(state: unknown): DesiredOutput;
  /** Sets properties directly (used by the simulator for e.g. the hub's `children` count). */
  patch(values: Props): SimOutput;
}

export interface SimOptions {
  /** Random source in [0, 1); defaults to a PRNG seeded from product and hwid (deterministic). */
  rng?: () => number;
  /** Clock (epoch ms); defaults to Date.now. */
  now?: () => number;
}

// ---------------------------------------------------------------------------------------
// Helpers

const MODELS = new Map(CATALOG.map((p) => [p.key, new CompiledModel(p.model)]));

/** Product keys this module simulates with specific behaviour (the whole built-in catalog). */
export const SIMULATED_PRODUCTS: readonly string[] = CATALOG.map((p) => p.key);

/** mulberry32: small, fast, good enough for simulated noise. */
export function seededRng(seed: string): () => number {
  let a = fnv1a(seed);
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function round(x: number, decimals: number): number {
  const f = 10 ** decimals;
  return Math.round(x * f) / f;
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Makes a number fit a numeric property spec (range, integer, step). */
function fitNumber(spec: PropertySpec, x: number): number {
  let v = x;
  if (spec.step !== undefined) v = (spec.min ?? 0) + Math.round((v - (spec.min ?? 0)) / spec.step) * spec.step;
  if (spec.type === 'integer') v = Math.round(v);
  if (spec.min !== undefined) v = Math.max(spec.min, v);
  if (spec.max !== undefined) v = Math.min(spec.max, v);
  if (spec.type === 'number') v = round(v, 6);
  return v;
}

// ---------------------------------------------------------------------------------------
// Behaviours

/** What a behaviour sees of its device. */
interface Api {
  readonly product: string;
  readonly hwid: string;
  readonly state: Readonly<Props>;
  /** Private numeric memory (counters, hidden accumulators). */
  readonly mem: Record<string, number>;
  rng(): number;
  now(): number;
  chance(p: number): boolean;
  /** Uniform in [lo, hi). */
  between(lo: number, hi: number): number;
  pick<T>(list: readonly T[]): T;
  set(key: string, value: PropValue): void;
  emit(event: string, params?: Record<string, unknown>): void;
  later(key: string, delayMs: number, fn: () => void): void;
  cancel(key: string): void;
  /** Random walk of a numeric property by at most ±step, kept within [lo, hi]. */
  drift(key: string, step: number, lo: number, hi: number, decimals: number): void;
}

type CommandReply = { result?: Record<string, unknown>; error?: string } | void;

interface Behaviour {
  /** Sets the initial property values. */
  init(s: Api): void;
  tick?(s: Api, dtMs: number): void;
  commands?: Record<string, (s: Api, params: Record<string, unknown>) => CommandReply>;
  /** Side effects of applying a desired value; the default just sets the property. */
  desired?: Record<string, (s: Api, value: PropValue) => void>;
}

/** How long a motor or relay "moves" before settling, in ms. */
const SETTLE_MS = 1000;

function moveCurtain(s: Api, target: number): void {
  const from = s.state.position as number;
  s.set('position', target);
  if (target === from) {
    s.cancel('moving');
    s.set('moving', 'stopped');
    return;
  }
  s.set('moving', target > from ? 'opening' : 'closing');
  s.later('moving', SETTLE_MS, () => s.set('moving', 'stopped'));
}

function setPlugOn(s: Api, on: boolean): void {
  s.set('on', on);
  s.set('power', on ? round(s.mem.basePower * s.between(0.97, 1.03), 1) : 0);
}

function setLocked(s: Api, locked: boolean, method: string): void {
  s.set('locked', locked);
  s.emit(locked ? 'lock' : 'unlock', { method });
}

/** A binary sensor that occasionally triggers and clears again after a few ticks. */
function pulse(s: Api, key: string, p: number, onEvent: string | undefined, offEvent: string | undefined, minTicks: number, maxTicks: number): void {
  const holdKey = `${key}Hold`;
  if (s.state[key] === true) {
    s.mem[holdKey] = (s.mem[holdKey] ?? 0) - 1;
    if (s.mem[holdKey] <= 0) {
      s.set(key, false);
      if (offEvent) s.emit(offEvent);
    }
  } else if (s.chance(p)) {
    s.set(key, true);
    s.mem[holdKey] = minTicks + Math.floor(s.rng() * (maxTicks - minTicks + 1));
    if (onEvent) s.emit(onEvent);
  }
}

const BEHAVIOURS: Record<string, Behaviour> = {
  hub: {
    init(s) {
      s.mem.bootAt = s.now() - Math.floor(s.between(60, 86_400)) * 1000;
      s.set('firmware', '2.4.1');
      s.set('uptime', Math.floor((s.now() - s.mem.bootAt) / 1000));
      s.set('children', 0);
      s.set('permitJoin', false);
    },
    tick(s) {
      s.set('uptime', Math.max(0, Math.floor((s.now() - s.mem.bootAt) / 1000)));
    },
    commands: {
      permitJoin(s, p) {
        const seconds = p.seconds as number;
        s.set('permitJoin', seconds > 0);
        if (seconds > 0) s.later('permitJoin', seconds * 1000, () => s.set('permitJoin', false));
        else s.cancel('permitJoin');
      },
      reboot(s) {
        s.mem.bootAt = s.now();
        s.set('uptime', 0);
        s.cancel('permitJoin');
        s.set('permitJoin', false);
      },
    },
    desired: {
      permitJoin(s, v) {
        s.set('permitJoin', v);
        if (v) s.later('permitJoin', 254_000, () => s.set('permitJoin', false));
        else s.cancel('permitJoin');
      },
    },
  },

  light: {
    init(s) {
      s.set('on', true);
      s.set('brightness', 10 * Math.round(s.between(4, 10)));
      s.set('colorTemp', 100 * Math.round(s.between(27, 50)));
      s.set('rssi', Math.round(s.between(-75, -45)));
    },
    commands: {
      toggle(s) {
        s.set('on', !s.state.on);
      },
      blink() {},
    },
  },

  plug: {
    init(s) {
      s.mem.basePower = round(s.between(40, 160), 1);
      s.mem.energy = round(s.between(1, 50), 4);
      s.set('on', true);
      s.set('power', s.mem.basePower);
      s.set('energy', s.mem.energy);
      s.set('rssi', Math.round(s.between(-75, -45)));
    },
    tick(s, dtMs) {
      const power = s.state.power as number;
      s.mem.energy += (power * dtMs) / 3.6e9; // W·ms → kWh
      s.set('energy', round(s.mem.energy, 4));
      if (!s.state.on) {
        s.set('power', 0);
      } else if (s.chance(0.002)) {
        const spike = round(s.between(3600, 4000), 1);
        s.set('power', spike);
        s.emit('overload', { power: spike });
      } else {
        s.set('power', round(s.mem.basePower * s.between(0.95, 1.05), 1));
      }
    },
    commands: {
      toggle(s) {
        setPlugOn(s, !s.state.on);
      },
    },
    desired: {
      on(s, v) {
        if (v !== s.state.on) setPlugOn(s, v as boolean);
      },
    },
  },

  'wall-switch': {
    init(s) {
      s.set('left', false);
      s.set('right', false);
    },
    tick(s) {
      if (!s.chance(0.03)) return;
      const button = s.pick(['left', 'right'] as const);
      const kind = s.pick(['single', 'single', 'single', 'double', 'long'] as const);
      if (kind === 'single') s.set(button, !s.state[button]);
      s.emit('press', { button, kind });
    },
  },

  curtain: {
    init(s) {
      s.set('position', s.pick([0, 0, 100, 50]));
      s.set('moving', 'stopped');
    },
    commands: {
      open(s) {
        moveCurtain(s, 100);
      },
      close(s) {
        moveCurtain(s, 0);
      },
      stop(s) {
        s.cancel('moving');
        s.set('moving', 'stopped');
      },
    },
    desired: {
      position(s, v) {
        moveCurtain(s, v as number);
      },
    },
  },

  'door-lock': {
    init(s) {
      s.set('locked', true);
      s.set('battery', Math.round(s.between(60, 100)));
    },
    commands: {
      lock(s) {
        setLocked(s, true, 'app');
      },
      unlock(s) {
        setLocked(s, false, 'app');
      },
    },
    desired: {
      locked(s, v) {
        if (v !== s.state.locked) setLocked(s, v as boolean, 'app');
      },
    },
  },

  thermostat: {
    init(s) {
      s.set('power', true);
      s.set('mode', 'heat');
      s.set('targetTemp', 21);
      s.set('currentTemp', round(s.between(18, 22), 1));
      s.set('fanSpeed', 'auto');
    },
    tick(s) {
      const cur = s.state.currentTemp as number;
      const target = s.state.targetTemp as number;
      const mode = s.state.mode as string;
      let goal = 18; // the room drifts towards this when nothing runs
      if (s.state.power && (mode === 'auto' || (mode === 'heat' && target > cur) || (mode === 'cool' && target < cur))) goal = target;
      const step = clamp(goal - cur, -0.3, 0.3) + s.between(-0.05, 0.05);
      s.set('currentTemp', round(clamp(cur + step, -40, 80), 1));
      if (s.chance(0.001)) s.emit('filterDirty');
    },
  },

  'temp-humidity-sensor': {
    init(s) {
      s.set('temperature', round(s.between(19, 24), 1));
      s.set('humidity', round(s.between(40, 60), 1));
      s.set('battery', Math.round(s.between(60, 100)));
    },
    tick(s) {
      s.drift('temperature', 0.3, 10, 35, 1);
      s.drift('humidity', 1, 20, 90, 1);
    },
  },

  'contact-sensor': {
    init(s) {
      s.set('contact', true);
      s.set('battery', Math.round(s.between(60, 100)));
    },
    tick(s) {
      if (!s.chance(0.05)) return;
      const closed = !s.state.contact;
      s.set('contact', closed);
      s.emit(closed ? 'closed' : 'opened');
    },
  },

  'motion-sensor': {
    init(s) {
      s.set('occupancy', false);
      s.set('illuminance', Math.round(s.between(50, 400)));
      s.set('battery', Math.round(s.between(60, 100)));
    },
    tick(s) {
      pulse(s, 'occupancy', 0.1, 'motion', undefined, 2, 4);
      if (s.chance(0.3)) s.set('illuminance', Math.round(clamp((s.state.illuminance as number) * s.between(0.9, 1.1) + s.between(-5, 5), 0, 100_000)));
    },
  },

  'water-leak-sensor': {
    init(s) {
      s.set('leak', false);
      s.set('battery', Math.round(s.between(60, 100)));
    },
    tick(s) {
      pulse(s, 'leak', 0.005, 'leak', 'dry', 3, 6);
    },
  },

  'smoke-sensor': {
    init(s) {
      s.set('smoke', false);
      s.set('battery', Math.round(s.between(60, 100)));
    },
    tick(s) {
      pulse(s, 'smoke', 0.001, 'smoke', 'clear', 2, 4);
      if (s.chance(0.005)) s.emit('selfTest', { ok: true });
    },
    commands: {
      silence(s) {
        if (s.state.smoke) {
          s.set('smoke', false);
          s.emit('clear');
        }
      },
    },
  },

  'illuminance-sensor': {
    init(s) {
      s.set('illuminance', Math.round(s.between(100, 800)));
      s.set('battery', Math.round(s.between(60, 100)));
    },
    tick(s) {
      s.set('illuminance', Math.round(clamp((s.state.illuminance as number) * s.between(0.92, 1.08) + s.between(-5, 5), 0, 100_000)));
    },
  },

  camera: {
    init(s) {
      s.set('recording', true);
      s.set('privacyMode', false);
      s.set('storageFree', Math.round(s.between(20_000, 60_000)));
    },
    tick(s) {
      if (s.state.recording && !s.state.privacyMode) s.set('storageFree', Math.max(0, (s.state.storageFree as number) - Math.round(s.between(1, 5))));
      if (!s.state.privacyMode && s.chance(0.05)) {
        s.emit('motion', { snapshotUrl: snapshotUrl(s), confidence: round(s.between(0.5, 1), 2) });
      }
    },
    commands: {
      snapshot(s) {
        if (s.state.privacyMode) return { error: 'privacy mode is on' };
        return { result: { url: snapshotUrl(s) } };
      },
    },
  },

  'cloud-printer': {
    init(s) {
      s.mem.sheets = 100;
      s.mem.jobs = 0;
      s.set('paper', 'ok');
      s.set('online', true);
      s.set('printed', 0);
    },
    commands: {
      print(s, p) {
        const copies = typeof p.copies === 'number' ? p.copies : 1;
        if (s.mem.sheets <= 0) return { error: 'paper out' };
        const jobId = `job_${++s.mem.jobs}`;
        const printed = Math.min(copies, s.mem.sheets);
        s.mem.sheets -= printed;
        s.set('printed', (s.state.printed as number) + printed);
        const before = s.state.paper;
        s.set('paper', s.mem.sheets <= 0 ? 'out' : s.mem.sheets < 20 ? 'low' : 'ok');
        if (s.state.paper === 'out' && before !== 'out') s.emit('paperOut');
        s.later(`job:${jobId}`, 300 * printed, () => s.emit('jobDone', { jobId }));
        return { result: { jobId } };
      },
    },
  },

  'payment-speaker': {
    init(s) {
      s.set('volume', 60);
      s.set('battery', Math.round(s.between(60, 100)));
    },
    commands: {
      announce() {},
    },
  },
};

function snapshotUrl(s: Api): string {
  return `https://snapshots.example.invalid/${s.hwid.replace(/[^A-Za-z0-9]/g, '')}/${s.now()}.jpg`;
}

// ---------------------------------------------------------------------------------------
// The sim

function emptyOutput(): SimOutput {
  return { changed: {}, events: [], followUps: [], cancel: [] };
}

class Sim implements DeviceSim {
  readonly known: boolean;
  private readonly state: Props = {};
  private readonly mem: Record<string, number> = {};
  private readonly model: CompiledModel | undefined;
  private readonly behaviour: Behaviour | undefined;
  private readonly rng: () => number;
  private readonly now: () => number;
  private out: SimOutput = emptyOutput();
  private readonly api: Api;

  constructor(
    readonly product: string,
    readonly hwid: string,
    opts: SimOptions,
  ) {
    this.model = MODELS.get(product);
    this.behaviour = BEHAVIOURS[product];
    this.known = this.model !== undefined && this.behaviour !== undefined;
    this.rng = opts.rng ?? seededRng(`${product}|${hwid}`);
    this.now = opts.now ?? Date.now;
    this.api = {
      product,
      hwid,
      state: this.state,
      mem: this.mem,
      rng: () => this.rng(),
      now: () => this.now(),
      chance: (p) => this.rng() < p,
      between: (lo, hi) => lo + this.rng() * (hi - lo),
      pick: (list) => list[Math.floor(this.rng() * list.length) % list.length],
      set: (k, v) => this.set(k, v),
      emit: (event, params) => {
        this.out.events.push(params === undefined ? { event } : { event, params });
      },
      later: (key, delayMs, fn) => {
        this.out.cancel = this.out.cancel.filter((k) => k !== key);
        this.out.followUps = this.out.followUps.filter((f) => f.key !== key);
        this.out.followUps.push({ key, delayMs, run: () => this.run(fn) });
      },
      cancel: (key) => {
        this.out.followUps = this.out.followUps.filter((f) => f.key !== key);
        if (!this.out.cancel.includes(key)) this.out.cancel.push(key);
      },
      drift: (key, step, lo, hi, decimals) => {
        const cur = this.state[key];
        if (typeof cur !== 'number') return;
        const next = clamp(cur + (this.rng() * 2 - 1) * step, lo, hi);
        this.set(key, round(next, decimals));
      },
    };
    if (this.behaviour) this.run(() => this.behaviour!.init(this.api));
  }

  /** Runs `fn` collecting what it changes. */
  private run(fn: () => void): SimOutput {
    const prev = this.out;
    this.out = emptyOutput();
    try {
      fn();
      return this.out;
    } finally {
      this.out = prev;
    }
  }

  /** Sets a property, coerced into its model spec; records the change. */
  private set(key: string, value: PropValue): void {
    const spec = this.model?.properties.get(key);
    if (!spec) return; // never invent properties the model does not have
    let v = value;
    if (typeof v === 'number' && (spec.type === 'integer' || spec.type === 'number')) v = fitNumber(spec, v);
    if (checkValue(spec, v) !== undefined) return;
    if (this.state[key] === v) return;
    this.state[key] = v;
    this.out.changed[key] = v;
  }

  snapshot(): Props {
    return { ...this.state };
  }

  patch(values: Props): SimOutput {
    return this.run(() => {
      for (const k in values) this.set(k, values[k]);
    });
  }

  tick(dtMs: number): SimOutput {
    return this.run(() => {
      this.behaviour?.tick?.(this.api, Math.max(0, dtMs));
      const battery = this.state.battery;
      if (typeof battery === 'number' && battery > 5 && this.api.chance(0.02)) this.set('battery', Math.max(5, battery - 1));
      const rssi = this.state.rssi;
      if (typeof rssi === 'number' && this.api.chance(0.3)) this.set('rssi', Math.round(clamp(rssi + this.api.between(-3, 3), -95, -35)));
    });
  }

  command(action: string, params?: unknown): CommandOutput {
    const handler =
      typeof action === 'string' && this.behaviour?.commands && Object.hasOwn(this.behaviour.commands, action) ? this.behaviour.commands[action] : undefined;
    if (!handler || !this.model?.actions.has(action)) return { ...emptyOutput(), ok: false, error: 'unsupported action' };
    if (params !== undefined && params !== null && !isRecord(params)) return { ...emptyOutput(), ok: false, error: 'invalid params: must be an object' };
    const p = (params ?? {}) as Record<string, unknown>;
    const check = this.model.checkAction(action, p);
    if (!check.ok) return { ...emptyOutput(), ok: false, error: `invalid params: ${check.problems.join('; ')}` };
    let reply: CommandReply | undefined;
    const out = this.run(() => {
      reply = handler(this.api, p);
    });
    const r = reply as CommandReply;
    if (r && r.error !== undefined) return { ...emptyOutput(), ok: false, error: r.error };
    return r && r.result !== undefined ? { ...out, ok: true, result: r.result } : { ...out, ok: true };
  }

  applyDesired(state: unknown): DesiredOutput {
    if (!isRecord(state)) return { ...emptyOutput(), report: {}, ignored: ['desired "state" must be an object'] };
    const ignored: string[] = [];
    const keys: string[] = [];
    const out = this.run(() => {
      for (const key of Object.keys(state)) {
        const spec = this.model?.properties.get(key);
        if (!spec) {
          ignored.push(`${key}: unknown property`);
          continue;
        }
        if (spec.access !== 'rw') {
          ignored.push(`${key}: read-only`);
          continue;
        }
        const value = state[key];
        const why = checkValue(spec, value);
        if (why !== undefined) {
          ignored.push(`${key}: ${why}`);
          if (key in this.state) keys.push(key); // report the current value: the cloud drops the stale desired key
          continue;
        }
        const fn = this.behaviour?.desired?.[key];
        if (fn) fn(this.api, value as PropValue);
        else this.set(key, value as PropValue);
        keys.push(key);
      }
    });
    const report: Props = { ...out.changed };
    for (const k of keys) if (k in this.state) report[k] = this.state[k];
    return { ...out, report, ignored };
  }
}

/** Creates the simulated behaviour of one device. Products outside the catalog get an inert sim. */
export function createDeviceSim(product: string, hwid: string, opts: SimOptions = {}): DeviceSim {
  return new Sim(product, hwid, opts);
}
