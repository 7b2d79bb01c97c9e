import { parseArgs } from 'node:util';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, ConfigSchema, envName, loadConfig } from '../core/config/config-schema.ts';
import { migrate, openStore } from '../core/store/db.ts';
import { StartupError, EXIT_CANNOT_START } from '../core/startup-error.ts';
import { runningServer } from '../core/data-dir-lock.ts';
import { isHearthError } from '../core/errors.ts';
import { initialPasswordPath, readInitialPassword, removeInitialPassword } from '../auth/initial-password.ts';

const SIMULATE_USAGE = `Usage: hearth simulate [options]

Runs a simulated hub with Zigbee-style sub-devices (light, plug, lock, sensors, curtain) over real
MQTT. The hub is provisioned on the first run and remembered in the data directory
(simulator.json), so later runs are the same hub with the same pairing code.

  --api URL             REST API (default: the running server of HEARTH_DATA_DIR, else
                        http://localhost:$HEARTH_HTTP_PORT, else http://localhost:8080)
  --mqtt URL            MQTT broker (default: likewise, mqtt://localhost:1883)
  --email E             Operator e-mail for provisioning (default HEARTH_ADMIN_EMAIL, else admin@hearth.local)
  --password P          Operator password (default HEARTH_ADMIN_PASSWORD, else the generated first
                        password while it is kept in the data directory)
  --hub ID --secret S   Use this provisioned hub instead
  --new                 Provision a new hub even if one is remembered
  --interval MS         How often properties change (default 5000)
  --ota-failure-rate R  Share of sub-device firmware updates that fail (0 to 1; default 0), as a bad
                        build would: always the same sub-devices (docs/ota.md)
`;

const ADMIN_USAGE = `Usage: hearth admin <command> [options]

Works on the store directly (HEARTH_DATA_DIR, or HEARTH_DATABASE_URL), so only someone with access
to the server can run it; the server may be running or not.

  show-initial-password            Print the operator's generated first password (kept in the data
                                   directory until the operator first signs in)
  reset-password [--email E] [--password P]
                                   Set the operator's password (generated and printed when --password is not
                                   given) and end all of the operator's sessions
`;

const USAGE = `Usage: hearth <command> [options]

Commands:
  start                 Run the platform (embedded mode; settings from HEARTH_* variables)
  migrate               Apply database migrations and exit
  simulate [options]    Run a simulated hub with sub-devices over real MQTT (hearth simulate --help)
  admin <command>       The operator account: show-initial-password, reset-password (hearth admin --help)
  help                  Show this text

Exit codes: 0 done, 1 failed, 2 bad usage, 78 cannot start as configured (a bad value, a port in
use, a data directory held by another Hearth: the message names the variable to change).

Configuration (environment variable, default):
  ${'HEARTH_CONFIG'.padEnd(34)} JSON file with the same keys (camelCase) as the variables below; the variables win (default <data dir>/hearth.json)
${Object.entries(ConfigSchema.properties)
  .map(([k, s]) => {
    const { description, default: def } = s as { description?: string; default?: unknown };
    return `  ${envName(k).padEnd(34)} ${description ?? ''}${def !== undefined ? ` (default ${JSON.stringify(def)})` : ''}`;
  })
  .join('\n')}
`;

/** A mistake in how a command was called: printed with the usage, exit code 2. */
class UsageError extends Error {}

/** A command that failed for a reason a person can act on: one line, exit code 1. */
class CommandError extends Error {}

/** Runs one CLI command; returns the exit code. */
export async function runCli(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [command = 'help', ...rest] = argv;
  try {
    switch (command) {
      case 'start': {
        const { runServer } = await import('../main.ts');
        await runServer(loadConfig(env));
        return 0;
      }
      case 'migrate': {
        const config = loadConfig(env);
        const { db } = openStore(config);
        const applied = await migrate(db);
        await db.destroy();
        process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'database is up to date\n');
        return 0;
      }
      case 'simulate':
        return await simulate(rest, env);
      case 'admin':
        return await admin(rest, env);
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return 0;
      default:
        process.stderr.write(`unknown command "${command}"\n\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    if (err instanceof ConfigError || err instanceof StartupError) {
      process.stderr.write(`hearth: ${err.message}\n`);
      return EXIT_CANNOT_START;
    }
    if (err instanceof UsageError) {
      process.stderr.write(`hearth ${command}: ${err.message}\n\n${command === 'simulate' ? SIMULATE_USAGE : command === 'admin' ? ADMIN_USAGE : USAGE}`);
      return 2;
    }
    if (err instanceof CommandError || isHearthError(err)) {
      process.stderr.write(`hearth ${command}: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

/** Parsed options: strings, and the booleans `help` and `new`. */
type Options = { [name: string]: string | undefined } & { help?: boolean; new?: boolean };

/** parseArgs, with its mistakes (unknown options, missing values) as usage errors. */
function parse(args: string[], options: Record<string, { type: 'string' | 'boolean' }>): { values: Options; positionals: string[] } {
  try {
    const r = parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
    return { values: r.values as Options, positionals: r.positionals };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

// ------------------------------------------------------------------------------------------ admin

async function admin(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values, positionals } = parse(args, { email: { type: 'string' }, password: { type: 'string' } });
  const sub = positionals[0];
  if (values.help || sub === undefined || sub === 'help') {
    process.stdout.write(ADMIN_USAGE);
    return values.help || sub === 'help' ? 0 : 2;
  }
  if (sub !== 'show-initial-password' && sub !== 'reset-password') throw new UsageError(`unknown command "${sub}"`);
  const config = loadConfig(env);
  if (config.databaseUrl === undefined && !existsSync(join(config.dataDir, 'hearth.sqlite'))) {
    throw new CommandError(`no Hearth data in ${config.dataDir} (HEARTH_DATA_DIR): start Hearth once first, or set HEARTH_DATA_DIR`);
  }
  const { AuthService } = await import('../auth/auth-service.ts');
  const { SettingsStore } = await import('../core/settings-store.ts');
  const { db } = openStore(config);
  try {
    await migrate(db);
    const auth = new AuthService({ db, settings: new SettingsStore(db), ttlSeconds: config.tokenTtlSeconds });
    await auth.start();
    if (sub === 'show-initial-password') {
      const kept = readInitialPassword(config.dataDir);
      const state = kept === undefined ? undefined : await auth.operatorFirstPassword(kept);
      if (kept === undefined || !state?.pending) {
        if (kept !== undefined) removeInitialPassword(config.dataDir);
        throw new CommandError(
          `no initial password is kept in ${config.dataDir}: the operator has signed in (or its password was set) since; if it is lost, run: npx hearth admin reset-password`,
        );
      }
      process.stderr.write(`operator ${state.email}; this password (from ${initialPasswordPath(config.dataDir)}) is kept until the first sign-in:\n`);
      process.stdout.write(`${kept}\n`);
      return 0;
    }
    const r = await auth.resetOperatorPassword(values.email, values.password);
    removeInitialPassword(config.dataDir);
    process.stdout.write(r.generated ? `password of operator ${r.email} reset to: ${r.password}\n` : `password of operator ${r.email} changed\n`);
    const running = config.databaseUrl === undefined ? runningServer(config.dataDir) : undefined;
    process.stdout.write(
      `all of ${r.email}'s sessions are ended${running ? ` (the running server, pid ${running.pid}, accepts access tokens it issued before for at most ${config.tokenTtlSeconds} s more; restart it to end them now)` : ''}\n`,
    );
    return 0;
  } finally {
    await db.destroy();
  }
}

// --------------------------------------------------------------------------------------- simulate

/** Where the running server of this data directory (or the configured ports) can be reached. */
function serverUrls(env: NodeJS.ProcessEnv, dataDir: string): { api: string; mqtt: string } {
  const running = runningServer(dataDir);
  const http = running?.httpPort ?? (env.HEARTH_HTTP_PORT || 8080);
  const mqtt = running?.mqttPort ?? (env.HEARTH_MQTT_PORT || 1883);
  return { api: `http://localhost:${http}`, mqtt: `mqtt://localhost:${mqtt}` };
}

interface RememberedHub {
  hubId: string;
  secret: string;
  pairingCode?: string;
}

const SIMULATOR_FILE = 'simulator.json';

/** Hubs provisioned by earlier runs, by API base URL. */
function rememberedHubs(dataDir: string): Record<string, RememberedHub> {
  try {
    return JSON.parse(readFileSync(join(dataDir, SIMULATOR_FILE), 'utf8')) as Record<string, RememberedHub>;
  } catch {
    return {};
  }
}

function rememberHub(dataDir: string, api: string, hub: RememberedHub | undefined): void {
  const all = rememberedHubs(dataDir);
  if (hub) all[api] = hub;
  else delete all[api];
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(join(dataDir, SIMULATOR_FILE), JSON.stringify(all, null, 2) + '\n', { mode: 0o600 });
}

async function simulate(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values } = parse(args, {
    mqtt: { type: 'string' },
    api: { type: 'string' },
    email: { type: 'string' },
    password: { type: 'string' },
    hub: { type: 'string' },
    secret: { type: 'string' },
    interval: { type: 'string' },
    new: { type: 'boolean' },
    'ota-failure-rate': { type: 'string' },
  });
  if (values.help) {
    process.stdout.write(SIMULATE_USAGE);
    return 0;
  }
  if ((values.hub === undefined) !== (values.secret === undefined)) throw new UsageError('--hub and --secret go together');
  const interval = values.interval === undefined ? undefined : Number(values.interval);
  if (interval !== undefined && !(Number.isInteger(interval) && interval >= 10))
    throw new UsageError('--interval must be a whole number of milliseconds, at least 10');
  const otaFailureRate = values['ota-failure-rate'] === undefined ? undefined : Number(values['ota-failure-rate']);
  if (otaFailureRate !== undefined && !(otaFailureRate >= 0 && otaFailureRate <= 1)) throw new UsageError('--ota-failure-rate must be a number from 0 to 1');
  const dataDir = env.HEARTH_DATA_DIR || './data';
  const defaults = serverUrls(env, dataDir);
  const api = (values.api ?? defaults.api).replace(/\/+$/, '');
  const mqttUrl = values.mqtt ?? defaults.mqtt;

  const call = async (path: string, init: RequestInit & { token?: string } = {}): Promise<Response> => {
    const headers: Record<string, string> = { 'content-type': 'application/json', ...(init.token ? { authorization: `Bearer ${init.token}` } : {}) };
    try {
      return await fetch(`${api}${path}`, { ...init, headers });
    } catch (err) {
      // undici's cause is the socket error, or an AggregateError of one per address (IPv6 and IPv4)
      const cause = (err as { cause?: { code?: string; errors?: Array<{ code?: string }> } }).cause;
      const codes = [cause?.code, ...(cause?.errors ?? []).map((e) => e.code)];
      throw new CommandError(
        codes.some((c) => c === 'ECONNREFUSED' || c === 'ENOTFOUND' || c === 'EAI_AGAIN')
          ? `no Hearth at ${api} — is it running? set --api/--mqtt`
          : `cannot reach ${api}: ${(err as Error).message}`,
      );
    }
  };
  let token: string | undefined;
  const login = async (required: boolean): Promise<string | undefined> => {
    if (token) return token;
    const email = values.email ?? env.HEARTH_ADMIN_EMAIL ?? 'admin@hearth.local';
    // The kept first password is this data directory's server's: never sent to another --api.
    const local = api === defaults.api.replace(/\/+$/, '');
    const password = values.password ?? env.HEARTH_ADMIN_PASSWORD ?? (local ? readInitialPassword(dataDir) : undefined);
    if (!password) {
      if (!required) return undefined;
      throw new CommandError(
        "give the operator's password (--password, or HEARTH_ADMIN_PASSWORD) to provision a hub, or a provisioned hub with --hub and --secret",
      );
    }
    const res = await call('/api/v1/auth/login', { method: 'POST', body: JSON.stringify({ email, password }) });
    if (!res.ok)
      throw new CommandError(
        `signing in as ${email} at ${api} failed (${res.status}): ${((await res.json().catch(() => ({}))) as { detail?: string }).detail ?? res.statusText}`,
      );
    token = ((await res.json()) as { token: string }).token;
    return token;
  };

  let hub: RememberedHub | undefined = values.hub ? { hubId: values.hub, secret: values.secret! } : values.new ? undefined : rememberedHubs(dataDir)[api];
  let remembered = hub !== undefined && values.hub === undefined;
  // With a sign-in at hand, check that a remembered hub still exists (the database may be new) and learn its pairing code.
  if (hub && (!hub.pairingCode || remembered)) {
    const t = await login(false);
    if (t) {
      const res = await call(`/api/v1/devices/${encodeURIComponent(hub.hubId)}`, { token: t });
      if (res.status === 404 && remembered) hub = undefined;
      else if (res.ok) hub.pairingCode = ((await res.json()) as { pairingCode?: string | null }).pairingCode ?? hub.pairingCode;
    }
  }
  if (!hub) {
    const t = (await login(true))!;
    const res = await call('/api/v1/devices', { method: 'POST', token: t, body: JSON.stringify({ product: 'hub', name: 'Simulated hub' }) });
    if (!res.ok) throw new CommandError(`provisioning a hub failed (${res.status}): ${await res.text()}`);
    const made = (await res.json()) as { id: string; secret: string; pairingCode: string };
    hub = { hubId: made.id, secret: made.secret, pairingCode: made.pairingCode };
    remembered = false;
    rememberHub(dataDir, api, hub);
    process.stdout.write(`provisioned hub ${hub.hubId} (remembered in ${join(dataDir, SIMULATOR_FILE)} for the next runs)\n`);
  }

  const { DEMO_CHILDREN, startSimulator } = await import('../simulator/simulator.ts');
  const sim = startSimulator({
    mqttUrl,
    hubId: hub.hubId,
    hubSecret: hub.secret,
    children: DEMO_CHILDREN,
    intervalMs: interval,
    otaFailureRate,
    log: (m) => process.stdout.write(m + '\n'),
  });
  const stopped = new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  const slow = setTimeout(() => process.stderr.write(`hearth simulate: still connecting to ${mqttUrl}: is Hearth running there? (set --mqtt)\n`), 5000);
  try {
    const first = await Promise.race([sim.ready.then(() => 'ready' as const), stopped.then(() => 'stopped' as const)]);
    if (first === 'stopped') return 0;
  } catch (err) {
    await sim.stop();
    if (remembered) rememberHub(dataDir, api, undefined);
    throw new CommandError(
      `the hub ${hub.hubId} could not start at ${mqttUrl}: ${(err as Error).message}${remembered ? ' (forgotten: the next run provisions a new one)' : ''}`,
    );
  } finally {
    clearTimeout(slow);
  }
  process.stdout.write(
    `simulating hub ${hub.hubId}${hub.pairingCode ? ` (pairing code ${hub.pairingCode})` : ''} with ${sim.children.size} sub-devices on ${mqttUrl}; Ctrl-C to stop\n`,
  );
  await stopped;
  await sim.stop();
  return 0;
}
