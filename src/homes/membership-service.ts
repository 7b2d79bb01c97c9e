import { fromJson, toJson } from '../core/store/db.ts';
import { HearthError } from '../core/errors.ts';
import { newId, newSecret } from '../core/ids.ts';
import { digestToken } from '../core/secrets.ts';
import { actorOf, hasScope, type Principal } from '../access/principal.ts';
import { guestStayEnded, type HomeRole } from '../access/access-service.ts';
import { RateLimiter } from '../core/rate-limiter.ts';
import {
  type HomesDeps,
  type HomeView,
  type MemberView,
  type InvitationView,
  type InvitableRole,
  type InvitationRow,
  DAY,
  iso,
  isoOf,
  ownerLike,
  homeView,
  memberView,
  invitationView,
} from './home-types.ts';
import { HomesPart } from './homes-part.ts';

/**
 * The people of a home: members and their roles, guests and their terms, invitations by e-mail,
 * leaving, and handing the home to another member.
 */
export class MembershipService extends HomesPart {
  private readonly invitationTtlMs: number;

  /** Per inviting user: invitations are e-mails to any address, so they are rate limited like any mail. */
  private readonly invitationMails: RateLimiter;

  constructor(deps: HomesDeps) {
    super(deps);
    this.invitationTtlMs = deps.invitationTtlMs ?? 7 * DAY;
    const rate = deps.invitationRate ?? { perHour: 60, burst: 20 };
    this.invitationMails = new RateLimiter({ perMinute: rate.perHour / 60, burst: rate.burst });
  }

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
    if (!allowed.ok)
      throw new HearthError('E_RATE_LIMITED', `too many invitations; try again in ${allowed.retryAfterSeconds} s`, { retryAfter: allowed.retryAfterSeconds });
    const email = input.email.trim().toLowerCase();
    const guest = await this.guestTerms(homeId, input.role, input.deviceIds, input.until);
    const user = await this.deps.users.userByEmail(email);
    if (user && (await this.deps.access.membership(user.id, homeId)))
      throw new HearthError('E_CONFLICT', `${email} is a member of this home already`, { field: 'body.email' });
    const home = await this.homeRow(homeId);
    const token = newSecret(24);
    const now = Date.now();
    const row: InvitationRow = {
      id: newId('i'),
      home_id: homeId,
      email,
      role: input.role,
      token_hash: digestToken(token),
      guest_devices: input.role === 'guest' ? toJson(guest.devices ?? []) : null,
      guest_until: guest.until ?? null,
      invited_by: actorOf(p),
      created_at: now,
      expires_at: now + this.invitationTtlMs,
      accepted_at: null,
      revoked_at: null,
    };
    await this.deps.db.transaction().execute(async (trx) => {
      // A new invitation replaces an earlier one to the same address: only the latest link works.
      await trx
        .updateTable('invitations')
        .set({ revoked_at: now })
        .where('home_id', '=', homeId)
        .where('email', '=', email)
        .where('accepted_at', 'is', null)
        .where('revoked_at', 'is', null)
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
    this.audit(p, 'home.member.invite', homeId, 'invitation', row.id, {
      email,
      role: input.role,
      ...(guest.devices ? { deviceIds: guest.devices } : {}),
      ...(guest.until ? { until: isoOf(guest.until) } : {}),
    });
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
    if (guestStayEnded(row.guest_until == null ? null : Number(row.guest_until), now)) throw notFound();
    const existing = await this.deps.access.membership(p.userId, row.home_id);
    if (existing?.role === 'owner') throw new HearthError('E_CONFLICT', 'you own this home');
    const role = row.role as HomeRole;
    // Devices that left the home since the invitation was sent are not the guest's to use.
    let guestDevices: string[] | null = null;
    if (role === 'guest') {
      guestDevices = [];
      for (const id of fromJson<string[] | null>(row.guest_devices) ?? [])
        if ((await this.deps.access.placement(id))?.homeId === row.home_id) guestDevices.push(id);
    }
    const taken = await this.deps.db.transaction().execute(async (trx) => {
      const r = await trx
        .updateTable('invitations')
        .set({ accepted_at: now })
        .where('id', '=', row.id)
        .where('accepted_at', 'is', null)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      if (Number(r.numUpdatedRows) !== 1) return false;
      const values = { role, guest_devices: guestDevices ? toJson(guestDevices) : null, guest_until: role === 'guest' ? row.guest_until : null };
      // A member accepting again may gain rights: what happened before is not theirs to replay.
      await trx
        .insertInto('home_members')
        .values({ home_id: row.home_id, user_id: p.userId, created_at: now, rights_since: now, ...values })
        .onConflict((oc) => oc.columns(['home_id', 'user_id']).doUpdateSet({ ...values, rights_since: now }))
        .execute();
      return true;
    });
    if (!taken) throw notFound();
    this.audit(p, 'home.member.join', row.home_id, 'user', p.userId, { invitationId: row.id, role, ...(existing ? { previousRole: existing.role } : {}) });
    return { homeId: row.home_id, role };
  }

  /** Changes a member's role or guest terms. The owner changes only by transfer; only the owner makes or changes admins. */
  async updateMember(
    p: Principal,
    homeId: string,
    userId: string,
    patch: { role?: InvitableRole; deviceIds?: string[]; until?: string | null },
  ): Promise<MemberView> {
    const callerRole = await this.deps.access.requireHome(p, homeId, 'configure');
    const current = await this.deps.access.membership(userId, homeId);
    if (!current) throw new HearthError('E_USER_NOT_FOUND', `user "${userId}" is not a member of this home`);
    if (current.role === 'owner') throw new HearthError('E_CONFLICT', "the owner's role changes only by transferring ownership");
    const role = patch.role ?? current.role;
    if (!ownerLike(callerRole) && (current.role === 'admin' || role === 'admin'))
      throw new HearthError('E_FORBIDDEN', 'only the owner can appoint or change admins');
    const stillGuest = current.role === 'guest' && role === 'guest';
    const guest = await this.guestTerms(homeId, role, patch.deviceIds, patch.until === null ? undefined : patch.until);
    const values =
      role === 'guest'
        ? {
            role,
            guest_devices: toJson(guest.devices ?? (stillGuest ? (current.guestDevices ?? []) : [])),
            guest_until: patch.until === null ? null : (guest.until ?? (stillGuest ? current.guestUntil : null)),
          }
        : { role, guest_devices: null, guest_until: null };
    // Rights may have grown (more devices, a longer stay, a higher role): replay starts from now.
    await this.deps.db
      .updateTable('home_members')
      .set({ ...values, rights_since: Date.now() })
      .where('home_id', '=', homeId)
      .where('user_id', '=', userId)
      .execute();
    this.deps.onAccessChange?.(userId);
    this.audit(p, 'home.member.update', homeId, 'user', userId, {
      from: current.role,
      role,
      ...(role === 'guest' ? { deviceIds: fromJson<string[]>(values.guest_devices), until: iso(values.guest_until) } : {}),
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
      await trx
        .updateTable('home_members')
        .set({ role: 'admin', guest_devices: null, guest_until: null })
        .where('home_id', '=', homeId)
        .where('role', '=', 'owner')
        .execute();
      await trx
        .updateTable('home_members')
        .set({ role: 'owner', guest_devices: null, guest_until: null, rights_since: Date.now() })
        .where('home_id', '=', homeId)
        .where('user_id', '=', userId)
        .execute();
      await trx.updateTable('homes').set({ owner_id: userId }).where('id', '=', homeId).execute();
    });
    this.audit(p, 'home.transfer', homeId, 'user', userId, { from: home.owner_id, to: userId });
    return homeView({ ...home, owner_id: userId }, await this.roleOf(p, homeId));
  }

  protected async listMembersUnchecked(homeId: string, userId: string): Promise<MemberView[]> {
    const rows = await this.deps.db.selectFrom('home_members').selectAll().where('home_id', '=', homeId).where('user_id', '=', userId).execute();
    return Promise.all(rows.map(async (r) => memberView(r, (await this.deps.users.userById(r.user_id))?.email ?? '')));
  }
}
