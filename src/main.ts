import { hostname } from 'node:os';
import { Hearth, VERSION, type StartInfo } from './app.ts';
import type { Config } from './core/config/config-schema.ts';
import { createLogger } from './core/logger.ts';
import { initTracing } from './core/observability/tracing.ts';
import { selfSignedCertPath } from './transports/tls/tls-material.ts';
import type { DemoHandle } from './demo/demo.ts';

/**
 * Runs the platform until SIGINT/SIGTERM: turns tracing on when a collector is configured (it is
 * process-wide, so here rather than in the app), builds the app, starts it, loads the demo on
 * first start, prints where everything is, and shuts down gracefully on a signal, sending the
 * last spans before the process ends.
 */
export async function runServer(config: Config, out: (line: string) => void = (l) => process.stdout.write(l + '\n')): Promise<void> {
  const log = createLogger(config.logLevel);
  const tracing = await initTracing({
    serviceName: 'hearth',
    version: VERSION,
    nodeName: config.nodeName ?? hostname(),
    otlpEndpoint: config.otlpEndpoint,
    log,
  });
  const hearth = await Hearth.create(config, { log });
  let demo: DemoHandle | undefined;
  let started: Promise<unknown> = Promise.resolve();

  // Signals are handled from the first moment: a stop during start-up waits for the start to finish.
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    hearth.log.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      hearth.log.error('graceful shutdown took too long; exiting');
      process.exit(1);
    }, Math.max(config.shutdownGraceMs, config.drainDelayMs) + 5000);
    force.unref();
    void (async () => {
      await started.catch(() => undefined);
      await demo?.stop();
      await hearth.stop();
      await tracing.shutdown();
      hearth.log.info('stopped');
    })();
  };
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('SIGTERM', () => shutdown('SIGTERM'));

  const starting = (async () => {
    const info = await hearth.start();
    // The demo (and the MQTT client its simulator uses) is loaded only when it runs.
    if (config.demo && !stopping) demo = await (await import('./demo/demo.ts')).setupDemo(hearth, info.firstStart);
    return info;
  })();
  started = starting;
  let info: Awaited<typeof starting>;
  try {
    info = await starting;
  } catch (err) {
    // Nothing was created before the ports were bound: let go of what was opened, then say why.
    stopping = true;
    await demo?.stop().catch(() => undefined);
    await hearth.stop().catch(() => undefined);
    await tracing.shutdown().catch(() => undefined);
    throw err;
  }
  if (stopping) return;

  const host = config.publicUrl ?? `http://localhost:${hearth.httpPort}`;
  const mqttHost = new URL(host).hostname;
  const lines = [
    '',
    `Hearth is running.`,
    `  Console        ${host}/`,
    `  REST API       ${host}/api/v1`,
    `  API docs       ${host}/docs   (OpenAPI JSON: ${host}/docs/json)`,
    `  MQTT           mqtt://${mqttHost}:${hearth.mqttPort}   (WebSocket: ${host.replace(/^http/, 'ws')}/mqtt)`,
    `  Health         ${host}/healthz  ${host}/readyz`,
    ...tlsLines(hearth, mqttHost),
    `  Data           ${config.dataDir}`,
    '',
    `Operator login:  ${info.operator.email}` + operatorNote(info.operator),
    ...(info.operator.initialPasswordFile
      ? [
          `  (kept in ${info.operator.initialPasswordFile} until the first sign-in: npx hearth admin show-initial-password; lost? npx hearth admin reset-password)`,
        ]
      : []),
    ...(info.operator.initialPasswordFile
      ? [`First-run setup: open ${host}/ to choose the operator's e-mail and password (from another machine, with the setup code ${hearth.setup.code})`]
      : []),
  ];
  if (demo) lines.push(...demo.banner(host, mqttHost, hearth.mqttPort, info.operator.email));
  out(lines.join('\n'));
}

/** The banner's TLS lines: where, and which certificate (its fingerprint, and the file to trust when self-signed). */
function tlsLines(hearth: Hearth, host: string): string[] {
  const tls = hearth.tls?.served;
  if (!tls) return [];
  return [
    `  MQTT over TLS  mqtts://${host}:${hearth.mqttTlsPort}   HTTPS/WSS https://${host}:${hearth.httpsPort}`,
    `  Certificate    SHA-256 ${tls.fingerprint}` +
      (tls.selfSigned ? `   (self-signed, for development: --cafile ${selfSignedCertPath(hearth.config.dataDir)})` : ''),
  ];
}

/** The password part of the banner's operator line. */
function operatorNote(op: StartInfo['operator']): string {
  if (op.generatedPassword) return `  password: ${op.generatedPassword}   (generated)`;
  if (op.created) return '  (password from HEARTH_ADMIN_PASSWORD)';
  if (op.initialPasswordFile) return '  (generated password not used yet)';
  return '';
}
