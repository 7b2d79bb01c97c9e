import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPlatform, inbox, eventually, type Platform } from './helpers/platform.ts';
import { signupUser, type TestUser as User } from './helpers/people.ts';

/**
 * Homes, rooms, people, devices bound to homes, sharing and groups, through real HTTP (and MQTT
 * for the group command). Users sign up over the API; the operator provisions devices and users
 * claim them with the pairing codes from the boxes.
 */
let p: Platform;
const PUBLIC_URL = 'https://hearth.example';

before(async () => {
  // A generous rate limit: these tests make many requests per user in a short time.
  p = await startPlatform({ env: { HEARTH_PUBLIC_URL: PUBLIC_URL, HEARTH_RATE_LIMIT_BURST: '100000', HEARTH_RATE_LIMIT_PER_MINUTE: '100000' } });
});
after(async () => {
  await p.stop();
});

let seq = 0;
const signup = (name: string): Promise<User> => signupUser(p, `${name}-${++seq}@homes.test`);

async function newHome(u: User, name = 'Home'): Promise<string> {
  const r = await u.api('POST', '/homes', { name, timezone: 'Europe/Berlin' });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.id;
}

async function claim(u: User, homeId: string, product: string, extra: Record<string, unknown> = {}) {
  const d = await p.provision(product);
  const r = await u.api('POST', `/homes/${homeId}/devices`, { pairingCode: d.pairingCode, ...extra });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return d;
}

/** The token of the last invitation e-mail sent to `email`, read from the logged mail. */
function invitationToken(email: string): string {
  const mail = [...p.logs].reverse().find((l) => l.mail?.to === email)?.mail;
  assert.ok(mail, `no e-mail to ${email} in the log`);
  const m = /\/invitations\/accept\?token=([A-Za-z0-9_-]+)/.exec(mail.text);
  assert.ok(m, mail.text);
  assert.ok(mail.text.includes(`${PUBLIC_URL}/invitations/accept?token=${m[1]}`), 'the link points at the public URL');
  return m[1];
}

/** Invites `who` into the home with `role` and has them accept. */
async function join(owner: User, homeId: string, who: User, role: string, extra: Record<string, unknown> = {}) {
  const inv = await owner.api('POST', `/homes/${homeId}/invitations`, { email: who.email, role, ...extra });
  assert.equal(inv.status, 201, JSON.stringify(inv.body));
  const acc = await who.api('POST', '/invitations/accept', { token: invitationToken(who.email) });
  assert.equal(acc.status, 200, JSON.stringify(acc.body));
  assert.deepEqual(acc.body, { homeId, role });
}

test('homes: create with the creator as owner, read, list with roles, update; the time zone is checked', async () => {
  const ana = await signup('ana');
  const created = await ana.api('POST', '/homes', { name: 'Beach house', timezone: 'europe/berlin', latitude: 54.18, longitude: 12.08 });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.match(created.body.id, /^h_/);
  assert.equal(created.body.role, 'owner');
  assert.equal(created.body.timezone, 'Europe/Berlin', 'canonical spelling');
  assert.equal(created.body.latitude, 54.18);
  assert.equal(created.body.ownerId, ana.id);
  const bad = await ana.api('POST', '/homes', { name: 'Nowhere', timezone: 'Mars/Olympus_Mons' });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.code, 'E_VALIDATION');
  assert.equal(bad.body.field, 'body.timezone');
  assert.equal((await ana.api('POST', '/homes', { name: 'Far', timezone: 'UTC', latitude: 91 })).status, 400);

  const id = created.body.id;
  const got = await ana.api('GET', `/homes/${id}`);
  assert.equal(got.status, 200);
  assert.equal(got.body.name, 'Beach house');
  const patched = await ana.api('PATCH', `/homes/${id}`, { name: 'Summer house', timezone: 'Europe/Lisbon', latitude: null, longitude: 0 });
  assert.equal(patched.status, 200, JSON.stringify(patched.body));
  assert.equal(patched.body.name, 'Summer house');
  assert.equal(patched.body.timezone, 'Europe/Lisbon');
  assert.equal(patched.body.latitude, null);
  assert.equal(patched.body.longitude, 0, 'zero is a longitude, not a missing one');
  assert.equal((await ana.api('PATCH', `/homes/${id}`, { timezone: 'Nowhere/Else' })).status, 400);

  const bo = await signup('bo');
  const boHome = await newHome(bo, 'Bo flat');
  await join(bo, boHome, ana, 'member');
  const list = await ana.api('GET', '/homes');
  assert.equal(list.status, 200);
  assert.deepEqual(
    list.body.items.map((h: any) => [h.name, h.role]),
    [
      ['Summer house', 'owner'],
      ['Bo flat', 'member'],
    ],
  );
  // The operator's list holds only the operator's own memberships.
  assert.deepEqual((await p.api('GET', '/api/v1/homes')).body.items, []);
});

test('rooms: create, list, rename, delete; devices of a deleted room stay without a room; rooms of other homes do not exist', async () => {
  const ana = await signup('ana');
  const home = await newHome(ana);
  const kitchen = await ana.api('POST', `/homes/${home}/rooms`, { name: 'Kitchen' });
  assert.equal(kitchen.status, 201, JSON.stringify(kitchen.body));
  assert.match(kitchen.body.id, /^r_/);
  const hall = (await ana.api('POST', `/homes/${home}/rooms`, { name: 'Hall' })).body;
  assert.deepEqual(
    (await ana.api('GET', `/homes/${home}/rooms`)).body.items.map((r: any) => r.name),
    ['Kitchen', 'Hall'],
  );
  const renamed = await ana.api('PATCH', `/homes/${home}/rooms/${hall.id}`, { name: 'Hallway' });
  assert.equal(renamed.status, 200);
  assert.equal(renamed.body.name, 'Hallway');

  const lamp = await claim(ana, home, 'light', { roomId: kitchen.body.id });
  assert.equal((await ana.api('GET', `/devices/${lamp.id}`)).body.roomId, kitchen.body.id);
  const del = await ana.api('DELETE', `/homes/${home}/rooms/${kitchen.body.id}`);
  assert.equal(del.status, 200);
  assert.equal((await ana.api('GET', `/devices/${lamp.id}`)).body.roomId, null);
  assert.equal((await ana.api('GET', `/devices/${lamp.id}`)).body.homeId, home);
  assert.deepEqual(
    (await ana.api('GET', `/homes/${home}/rooms`)).body.items.map((r: any) => r.name),
    ['Hallway'],
  );
  assert.equal((await ana.api('PATCH', `/homes/${home}/rooms/${kitchen.body.id}`, { name: 'x' })).body.code, 'E_ROOM_NOT_FOUND');

  // A room of another home of the same user is not a room of this home.
  const other = await newHome(ana, 'Other');
  const attic = (await ana.api('POST', `/homes/${other}/rooms`, { name: 'Attic' })).body;
  for (const r of [
    await ana.api('PATCH', `/homes/${home}/rooms/${attic.id}`, { name: 'Mine' }),
    await ana.api('DELETE', `/homes/${home}/rooms/${attic.id}`),
    await ana.api('PATCH', `/devices/${lamp.id}`, { roomId: attic.id }),
    await ana.api('POST', `/homes/${home}/devices`, { pairingCode: (await p.provision('plug')).pairingCode, roomId: attic.id }),
  ]) {
    assert.equal(r.status, 404, JSON.stringify(r.body));
    assert.equal(r.body.code, 'E_ROOM_NOT_FOUND');
  }
  assert.equal((await ana.api('GET', `/homes/${other}/rooms`)).body.items.length, 1, 'the attic is still there');
});

test('claiming devices by pairing code: sub-devices follow their hub, a claimed device cannot be claimed again', async () => {
  const ana = await signup('ana');
  const bo = await signup('bo');
  const home = await newHome(ana);
  const boHome = await newHome(bo);
  const room = (await ana.api('POST', `/homes/${home}/rooms`, { name: 'Living room' })).body;

  const unknown = await ana.api('POST', `/homes/${home}/devices`, { pairingCode: 'ZZZZ-ZZZZ-ZZZZ' });
  assert.equal(unknown.status, 404);
  assert.equal(unknown.body.code, 'E_PAIRING_CODE_INVALID');

  const hub = await p.provision('hub', 'Registry hub name');
  const child = await p.provision('light', 'Registry child name', hub.id);
  const sub = await ana.api('POST', `/homes/${home}/devices`, { pairingCode: child.pairingCode });
  assert.equal(sub.status, 409, 'a sub-device cannot be claimed on its own');
  assert.equal(sub.body.code, 'E_CONFLICT');

  const claimed = await ana.api('POST', `/homes/${home}/devices`, { pairingCode: hub.pairingCode.toLowerCase(), roomId: room.id, name: 'The hub' });
  assert.equal(claimed.status, 201, JSON.stringify(claimed.body));
  assert.equal(claimed.body.id, hub.id);
  assert.equal(claimed.body.homeId, home);
  assert.equal(claimed.body.roomId, room.id);
  assert.equal(claimed.body.name, 'The hub');
  assert.equal(claimed.body.product, 'hub');
  assert.equal(claimed.body.online, false);
  assert.equal(claimed.body.pairingCode, null, "provisioning data stays the operator's");

  for (const [u, h] of [
    [ana, home],
    [bo, boHome],
  ] as const) {
    const again = await u.api('POST', `/homes/${h}/devices`, { pairingCode: hub.pairingCode });
    assert.equal(again.status, 409);
    assert.equal(again.body.code, 'E_DEVICE_ALREADY_CLAIMED');
  }

  const list = await ana.api('GET', `/homes/${home}/devices`);
  assert.equal(list.status, 200);
  assert.deepEqual(list.body.items.map((d: any) => d.id).sort(), [hub.id, child.id].sort(), 'sub-devices of bound hubs are included');
  assert.equal(list.body.items.find((d: any) => d.id === child.id).homeId, home);

  // Naming and placing a sub-device; the operator's registry name stays.
  const named = await ana.api('PATCH', `/devices/${child.id}`, { name: 'Sofa lamp', roomId: room.id });
  assert.equal(named.status, 200, JSON.stringify(named.body));
  assert.equal(named.body.name, 'Sofa lamp');
  assert.equal(named.body.roomId, room.id);
  assert.equal(named.body.homeId, home);
  const cleared = await ana.api('PATCH', `/devices/${child.id}`, { roomId: null });
  assert.equal(cleared.body.roomId, null);
  assert.equal(cleared.body.name, 'Sofa lamp');
  assert.equal((await ana.api('PATCH', `/devices/${child.id}`, { name: null })).body.name, 'Registry child name', 'null: the registry name again');
  assert.equal((await ana.api('PATCH', `/devices/${child.id}`, { name: 'Sofa lamp' })).body.name, 'Sofa lamp');
  const byOperator = await p.api('PATCH', `/api/v1/devices/${hub.id}`, { name: 'Hub (checked by support)' });
  assert.equal(byOperator.status, 200, 'the operator may name devices too');
  assert.equal((await ana.api('GET', `/devices/${hub.id}`)).body.name, 'Hub (checked by support)');

  // Unbound, the devices show their registry names again: those were never changed.
  assert.equal((await ana.api('DELETE', `/homes/${home}/devices/${hub.id}`)).status, 200);
  assert.equal((await p.api('GET', `/api/v1/devices/${hub.id}`)).body.name, 'Registry hub name');
  assert.equal((await p.api('GET', `/api/v1/devices/${child.id}`)).body.name, 'Registry child name');
  // and, free again, the hub can be claimed by another home; the child's old room and name do not follow it.
  assert.equal((await bo.api('POST', `/homes/${boHome}/devices`, { pairingCode: hub.pairingCode })).status, 201);
  const boChild = await bo.api('GET', `/devices/${child.id}`);
  assert.equal(boChild.status, 200);
  assert.equal(boChild.body.homeId, boHome);
  assert.equal(boChild.body.roomId, null);
  assert.equal(boChild.body.name, 'Registry child name');
});

test('unbinding clears desired state, shares, groups and guest lists, and the old home loses access', async () => {
  const ana = await signup('ana');
  const gus = await signup('gus');
  const nea = await signup('nea');
  const home = await newHome(ana);
  const hub = await claim(ana, home, 'hub');
  const child = await p.provision('light', 'child light', hub.id);
  const lamp = await claim(ana, home, 'light');
  for (const id of [hub.id, child.id]) {
    const body = id === hub.id ? { desired: { permitJoin: true } } : { desired: { on: true, brightness: 70 } };
    const r = await ana.api('PATCH', `/devices/${id}/shadow`, body);
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }
  assert.deepEqual((await p.api('GET', `/api/v1/devices/${child.id}/shadow`)).body.desired, { on: true, brightness: 70 });
  await join(ana, home, gus, 'guest', { deviceIds: [child.id, lamp.id] });
  assert.equal((await ana.api('POST', `/devices/${child.id}/shares`, { email: nea.email, permission: 'control' })).status, 201);
  const group = (await ana.api('POST', `/homes/${home}/groups`, { name: 'All', deviceIds: [hub.id, child.id, lamp.id] })).body;
  assert.equal((await nea.api('GET', `/devices/${child.id}`)).status, 200);
  assert.equal((await gus.api('GET', `/devices/${child.id}`)).status, 200);

  // A sub-device follows its hub: it cannot be removed on its own.
  assert.equal((await ana.api('DELETE', `/homes/${home}/devices/${child.id}`)).status, 409);
  const un = await ana.api('DELETE', `/homes/${home}/devices/${hub.id}`);
  assert.equal(un.status, 200, JSON.stringify(un.body));
  assert.deepEqual(un.body.unbound.sort(), [hub.id, child.id].sort());

  for (const id of [hub.id, child.id]) {
    assert.deepEqual((await p.api('GET', `/api/v1/devices/${id}/shadow`)).body.desired, {}, 'desired state cleared');
    for (const u of [ana, gus, nea]) {
      const r = await u.api('GET', `/devices/${id}`);
      assert.equal(r.status, 404, `${u.email} still sees ${id}`);
      assert.equal(r.body.code, 'E_DEVICE_NOT_FOUND');
    }
    assert.equal((await ana.api('PATCH', `/devices/${id}/shadow`, { desired: {} })).status, 404);
  }
  assert.deepEqual(
    (await ana.api('GET', `/homes/${home}/devices`)).body.items.map((d: any) => d.id),
    [lamp.id],
  );
  assert.deepEqual((await ana.api('GET', `/groups/${group.id}`)).body.deviceIds, [lamp.id]);
  const guest = (await ana.api('GET', `/homes/${home}/members`)).body.items.find((m: any) => m.userId === gus.id);
  assert.deepEqual(guest.guestDevices, [lamp.id]);
  assert.equal((await ana.api('DELETE', `/homes/${home}/devices/${hub.id}`)).status, 404, 'gone already');
  assert.equal((await p.api('GET', `/api/v1/devices/${hub.id}`)).body.homeId, null);
});

test('members: invitations by e-mail, accept, roles, admins only by the owner, leave, remove, transfer', async () => {
  const ana = await signup('ana');
  const bo = await signup('bo');
  const cy = await signup('cy');
  const dee = await signup('dee');
  const home = await newHome(ana, 'Ana home');

  const inv = await ana.api('POST', `/homes/${home}/invitations`, { email: bo.email.toUpperCase(), role: 'admin' });
  assert.equal(inv.status, 201, JSON.stringify(inv.body));
  assert.match(inv.body.id, /^i_/);
  assert.equal(inv.body.email, bo.email);
  assert.equal(inv.body.role, 'admin');
  assert.ok(Date.parse(inv.body.expiresAt) > Date.now() + 24 * 3600_000);
  const token = invitationToken(bo.email);
  const mail = [...p.logs].reverse().find((l) => l.mail?.to === bo.email).mail;
  assert.ok(mail.text.includes(token), 'the token itself is in the text too');
  assert.match(mail.subject, /Ana home/);

  // Only the invited address can accept, and only once.
  const wrong = await cy.api('POST', '/invitations/accept', { token });
  assert.equal(wrong.status, 404);
  assert.equal(wrong.body.code, 'E_INVITATION_NOT_FOUND');
  assert.equal((await bo.api('POST', '/invitations/accept', { token: 'not-a-token' })).status, 404);
  assert.deepEqual((await bo.api('POST', '/invitations/accept', { token })).body, { homeId: home, role: 'admin' });
  assert.equal((await bo.api('POST', '/invitations/accept', { token })).status, 404, 'used');
  assert.equal((await ana.api('POST', `/homes/${home}/invitations`, { email: bo.email, role: 'member' })).status, 409, 'a member already');

  // An admin may invite members, not admins; deviceIds and until are for guests only.
  const byAdmin = await bo.api('POST', `/homes/${home}/invitations`, { email: dee.email, role: 'admin' });
  assert.equal(byAdmin.status, 403);
  assert.equal(byAdmin.body.code, 'E_FORBIDDEN');
  assert.equal(
    (await bo.api('POST', `/homes/${home}/invitations`, { email: dee.email, role: 'member', until: new Date(Date.now() + 3600_000).toISOString() })).status,
    400,
  );
  const revoked = await bo.api('POST', `/homes/${home}/invitations`, { email: dee.email, role: 'member' });
  assert.equal(revoked.status, 201);
  const deeToken = invitationToken(dee.email);
  const rv = await bo.api('DELETE', `/homes/${home}/invitations/${revoked.body.id}`);
  assert.equal(rv.status, 200);
  assert.equal(rv.body.status, 'revoked');
  assert.equal((await dee.api('POST', '/invitations/accept', { token: deeToken })).status, 404, 'revoked');
  const invs = await ana.api('GET', `/homes/${home}/invitations`);
  assert.deepEqual(
    invs.body.items.map((i: any) => [i.email, i.status]),
    [
      [dee.email, 'revoked'],
      [bo.email, 'accepted'],
    ],
  );

  await join(bo, home, cy, 'member');
  const members = await cy.api('GET', `/homes/${home}/members`);
  assert.equal(members.status, 200);
  assert.deepEqual(
    members.body.items.map((m: any) => [m.email, m.role]),
    [
      [ana.email, 'owner'],
      [bo.email, 'admin'],
      [cy.email, 'member'],
    ],
  );

  // Role changes: nobody changes the owner this way; only the owner makes or changes admins.
  assert.equal((await bo.api('PATCH', `/homes/${home}/members/${ana.id}`, { role: 'member' })).status, 409);
  assert.equal((await ana.api('PATCH', `/homes/${home}/members/${ana.id}`, { role: 'admin' })).status, 409);
  assert.equal((await bo.api('PATCH', `/homes/${home}/members/${cy.id}`, { role: 'admin' })).status, 403);
  assert.equal((await cy.api('PATCH', `/homes/${home}/members/${cy.id}`, { role: 'admin' })).status, 403, 'members cannot configure');
  const lamp = await claim(ana, home, 'light');
  const toGuest = await bo.api('PATCH', `/homes/${home}/members/${cy.id}`, { role: 'guest', deviceIds: [lamp.id] });
  assert.equal(toGuest.status, 200, JSON.stringify(toGuest.body));
  assert.deepEqual([toGuest.body.role, toGuest.body.guestDevices], ['guest', [lamp.id]]);
  assert.equal((await ana.api('PATCH', `/homes/${home}/members/${dee.id}`, { role: 'member' })).body.code, 'E_USER_NOT_FOUND');
  const promoted = await ana.api('PATCH', `/homes/${home}/members/${cy.id}`, { role: 'admin' });
  assert.deepEqual([promoted.body.role, promoted.body.guestDevices, promoted.body.guestUntil], ['admin', null, null]);
  assert.equal((await bo.api('DELETE', `/homes/${home}/members/${cy.id}`)).status, 403, 'an admin cannot remove another admin');

  // Leaving: anybody but the owner.
  const ownerLeaves = await ana.api('POST', `/homes/${home}/leave`);
  assert.equal(ownerLeaves.status, 409);
  assert.equal(ownerLeaves.body.code, 'E_CONFLICT');
  assert.equal((await ana.api('DELETE', `/homes/${home}/members/${ana.id}`)).status, 409);
  assert.equal((await cy.api('POST', `/homes/${home}/leave`)).status, 200);
  assert.equal((await cy.api('GET', `/homes/${home}`)).status, 404, 'gone with the membership');
  assert.deepEqual((await cy.api('GET', '/homes')).body.items, []);

  // Transfer: to members only; the old owner becomes an admin.
  assert.equal((await bo.api('POST', `/homes/${home}/transfer`, { userId: bo.id })).status, 403, 'admins cannot transfer');
  assert.equal((await ana.api('POST', `/homes/${home}/transfer`, { userId: dee.id })).body.code, 'E_USER_NOT_FOUND');
  const t = await ana.api('POST', `/homes/${home}/transfer`, { userId: bo.id });
  assert.equal(t.status, 200, JSON.stringify(t.body));
  assert.equal(t.body.ownerId, bo.id);
  assert.equal(t.body.role, 'admin');
  assert.equal((await bo.api('GET', `/homes/${home}`)).body.role, 'owner');
  assert.equal((await ana.api('POST', `/homes/${home}/leave`)).status, 200, 'no longer the owner');
  assert.equal((await ana.api('GET', `/devices/${lamp.id}`)).status, 404);

  // Removing a member.
  await join(bo, home, dee, 'member');
  assert.equal((await dee.api('GET', `/homes/${home}`)).status, 200);
  assert.equal((await bo.api('DELETE', `/homes/${home}/members/${dee.id}`)).status, 200);
  assert.equal((await dee.api('GET', `/homes/${home}`)).status, 404);
  assert.equal((await bo.api('DELETE', `/homes/${home}/members/${dee.id}`)).body.code, 'E_USER_NOT_FOUND');
});

test('a guest sees only their devices and gets 403 on every configure route of the home', async () => {
  const ana = await signup('ana');
  const gus = await signup('gus');
  const home = await newHome(ana);
  const room = (await ana.api('POST', `/homes/${home}/rooms`, { name: 'Guest room' })).body;
  const lamp = await claim(ana, home, 'light', { roomId: room.id });
  const plug = await claim(ana, home, 'plug');
  const group = (await ana.api('POST', `/homes/${home}/groups`, { name: 'Both', deviceIds: [lamp.id, plug.id] })).body;
  const until = new Date(Date.now() + 2 * 24 * 3600_000).toISOString();
  assert.equal(
    (
      await ana.api('POST', `/homes/${home}/invitations`, {
        email: gus.email,
        role: 'guest',
        deviceIds: [lamp.id],
        until: new Date(Date.now() - 1000).toISOString(),
      })
    ).status,
    400,
    'an end in the past',
  );
  await join(ana, home, gus, 'guest', { deviceIds: [lamp.id], until });
  const me = (await ana.api('GET', `/homes/${home}/members`)).body.items.find((m: any) => m.userId === gus.id);
  assert.deepEqual([me.role, me.guestDevices, me.guestUntil], ['guest', [lamp.id], until]);

  assert.equal((await gus.api('GET', `/homes/${home}`)).body.role, 'guest');
  // Changing a guest's devices keeps the end of access; null removes it.
  const more = await ana.api('PATCH', `/homes/${home}/members/${gus.id}`, { deviceIds: [lamp.id, plug.id] });
  assert.deepEqual([more.body.guestDevices, more.body.guestUntil], [[lamp.id, plug.id], until]);
  const open = await ana.api('PATCH', `/homes/${home}/members/${gus.id}`, { deviceIds: [lamp.id], until: null });
  assert.deepEqual([open.body.guestDevices, open.body.guestUntil], [[lamp.id], null]);
  assert.equal(
    (await ana.api('PATCH', `/homes/${home}/members/${gus.id}`, { deviceIds: [(await p.provision('plug')).id] })).status,
    400,
    'only devices of the home',
  );
  assert.deepEqual(
    (await gus.api('GET', `/homes/${home}/devices`)).body.items.map((d: any) => d.id),
    [lamp.id],
  );
  assert.equal((await gus.api('GET', `/devices/${plug.id}`)).status, 404);
  assert.deepEqual((await gus.api('GET', `/groups/${group.id}`)).body.deviceIds, [lamp.id], 'group members the guest may not see are left out');

  const forbidden: Array<[string, string, unknown?]> = [
    ['PATCH', `/homes/${home}`, { name: 'Mine' }],
    ['DELETE', `/homes/${home}`],
    ['POST', `/homes/${home}/rooms`, { name: 'Den' }],
    ['PATCH', `/homes/${home}/rooms/${room.id}`, { name: 'Den' }],
    ['DELETE', `/homes/${home}/rooms/${room.id}`],
    ['POST', `/homes/${home}/invitations`, { email: 'friend@homes.test', role: 'guest' }],
    ['GET', `/homes/${home}/invitations`],
    ['PATCH', `/homes/${home}/members/${gus.id}`, { deviceIds: [lamp.id, plug.id] }],
    ['DELETE', `/homes/${home}/members/${ana.id}`],
    ['POST', `/homes/${home}/transfer`, { userId: gus.id }],
    ['POST', `/homes/${home}/devices`, { pairingCode: (await p.provision('plug')).pairingCode }],
    ['DELETE', `/homes/${home}/devices/${lamp.id}`],
    ['PATCH', `/devices/${lamp.id}`, { name: 'My lamp' }],
    ['POST', `/devices/${lamp.id}/shares`, { email: ana.email, permission: 'view' }],
    ['GET', `/devices/${lamp.id}/shares`],
    ['POST', `/homes/${home}/groups`, { name: 'Mine', deviceIds: [lamp.id] }],
    ['PATCH', `/groups/${group.id}`, { name: 'Mine' }],
    ['DELETE', `/groups/${group.id}`],
    ['GET', `/homes/${home}/audit`],
  ];
  const wrong: string[] = [];
  for (const [method, path, body] of forbidden) {
    const r = await gus.api(method, path, body);
    if (r.status !== 403 || r.body.code !== 'E_FORBIDDEN') wrong.push(`${method} ${path} → ${r.status} ${r.body?.code}`);
  }
  assert.deepEqual(wrong, []);
  assert.equal((await ana.api('GET', `/homes/${home}`)).body.name, 'Home', 'nothing changed');
  assert.equal((await ana.api('GET', `/homes/${home}/devices`)).body.items.length, 2);

  // A guest may leave.
  assert.equal((await gus.api('POST', `/homes/${home}/leave`)).status, 200);
  assert.equal((await gus.api('GET', `/devices/${lamp.id}`)).status, 404);
});

test('sharing one device with somebody outside the home', async () => {
  const ana = await signup('ana');
  const nea = await signup('nea');
  const home = await newHome(ana);
  const lamp = await claim(ana, home, 'light');
  const plug = await claim(ana, home, 'plug');

  const nobody = await ana.api('POST', `/devices/${lamp.id}/shares`, { email: 'nobody@homes.test', permission: 'view' });
  assert.equal(nobody.status, 404);
  assert.equal(nobody.body.code, 'E_USER_NOT_FOUND');
  assert.equal((await nea.api('GET', `/devices/${lamp.id}`)).status, 404);

  const s = await ana.api('POST', `/devices/${lamp.id}/shares`, { email: nea.email, permission: 'view' });
  assert.equal(s.status, 201, JSON.stringify(s.body));
  assert.deepEqual([s.body.deviceId, s.body.userId, s.body.email, s.body.permission], [lamp.id, nea.id, nea.email, 'view']);
  assert.equal((await nea.api('GET', `/devices/${lamp.id}`)).status, 200);
  assert.equal((await nea.api('GET', `/devices/${plug.id}`)).status, 404, 'only that device');
  assert.equal((await nea.api('PATCH', `/devices/${lamp.id}/shadow`, { desired: { on: true } })).status, 403, 'view only');
  assert.equal((await nea.api('GET', `/homes/${home}`)).status, 404, 'a share is no membership');
  assert.equal((await nea.api('GET', `/devices/${lamp.id}/shares`)).status, 403);

  const up = await ana.api('POST', `/devices/${lamp.id}/shares`, { email: nea.email, permission: 'control' });
  assert.equal(up.status, 201);
  assert.equal((await nea.api('PATCH', `/devices/${lamp.id}/shadow`, { desired: { on: true } })).status, 200);
  const list = await ana.api('GET', `/devices/${lamp.id}/shares`);
  assert.deepEqual(
    list.body.items.map((x: any) => [x.userId, x.permission]),
    [[nea.id, 'control']],
  );

  const bo = await signup('bo');
  await join(ana, home, bo, 'member');
  assert.equal((await ana.api('POST', `/devices/${lamp.id}/shares`, { email: bo.email, permission: 'view' })).status, 409, 'members have it already');

  assert.equal((await ana.api('DELETE', `/devices/${lamp.id}/shares/${nea.id}`)).status, 200);
  assert.equal((await nea.api('GET', `/devices/${lamp.id}`)).status, 404);
  assert.equal((await ana.api('DELETE', `/devices/${lamp.id}/shares/${nea.id}`)).body.code, 'E_USER_NOT_FOUND');
});

test('groups: devices must be in the home; a group command reports per device (answered, offline)', async () => {
  const ana = await signup('ana');
  const home = await newHome(ana);
  const online = await claim(ana, home, 'light');
  const offline = await claim(ana, home, 'light');
  const elsewhere = await p.provision('light');

  const bad = await ana.api('POST', `/homes/${home}/groups`, { name: 'Lights', deviceIds: [online.id, elsewhere.id] });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.code, 'E_VALIDATION');
  assert.match(bad.body.detail, new RegExp(elsewhere.id));
  assert.equal(bad.body.field, 'body.deviceIds.1');

  const g = await ana.api('POST', `/homes/${home}/groups`, { name: 'Lights', deviceIds: [online.id, offline.id] });
  assert.equal(g.status, 201, JSON.stringify(g.body));
  assert.match(g.body.id, /^g_/);
  assert.deepEqual(g.body.deviceIds, [online.id, offline.id]);
  assert.deepEqual(
    (await ana.api('GET', `/homes/${home}/groups`)).body.items.map((x: any) => x.id),
    [g.body.id],
  );
  const renamed = await ana.api('PATCH', `/groups/${g.body.id}`, { name: 'Downstairs' });
  assert.equal(renamed.body.name, 'Downstairs');
  assert.equal((await ana.api('PATCH', `/groups/${g.body.id}`, { deviceIds: [elsewhere.id] })).status, 400);

  const c = await p.connect(online.id, online.secret);
  const box = inbox(c);
  await c.subscribeAsync(`devices/${online.id}/commands`, { qos: 1 });
  await eventually(async () => (await ana.api('GET', `/devices/${online.id}`)).body.online === true, 3000, 'device online');

  const call = ana.api('POST', `/groups/${g.body.id}/commands`, { action: 'blink', params: { times: 2 }, timeoutMs: 3000 });
  const cmd = await box.next((m) => m.topic === `devices/${online.id}/commands`);
  assert.deepEqual([cmd.payload.action, cmd.payload.params], ['blink', { times: 2 }]);
  await c.publishAsync(`devices/${online.id}/commands/result`, JSON.stringify({ id: cmd.payload.id, ok: true }), { qos: 1 });
  const res = await call;
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const byId = Object.fromEntries(res.body.results.map((r: any) => [r.deviceId, r]));
  assert.equal(byId[online.id].ok, true);
  assert.equal(byId[online.id].status, 200);
  assert.equal(byId[online.id].commandId, cmd.payload.id);
  assert.equal(typeof byId[online.id].latencyMs, 'number');
  assert.equal(byId[offline.id].ok, false);
  assert.equal(byId[offline.id].status, 409);
  assert.equal(byId[offline.id].code, 'E_DEVICE_OFFLINE');

  // No answer in time: 504 for that device.
  const slow = await ana.api('POST', `/groups/${g.body.id}/commands`, { action: 'toggle', timeoutMs: 200 });
  assert.equal(slow.status, 200);
  assert.deepEqual(
    slow.body.results.map((r: any) => [r.deviceId, r.status, r.code]),
    [
      [online.id, 504, 'E_COMMAND_TIMEOUT'],
      [offline.id, 409, 'E_DEVICE_OFFLINE'],
    ],
  );

  // Not in the model: every device reports 400; the call itself succeeds.
  const mismatch = await ana.api('POST', `/groups/${g.body.id}/commands`, { action: 'launch' });
  assert.equal(mismatch.status, 200);
  assert.deepEqual(
    mismatch.body.results.map((r: any) => r.status),
    [400, 400],
  );

  // The ledger names the person who sent it.
  const ledger = await ana.api('GET', `/devices/${online.id}/commands`);
  assert.equal(ledger.body.items[0].source, `user:${ana.id}`);

  assert.equal((await ana.api('DELETE', `/groups/${g.body.id}`)).status, 200);
  assert.equal((await ana.api('GET', `/groups/${g.body.id}`)).body.code, 'E_GROUP_NOT_FOUND');
});

test("a user of another home gets 404 on every route with the first user's ids", async () => {
  const ana = await signup('ana');
  const bo = await signup('bo');
  const gus = await signup('gus');
  const home = await newHome(ana, 'Ana home');
  const room = (await ana.api('POST', `/homes/${home}/rooms`, { name: 'Kitchen' })).body;
  const lamp = await claim(ana, home, 'light', { roomId: room.id });
  const group = (await ana.api('POST', `/homes/${home}/groups`, { name: 'G', deviceIds: [lamp.id] })).body;
  await join(ana, home, gus, 'guest', { deviceIds: [lamp.id] });
  const nea = await signup('nea');
  assert.equal((await ana.api('POST', `/devices/${lamp.id}/shares`, { email: nea.email, permission: 'view' })).status, 201);
  const inv = (await ana.api('POST', `/homes/${home}/invitations`, { email: 'later@homes.test', role: 'member' })).body;
  const laterToken = invitationToken('later@homes.test');
  const boHome = await newHome(bo, 'Bo home');
  const boRoom = (await bo.api('POST', `/homes/${boHome}/rooms`, { name: 'Bo room' })).body;

  const routes: Array<[string, string, unknown?, string?]> = [
    ['GET', `/homes/${home}`],
    ['PATCH', `/homes/${home}`, { name: 'Taken' }],
    ['DELETE', `/homes/${home}`],
    ['GET', `/homes/${home}/audit`],
    ['POST', `/homes/${home}/rooms`, { name: 'Mine' }],
    ['GET', `/homes/${home}/rooms`],
    ['PATCH', `/homes/${home}/rooms/${room.id}`, { name: 'Mine' }],
    ['DELETE', `/homes/${home}/rooms/${room.id}`],
    ['GET', `/homes/${home}/members`],
    ['POST', `/homes/${home}/invitations`, { email: bo.email, role: 'admin' }],
    ['GET', `/homes/${home}/invitations`],
    ['DELETE', `/homes/${home}/invitations/${inv.id}`],
    ['PATCH', `/homes/${home}/members/${gus.id}`, { role: 'member' }],
    ['DELETE', `/homes/${home}/members/${gus.id}`],
    ['POST', `/homes/${home}/leave`],
    ['POST', `/homes/${home}/transfer`, { userId: bo.id }],
    ['POST', `/homes/${home}/devices`, { pairingCode: (await p.provision('plug')).pairingCode }],
    ['GET', `/homes/${home}/devices`],
    ['DELETE', `/homes/${home}/devices/${lamp.id}`],
    ['PATCH', `/devices/${lamp.id}`, { name: 'Mine' }],
    ['POST', `/devices/${lamp.id}/shares`, { email: bo.email, permission: 'control' }],
    ['GET', `/devices/${lamp.id}/shares`],
    ['DELETE', `/devices/${lamp.id}/shares/${nea.id}`],
    ['POST', `/homes/${home}/groups`, { name: 'Mine', deviceIds: [] }],
    ['GET', `/homes/${home}/groups`],
    ['GET', `/groups/${group.id}`],
    ['PATCH', `/groups/${group.id}`, { name: 'Mine' }],
    ['DELETE', `/groups/${group.id}`],
    ['POST', `/groups/${group.id}/commands`, { action: 'toggle' }],
    ['POST', '/invitations/accept', { token: laterToken }, 'E_INVITATION_NOT_FOUND'],
    // A's ids inside Bo's own home are no better.
    ['PATCH', `/homes/${boHome}/rooms/${room.id}`, { name: 'Mine' }, 'E_ROOM_NOT_FOUND'],
    ['DELETE', `/homes/${boHome}/rooms/${room.id}`, undefined, 'E_ROOM_NOT_FOUND'],
    ['POST', `/homes/${boHome}/devices`, { pairingCode: (await p.provision('plug')).pairingCode, roomId: room.id }, 'E_ROOM_NOT_FOUND'],
    ['DELETE', `/homes/${boHome}/devices/${lamp.id}`, undefined, 'E_DEVICE_NOT_FOUND'],
    ['PATCH', `/homes/${boHome}/members/${gus.id}`, { role: 'member' }, 'E_USER_NOT_FOUND'],
    ['DELETE', `/homes/${boHome}/invitations/${inv.id}`, undefined, 'E_INVITATION_NOT_FOUND'],
    ['POST', `/homes/${boHome}/transfer`, { userId: ana.id }, 'E_USER_NOT_FOUND'],
  ];
  const expected = (path: string) =>
    path.startsWith('/groups/') ? 'E_GROUP_NOT_FOUND' : path.startsWith('/devices/') ? 'E_DEVICE_NOT_FOUND' : 'E_HOME_NOT_FOUND';
  const wrong: string[] = [];
  for (const [method, path, body, code] of routes) {
    const r = await bo.api(method, path, body);
    const want = code ?? expected(path);
    if (r.status !== 404 || r.body.code !== want) wrong.push(`${method} ${path} → ${r.status} ${r.body?.code} (want 404 ${want})`);
  }
  assert.deepEqual(wrong, []);
  // A group in Bo's home cannot take A's devices.
  const g = await bo.api('POST', `/homes/${boHome}/groups`, { name: 'Steal', deviceIds: [lamp.id] });
  assert.equal(g.status, 400);

  // Nothing of A's changed.
  assert.equal((await ana.api('GET', `/homes/${home}`)).body.name, 'Ana home');
  assert.deepEqual(
    (await ana.api('GET', `/homes/${home}/rooms`)).body.items.map((r: any) => r.name),
    ['Kitchen'],
  );
  assert.equal((await ana.api('GET', `/groups/${group.id}`)).body.name, 'G');
  const still = (await ana.api('GET', `/devices/${lamp.id}`)).body;
  assert.deepEqual([still.name, still.homeId, still.roomId], ['light under test', home, room.id]);
  assert.deepEqual(
    (await ana.api('GET', `/homes/${home}/members`)).body.items.map((m: any) => m.role),
    ['owner', 'guest'],
  );
  assert.equal((await ana.api('GET', `/devices/${lamp.id}/shares`)).body.items.length, 1);
  assert.equal((await ana.api('GET', `/homes/${home}/invitations`)).body.items[0].status, 'pending');
  assert.deepEqual(
    (await bo.api('GET', '/homes')).body.items.map((h: any) => h.id),
    [boHome],
  );
  assert.deepEqual(
    (await bo.api('GET', `/homes/${boHome}/rooms`)).body.items.map((r: any) => r.id),
    [boRoom.id],
  );
});

test('the home audit trail records who did what, for the owner only', async () => {
  const ana = await signup('ana');
  const bo = await signup('bo');
  const home = await newHome(ana);
  const room = (await ana.api('POST', `/homes/${home}/rooms`, { name: 'Kitchen' })).body;
  const lamp = await claim(ana, home, 'light', { roomId: room.id });
  await ana.api('PATCH', `/devices/${lamp.id}`, { name: 'Counter light' });
  await join(ana, home, bo, 'admin');
  await bo.api('POST', `/homes/${home}/groups`, { name: 'G', deviceIds: [lamp.id] });

  const log = await ana.api('GET', `/homes/${home}/audit`);
  assert.equal(log.status, 200, JSON.stringify(log.body));
  const actions = log.body.items.map((e: any) => e.action);
  assert.deepEqual(
    actions,
    ['group.create', 'home.member.join', 'home.member.invite', 'device.update', 'device.claim', 'room.create', 'home.create'],
    'newest first',
  );
  const claimEntry = log.body.items.find((e: any) => e.action === 'device.claim');
  assert.deepEqual([claimEntry.actor, claimEntry.homeId, claimEntry.targetType, claimEntry.targetId], [`user:${ana.id}`, home, 'device', lamp.id]);
  assert.equal(log.body.items[0].actor, `user:${bo.id}`);
  assert.ok(!JSON.stringify(log.body).includes(invitationToken(bo.email)), 'no invitation token in the trail');

  const page = await ana.api('GET', `/homes/${home}/audit?limit=2`);
  assert.equal(page.body.items.length, 2);
  const older = await ana.api('GET', `/homes/${home}/audit?limit=100&before=${encodeURIComponent(page.body.items[1].at)}`);
  assert.ok(older.body.items.every((e: any) => Date.parse(e.at) < Date.parse(page.body.items[1].at)));

  const byAdmin = await bo.api('GET', `/homes/${home}/audit`);
  assert.equal(byAdmin.status, 403);
  assert.equal(byAdmin.body.code, 'E_FORBIDDEN');
});

test('deleting a home unbinds its devices and removes rooms, members, groups and invitations', async () => {
  const ana = await signup('ana');
  const bo = await signup('bo');
  const home = await newHome(ana);
  const room = (await ana.api('POST', `/homes/${home}/rooms`, { name: 'Kitchen' })).body;
  const hub = await claim(ana, home, 'hub', { roomId: room.id });
  const child = await p.provision('light', 'child', hub.id);
  await ana.api('PATCH', `/devices/${child.id}/shadow`, { desired: { on: true } });
  await join(ana, home, bo, 'admin');
  const group = (await ana.api('POST', `/homes/${home}/groups`, { name: 'G', deviceIds: [hub.id, child.id] })).body;
  await ana.api('POST', `/homes/${home}/invitations`, { email: 'later@homes.test', role: 'member' });

  assert.equal((await bo.api('DELETE', `/homes/${home}`)).status, 403, 'owner only');
  const del = await ana.api('DELETE', `/homes/${home}`);
  assert.equal(del.status, 200, JSON.stringify(del.body));
  for (const u of [ana, bo]) {
    assert.equal((await u.api('GET', `/homes/${home}`)).status, 404);
    assert.equal((await u.api('GET', `/groups/${group.id}`)).status, 404);
    assert.equal((await u.api('GET', `/devices/${hub.id}`)).status, 404);
    assert.deepEqual((await u.api('GET', '/homes')).body.items, []);
  }
  assert.deepEqual((await p.api('GET', `/api/v1/devices/${child.id}/shadow`)).body.desired, {});
  assert.equal((await p.api('GET', `/api/v1/devices/${hub.id}`)).body.homeId, null);
  assert.equal((await p.api('GET', `/api/v1/homes/${home}`)).status, 404);
  // The devices are free for a new home.
  const again = await newHome(ana, 'New home');
  assert.equal((await ana.api('POST', `/homes/${again}/devices`, { pairingCode: hub.pairingCode })).status, 201);
  assert.equal((await ana.api('GET', `/devices/${child.id}`)).body.roomId, null);
});
