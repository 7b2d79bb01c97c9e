import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { builtinModules } from 'node:module';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { ConfigSchema, envName, loadConfig } from '../src/core/config/config-schema.ts';
import { renderChart, renderString, type Manifest } from './helpers/helm-render.ts';

// Packaging and operations, checked without Docker, helm or Kubernetes: the Dockerfile is read
// instruction by instruction, the chart is rendered by test/helpers/helm-render.ts and every
// object checked for what the cluster would reject or do wrong, and the dashboard and alert rules
// are checked against the metric names the metrics module exposes.

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CHART = join(ROOT, 'deploy/helm/hearth');
const CONFIG_ENV = new Set(Object.keys(ConfigSchema.properties).map(envName));

/**
 * Every metric the dashboard and alerts may use, with its type and labels. These are the names
 * the metrics module exposes; a later test checks this list against a live `/metrics`.
 */
const METRICS: Record<string, { type: 'gauge' | 'counter' | 'histogram'; labels: string[] }> = {
  hearth_devices_connected: { type: 'gauge', labels: [] },
  hearth_device_messages_total: { type: 'counter', labels: ['direction', 'kind'] },
  hearth_device_messages_rejected_total: { type: 'counter', labels: ['code'] },
  hearth_ingest_lag_seconds: { type: 'histogram', labels: [] },
  hearth_command_duration_seconds: { type: 'histogram', labels: ['outcome'] },
  hearth_presence_changes_total: { type: 'counter', labels: ['online', 'reason'] },
  hearth_connections_refused_total: { type: 'counter', labels: ['reason'] },
  hearth_bus_publish_duration_seconds: { type: 'histogram', labels: ['kind'] },
  hearth_bus_request_duration_seconds: { type: 'histogram', labels: [] },
  hearth_db_query_duration_seconds: { type: 'histogram', labels: ['op'] },
  hearth_http_request_duration_seconds: { type: 'histogram', labels: ['method', 'route', 'status'] },
  hearth_circuit_breaker_state: { type: 'gauge', labels: ['target'] },
  hearth_outbound_requests_total: { type: 'counter', labels: ['target', 'outcome'] },
  hearth_shards_owned: { type: 'gauge', labels: [] },
  hearth_node_ready: { type: 'gauge', labels: [] },
  hearth_node_info: { type: 'gauge', labels: ['version', 'node', 'roles'] },
  hearth_stream_clients: { type: 'gauge', labels: [] },
  hearth_nodejs_eventloop_lag_seconds: { type: 'gauge', labels: [] },
  hearth_login_failures_total: { type: 'counter', labels: ['reason'] },
  hearth_login_spray_detected_total: { type: 'counter', labels: ['kind'] },
};
/** Labels Prometheus adds to every scraped series. */
const TARGET_LABELS = ['job', 'instance', 'namespace', 'pod'];

// ---------------------------------------------------------------------------------------------
// Dockerfile

interface Instruction {
  cmd: string;
  args: string;
}

function dockerStages(): { from: string; name?: string; body: Instruction[] }[] {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const stages: { from: string; name?: string; body: Instruction[] }[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    if (!m || line.trim().startsWith('#')) continue;
    const ins = { cmd: m[1].toUpperCase(), args: m[2].replace(/\s+/g, ' ').trim() };
    if (ins.cmd === 'FROM') {
      const [from, as, name] = ins.args.split(' ');
      stages.push({ from, name: as?.toUpperCase() === 'AS' ? name : undefined, body: [] });
    } else {
      assert.ok(stages.length, `${ins.cmd} before the first FROM`);
      stages[stages.length - 1].body.push(ins);
    }
  }
  return stages;
}

/** Package names that src/ and bin/ import at run time (type-only imports vanish). */
function runtimeImports(): Map<string, string> {
  const found = new Map<string, string>();
  const visit = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) visit(path);
      else if (/\.(ts|js|mjs)$/.test(name) && !name.endsWith('.test.ts')) scan(path);
    }
  };
  const scan = (path: string) => {
    const code = readFileSync(path, 'utf8');
    for (const m of code.matchAll(/^\s*import\s+(type\s+)?[^'";]*?from\s+'([^']+)'|^\s*import\s+'([^']+)'|\bimport\(\s*'([^']+)'\s*\)/gm)) {
      if (m[1]) continue;
      const spec = m[2] ?? m[3] ?? m[4];
      if (spec.startsWith('.') || spec.startsWith('node:') || builtinModules.includes(spec)) continue;
      const pkg = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
      found.set(pkg, path.slice(ROOT.length));
    }
  };
  visit(join(ROOT, 'src'));
  visit(join(ROOT, 'bin'));
  // bin/hearth.js runs the server build when src/ changed; the other scripts are for development.
  scan(join(ROOT, 'scripts/build-server.mjs'));
  return found;
}

test('Dockerfile: multi-stage, production dependencies only, non-root, ports, probe, signal', () => {
  const stages = dockerStages();
  assert.ok(stages.length >= 2, 'a build stage and a runtime stage');
  const build = stages[0];
  const runtime = stages[stages.length - 1];
  assert.equal(runtime.from, 'node:20-bookworm-slim');
  const buildRuns = build.body
    .filter((i) => i.cmd === 'RUN')
    .map((i) => i.args)
    .join('\n');
  assert.match(buildRuns, /npm ci\b[^\n]*--omit=dev/, 'the build stage installs production dependencies only');
  for (const tool of ['python3', 'make', 'g++']) assert.ok(buildRuns.includes(tool), `the build stage installs ${tool} for better-sqlite3`);

  const runtimeRuns = runtime.body
    .filter((i) => i.cmd === 'RUN')
    .map((i) => i.args)
    .join('\n');
  assert.doesNotMatch(runtimeRuns, /\bnpm (ci|install|i)\b|apt-get install/, 'the runtime stage installs nothing');
  for (const ins of runtime.body.filter((i) => i.cmd === 'COPY')) {
    const parts = ins.args.split(' ');
    const from = parts.find((p) => p.startsWith('--from='));
    const [src] = parts.filter((p) => !p.startsWith('--'));
    if (from === '--from=console') {
      assert.equal(src, '/app/web/dist', 'only the built console comes from the console stage');
    } else if (from) {
      assert.equal(from, `--from=${build.name}`, 'copies from the build stage');
      assert.ok(['/app/node_modules', '/app/dist'].includes(src), 'only node_modules and the compiled server come from the build stage');
    } else assert.ok(existsSync(join(ROOT, src)), `COPY ${src}: no such file in the repository`);
  }

  const users = runtime.body.filter((i) => i.cmd === 'USER');
  assert.ok(users.length, 'the runtime stage sets USER');
  const user = users[users.length - 1].args.split(':')[0];
  assert.notEqual(user, 'root');
  assert.notEqual(user, '0');
  assert.equal(user, '10001');

  const exposed = runtime.body.filter((i) => i.cmd === 'EXPOSE').flatMap((i) => i.args.split(' '));
  assert.ok(exposed.includes('8080') && exposed.includes('1883'), `EXPOSE 8080 1883, got ${exposed.join(' ')}`);
  const health = runtime.body.find((i) => i.cmd === 'HEALTHCHECK')?.args ?? '';
  assert.match(health, /CMD \["node"/, 'the health check runs node (the slim image has no curl)');
  assert.match(health, /\/healthz/);
  assert.doesNotMatch(health, /curl|wget/);
  assert.equal(runtime.body.find((i) => i.cmd === 'STOPSIGNAL')?.args, 'SIGTERM');
  assert.deepEqual(JSON.parse(runtime.body.find((i) => i.cmd === 'ENTRYPOINT')!.args), ['node', 'bin/hearth.js']);
  assert.deepEqual(JSON.parse(runtime.body.find((i) => i.cmd === 'CMD')!.args), ['start']);
  assert.match(
    runtime.body
      .filter((i) => i.cmd === 'VOLUME')
      .map((i) => i.args)
      .join(' '),
    /"\/data"/,
  );
  for (const ins of runtime.body.filter((i) => i.cmd === 'ENV')) {
    for (const [, name, value] of ins.args.matchAll(/(\w+)=(\S+)/g)) {
      if (name.startsWith('HEARTH_')) assert.ok(CONFIG_ENV.has(name), `ENV ${name} is not a config key`);
      if (name === 'HEARTH_DATA_DIR') assert.equal(value, '/data');
    }
  }

  const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim());
  for (const p of ['node_modules', '.git', 'data']) assert.ok(ignored.includes(p), `.dockerignore leaves out ${p}`);
});

test('the image needs no devDependency at run time', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
  assert.ok(pkg.dependencies.esbuild, 'bin/hearth.js compiles src/ into dist/ when it changed: esbuild must be a dependency');
  assert.ok(!pkg.dependencies.tsx, 'the server runs compiled JavaScript: tsx is for tests and scripts only');
  const imports = runtimeImports();
  assert.ok(imports.has('esbuild') && imports.has('fastify'), 'the import scan finds packages');
  for (const [name, file] of imports) {
    assert.ok(pkg.dependencies[name], `${file} imports ${name}, which is not in dependencies (npm ci --omit=dev leaves it out of the image)`);
  }
});

// ---------------------------------------------------------------------------------------------
// Helm chart

const VALUES_FILES = readdirSync(CHART)
  .filter((f) => /^values-.+\.yaml$/.test(f))
  .sort();
const RENDERS: { name: string; opts: Parameters<typeof renderChart>[1] }[] = [
  { name: 'defaults', opts: {} },
  ...VALUES_FILES.map((f) => ({
    name: f,
    opts: { valuesFiles: [join(CHART, f)], releaseName: f.includes('gray') ? 'hearth-gray' : 'hearth', set: { image: { build: '1842' } } },
  })),
  { name: 'values-dev.yaml as test', opts: { valuesFiles: [join(CHART, 'values-dev.yaml')], set: { env: 'test', image: { build: '7.rc1' } } } },
];

const kinds = (m: Manifest[], kind: string) => m.filter((x) => x.doc.kind === kind).map((x) => x.doc);
const byName = (m: Manifest[], kind: string, name: string) => m.find((x) => x.doc.kind === kind && x.doc.metadata.name === name)?.doc;
const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) => Object.entries(selector).every(([k, v]) => labels[k] === v);
const decode = (s: string) => Buffer.from(s, 'base64').toString('utf8');

/** The environment a Deployment's container starts with, as the kubelet would build it. */
function podEnv(m: Manifest[], dep: any): Record<string, string> {
  const c = dep.spec.template.spec.containers[0];
  const env: Record<string, string> = {};
  for (const from of c.envFrom ?? []) {
    if (from.configMapRef) {
      const cm = byName(m, 'ConfigMap', from.configMapRef.name);
      assert.ok(cm, `${dep.metadata.name}: envFrom ConfigMap ${from.configMapRef.name} does not exist`);
      Object.assign(env, cm.data);
    }
    if (from.secretRef) {
      const s = byName(m, 'Secret', from.secretRef.name);
      assert.ok(s, `${dep.metadata.name}: envFrom Secret ${from.secretRef.name} does not exist`);
      for (const [k, v] of Object.entries(s.data ?? {})) env[k] = decode(v as string);
    }
  }
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = String(e.value);
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name') env[e.name] = `${dep.metadata.name}-5d9c7b6f4-x7k2p`;
    else if (e.valueFrom?.secretKeyRef) env[e.name] = e.name === 'HEARTH_DATABASE_URL' ? 'postgres://hearth:secret@db:5432/hearth' : 'from-an-existing-secret';
    else assert.fail(`${dep.metadata.name}: env ${e.name} has neither value nor a known valueFrom`);
  }
  return env;
}

function checkRender(m: Manifest[], values: any): void {
  const seen = new Set<string>();
  for (const { source, doc } of m) {
    assert.ok(doc.apiVersion && doc.kind && doc.metadata?.name, `${source}: an object without apiVersion/kind/metadata.name`);
    const key = `${doc.kind}/${doc.metadata.name}`;
    assert.ok(!seen.has(key), `${key} rendered twice`);
    seen.add(key);
    assert.ok(doc.metadata.name.length <= 63 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(doc.metadata.name), `${key}: not a DNS label`);
  }

  const cm = kinds(m, 'ConfigMap');
  assert.equal(cm.length, 1);
  for (const [k, v] of Object.entries(cm[0].data)) {
    assert.ok(CONFIG_ENV.has(k), `ConfigMap key ${k} is not a config setting (config-schema.ts)`);
    assert.equal(typeof v, 'string', `ConfigMap ${k} must be a string`);
  }
  for (const s of kinds(m, 'Secret')) for (const k of Object.keys(s.data ?? {})) assert.ok(CONFIG_ENV.has(k), `Secret key ${k} is not a config setting`);

  const roles = Object.entries(values.roles as Record<string, any>);
  const deps = kinds(m, 'Deployment');
  assert.deepEqual(
    deps.map((d) => d.metadata.name.replace(/^.*-/, '')).sort(),
    roles
      .filter(([, r]) => r.enabled)
      .map(([n]) => n)
      .sort(),
    'one Deployment per enabled role',
  );
  for (const dep of deps) {
    const name = dep.metadata.name;
    const role = name.replace(/^.*-/, '');
    const pod = dep.spec.template;
    assert.ok(matches(dep.spec.selector.matchLabels, pod.metadata.labels), `${name}: selector does not match its pods`);
    assert.ok(
      pod.metadata.annotations['checksum/config'] && pod.metadata.annotations['checksum/secret'],
      `${name}: checksum annotations roll pods on config changes`,
    );
    assert.equal(pod.spec.containers.length, 1);
    const c = pod.spec.containers[0];
    const env = podEnv(m, dep);
    assert.equal(env.HEARTH_ROLES, role, `${name}: HEARTH_ROLES`);
    for (const k of Object.keys(env)) assert.ok(CONFIG_ENV.has(k), `${name}: env ${k} is not a config setting`);
    const dataDir = mkdtempSync(join(tmpdir(), 'hearth-deploy-'));
    try {
      const config = loadConfig(env, { dataDir });
      assert.equal(config.roles, role);
      assert.ok(config.databaseUrl && config.natsUrl, `${name}: cluster mode needs a database URL and a NATS URL`);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }

    const ports = Object.fromEntries(c.ports.map((p: any) => [p.name, p.containerPort]));
    assert.equal(ports.http, Number(env.HEARTH_HTTP_PORT), `${name}: http port`);
    if (role === 'gateway') assert.equal(ports.mqtt, Number(env.HEARTH_MQTT_PORT), `${name}: mqtt port`);
    assert.equal(c.livenessProbe.httpGet.path, '/healthz');
    assert.equal(c.startupProbe.httpGet.path, '/healthz');
    assert.equal(c.readinessProbe.httpGet.path, '/readyz');
    for (const p of [c.livenessProbe, c.startupProbe, c.readinessProbe]) assert.equal(p.httpGet.port, 'http');

    const drain = Number(env.HEARTH_DRAIN_DELAY_MS ?? 0);
    const grace = Number(env.HEARTH_SHUTDOWN_GRACE_MS ?? 25000);
    // Counted from the preStop hook: drain there, then up to the grace after SIGTERM, and a margin.
    assert.ok(
      pod.spec.terminationGracePeriodSeconds > (drain + grace) / 1000,
      `${name}: terminationGracePeriodSeconds ${pod.spec.terminationGracePeriodSeconds} leaves no margin over (${drain} + ${grace}) / 1000`,
    );
    const preStop = c.lifecycle?.preStop?.exec?.command as string[] | undefined;
    assert.ok(preStop, `${name}: preStop hook`);
    assert.equal(preStop[0], 'node', `${name}: the slim image has no sleep; preStop runs node`);
    assert.equal(Number(/setTimeout\(.*,\s*(\d+)\)/.exec(preStop.join(' '))?.[1]), drain, `${name}: preStop waits the drain delay`);

    assert.equal(pod.spec.securityContext.runAsNonRoot, true, `${name}: runAsNonRoot`);
    assert.notEqual(pod.spec.securityContext.runAsUser, 0);
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    const volumes = Object.fromEntries(pod.spec.volumes.map((v: any) => [v.name, v]));
    for (const path of ['/data', '/tmp']) {
      const mount = c.volumeMounts.find((v: any) => v.mountPath === path);
      assert.ok(mount && volumes[mount.name]?.emptyDir, `${name}: ${path} is a writable emptyDir on a read-only root`);
    }
    assert.match(c.image, /^[^:]+:\d+\.\d+\.\d+-[a-z]+-[0-9A-Za-z.]+$/, `${name}: image tag <version>-<env>-<build>`);
    assert.ok(c.image.includes(`-${values.image.env || values.env}-`), `${name}: image tag names the environment`);
    assert.ok(c.resources?.requests?.cpu, `${name}: CPU request`);
  }

  const podsOf = (selector: Record<string, string>) => deps.filter((d) => matches(selector, d.spec.template.metadata.labels));
  for (const svc of kinds(m, 'Service')) {
    const targets = podsOf(svc.spec.selector);
    assert.ok(targets.length, `Service ${svc.metadata.name} selects no pods`);
    for (const p of svc.spec.ports) {
      for (const d of targets) {
        assert.ok(
          d.spec.template.spec.containers[0].ports.some((cp: any) => cp.name === p.targetPort),
          `Service ${svc.metadata.name}: ${d.metadata.name} has no port ${p.targetPort}`,
        );
      }
    }
  }
  if (values.roles.gateway.enabled) {
    const gw = kinds(m, 'Service').find((s) => s.spec.ports.some((p: any) => p.name === 'mqtt'));
    assert.ok(gw, 'a gateway Service for MQTT');
    assert.equal(gw.spec.type, 'LoadBalancer');
    assert.ok(
      gw.spec.ports.some((p: any) => p.port === 1883 && p.protocol === 'TCP'),
      'MQTT on 1883',
    );
    assert.equal(
      gw.spec.ports.some((p: any) => p.port === 8883),
      Boolean(values.tls.enabled),
      'MQTTS 8883 exactly when tls.enabled',
    );
    assert.deepEqual(
      podsOf(gw.spec.selector).map((d) => d.metadata.name),
      [deps.find((d) => d.metadata.name.endsWith('-gateway')).metadata.name],
    );
  }

  for (const hpa of kinds(m, 'HorizontalPodAutoscaler')) {
    assert.equal(hpa.apiVersion, 'autoscaling/v2');
    const ref = hpa.spec.scaleTargetRef;
    const dep = ref.kind === 'Deployment' && deps.find((d) => d.metadata.name === ref.name);
    assert.ok(dep, `HPA ${hpa.metadata.name} targets a missing ${ref.kind} ${ref.name}`);
    assert.equal(dep.spec.replicas, undefined, `${ref.name}: an autoscaled Deployment leaves replicas to the HPA`);
    assert.ok(dep.spec.template.spec.containers[0].resources.requests.cpu, `${ref.name}: CPU utilisation needs a CPU request`);
    assert.ok(hpa.spec.minReplicas >= 1 && hpa.spec.minReplicas <= hpa.spec.maxReplicas);
  }
  for (const pdb of kinds(m, 'PodDisruptionBudget')) {
    assert.equal(pdb.apiVersion, 'policy/v1');
    assert.equal(podsOf(pdb.spec.selector.matchLabels).length, 1, `PDB ${pdb.metadata.name} must select exactly one Deployment's pods`);
    assert.ok((pdb.spec.minAvailable === undefined) !== (pdb.spec.maxUnavailable === undefined), `PDB ${pdb.metadata.name}: minAvailable or maxUnavailable`);
  }
  for (const ing of kinds(m, 'Ingress')) {
    for (const p of ing.spec.rules.flatMap((r: any) => r.http.paths)) {
      const svc = byName(m, 'Service', p.backend.service.name);
      assert.ok(svc, `Ingress path ${p.path} → missing Service ${p.backend.service.name}`);
      assert.ok(
        svc.spec.ports.some((sp: any) => sp.name === p.backend.service.port.name),
        `Ingress path ${p.path}: no port ${p.backend.service.port.name}`,
      );
    }
  }
  for (const sm of kinds(m, 'ServiceMonitor')) {
    const svcs = kinds(m, 'Service').filter((s) => matches(sm.spec.selector.matchLabels, s.metadata.labels));
    assert.equal(svcs.length, 1, 'the ServiceMonitor selects the metrics Service only');
    assert.equal(podsOf(svcs[0].spec.selector).length, deps.length, 'the metrics Service covers every node');
  }
}

for (const { name, opts } of RENDERS) {
  test(`chart renders and holds together: ${name}`, () => {
    const m = renderChart(CHART, opts);
    let values = YAML.parse(readFileSync(join(CHART, 'values.yaml'), 'utf8'));
    for (const f of opts?.valuesFiles ?? []) values = mergeDeep(values, YAML.parse(readFileSync(f, 'utf8')));
    values = mergeDeep(values, opts?.set ?? {});
    checkRender(m, values);
  });
}

function mergeDeep(a: any, b: any): any {
  if (!b || typeof b !== 'object' || Array.isArray(b) || !a || typeof a !== 'object') return b;
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = mergeDeep(a[k], v);
  return out;
}

test('disabled roles produce nothing', () => {
  const m = renderChart(CHART, {
    set: { roles: { gateway: { enabled: false }, worker: { enabled: false }, api: { autoscaling: { enabled: true } } }, ingress: { enabled: true } },
  });
  for (const { doc } of m) {
    const component = doc.metadata.labels?.['app.kubernetes.io/component'];
    assert.ok(component === undefined || component === 'api', `${doc.kind}/${doc.metadata.name} belongs to a disabled role`);
    assert.doesNotMatch(doc.metadata.name, /gateway|worker/);
  }
  assert.deepEqual(
    kinds(m, 'Deployment').map((d) => d.metadata.name),
    ['hearth-api'],
  );
  assert.deepEqual(
    kinds(m, 'Ingress')[0].spec.rules[0].http.paths.map((p: any) => p.path),
    ['/'],
    'no /mqtt route without gateways',
  );
  checkRender(
    m,
    mergeDeep(YAML.parse(readFileSync(join(CHART, 'values.yaml'), 'utf8')), {
      roles: { gateway: { enabled: false }, worker: { enabled: false }, api: { autoscaling: { enabled: true } } },
    }),
  );
});

test("TLS in the pod: a mounted TLS Secret, the TLS ports, and MQTTS to the pods' own TLS port", () => {
  const set = { tls: { enabled: true, inPod: { enabled: true, secretName: 'hearth-tls' } } };
  const m = renderChart(CHART, { set });
  checkRender(m, mergeDeep(YAML.parse(readFileSync(join(CHART, 'values.yaml'), 'utf8')), set));
  for (const d of kinds(m, 'Deployment')) {
    const c = d.spec.template.spec.containers[0];
    const env = Object.fromEntries(c.env.filter((e: any) => 'value' in e).map((e: any) => [e.name, e.value]));
    assert.equal(env.HEARTH_TLS_CERT_FILE, '/etc/hearth/tls/tls.crt', d.metadata.name);
    assert.equal(env.HEARTH_TLS_KEY_FILE, '/etc/hearth/tls/tls.key');
    assert.equal(env.HEARTH_HTTPS_PORT, '8443');
    const mount = c.volumeMounts.find((v: any) => v.mountPath === '/etc/hearth/tls');
    assert.ok(mount?.readOnly && !mount.subPath, 'the Secret is mounted read-only as a directory (a subPath mount would never see a renewal)');
    assert.equal(d.spec.template.spec.volumes.find((v: any) => v.name === mount.name).secret.secretName, 'hearth-tls');
    assert.ok(c.ports.some((p: any) => p.name === 'https' && p.containerPort === 8443));
    if (d.metadata.name.endsWith('-gateway')) assert.ok(c.ports.some((p: any) => p.name === 'mqtts' && p.containerPort === 8883));
  }
  const gw = kinds(m, 'Service').find((s) => s.spec.ports.some((p: any) => p.name === 'mqtt'));
  assert.equal(gw.spec.ports.find((p: any) => p.name === 'mqtts').targetPort, 'mqtts');
  assert.throws(() => renderChart(CHART, { set: { tls: { enabled: true, inPod: { enabled: true } } } }), /tls.inPod.secretName/);
  // Off by default: nothing of it.
  const plain = kinds(renderChart(CHART), 'Deployment')[0].spec.template.spec.containers[0];
  assert.ok(!plain.env.some((e: any) => e.name === 'HEARTH_TLS_CERT_FILE'));
});

test('a config change changes the pods checksum; the image tag can be pinned', () => {
  const checksum = (m: Manifest[]) => kinds(m, 'Deployment')[0].spec.template.metadata.annotations['checksum/config'];
  const a = renderChart(CHART);
  const b = renderChart(CHART, { set: { config: { HEARTH_LOG_LEVEL: 'debug' } } });
  assert.notEqual(checksum(a), checksum(b));
  const pinned = renderChart(CHART, { set: { image: { tag: '0.2.0-gray-99' } } });
  assert.equal(kinds(pinned, 'Deployment')[0].spec.template.spec.containers[0].image, 'hearth:0.2.0-gray-99');
});

test('the chart refuses settings that cannot work', () => {
  assert.throws(() => renderChart(CHART, { set: { database: { url: '', existingSecret: '' } } }), /database\.url or database\.existingSecret/);
  assert.throws(() => renderChart(CHART, { set: { nats: { url: '' } } }), /nats\.url is required/);
  assert.throws(() => renderChart(CHART, { set: { env: 'prod' } }), /env must be one of/);
  assert.throws(() => renderChart(CHART, { set: { roles: { api: { pdb: { minAvailable: 1, maxUnavailable: 1 } } } } }), /not both/);
  assert.throws(() => renderChart(CHART, { set: { image: { build: '' } } }), /image\.build/);
  // A setting that is not a config key renders, and the structural check catches it.
  const bad = renderChart(CHART, { set: { config: { HEARTH_NO_SUCH_SETTING: '1' } } });
  assert.throws(() => checkRender(bad, YAML.parse(readFileSync(join(CHART, 'values.yaml'), 'utf8'))), /HEARTH_NO_SUCH_SETTING is not a config setting/);
});

test('the renderer is strict: unknown functions, missing values and printing nil fail', () => {
  const data = { Values: { a: { n: 25000, big: 1000000, s: 'x' } } };
  assert.throws(() => renderString('{{ .Values.a.nope }}', data), /missing value \.Values\.a\.nope/);
  assert.throws(() => renderString('{{ .Values.nope.deeper }}', data), /missing value/);
  assert.equal(renderString('{{ .Values.a.nope | default "d" }}-{{ default 3 .Values.b.c }}', data), 'd-3');
  assert.throws(() => renderString('{{ .Values.a.s | snakecase }}', data), /function "snakecase" not defined/);
  assert.throws(() => renderString('{{ if eq .Values.a.n 25000 }}{{ end }}', data), /incompatible types/);
  assert.equal(renderString('{{ .Values.a.big }} {{ .Values.a.big | int }}', data), '1e+06 1000000', 'numbers print as Helm prints them');
  assert.throws(() => renderString('{{ .Values.a }}', data), /printing a map/);
  assert.throws(() => renderString('{{ if true }}x', data), /without "end"/);
  assert.equal(
    renderString(
      '{{- $x := 1 }}{{ range $k, $v := .Values.a }}{{ $k }}={{ $v | toString }};{{ end }}\n  {{- if gt (int .Values.a.n) 10 }} big{{ else if true }} small{{ end }} {{ include "t" 5 | quote }}',
      data,
      { h: '{{- define "t" -}}<{{ . }}>{{- end -}}' },
    ),
    'big=1e+06;n=25000;s=x; big "<5>"',
  );
});

// ---------------------------------------------------------------------------------------------
// Dashboard and alerts

/** Checks one PromQL expression against METRICS: names, suffixes, rate over counters, labels, brackets. */
function checkPromql(expr: string, where: string): Set<string> {
  const used = new Set<string>();
  const stack: string[] = [];
  const pairs: Record<string, string> = { ')': '(', ']': '[', '}': '{' };
  let quote = '';
  for (const ch of expr) {
    if (quote) {
      if (ch === quote) quote = '';
    } else if (ch === '"' || ch === "'") quote = ch;
    else if ('([{'.includes(ch)) stack.push(ch);
    else if (ch in pairs) assert.equal(stack.pop(), pairs[ch], `${where}: unbalanced "${ch}" in ${expr}`);
  }
  assert.equal(quote, '', `${where}: unclosed quote in ${expr}`);
  assert.equal(stack.length, 0, `${where}: unclosed "${stack.join('')}" in ${expr}`);

  for (const [series] of expr.matchAll(/\bhearth_[a-z0-9_]+/g)) {
    const suffix = /_(bucket|sum|count)$/.exec(series)?.[1];
    const base = suffix && METRICS[series.replace(/_(bucket|sum|count)$/, '')] ? series.replace(/_(bucket|sum|count)$/, '') : series;
    const metric = METRICS[base];
    assert.ok(metric, `${where}: ${series} is not a Hearth metric`);
    if (metric.type === 'histogram') assert.ok(base !== series, `${where}: histogram ${base} is used without _bucket/_sum/_count`);
    used.add(base);
  }
  for (const [, series] of expr.matchAll(/\b(?:rate|irate|increase)\(\s*(hearth_[a-z0-9_]+)/g)) {
    assert.match(series, /_(total|bucket|sum|count)$/, `${where}: rate/increase over ${series}, which is not a counter`);
  }
  for (const m of expr.matchAll(/histogram_quantile\(/g)) {
    const rest = expr.slice(m.index);
    assert.match(
      rest,
      /^histogram_quantile\([^,]+,\s*sum by \(le\b[^)]*\) \(rate\(hearth_[a-z0-9_]+_bucket/,
      `${where}: histogram_quantile needs sum by (le, …) (rate(…_bucket…)) in ${expr}`,
    );
  }
  for (const [, series, matchers] of expr.matchAll(/\b(hearth_[a-z0-9_]+)\{([^}]*)\}/g)) {
    const base = series.replace(/_(bucket|sum|count)$/, '');
    const allowed = [...(METRICS[base]?.labels ?? []), ...TARGET_LABELS, ...(series.endsWith('_bucket') ? ['le'] : [])];
    for (const [, label] of matchers.matchAll(/(\w+)\s*(?:=~|!~|!=|=)/g)) {
      assert.ok(allowed.includes(label), `${where}: ${series} has no label "${label}"`);
    }
  }
  return used;
}

function dashboardPanels(d: any): any[] {
  return (d.panels ?? []).flatMap((p: any) => [p, ...dashboardPanels(p)]);
}

test('dashboard: Prometheus datasource variable, known metrics in every query, all metrics shown', () => {
  const d = JSON.parse(readFileSync(join(ROOT, 'deploy/grafana/hearth-dashboard.json'), 'utf8'));
  assert.ok(d.title && d.uid, 'title and uid');
  const ds = d.templating.list.find((v: any) => v.type === 'datasource');
  assert.equal(ds?.query, 'prometheus', 'a Prometheus datasource variable');
  const panels = dashboardPanels(d);
  const ids = panels.map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  const used = new Set<string>();
  for (const p of panels.filter((x) => x.type !== 'row')) {
    assert.ok(p.targets?.length, `panel "${p.title}" has no query`);
    assert.equal(p.datasource?.uid, `\${${ds.name}}`, `panel "${p.title}" uses the datasource variable`);
    for (const t of p.targets) for (const m of checkPromql(t.expr, `panel "${p.title}"`)) used.add(m);
  }
  for (const v of d.templating.list.filter((x: any) => x.type === 'query')) checkPromql(v.definition, `variable ${v.name}`);
  assert.deepEqual(
    [...Object.keys(METRICS)].filter((m) => !used.has(m)),
    [],
    'every metric has a panel',
  );
  const titles = panels.map((p) => p.title.toLowerCase()).join('\n');
  for (const t of [
    'connected devices',
    'messages in/out',
    'rejected',
    'ingest lag',
    'command latency',
    'http latency',
    '5xx',
    'bus latency',
    'database latency',
    'circuit breakers',
    'event-loop lag',
    'nodes ready',
    'shards per node',
  ]) {
    assert.ok(titles.includes(t), `a panel about ${t}`);
  }
});

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes. */
function anchors(markdown: string): Set<string> {
  return new Set(
    [...markdown.matchAll(/^#{1,6}\s+(.+)$/gm)].map(([, h]) =>
      h
        .trim()
        .toLowerCase()
        .replace(/[^\p{L}\p{N}\s_-]/gu, '')
        .replace(/\s/g, '-'),
    ),
  );
}

test('alerts: complete rules on known metrics, each with a runbook in docs/operations.md', () => {
  const rules = (YAML.parse(readFileSync(join(ROOT, 'deploy/prometheus/alerts.yaml'), 'utf8')).groups as any[]).flatMap((g) => {
    assert.ok(g.name && g.rules?.length, 'every group has a name and rules');
    return g.rules;
  });
  const docs = readFileSync(join(ROOT, 'docs/operations.md'), 'utf8');
  const docAnchors = anchors(docs);
  const names = new Set<string>();
  for (const r of rules) {
    assert.ok(r.alert && !names.has(r.alert), `alert name ${r.alert} missing or repeated`);
    names.add(r.alert);
    assert.ok(typeof r.expr === 'string' && r.expr.trim(), `${r.alert}: expr`);
    checkPromql(r.expr, r.alert);
    assert.match(String(r.for), /^\d+[smh]$/, `${r.alert}: for`);
    assert.ok(['critical', 'warning', 'info'].includes(r.labels?.severity), `${r.alert}: labels.severity`);
    assert.ok(r.annotations?.summary && r.annotations?.description, `${r.alert}: summary and description`);
    const anchor = /^docs\/operations\.md#([\w-]+)$/.exec(r.annotations.runbook_url ?? '')?.[1];
    assert.ok(anchor, `${r.alert}: runbook_url docs/operations.md#<anchor>`);
    assert.ok(docAnchors.has(anchor), `${r.alert}: docs/operations.md has no heading for #${anchor}`);
  }
  for (const a of [
    'HearthDevicesDroppingOffline',
    'HearthIngestLagHigh',
    'HearthCommandFailuresHigh',
    'HearthNodeDown',
    'HearthNodeNotReady',
    'HearthCircuitBreakerOpen',
    'HearthEventLoopLagHigh',
  ]) {
    assert.ok(names.has(a), `alert ${a}`);
  }
});

test('docs/operations.md: every metric explained, sizing table for the benchmark numbers', () => {
  const docs = readFileSync(join(ROOT, 'docs/operations.md'), 'utf8');
  for (const m of Object.keys(METRICS)) assert.ok(docs.includes(`\`${m}\``), `docs/operations.md explains ${m}`);
  const sizing = /<!-- sizing:begin -->([\s\S]*)<!-- sizing:end -->/.exec(docs)?.[1];
  assert.ok(sizing, 'the sizing table markers');
  for (const row of ['devices per gateway node', 'messages/s per worker', 'commands/s per API node']) assert.ok(sizing.includes(row), `sizing row "${row}"`);
  for (const f of VALUES_FILES) assert.ok(docs.includes(f), `docs/operations.md shows how to install with ${f}`);
});

test('every metric the dashboard and alerts use is served, with that type and those labels, by a running node', async () => {
  const { startPlatform } = await import('./helpers/platform.ts');
  const p = await startPlatform();
  try {
    await p.api('GET', '/api/v1/devices'); // one request, so the HTTP histogram has a series with its labels
    const res = await fetch(`${p.httpUrl}/metrics`);
    assert.equal(res.status, 200);
    const text = await res.text();
    const types = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));
    for (const [name, spec] of Object.entries(METRICS)) {
      assert.equal(types.get(name), spec.type, `${name} is served as a ${spec.type}`);
      const sample = new RegExp(`^${name}(?:_bucket|_count)?\\{([^}]*)\\}`, 'm').exec(text);
      if (spec.labels.length && sample) {
        const labels = sample[1]
          .split(/,(?=\w+=)/)
          .map((kv) => kv.split('=')[0])
          .filter((l) => l !== 'le');
        assert.deepEqual(labels.sort(), [...spec.labels].sort(), `labels of ${name}`);
      }
    }
    assert.match(text, /^hearth_http_request_duration_seconds_count\{/m, 'a labelled series was checked');
  } finally {
    await p.stop();
  }
});
