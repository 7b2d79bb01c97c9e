import type { Db } from '../core/store/db.ts';
import { fromJson, toJson } from '../core/store/db.ts';
import type { Database } from '../core/store/schema.ts';
import { HearthError, isHearthError } from '../core/errors.ts';
import { newId, newSecret } from '../core/ids.ts';
import { digestToken } from '../core/secrets.ts';
import type { Mailer } from '../core/mailer.ts';
import { actorOf, hasScope, type Principal } from '../auth/auth-service.ts';
import type { AuditRecord, AuditService } from '../audit/audit-service.ts';
import type { DeviceRecord, DeviceService } from '../devices/device-service.ts';
import type { ShadowService } from '../shadow/shadow-service.ts';
import type { CommandService } from '../commands/command-service.ts';
import type { AccessService, HomeNeed, HomeRole } from './access-service.ts';
import { RateLimiter } from '../core/rate-limiter.ts';

/** What the homes capability needs to know about accounts (the auth capability owns them). */
export interface UserDirectory {
  userByEmail(email: string): Promise<{ id: string; email: string; emailVerified: boolean } | undefined>;
  userById(id: string): Promise<{ id: string; email: string; emailVerified: boolean } | undefined>;
}

/** Where a home is and who owns it. */
export interface HomeInfo {
  id: string;
  name: string;
  timezone: string;
  latitude: number | null;
  longitude: number | null;
  ownerId: string;
}

export interface HomeServiceDeps {
  db: Db;
  access: AccessService;
  devices: DeviceService;
  shadow: ShadowService;
  commands: CommandService;
  audit: AuditService;
  mailer: Mailer;
  users: UserDirectory;
  /** Base URL of the web app; invitation links point at `${publicUrl}/invitations/accept?token=…`. */
  publicUrl: string;
  /** Told when a device changes home or room (all devices when undefined), so that caches can drop it. */
  onPlacementChange?: (deviceId?: string) => void;
  /** Told when someone's rights in a home or to a shared device shrank or changed (members, guests, shares, ownership), so that cached decisions go at once. */
  onAccessChange?: (userId: string) => void;
  /** Told after a home's time zone or location changed (schedules and sun times follow it). */
  onLocationChange?: (homeId: string) => Promise<void>;
  /** Told after a home was deleted, so that what other capabilities keep for it goes too. */
  onHomeDeleted?: (homeId: string) => Promise<void>;
  /** How long an invitation stays valid (default 7 days). */
  invitationTtlMs?: number;
  /** Invitation e-mails one user may send (default 60 an hour, 20 at once). */
  invitationRate?: { perHour: number; burst: number };
}

export interface HomeView extends HomeInfo {
  /** The caller's role; `operator` when the operator looks at a home they are no member of. */
  role: HomeRole | 'operator';
  createdAt: string;
}

export interface RoomView {
  id: string;
  homeId: string;
  name: string;
  createdAt: string;
}

export interface MemberView {
  userId: string;
  email: string;
  role: HomeRole;
  guestDevices: string[] | null;
  guestUntil: string | null;
  joinedAt: string;
}

export type InvitationStatus = 'pending' | 'accepted' | 'revoked' | 'expired';

export interface InvitationView {
  id: string;
  homeId: string;
  email: string;
  role: HomeRole;
  guestDevices: string[] | null;
  guestUntil: string | null;
  status: InvitationStatus;
  invitedBy: string;
  createdAt: string;
  expiresAt: string;
}

export interface ShareView {
  deviceId: string;
  userId: string;
  email: string;
  permission: 'control' | 'view';
  sharedBy: string;
  createdAt: string;
}

export interface GroupView {
  id: string;
  homeId: string;
  name: string;
  /** The members the caller may see (a guest sees only their own devices). */
  deviceIds: string[];
  createdAt: string;
}

/** The outcome of a group command for one device; failures are captured, never thrown. */
export interface GroupCommandResult {
  deviceId: string;
  ok: boolean;
  /** HTTP-like: 200 answered (see `ok`), else the status of the error that stopped it. */
  status: number;
  code?: string;
  commandId?: string;
  result?: Record<string, unknown>;
  error?: string;
  latencyMs?: number;
}

type InvitableRole = 'admin' | 'member' | 'guest';
type HomeRow = Database['homes'];
type InvitationRow = Database['invitations'];

const DAY = 24 * 60 * 60 * 1000;
const iso = (n: number | string | null) => (n == null ? null : new Date(Number(n)).toISOString());
const isoOf = (n: number | string) => new Date(Number(n)).toISOString();

/**
 * Homes and the people and devices in them: homes, rooms, memberships and invitations, binding
 * devices to homes (claim by pairing code, unbind), sharing single devices, device groups, and
 * the audit trail of it all. Every check asks the AccessService; this service never decides
 * access on its own. Whatever a caller may not see is answered as not found.
 */
export class HomeService {
  private readonly invitationTtlMs: number;
  /** Per inviting user: invitations are e-mails to any address, so they are rate limited like any mail. */
  private readonly invitationMails: RateLimiter;

  constructor(private readonly deps: HomeServiceDeps) {
    this.invitationTtlMs = deps.invitationTtlMs ?? 7 * DAY;
    const rate = deps.invitationRate ?? { perHour: 60, burst: 20 };
    this.invitationMails = new RateLimiter({ perMinute: rate.perHour / 60, burst: rate.burst });
  }

  // ------------------------------------------------------------------ homes

  async createHome(p: Principal, input: { name: string; timezone: string; latitude?: number; longitude?: number }): Promise<HomeView> {
    if (!hasScope(p, 'homes:manage') || p.homeIds) throw new HearthError('E_FORBIDDEN', 'creating a home needs the homes:manage scope on all homes');
    const row: HomeRow = {
      id: newId('h'), name: input.name.trim(), timezone: checkTimezone(input.timezone), latitude: input.latitude ?? null, longitude: input.longitude ?? null,
      owner_id: p.userId, created_at: Date.now(),
    };
    await this.deps.db.transaction().execute(async (trx) => {
      await trx.insertInto('homes').values(row).execute();
      await trx.insertInto('home_members').values({ home_id: row.id, user_id: p.userId, role: 'owner', guest_devices: null, guest_until: null, created_at: row.created_at, rights_since: row.created_at }).execute();
    });
    this.audit(p, 'home.create', row.id, 'home', row.id, { name: row.name, timezone: row.timezone });
    return homeView(row, 'owner');
  }

  /** The caller's own homes (operators too: their memberships only), with their role in each. */
  async listHomes(p: Principal): Promise<HomeView[]> {
    const rows = await this.deps.db.selectFrom('home_members')
      .innerJoin('homes', 'homes.id', 'home_members.home_id')
      .select(['homes.id', 'homes.name', 'homes.timezone', 'homes.latitude', 'homes.longitude', 'homes.owner_id', 'homes.created_at', 'home_members.role'])
      .where('home_members.user_id', '=', p.userId)
      .orderBy('homes.created_at').orderBy('homes.id')
      .execute();
    const out: HomeView[] = [];
    for (const r of rows) {
      // The policy decides what counts (expired guests, API keys restricted to other homes).
      if (!(await this.allowed(p, r.id, 'view'))) continue;
      out.push(homeView(r, r.role as HomeRole));
    }
    return out;
  }

  /** A home's place and owner, for the platform's own work (no access check); undefined when it does not exist. */
  async info(homeId: string): Promise<HomeInfo | undefined> {
    const row = await this.deps.db.selectFrom('homes').select(['id', 'name', 'timezone', 'latitude', 'longitude', 'owner_id']).where('id', '=', homeId).executeTakeFirst();
    return row && {
      id: row.id, name: row.name, timezone: row.timezone, ownerId: row.owner_id,
      latitude: row.latitude == null ? null : Number(row.latitude), longitude: row.longitude == null ? null : Number(row.longitude),
    };
  }

  /** The devices of a group of the home (no access check); undefined when the group is not in the home. */
  async groupDevices(homeId: string, groupId: string): Promise<string[] | undefined> {
    const row = await this.deps.db.selectFrom('device_groups').select('device_ids').where('id', '=', groupId).where('home_id', '=', homeId).executeTakeFirst();
    return row ? (JSON.parse(row.device_ids) as string[]) : undefined;
  }

  async getHome(p: Principal, homeId: string): Promise<HomeView> {
    await this.deps.access.requireHome(p, homeId, 'view');
    return homeView(await this.homeRow(homeId), await this.roleOf(p, homeId));
  }

  async updateHome(p: Principal, homeId: string, patch: { name?: string; timezone?: string; latitude?: number | null; longitude?: number | null }): Promise<HomeView> {
    await this.deps.access.requireHome(p, homeId, 'configure');
    const set: Partial<HomeRow> = {};
    if (patch.name !== undefined) set.name = patch.name.trim();
    if (patch.timezone !== undefined) set.timezone = checkTimezone(patch.timezone);
    if (patch.latitude !== undefined) set.latitude = patch.latitude;
    if (patch.longitude !== undefined) set.longitude = patch.longitude;
    if (Object.keys(set).length) await this.deps.db.updateTable('homes').set(set).where('id', '=', homeId).execute();
    this.audit(p, 'home.update', homeId, 'home', homeId, set);
    if (set.timezone !== undefined || set.latitude !== undefined || set.longitude !== undefined) await this.deps.onLocationChange?.(homeId);
    return this.getHome(p, homeId);
  }

  /** Deletes a home: its devices are unbound (desired state cleared), rooms, members, groups and invitations go. */
  async deleteHome(p: Principal, homeId: string): Promise<void> {
    await this.deps.access.requireHome(p, homeId, 'own');
    const db = this.deps.db;
    const bound = await db.selectFrom('device_bindings').select('device_id').where('home_id', '=', homeId).execute();
    const ids = new Set<string>();
    for (const b of bound) {
      ids.add(b.device_id);
      for (const c of await this.deps.devices.children(b.device_id)) ids.add(c.id);
    }
    // Only what is really in this home: a stale room/name row of a sub-device whose hub moved away is not.
    const placed: string[] = [];
    for (const id of ids) if ((await this.deps.access.placement(id))?.homeId === homeId) placed.push(id);
    await db.transaction().execute(async (trx) => {
      await trx.deleteFrom('device_bindings').where('home_id', '=', homeId).execute();
      if (placed.length) {
        await trx.deleteFrom('device_bindings').where('device_id', 'in', placed).execute();
        await trx.deleteFrom('device_shares').where('device_id', 'in', placed).execute();
      }
      await trx.deleteFrom('device_groups').where('home_id', '=', homeId).execute();
      await trx.deleteFrom('invitations').where('home_id', '=', homeId).execute();
      await trx.deleteFrom('home_members').where('home_id', '=', homeId).execute();
      await trx.deleteFrom('rooms').where('home_id', '=', homeId).execute();
      await trx.deleteFrom('homes').where('id', '=', homeId).execute();
    });
    for (const id of placed) this.deps.onPlacementChange?.(id);
    for (const id of placed) await this.deps.shadow.clearDesired(id);
    await this.deps.onHomeDeleted?.(homeId);
    this.audit(p, 'home.delete', homeId, 'home', homeId, { unbound: placed });
  }

  // ------------------------------------------------------------------ rooms

  async createRoom(p: Principal, homeId: string, name: string): Promise<RoomView> {
    await this.deps.access.requireHome(p, homeId, 'configure');
    const row = { id: newId('r'), home_id: homeId, name: name.trim(), created_at: Date.now() };
    await this.deps.db.insertInto('rooms').values(row).execute();
    this.audit(p, 'room.create', homeId, 'room', row.id, { name: row.name });
    return roomView(row);
  }

  async listRooms(p: Principal, homeId: string): Promise<RoomView[]> {
    await this.deps.access.requireHome(p, homeId, 'view');
    const rows = await this.deps.db.selectFrom('rooms').selectAll().where('home_id', '=', homeId).orderBy('created_at').orderBy('id').execute();
    return rows.map(roomView);
  }

  async updateRoom(p: Principal, homeId: string, roomId: string, name: string): Promise<RoomView> {
    await this.deps.access.requireHome(p, homeId, 'configure');
    const room = await this.room(homeId, roomId);
    await this.deps.db.updateTable('rooms').set({ name: name.trim() }).where('id', '=', roomId).where('home_id', '=', homeId).execute();
    this.audit(p, 'room.update', homeId, 'room', roomId, { name: name.trim() });
    return roomView({ ...room, name: name.trim() });
  }

  /** Deletes a room; its devices stay in the home without a room. */
  async deleteRoom(p: Principal, homeId: string, roomId: string): Promise<void> {
    await this.deps.access.requireHome(p, homeId, 'configure');
    await this.room(homeId, roomId);
    await this.deps.db.transaction().execute(async (trx) => {
      await trx.updateTable('device_bindings').set({ room_id: null }).where('room_id', '=', roomId).where('home_id', '=', homeId).execute();
      await trx.deleteFrom('rooms').where('id', '=', roomId).where('home_id', '=', homeId).execute();
    });
    this.audit(p, 'room.delete', homeId, 'room', roomId);
  }

  // ------------------------------------------------------------------ members

  async listMembers(p: Principal, homeId: string): Promise<MemberView[]> {
    await this.deps.access.requireHome(p, homeId, 'view');
    const rows = await this.deps.db.selectFrom('home_members').selectAll().where('home_id', '=', homeId).orderBy('created_at').orderBy('user_id').execute();
    return Promise.all(rows.map(async (r) => memberView(r, (await this.deps.users.userById(r.user_id))?.email ?? '')));
  }

  /**
   * Invites someone by e-mail; they need not have an account yet. Only the owner may invite an
   * admin. The e-mail names the inviter by address, so the inviter's address must be verified.
   */
  async invite(p: Principal, homeId: string, input: { email: string; role: InvitableRole; deviceIds?: string[]; until?: string }): Promise<InvitationView> {
    const role = await this.deps.access.requireHome(p, homeId, 'configure');
    if (input.role === 'admin' && !ownerLike(role)) throw new HearthError('E_FORBIDDEN', 'only the owner can invite an admin');
    const me = await this.requireVerified(p, 'send invitations');
    const allowed = this.invitationMails.take(p.userId);
    if (!allowed.ok) throw new HearthError('E_RATE_LIMITED', `too many invitations; try again in ${allowed.retryAfterSeconds} s`, { retryAfter: allowed.retryAfterSeconds });
    const email = input.email.trim().toLowerCase();
    const guest = await this.guestTerms(homeId, input.role, input.deviceIds, input.until);
    const user = await this.deps.users.userByEmail(email);
    if (user && (await this.deps.access.membership(user.id, homeId))) throw new HearthError('E_CONFLICT', `${email} is a member of this home already`, { field: 'body.email' });
    const home = await this.homeRow(homeId);
    const token = newSecret(24);
    const now = Date.now();
    const row: InvitationRow = {
      id: newId('i'), home_id: homeId, email, role: input.role, token_hash: digestToken(token),
      guest_devices: input.role === 'guest' ? toJson(guest.devices ?? []) : null, guest_until: guest.until ?? null,
      invited_by: actorOf(p), created_at: now, expires_at: now + this.invitationTtlMs, accepted_at: null, revoked_at: null,
    };
    await this.deps.db.transaction().execute(async (trx) => {
      // A new invitation replaces an earlier one to the same address: only the latest link works.
      await trx.updateTable('invitations').set({ revoked_at: now })
        .where('home_id', '=', homeId).where('email', '=', email).where('accepted_at', 'is', null).where('revoked_at', 'is', null)
        .execute();
      await trx.insertInto('invitations').values(row).execute();
    });
    const link = `${this.deps.publicUrl.replace(/\/+$/, '')}/invitations/accept?token=${encodeURIComponent(token)}`;
    try {
      await this.deps.mailer.send({
        to: email,
        subject: `You are invited to "${home.name}" on Hearth`,
        text: [
          `${me.email} invites you to join the home "${home.name}" as ${input.role === 'admin' ? 'an admin' : `a ${input.role}`}.`,
          '',
          `Accept the invitation: ${link}`,
          '',
          `Or sign in with this e-mail address and send this token to POST /api/v1/invitations/accept: ${token}`,
          '',
          `The invitation expires on ${isoOf(row.expires_at)}.`,
        ].join('\n'),
      });
    } catch (err) {
      await this.deps.db.deleteFrom('invitations').where('id', '=', row.id).execute();
      throw err;
    }
    this.audit(p, 'home.member.invite', homeId, 'invitation', row.id, { email, role: input.role, ...(guest.devices ? { deviceIds: guest.devices } : {}), ...(guest.until ? { until: isoOf(guest.until) } : {}) });
    return invitationView(row, now);
  }

  async listInvitations(p: Principal, homeId: string): Promise<InvitationView[]> {
    await this.deps.access.requireHome(p, homeId, 'configure');
    const rows = await this.deps.db.selectFrom('invitations').selectAll().where('home_id', '=', homeId).orderBy('created_at', 'desc').orderBy('id').execute();
    const now = Date.now();
    return rows.map((r) => invitationView(r, now));
  }

  async revokeInvitation(p: Principal, homeId: string, invitationId: string): Promise<InvitationView> {
    const role = await this.deps.access.requireHome(p, homeId, 'configure');
    const row = await this.deps.db.selectFrom('invitations').selectAll().where('id', '=', invitationId).where('home_id', '=', homeId).executeTakeFirst();
    if (!row) throw new HearthError('E_INVITATION_NOT_FOUND', `invitation "${invitationId}" does not exist`);
    if (row.role === 'admin' && !ownerLike(role)) throw new HearthError('E_FORBIDDEN', 'only the owner can revoke an invitation of an admin');
    if (row.accepted_at != null) throw new HearthError('E_CONFLICT', 'the invitation was accepted already; remove the member instead');
    const now = Date.now();
    if (row.revoked_at == null) {
      await this.deps.db.updateTable('invitations').set({ revoked_at: now }).where('id', '=', invitationId).where('revoked_at', 'is', null).execute();
      row.revoked_at = now;
      this.audit(p, 'home.member.revoke', homeId, 'invitation', invitationId, { email: row.email, role: row.role });
    }
    return invitationView(row, now);
  }

  /**
   * The signed-in user takes up an invitation sent to their e-mail address, which must be
   * verified: holding an account with an address is no proof of holding the address. Unknown,
   * expired, used or revoked tokens and invitations for somebody else are all "not found".
   */
  async acceptInvitation(p: Principal, token: string): Promise<{ homeId: string; role: HomeRole }> {
    if (p.keyId) throw new HearthError('E_FORBIDDEN', 'sign in with your password to accept an invitation');
    // Checked before the token is looked at, so that an unverified account learns nothing about it.
    const me = await this.requireVerified(p, 'accept invitations');
    const now = Date.now();
    const row = await this.deps.db.selectFrom('invitations').selectAll().where('token_hash', '=', digestToken(token.trim())).executeTakeFirst();
    const notFound = () => new HearthError('E_INVITATION_NOT_FOUND', 'the invitation does not exist, has expired or was used already');
    // The account's address now, not the one in the access token, which may be older.
    if (!row || row.accepted_at != null || row.revoked_at != null || Number(row.expires_at) < now || row.email !== me.email.toLowerCase()) throw notFound();
    // A guest invitation whose access has ended meanwhile is of no use any more.
    if (row.guest_until != null && Number(row.guest_until) < now) throw notFound();
    const existing = await this.deps.access.membership(p.userId, row.home_id);
    if (existing?.role === 'owner') throw new HearthError('E_CONFLICT', 'you own this home');
    const role = row.role as HomeRole;
    // Devices that left the home since the invitation was sent are not the guest's to use.
    let guestDevices: string[] | null = null;
    if (role === 'guest') {
      guestDevices = [];
      for (const id of fromJson<string[] | null>(row.guest_devices) ?? []) if ((await this.deps.access.placement(id))?.homeId === row.home_id) guestDevices.push(id);
    }
    const taken = await this.deps.db.transaction().execute(async (trx) => {
      const r = await trx.updateTable('invitations').set({ accepted_at: now })
        .where('id', '=', row.id).where('accepted_at', 'is', null).where('revoked_at', 'is', null)
        .executeTakeFirst();
      if (Number(r.numUpdatedRows) !== 1) return false;
      const values = { role, guest_devices: guestDevices ? toJson(guestDevices) : null, guest_until: role === 'guest' ? row.guest_until : null };
      // A member accepting again may gain rights: what happened before is not theirs to replay.
      await trx.insertInto('home_members').values({ home_id: row.home_id, user_id: p.userId, created_at: now, rights_since: now, ...values })
        .onConflict((oc) => oc.columns(['home_id', 'user_id']).doUpdateSet({ ...values, rights_since: now }))
        .execute();
      return true;
    });
    if (!taken) throw notFound();
    this.audit(p, 'home.member.join', row.home_id, 'user', p.userId, { invitationId: row.id, role, ...(existing ? { previousRole: existing.role } : {}) });
    return { homeId: row.home_id, role };
  }

  /** Changes a member's role or guest terms. The owner changes only by transfer; only the owner makes or changes admins. */
  async updateMember(p: Principal, homeId: string, userId: string, patch: { role?: InvitableRole; deviceIds?: string[]; until?: string | null }): Promise<MemberView> {
    const callerRole = await this.deps.access.requireHome(p, homeId, 'configure');
    const current = await this.deps.access.membership(userId, homeId);
    if (!current) throw new HearthError('E_USER_NOT_FOUND', `user "${userId}" is not a member of this home`);
    if (current.role === 'owner') throw new HearthError('E_CONFLICT', "the owner's role changes only by transferring ownership");
    const role = patch.role ?? current.role;
    if (!ownerLike(callerRole) && (current.role === 'admin' || role === 'admin')) throw new HearthError('E_FORBIDDEN', 'only the owner can appoint or change admins');
    const stillGuest = current.role === 'guest' && role === 'guest';
    const guest = await this.guestTerms(homeId, role, patch.deviceIds, patch.until === null ? undefined : patch.until);
    const values = role === 'guest'
      ? {
        role,
        guest_devices: toJson(guest.devices ?? (stillGuest ? current.guestDevices ?? [] : [])),
        guest_until: patch.until === null ? null : guest.until ?? (stillGuest ? current.guestUntil : null),
      }
      : { role, guest_devices: null, guest_until: null };
    // Rights may have grown (more devices, a longer stay, a higher role): replay starts from now.
    await this.deps.db.updateTable('home_members').set({ ...values, rights_since: Date.now() }).where('home_id', '=', homeId).where('user_id', '=', userId).execute();
    this.deps.onAccessChange?.(userId);
    this.audit(p, 'home.member.update', homeId, 'user', userId, {
      from: current.role, role, ...(role === 'guest' ? { deviceIds: fromJson<string[]>(values.guest_devices), until: iso(values.guest_until) } : {}),
    });
    return (await this.listMembersUnchecked(homeId, userId))[0];
  }

  async removeMember(p: Principal, homeId: string, userId: string): Promise<void> {
    const callerRole = await this.deps.access.requireHome(p, homeId, 'configure');
    const current = await this.deps.access.membership(userId, homeId);
    if (!current) throw new HearthError('E_USER_NOT_FOUND', `user "${userId}" is not a member of this home`);
    if (current.role === 'owner') throw new HearthError('E_CONFLICT', 'the owner cannot be removed; transfer ownership first');
    if (current.role === 'admin' && !ownerLike(callerRole) && userId !== p.userId) throw new HearthError('E_FORBIDDEN', 'only the owner can remove an admin');
    await this.deps.db.deleteFrom('home_members').where('home_id', '=', homeId).where('user_id', '=', userId).execute();
    this.deps.onAccessChange?.(userId);
    this.audit(p, 'home.member.remove', homeId, 'user', userId, { role: current.role });
  }

  /** The caller leaves a home. The owner cannot: they transfer ownership first. */
  async leave(p: Principal, homeId: string): Promise<void> {
    await this.deps.access.requireHome(p, homeId, 'view');
    if (!hasScope(p, 'homes:manage')) throw new HearthError('E_FORBIDDEN', 'leaving a home needs the homes:manage scope');
    const m = await this.deps.access.membership(p.userId, homeId);
    if (!m) throw new HearthError('E_CONFLICT', 'you are not a member of this home');
    if (m.role === 'owner') throw new HearthError('E_CONFLICT', 'the owner cannot leave; transfer ownership first');
    await this.deps.db.deleteFrom('home_members').where('home_id', '=', homeId).where('user_id', '=', p.userId).execute();
    this.deps.onAccessChange?.(p.userId);
    this.audit(p, 'home.member.leave', homeId, 'user', p.userId, { role: m.role });
  }

  /** Hands the home to another member; the old owner stays as an admin. */
  async transfer(p: Principal, homeId: string, userId: string): Promise<HomeView> {
    await this.deps.access.requireHome(p, homeId, 'own');
    const home = await this.homeRow(homeId);
    const target = await this.deps.access.membership(userId, homeId);
    if (!target) throw new HearthError('E_USER_NOT_FOUND', `user "${userId}" is not a member of this home`, { field: 'body.userId' });
    if (home.owner_id === userId) throw new HearthError('E_CONFLICT', 'this user owns the home already');
    await this.deps.db.transaction().execute(async (trx) => {
      await trx.updateTable('home_members').set({ role: 'admin', guest_devices: null, guest_until: null }).where('home_id', '=', homeId).where('role', '=', 'owner').execute();
      await trx.updateTable('home_members').set({ role: 'owner', guest_devices: null, guest_until: null, rights_since: Date.now() }).where('home_id', '=', homeId).where('user_id', '=', userId).execute();
      await trx.updateTable('homes').set({ owner_id: userId }).where('id', '=', homeId).execute();
    });
    this.audit(p, 'home.transfer', homeId, 'user', userId, { from: home.owner_id, to: userId });
    return homeView({ ...home, owner_id: userId }, await this.roleOf(p, homeId));
  }

  // ------------------------------------------------------------------ devices in homes

  /** Binds a device to a home by the pairing code on its box; its sub-devices follow it. */
  async claim(p: Principal, homeId: string, input: { pairingCode: string; roomId?: string; name?: string }): Promise<DeviceRecord> {
    await this.deps.access.requireHome(p, homeId, 'configure');
    const device = await this.deps.devices.findByPairingCode(input.pairingCode);
    if (!device) throw new HearthError('E_PAIRING_CODE_INVALID', 'no device has this pairing code', { field: 'body.pairingCode' });
    if (device.parentId) throw new HearthError('E_CONFLICT', 'this is a sub-device: it joins the home of its hub; claim the hub instead', { field: 'body.pairingCode' });
    if (input.roomId !== undefined) await this.room(homeId, input.roomId);
    const now = Date.now();
    const inserted = await this.deps.db.insertInto('device_bindings')
      .values({ device_id: device.id, home_id: homeId, room_id: input.roomId ?? null, name: input.name?.trim() ?? null, bound_at: now, bound_by: actorOf(p) })
      .onConflict((oc) => oc.column('device_id').doNothing())
      .executeTakeFirst();
    if (Number(inserted.numInsertedOrUpdatedRows ?? 0) !== 1) throw new HearthError('E_DEVICE_ALREADY_CLAIMED', 'this device belongs to a home already; it must be removed from there first');
    this.audit(p, 'device.claim', homeId, 'device', device.id, { roomId: input.roomId ?? null, name: input.name ?? null });
    // its sub-devices move with it
    for (const id of [device.id, ...(await this.deps.devices.children(device.id)).map((c) => c.id)]) this.deps.onPlacementChange?.(id);
    return device;
  }

  /** The devices of a home the caller may see, sub-devices of its hubs included. */
  async listDevices(p: Principal, homeId: string): Promise<DeviceRecord[]> {
    await this.deps.access.requireHome(p, homeId, 'view');
    const out: DeviceRecord[] = [];
    for (const d of await this.devicesIn(homeId)) if ((await this.deps.access.deviceRight(p, d)) !== 'none') out.push(d);
    return out;
  }

  /**
   * Takes a device (and its sub-devices) out of a home: bindings, shares, group and guest-list
   * entries go, and desired state is cleared so the device does not act on the old home's wishes.
   */
  async unbind(p: Principal, homeId: string, deviceId: string): Promise<string[]> {
    await this.deps.access.requireHome(p, homeId, 'configure');
    const device = await this.deps.devices.get(deviceId);
    if (!device || (await this.deps.access.placement(deviceId))?.homeId !== homeId) throw new HearthError('E_DEVICE_NOT_FOUND', `device "${deviceId}" does not exist`);
    if (device.parentId) throw new HearthError('E_CONFLICT', 'a sub-device follows its hub; remove the hub instead');
    const ids = [deviceId, ...(await this.deps.devices.children(deviceId)).map((c) => c.id)];
    const gone = new Set(ids);
    const without = (json: string | null) => {
      const list = fromJson<string[] | null>(json);
      if (!list) return undefined;
      const kept = list.filter((id) => !gone.has(id));
      return kept.length === list.length ? undefined : kept;
    };
    await this.deps.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('device_bindings').where('device_id', 'in', ids).execute();
      await trx.deleteFrom('device_shares').where('device_id', 'in', ids).execute();
      for (const g of await trx.selectFrom('device_groups').select(['id', 'device_ids']).where('home_id', '=', homeId).execute()) {
        const kept = without(g.device_ids);
        if (kept) await trx.updateTable('device_groups').set({ device_ids: toJson(kept) }).where('id', '=', g.id).execute();
      }
      for (const m of await trx.selectFrom('home_members').select(['user_id', 'guest_devices']).where('home_id', '=', homeId).where('guest_devices', 'is not', null).execute()) {
        const kept = without(m.guest_devices);
        if (kept) await trx.updateTable('home_members').set({ guest_devices: toJson(kept) }).where('home_id', '=', homeId).where('user_id', '=', m.user_id).execute();
      }
      for (const i of await trx.selectFrom('invitations').select(['id', 'guest_devices']).where('home_id', '=', homeId).where('guest_devices', 'is not', null).execute()) {
        const kept = without(i.guest_devices);
        if (kept) await trx.updateTable('invitations').set({ guest_devices: toJson(kept) }).where('id', '=', i.id).execute();
      }
    });
    for (const id of ids) this.deps.onPlacementChange?.(id);
    for (const id of ids) await this.deps.shadow.clearDesired(id);
    this.audit(p, 'device.unbind', homeId, 'device', deviceId, { unbound: ids });
    return ids;
  }

  /**
   * Names a device or puts it in a room of its home. A sub-device gets its own binding row (in its
   * hub's home) to hold these; the operator's registry name is never touched.
   */
  async updateDevice(p: Principal, deviceId: string, patch: { name?: string | null; roomId?: string | null }): Promise<DeviceRecord> {
    const device = await this.deps.access.requireDevice(p, deviceId, 'configure');
    const place = await this.deps.access.placement(deviceId);
    if (!place) throw new HearthError('E_CONFLICT', 'the device is not in a home; claim it first');
    if (patch.roomId != null) await this.room(place.homeId, patch.roomId);
    const values = {
      home_id: place.homeId,
      room_id: patch.roomId !== undefined ? patch.roomId : place.roomId,
      name: patch.name !== undefined ? patch.name?.trim() ?? null : place.name,
      // A sub-device's history in the home starts when its hub joined: keep that.
      bound_at: place.boundAt,
    };
    await this.deps.db.insertInto('device_bindings').values({ device_id: deviceId, ...values, bound_by: actorOf(p) })
      .onConflict((oc) => oc.column('device_id').doUpdateSet(values))
      .execute();
    this.audit(p, 'device.update', place.homeId, 'device', deviceId, patch);
    this.deps.onPlacementChange?.(deviceId);
    return device;
  }

  /** The caller's account, when its address is verified; E_EMAIL_NOT_VERIFIED otherwise. */
  private async requireVerified(p: Principal, what: string): Promise<{ id: string; email: string }> {
    const me = await this.deps.users.userById(p.userId);
    if (!me) throw new HearthError('E_UNAUTHENTICATED', 'the account no longer exists');
    if (!me.emailVerified) {
      throw new HearthError('E_EMAIL_NOT_VERIFIED', `confirm your e-mail address ${me.email} to ${what}: open the link in the verification e-mail (a new one: POST /api/v1/auth/verify-email/resend)`);
    }
    return me;
  }

  // ------------------------------------------------------------------ sharing one device

  async share(p: Principal, deviceId: string, input: { email: string; permission: 'control' | 'view' }): Promise<ShareView> {
    await this.deps.access.requireDevice(p, deviceId, 'configure');
    const place = await this.deps.access.placement(deviceId);
    if (!place) throw new HearthError('E_CONFLICT', 'only a device in a home can be shared');
    const email = input.email.trim().toLowerCase();
    const user = await this.deps.users.userByEmail(email);
    // An account that has not verified its address is not (yet) the person with that address:
    // sharing with it could hand the device to whoever signed up with somebody else's address.
    if (!user?.emailVerified) {
      throw new HearthError('E_USER_NOT_FOUND', `no account with a verified address ${email}; once its owner has signed up and confirmed the address, share again`, { field: 'body.email' });
    }
    // Full members have every device of the home already; a guest may be given one more.
    const member = await this.deps.access.membership(user.id, place.homeId);
    if (member && member.role !== 'guest') throw new HearthError('E_CONFLICT', `${email} is a member of the device's home already`, { field: 'body.email' });
    const now = Date.now();
    const sharedBy = actorOf(p);
    await this.deps.db.insertInto('device_shares').values({ device_id: deviceId, user_id: user.id, permission: input.permission, shared_by: sharedBy, created_at: now })
      .onConflict((oc) => oc.columns(['device_id', 'user_id']).doUpdateSet({ permission: input.permission, shared_by: sharedBy }))
      .execute();
    this.audit(p, 'device.share', place.homeId, 'device', deviceId, { userId: user.id, email, permission: input.permission });
    const row = await this.deps.db.selectFrom('device_shares').selectAll().where('device_id', '=', deviceId).where('user_id', '=', user.id).executeTakeFirstOrThrow();
    return shareView(row, user.email);
  }

  async listShares(p: Principal, deviceId: string): Promise<ShareView[]> {
    await this.deps.access.requireDevice(p, deviceId, 'configure');
    const rows = await this.deps.db.selectFrom('device_shares').selectAll().where('device_id', '=', deviceId).orderBy('created_at').orderBy('user_id').execute();
    return Promise.all(rows.map(async (r) => shareView(r, (await this.deps.users.userById(r.user_id))?.email ?? '')));
  }

  async unshare(p: Principal, deviceId: string, userId: string): Promise<void> {
    await this.deps.access.requireDevice(p, deviceId, 'configure');
    const r = await this.deps.db.deleteFrom('device_shares').where('device_id', '=', deviceId).where('user_id', '=', userId).executeTakeFirst();
    if (Number(r.numDeletedRows) === 0) throw new HearthError('E_USER_NOT_FOUND', `the device is not shared with user "${userId}"`);
    this.deps.onAccessChange?.(userId);
    this.audit(p, 'device.unshare', (await this.deps.access.placement(deviceId))?.homeId ?? null, 'device', deviceId, { userId });
  }

  // ------------------------------------------------------------------ groups

  async createGroup(p: Principal, homeId: string, input: { name: string; deviceIds: string[] }): Promise<GroupView> {
    await this.deps.access.requireHome(p, homeId, 'configure');
    const deviceIds = await this.checkInHome(homeId, input.deviceIds);
    const row = { id: newId('g'), home_id: homeId, name: input.name.trim(), device_ids: toJson(deviceIds), created_at: Date.now() };
    await this.deps.db.insertInto('device_groups').values(row).execute();
    this.audit(p, 'group.create', homeId, 'group', row.id, { name: row.name, deviceIds });
    return this.groupView(p, row);
  }

  async listGroups(p: Principal, homeId: string): Promise<GroupView[]> {
    await this.deps.access.requireHome(p, homeId, 'view');
    const rows = await this.deps.db.selectFrom('device_groups').selectAll().where('home_id', '=', homeId).orderBy('created_at').orderBy('id').execute();
    return Promise.all(rows.map((r) => this.groupView(p, r)));
  }

  async getGroup(p: Principal, groupId: string): Promise<GroupView> {
    return this.groupView(p, await this.group(p, groupId, 'view'));
  }

  async updateGroup(p: Principal, groupId: string, patch: { name?: string; deviceIds?: string[] }): Promise<GroupView> {
    const row = await this.group(p, groupId, 'configure');
    const set: { name?: string; device_ids?: string } = {};
    if (patch.name !== undefined) set.name = patch.name.trim();
    if (patch.deviceIds !== undefined) set.device_ids = toJson(await this.checkInHome(row.home_id, patch.deviceIds));
    if (Object.keys(set).length) await this.deps.db.updateTable('device_groups').set(set).where('id', '=', groupId).execute();
    this.audit(p, 'group.update', row.home_id, 'group', groupId, { ...(set.name ? { name: set.name } : {}), ...(set.device_ids ? { deviceIds: fromJson<string[]>(set.device_ids) } : {}) });
    return this.groupView(p, { ...row, ...set });
  }

  async deleteGroup(p: Principal, groupId: string): Promise<void> {
    const row = await this.group(p, groupId, 'configure');
    await this.deps.db.deleteFrom('device_groups').where('id', '=', groupId).execute();
    this.audit(p, 'group.delete', row.home_id, 'group', groupId, { name: row.name });
  }

  /**
   * Sends one command to every device of the group the caller may see, in parallel. Each
   * device's failure (offline 409, timeout 504, not in its model 400, not allowed 403) is reported
   * in its result; the call itself succeeds.
   */
  async groupCommand(p: Principal, groupId: string, input: { action: string; params?: Record<string, unknown>; timeoutMs?: number }): Promise<GroupCommandResult[]> {
    const row = await this.group(p, groupId, 'control');
    const source = actorOf(p);
    const ids = await this.visible(p, fromJson<string[]>(row.device_ids));
    this.audit(p, 'group.command', row.home_id, 'group', groupId, { action: input.action, params: input.params ?? {}, deviceIds: ids });
    return Promise.all(ids.map(async (deviceId): Promise<GroupCommandResult> => {
      try {
        await this.deps.access.requireDevice(p, deviceId, 'control');
        if ((await this.deps.access.placement(deviceId))?.homeId !== row.home_id) throw new HearthError('E_DEVICE_NOT_FOUND', `device "${deviceId}" is no longer in this home`);
        const out = await this.deps.commands.send(deviceId, input, source);
        return { deviceId, ok: out.ok, status: 200, commandId: out.id, ...(out.result !== undefined ? { result: out.result } : {}), ...(out.error !== undefined ? { error: out.error } : {}), latencyMs: out.latencyMs };
      } catch (err) {
        if (isHearthError(err)) return { deviceId, ok: false, status: err.status, code: err.code, error: err.message, ...(typeof err.extras?.commandId === 'string' ? { commandId: err.extras.commandId } : {}) };
        return { deviceId, ok: false, status: 500, code: 'E_INTERNAL', error: 'the command could not be sent' };
      }
    }));
  }

  // ------------------------------------------------------------------ audit

  /** The home's audit trail, newest first; for its owner only. */
  async auditLog(p: Principal, homeId: string, q: { limit: number; before?: number }): Promise<AuditRecord[]> {
    await this.deps.access.requireHome(p, homeId, 'own');
    return this.deps.audit.list({ homeId, limit: q.limit, ...(q.before !== undefined ? { before: q.before } : {}) });
  }

  // ------------------------------------------------------------------ helpers

  private audit(p: Principal, action: string, homeId: string | null, targetType: string, targetId: string, details?: Record<string, unknown>): void {
    this.deps.audit.record({ actor: actorOf(p), action, homeId, targetType, targetId, ...(details ? { details } : {}) });
  }

  private async allowed(p: Principal, homeId: string, need: HomeNeed): Promise<boolean> {
    try {
      await this.deps.access.requireHome(p, homeId, need);
      return true;
    } catch (err) {
      if (isHearthError(err) && (err.code === 'E_HOME_NOT_FOUND' || err.code === 'E_FORBIDDEN')) return false;
      throw err;
    }
  }

  /** The caller's role to show: their membership, or `operator` for an operator who has none. */
  private async roleOf(p: Principal, homeId: string): Promise<HomeRole | 'operator'> {
    return (await this.deps.access.membership(p.userId, homeId))?.role ?? 'operator';
  }

  private async homeRow(homeId: string): Promise<HomeRow> {
    const row = await this.deps.db.selectFrom('homes').selectAll().where('id', '=', homeId).executeTakeFirst();
    if (!row) throw new HearthError('E_HOME_NOT_FOUND', `home "${homeId}" does not exist`);
    return row;
  }

  /** A room of this home; rooms of other homes do not exist here. */
  private async room(homeId: string, roomId: string): Promise<Database['rooms']> {
    const row = await this.deps.db.selectFrom('rooms').selectAll().where('id', '=', roomId).where('home_id', '=', homeId).executeTakeFirst();
    if (!row) throw new HearthError('E_ROOM_NOT_FOUND', `room "${roomId}" does not exist`);
    return row;
  }

  /** A group the caller may use as `need` requires; groups of homes they cannot see do not exist. */
  private async group(p: Principal, groupId: string, need: HomeNeed): Promise<Database['device_groups']> {
    const row = await this.deps.db.selectFrom('device_groups').selectAll().where('id', '=', groupId).executeTakeFirst();
    const notFound = () => new HearthError('E_GROUP_NOT_FOUND', `group "${groupId}" does not exist`);
    if (!row) throw notFound();
    await this.deps.access.requireHomeOf(p, row.home_id, need, notFound);
    return row;
  }

  private async groupView(p: Principal, row: Database['device_groups']): Promise<GroupView> {
    return { id: row.id, homeId: row.home_id, name: row.name, deviceIds: await this.visible(p, fromJson<string[]>(row.device_ids)), createdAt: isoOf(row.created_at) };
  }

  /** The ids (in order) of devices the caller has any right on. */
  private async visible(p: Principal, ids: string[]): Promise<string[]> {
    const out: string[] = [];
    for (const id of ids) {
      const d = await this.deps.devices.get(id);
      if (d && (await this.deps.access.deviceRight(p, d)) !== 'none') out.push(id);
    }
    return out;
  }

  /** Every device placed in the home: bound devices and the sub-devices of bound hubs, oldest first. */
  private async devicesIn(homeId: string): Promise<DeviceRecord[]> {
    const bound = await this.deps.db.selectFrom('device_bindings').select('device_id').where('home_id', '=', homeId).execute();
    const seen = new Map<string, DeviceRecord>();
    const consider = async (d: DeviceRecord | undefined) => {
      if (!d || seen.has(d.id)) return;
      if ((await this.deps.access.placement(d.id))?.homeId === homeId) seen.set(d.id, d);
    };
    for (const b of bound) {
      const d = await this.deps.devices.get(b.device_id);
      await consider(d);
      if (d && !d.parentId) for (const c of await this.deps.devices.children(d.id)) await consider(c);
    }
    return [...seen.values()].sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Deduplicates and checks that every device is in the home; 400 naming the first that is not. */
  private async checkInHome(homeId: string, ids: readonly string[]): Promise<string[]> {
    const out = [...new Set(ids)];
    for (const id of out) {
      if ((await this.deps.access.placement(id))?.homeId !== homeId) {
        throw new HearthError('E_VALIDATION', `device "${id}" is not in this home`, { field: `body.deviceIds.${ids.indexOf(id)}`, deviceId: id });
      }
    }
    return out;
  }

  /** Validates a guest's devices and end of access; both are for guests only. */
  private async guestTerms(homeId: string, role: HomeRole, deviceIds: string[] | undefined, until: string | undefined): Promise<{ devices?: string[]; until?: number }> {
    if (role !== 'guest') {
      if (deviceIds !== undefined) throw new HearthError('E_VALIDATION', 'deviceIds are for guests only', { field: 'body.deviceIds' });
      if (until !== undefined) throw new HearthError('E_VALIDATION', 'until is for guests only', { field: 'body.until' });
      return {};
    }
    const out: { devices?: string[]; until?: number } = {};
    if (deviceIds !== undefined) out.devices = await this.checkInHome(homeId, deviceIds);
    if (until !== undefined) {
      const at = Date.parse(until);
      if (!Number.isFinite(at) || at <= Date.now()) throw new HearthError('E_VALIDATION', 'until must be a time in the future', { field: 'body.until' });
      out.until = at;
    }
    return out;
  }

  private async listMembersUnchecked(homeId: string, userId: string): Promise<MemberView[]> {
    const rows = await this.deps.db.selectFrom('home_members').selectAll().where('home_id', '=', homeId).where('user_id', '=', userId).execute();
    return Promise.all(rows.map(async (r) => memberView(r, (await this.deps.users.userById(r.user_id))?.email ?? '')));
  }
}

/** Checks an IANA time zone name and returns its canonical spelling. */
function checkTimezone(tz: string): string {
  try {
    return new Intl.DateTimeFormat('en-US', { timeZone: tz.trim() }).resolvedOptions().timeZone;
  } catch {
    throw new HearthError('E_VALIDATION', `"${tz}" is not an IANA time zone (e.g. Europe/Berlin)`, { field: 'body.timezone' });
  }
}

function ownerLike(role: HomeRole | 'operator'): boolean {
  return role === 'owner' || role === 'operator';
}

function homeView(r: Pick<HomeRow, 'id' | 'name' | 'timezone' | 'latitude' | 'longitude' | 'owner_id' | 'created_at'>, role: HomeRole | 'operator'): HomeView {
  return {
    id: r.id, name: r.name, timezone: r.timezone,
    latitude: r.latitude == null ? null : Number(r.latitude), longitude: r.longitude == null ? null : Number(r.longitude),
    ownerId: r.owner_id, role, createdAt: isoOf(r.created_at),
  };
}

function roomView(r: Database['rooms']): RoomView {
  return { id: r.id, homeId: r.home_id, name: r.name, createdAt: isoOf(r.created_at) };
}

function memberView(r: Database['home_members'], email: string): MemberView {
  return { userId: r.user_id, email, role: r.role as HomeRole, guestDevices: fromJson<string[] | null>(r.guest_devices), guestUntil: iso(r.guest_until), joinedAt: isoOf(r.created_at) };
}

function invitationView(r: InvitationRow, now: number): InvitationView {
  const status: InvitationStatus = r.accepted_at != null ? 'accepted' : r.revoked_at != null ? 'revoked' : Number(r.expires_at) < now ? 'expired' : 'pending';
  return {
    id: r.id, homeId: r.home_id, email: r.email, role: r.role as HomeRole, guestDevices: fromJson<string[] | null>(r.guest_devices), guestUntil: iso(r.guest_until),
    status, invitedBy: r.invited_by, createdAt: isoOf(r.created_at), expiresAt: isoOf(r.expires_at),
  };
}

function shareView(r: Database['device_shares'], email: string): ShareView {
  return { deviceId: r.device_id, userId: r.user_id, email, permission: r.permission as 'control' | 'view', sharedBy: r.shared_by, createdAt: isoOf(r.created_at) };
}
