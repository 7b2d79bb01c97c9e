/**
 * One lifecycle for every part of a node: a named unit with `start()`/`stop()` and the units it
 * needs started first. The composition root lists them; the start order is computed once, at
 * construction, from the declared dependencies (a cycle or an unknown name is an error there, not
 * at start), and stopping runs that order backwards.
 */
export interface Lifecycle {
  /** Unique within one node; dependencies name it. */
  readonly name: string;
  /** Units that must be started before this one (and so are stopped after it). */
  readonly after?: readonly string[];
  /** I/O begins here (subscriptions, timers, sockets); a throw fails the whole start. */
  start?(): void | Promise<void>;
  /** Undoes `start()`; also called on a unit whose start never ran or failed, so it must be safe then. */
  stop?(): void | Promise<void>;
}

/**
 * The start order: every unit after the units it names in `after`, and otherwise in the order
 * listed (so a list already in a good order stays as it is). Throws on a duplicate name, an
 * unknown dependency or a cycle, naming the units involved.
 */
export function startOrder(units: readonly Lifecycle[]): Lifecycle[] {
  const byName = new Map<string, Lifecycle>();
  for (const u of units) {
    if (byName.has(u.name)) throw new Error(`lifecycle: two units are named "${u.name}"`);
    byName.set(u.name, u);
  }
  for (const u of units) {
    for (const d of u.after ?? []) {
      if (!byName.has(d)) throw new Error(`lifecycle: "${u.name}" starts after "${d}", which is not a unit`);
    }
  }
  const order: Lifecycle[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (u: Lifecycle, path: string[]): void => {
    const s = state.get(u.name);
    if (s === 'done') return;
    if (s === 'visiting') {
      const cycle = [...path.slice(path.indexOf(u.name)), u.name];
      throw new Error(`lifecycle: dependency cycle ${cycle.join(' → ')}`);
    }
    state.set(u.name, 'visiting');
    for (const d of u.after ?? []) visit(byName.get(d)!, [...path, u.name]);
    state.set(u.name, 'done');
    order.push(u);
  };
  for (const u of units) visit(u, []);
  return order;
}

/**
 * Starts units in their computed order and stops them in reverse. `stop()` covers every unit, in
 * reverse order, whether or not its start ran (a start that failed half-way still lets go of all
 * it opened); it is safe to call twice (the second call returns the first one's promise).
 */
export class Lifecycles {
  /** The computed start order. */
  readonly order: readonly Lifecycle[];
  private stopping: Promise<void> | undefined;

  /** `stopped` hears how long each unit's stop took (the app logs it: a slow shutdown names its unit). */
  constructor(
    units: readonly Lifecycle[],
    private readonly stopped?: (name: string, ms: number) => void,
  ) {
    this.order = startOrder(units);
  }

  async start(): Promise<void> {
    for (const u of this.order) await u.start?.();
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const u of [...this.order].reverse()) {
        const t = performance.now();
        await u.stop?.();
        this.stopped?.(u.name, Math.round(performance.now() - t));
      }
    })();
    return this.stopping;
  }
}
