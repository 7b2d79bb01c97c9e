import { parseArgs } from 'node:util';
import { ConfigError, ConfigSchema, envName, loadConfig } from '../core/config/config-schema.ts';
import { migrate, openStore } from '../core/store/db.ts';
import { DEMO_CHILDREN, startSimulator } from '../simulator/simulator.ts';

const USAGE = `Usage: hearth <command> [options]

Commands:
  start                 Run the platform (embedded mode; settings from HEARTH_* variables)
  migrate               Apply database migrations and exit
  simulate [options]    Run a simulated hub with Zigbee-style sub-devices over real MQTT
      --mqtt URL          Broker URL (default mqtt://localhost:$HEARTH_MQTT_PORT or 1883)
      --api URL           REST API to provision the hub with (default http://localhost:$HEARTH_HTTP_PORT or 8080)
      --email E --password P   Operator credentials for provisioning (default HEARTH_ADMIN_EMAIL / HEARTH_ADMIN_PASSWORD)
      --hub ID --secret S Use an already provisioned hub instead of provisioning one
      --interval MS       How often properties change (default 5000)
  help                  Show this text

Configuration (environment variable, default):
${Object.entries(ConfigSchema.properties).map(([k, s]) => `  ${envName(k).padEnd(28)} ${(s as { description?: string }).description ?? ''}${(s as { default?: unknown }).default !== undefined ? ` (default ${JSON.stringify((s as { default?: unknown }).default)})` : ''}`).join('\n')}
`;

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
    if (err instanceof ConfigError) {
      process.stderr.write(`hearth: ${err.message}\n`);
      return 78;
    }
    throw err;
  }
}

async function simulate(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      mqtt: { type: 'string' }, api: { type: 'string' }, email: { type: 'string' }, password: { type: 'string' },
      hub: { type: 'string' }, secret: { type: 'string' }, interval: { type: 'string' },
    },
  });
  const mqttUrl = values.mqtt ?? `mqtt://localhost:${env.HEARTH_MQTT_PORT ?? 1883}`;
  let hubId = values.hub;
  let hubSecret = values.secret;
  if (!hubId || !hubSecret) {
    const api = (values.api ?? `http://localhost:${env.HEARTH_HTTP_PORT ?? 8080}`).replace(/\/$/, '');
    const email = values.email ?? env.HEARTH_ADMIN_EMAIL;
    const password = values.password ?? env.HEARTH_ADMIN_PASSWORD;
    if (!email || !password) {
      process.stderr.write('hearth simulate: give --hub and --secret of a provisioned hub, or operator credentials (--email/--password or HEARTH_ADMIN_EMAIL/HEARTH_ADMIN_PASSWORD) to provision one\n');
      return 2;
    }
    const login = await fetch(`${api}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password }) });
    if (!login.ok) {
      process.stderr.write(`hearth simulate: login failed (${login.status}): ${await login.text()}\n`);
      return 1;
    }
    const { token } = (await login.json()) as { token: string };
    const res = await fetch(`${api}/api/v1/devices`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ product: 'hub', name: 'Simulated hub' }) });
    if (!res.ok) {
      process.stderr.write(`hearth simulate: provisioning failed (${res.status}): ${await res.text()}\n`);
      return 1;
    }
    const hub = (await res.json()) as { id: string; secret: string };
    hubId = hub.id;
    hubSecret = hub.secret;
    process.stdout.write(`provisioned hub ${hubId} (secret ${hubSecret})\n`);
  }
  const sim = startSimulator({
    mqttUrl, hubId, hubSecret, children: DEMO_CHILDREN,
    intervalMs: values.interval ? Number(values.interval) : undefined,
    log: (m) => process.stdout.write(m + '\n'),
  });
  await sim.ready;
  process.stdout.write(`simulating hub ${hubId} with ${sim.children.size} sub-devices on ${mqttUrl}; Ctrl-C to stop\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await sim.stop();
  return 0;
}
