import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPlatform, inbox, type Platform } from './helpers/platform.ts';
import { signupUser } from './helpers/people.ts';

/**
 * An outsider's attack on every route that takes an id: user B (with a home of their own) tries
 * every route of the OpenAPI document with the ids of user A's world and must get 404 each
 * time, so that ids of other homes neither work nor leak. The routes are read from /docs/json,
 * so a route added later is attacked too.
 */
let p: Platform;
const A: Record<string, string> = {};
let tokenA = '';
let tokenB = '';
let tokenGuest = '';

const signup = (email: string) => signupUser(p, email);

before(async () => {
  // A home's channel and push subscription point at loopback (never called): a home lab's setting.
  p = await startPlatform({ env: { HEARTH_OUTBOUND_PRIVATE_NETWORKS: 'allow' } });
  const a = await signup('alice@example.test');
  const b = await signup('bob@example.test');
  const g = await signup('gail@example.test');
  tokenA = a.token;
  tokenB = b.token;
  tokenGuest = g.token;
  A.userId = a.id;
  const hub = await p.provision('hub', 'Hub A');
  const light = await p.provision('light', 'Light A');
  const plugB = await p.provision('plug', 'Plug B');
  const home = await p.api('POST', '/api/v1/homes', { name: 'Alice home', timezone: 'Europe/Berlin' }, tokenA);
  assert.equal(home.status, 201, JSON.stringify(home.body));
  A.homeId = home.body.id;
  const homeB = await p.api('POST', '/api/v1/homes', { name: 'Bob home', timezone: 'Europe/Paris' }, tokenB);
  assert.equal((await p.api('POST', `/api/v1/homes/${homeB.body.id}/devices`, { pairingCode: plugB.pairingCode }, tokenB)).status, 201);
  const room = await p.api('POST', `/api/v1/homes/${A.homeId}/rooms`, { name: 'Hall' }, tokenA);
  A.roomId = room.body.id;
  for (const d of [hub, light])
    assert.equal((await p.api('POST', `/api/v1/homes/${A.homeId}/devices`, { pairingCode: d.pairingCode, roomId: A.roomId }, tokenA)).status, 201);
  A.deviceId = light.id;
  A.hubId = hub.id;
  const group = await p.api('POST', `/api/v1/homes/${A.homeId}/groups`, { name: 'Lights', deviceIds: [light.id] }, tokenA);
  assert.equal(group.status, 201, JSON.stringify(group.body));
  A.groupId = group.body.id;
  const scene = await p.api(
    'POST',
    `/api/v1/homes/${A.homeId}/scenes`,
    { name: 'Evening', states: [{ device: light.id, properties: { on: true, brightness: 40 } }] },
    tokenA,
  );
  assert.equal(scene.status, 201, JSON.stringify(scene.body));
  A.sceneId = scene.body.id;
  const key = await p.api('POST', '/api/v1/keys', { name: 'A key', scopes: ['devices:read'] }, tokenA);
  assert.equal(key.status, 201, JSON.stringify(key.body));
  A.keyId = key.body.id;
  const inv = await p.api('POST', `/api/v1/homes/${A.homeId}/invitations`, { email: 'gail@example.test', role: 'guest', deviceIds: [light.id] }, tokenA);
  assert.equal(inv.status, 201, JSON.stringify(inv.body));
  A.invitationId = inv.body.id;
  const mail = p.logs.find((l) => l.mail?.to === 'gail@example.test');
  const token = /token=([A-Za-z0-9_-]+)/.exec(mail.mail.text)![1];
  assert.equal((await p.api('POST', '/api/v1/invitations/accept', { token }, tokenGuest)).status, 200);
  assert.equal((await p.api('POST', `/api/v1/devices/${light.id}/shares`, { email: 'gail@example.test', permission: 'view' }, tokenA)).status, 201);
  const automation = await p.api(
    'POST',
    `/api/v1/homes/${A.homeId}/automations`,
    { name: 'A automation', triggers: [{ type: 'manual' }, { type: 'webhook' }], actions: [{ type: 'delay', duration: 0 }] },
    tokenA,
  );
  assert.equal(automation.status, 201, JSON.stringify(automation.body));
  A.automationId = automation.body.id;
  A.webhookId = automation.body.webhookId;
  const run = await p.api('POST', `/api/v1/automations/${A.automationId}/run`, {}, tokenA);
  assert.equal(run.status, 202, JSON.stringify(run.body));
  A.runId = run.body.id;
  // Notifications: an inbox item, a home channel, a Web Push subscription and a mobile push token of A's.
  assert.equal(
    (await p.api('POST', `/api/v1/homes/${A.homeId}/notifications`, { kind: 'system', severity: 'info', title: 'Hi', body: 'For A' }, tokenA)).status,
    200,
  );
  A.notificationId = (await p.api('GET', '/api/v1/notifications', undefined, tokenA)).body.items[0].id;
  const channel = await p.api(
    'POST',
    `/api/v1/homes/${A.homeId}/notification-channels`,
    { type: 'webhook', name: 'A hook', url: 'http://127.0.0.1:9/hook' },
    tokenA,
  );
  assert.equal(channel.status, 201, JSON.stringify(channel.body));
  A.channelId = channel.body.id;
  const sub = await p.api(
    'POST',
    '/api/v1/push/subscriptions',
    {
      endpoint: 'http://127.0.0.1:9/push/a',
      keys: { p256dh: 'BIPUL12DLfytvTajnryr2PRdAgXS3HGKiLqndGcJGabyhHheJYlNGCeXl1dn18gSJ1WAkAPIxr4gK0_dQds4yiI', auth: 'FPssNDTKnInHVndSTdbKFw' },
    },
    tokenA,
  );
  assert.equal(sub.status, 201, JSON.stringify(sub.body));
  A.subscriptionId = sub.body.id;
  A.tokenId = (await p.api('POST', '/api/v1/push/tokens', { platform: 'fcm', token: 'token-of-a' }, tokenA)).body.id;
  // A command queued for A's light (offline): the routes under /commands/{commandId}.
  const queued = await p.api('POST', `/api/v1/devices/${light.id}/commands`, { action: 'toggle', ttlMs: 60_000 }, tokenA);
  assert.equal(queued.status, 202, JSON.stringify(queued.body));
  A.commandId = queued.body.id;
});

after(async () => {
  await p.stop();
});

/** Which of A's ids goes into a path parameter, decided by the path segment before it. */
function fill(path: string): string | undefined {
  let unknown = false;
  const out = path.replace(/\{(\w+)\}/g, (_m, name: string, offset: number) => {
    const prev = path.slice(0, offset).split('/').filter(Boolean).pop();
    const byPrev: Record<string, string | undefined> = {
      homes: A.homeId,
      rooms: A.roomId,
      devices: A.deviceId,
      groups: A.groupId,
      keys: A.keyId,
      members: A.userId,
      shares: A.userId,
      invitations: A.invitationId,
      scenes: A.sceneId,
      automations: A.automationId,
      runs: A.runId,
      hooks: A.webhookId,
      commands: A.commandId,
      notifications: A.notificationId,
      'notification-channels': A.channelId,
      subscriptions: A.subscriptionId,
      tokens: A.tokenId,
    };
    const v = byPrev[prev ?? ''] ?? (name === 'deviceId' ? A.deviceId : name === 'homeId' ? A.homeId : undefined);
    if (!v) unknown = true;
    return v ?? 'x';
  });
  return unknown ? undefined : out;
}

const OPERATOR_ONLY = [
  '/api/v1/partners/',
  '/api/v1/routes/',
  '/api/v1/dead-letters/',
  '/api/v1/gateway/',
  '/api/v1/fleet/',
  '/api/v1/firmware/',
  '/api/v1/ota/',
  '/api/v1/exports/',
];

test("a user of another home gets 404 from every route that takes one of A's ids", async () => {
  const doc = (await p.api('GET', '/docs/json', undefined, null)).body;
  const tried: string[] = [];
  const wrong: string[] = [];
  for (const [path, ops] of Object.entries<any>(doc.paths)) {
    if (!path.startsWith('/api/v1/') || !path.includes('{') || path.startsWith('/api/v1/products/')) continue;
    // The operator's own things (partners, routes, dead letters) belong to no home: a user gets 403 there.
    if (OPERATOR_ONLY.some((prefix) => path.startsWith(prefix))) {
      for (const [method, op] of Object.entries<any>(ops)) {
        if (!op.security) continue;
        const r = await p.api(method.toUpperCase(), path.replace(/\{[^}]+\}/g, 'x_unknown'), op.requestBody ? {} : undefined, tokenB);
        tried.push(`${method.toUpperCase()} ${path}`);
        if (r.status !== 403) wrong.push(`${method.toUpperCase()} ${path} → ${r.status} (operator only: 403 expected)`);
      }
      continue;
    }
    const url = fill(path);
    assert.ok(url, `no id of A's world fits ${path}: teach fill() about it`);
    for (const [method, op] of Object.entries<any>(ops)) {
      // Routes that authenticate their caller themselves (device HTTP, with device credentials) take no user token.
      if (!op.security) continue;
      // Operator-only routes answer any user 403 whatever the id (that says nothing of A's things).
      if (op['x-hearth-auth']?.who === 'operator') {
        const r = await p.api(method.toUpperCase(), url!, op.requestBody ? {} : undefined, tokenB);
        tried.push(`${method.toUpperCase()} ${path}`);
        if (r.status !== 403) wrong.push(`${method.toUpperCase()} ${url} → ${r.status} (operator only: 403 expected)`);
        continue;
      }
      const example = op.requestBody?.content?.['application/json']?.example ?? op.requestBody?.content?.['application/json']?.schema?.examples?.[0];
      const body = example ?? (op.requestBody ? {} : undefined);
      const r = await p.api(method.toUpperCase(), url!, body, tokenB);
      tried.push(`${method.toUpperCase()} ${path}`);
      if (r.status !== 404) wrong.push(`${method.toUpperCase()} ${url} → ${r.status} ${JSON.stringify(r.body).slice(0, 160)}`);
    }
  }
  assert.ok(tried.length >= 20, `only ${tried.length} routes tried`);
  assert.deepEqual(wrong, []);
  // and A's things are untouched: A still sees the device, the group, the key
  assert.equal((await p.api('GET', `/api/v1/devices/${A.deviceId}`, undefined, tokenA)).status, 200);
  assert.equal((await p.api('GET', `/api/v1/groups/${A.groupId}`, undefined, tokenA)).status, 200);
  assert.equal((await p.api('GET', '/api/v1/keys', undefined, tokenA)).body.items.length, 1);
  assert.equal((await p.api('GET', '/api/v1/notifications/unread-count', undefined, tokenA)).body.count, 1, "A's inbox item is still unread");
  assert.equal((await p.api('GET', `/api/v1/homes/${A.homeId}/notification-channels`, undefined, tokenA)).body.items.length, 1);
  assert.equal((await p.api('GET', '/api/v1/push/subscriptions', undefined, tokenA)).body.items.length, 1);
  assert.equal((await p.api('GET', '/api/v1/push/tokens', undefined, tokenA)).body.items.length, 1);
});

test("lists show an outsider nothing of A's", async () => {
  const devices = await p.api('GET', '/api/v1/devices', undefined, tokenB);
  assert.equal(devices.status, 200);
  assert.ok(!devices.body.items.some((d: { id: string }) => d.id === A.deviceId || d.id === A.hubId));
  assert.equal(devices.body.items.length, 1, "only Bob's own plug");
  const homes = await p.api('GET', '/api/v1/homes', undefined, tokenB);
  assert.deepEqual(
    homes.body.items.map((h: { name: string }) => h.name),
    ['Bob home'],
  );
  assert.equal((await p.api('GET', '/api/v1/audit', undefined, tokenB)).status, 403, "the fleet audit log is the operator's");
});

test('a guest controls only the chosen devices and cannot configure anything', async () => {
  const list = await p.api('GET', '/api/v1/devices', undefined, tokenGuest);
  assert.deepEqual(
    list.body.items.map((d: { id: string }) => d.id),
    [A.deviceId],
  );
  assert.equal((await p.api('GET', `/api/v1/devices/${A.hubId}`, undefined, tokenGuest)).status, 404, 'the hub was not given to the guest');
  const doc = (await p.api('GET', '/docs/json', undefined, null)).body;
  const wrong: string[] = [];
  for (const [path, ops] of Object.entries<any>(doc.paths)) {
    if (!path.startsWith(`/api/v1/homes/{homeId}`) && !path.startsWith('/api/v1/groups/{')) continue;
    if (path.endsWith('/leave')) continue;
    for (const [method, op] of Object.entries<any>(ops)) {
      if (method === 'get' || path.endsWith('/commands')) continue;
      const example = op.requestBody?.content?.['application/json']?.example;
      const r = await p.api(method.toUpperCase(), fill(path)!, example ?? (op.requestBody ? {} : undefined), tokenGuest);
      if (r.status !== 403 && r.status !== 404) wrong.push(`${method.toUpperCase()} ${path} → ${r.status}`);
    }
  }
  assert.deepEqual(wrong, []);
  assert.equal((await p.api('PATCH', `/api/v1/devices/${A.deviceId}`, { name: 'Mine now' }, tokenGuest)).status, 403);
  assert.equal((await p.api('GET', `/api/v1/homes/${A.homeId}/audit`, undefined, tokenGuest)).status, 403);
});

test('an API key restricted to scopes and homes cannot reach beyond them', async () => {
  const key = await p.api('POST', '/api/v1/keys', { name: 'read only', scopes: ['devices:read'], homeIds: [A.homeId] }, tokenA);
  const k = key.body.key;
  assert.equal((await p.api('GET', `/api/v1/devices/${A.deviceId}`, undefined, k)).status, 200);
  const cmd = await p.api('POST', `/api/v1/devices/${A.deviceId}/commands`, { action: 'toggle' }, k);
  assert.equal(cmd.status, 403, 'read scope cannot control');
  assert.equal((await p.api('PATCH', `/api/v1/devices/${A.deviceId}/shadow`, { desired: { on: true } }, k)).status, 403);
  assert.equal((await p.api('POST', '/api/v1/keys', { name: 'escalate', scopes: ['devices:control'] }, k)).status, 403, 'keys cannot mint keys');
});

test("operator API keys without home-world scopes, or limited to other homes, reach nothing of A's", async () => {
  const operatorScopes = ['products:manage', 'devices:manage', 'gateway:read', 'gateway:manage', 'partners:manage', 'audit:read', 'users:read'];
  const fleetKey = (await p.api('POST', '/api/v1/keys', { name: 'operator areas only', scopes: operatorScopes })).body.key;
  const otherHome = await p.api('POST', '/api/v1/homes', { name: 'Operator home', timezone: 'UTC' });
  const limited = await p.api('POST', '/api/v1/keys', {
    name: 'limited to another home',
    scopes: ['devices:read', 'devices:control', 'homes:read', 'homes:manage', 'automations:manage', ...operatorScopes],
    homeIds: [otherHome.body.id],
  });
  assert.equal(limited.status, 201, JSON.stringify(limited.body));
  const doc = (await p.api('GET', '/docs/json', undefined, null)).body;
  const wrong: string[] = [];
  let tried = 0;
  for (const [path, ops] of Object.entries<any>(doc.paths)) {
    if (!path.startsWith('/api/v1/') || !path.includes('{') || path.startsWith('/api/v1/products/') || OPERATOR_ONLY.some((x) => path.startsWith(x))) continue;
    const url = fill(path)!;
    for (const [method, op] of Object.entries<any>(ops)) {
      if (op['x-hearth-auth']?.who !== 'caller' && op['x-hearth-auth']?.who !== 'password') continue;
      const example = op.requestBody?.content?.['application/json']?.example ?? op.requestBody?.content?.['application/json']?.schema?.examples?.[0];
      for (const [who, key] of [
        ['operator-area key', fleetKey],
        ['key limited to another home', limited.body.key],
      ]) {
        const r = await p.api(method.toUpperCase(), url, example ?? (op.requestBody ? {} : undefined), key);
        tried++;
        if (r.status !== 403 && r.status !== 404)
          wrong.push(`${method.toUpperCase()} ${url} with the ${who} → ${r.status} ${JSON.stringify(r.body).slice(0, 120)}`);
      }
    }
  }
  assert.ok(tried >= 40, `only ${tried} attempts`);
  assert.deepEqual(wrong, []);
  // Nor does either list the fleet's devices.
  assert.equal((await p.api('GET', '/api/v1/devices', undefined, fleetKey)).status, 403);
  const seen = await p.api('GET', '/api/v1/devices', undefined, limited.body.key);
  assert.equal(seen.status, 200);
  assert.deepEqual(seen.body.items, []);
});

test('pairing codes (claim secrets) reach the operator and its fleet-provisioning keys only, never a read-only operator key', async () => {
  const device = await p.provision('plug', 'pairing secret');
  const listAs = async (scopes: string[]) => {
    const key = (await p.api('POST', '/api/v1/keys', { name: `reader ${scopes.join(' ')}`, scopes })).body.key as string;
    const res = await fetch(`${p.httpUrl}/api/v1/devices/${device.id}`, { headers: { 'x-api-key': key } });
    assert.equal(res.status, 200);
    return ((await res.json()) as { pairingCode: string | null }).pairingCode;
  };
  assert.equal((await p.device(device.id)).pairingCode, device.pairingCode, 'the operator signed in sees it');
  assert.equal(await listAs(['devices:read']), null, 'a read-only operator key does not');
  assert.equal(await listAs(['devices:read', 'devices:manage']), device.pairingCode, 'a key that may provision does');
});

test("MQTT: a device claimed by a user still cannot reach another device's topics", async () => {
  const mine = await p.provision('plug', 'attacker plug');
  const home = await p.api('POST', '/api/v1/homes', { name: 'Attacker home', timezone: 'UTC' }, tokenB);
  assert.equal((await p.api('POST', `/api/v1/homes/${home.body.id}/devices`, { pairingCode: mine.pairingCode }, tokenB)).status, 201);
  const c = await p.connect(mine.id, mine.secret);
  inbox(c);
  const granted = await new Promise<number[]>((resolve) => {
    c.once('packetreceive', (packet) => {
      if (packet.cmd === 'suback') resolve((packet as unknown as { granted: number[] }).granted);
    });
    c.subscribe([`devices/${A.deviceId}/commands`, `devices/${A.hubId}/#`, `devices/${mine.id}/commands`], () => undefined);
  });
  assert.deepEqual(granted, [128, 128, 0]);
});
