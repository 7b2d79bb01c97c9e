import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { principal } from '../transports/http/http-server.ts';
import { AuthHeader, problems } from '../transports/http/http-schemas.ts';
import type { Principal } from '../access/principal.ts';
import type { DeviceRecord } from '../devices/device-service.ts';
import { DeviceParams } from '../devices/device-schema.ts';
import type { HomeService } from './home-service.ts';
import type { MembershipService } from './membership-service.ts';
import type { BindingService } from './binding-service.ts';
import type { GroupService } from './group-service.ts';
import {
  AcceptBody,
  AcceptedSchema,
  AuditListSchema,
  AuditQuery,
  ClaimBody,
  CreateHomeBody,
  DeletedSchema,
  DevicePatchBody,
  GroupBody,
  GroupCommandBody,
  GroupCommandResultSchema,
  GroupListSchema,
  GroupParams,
  GroupPatchBody,
  GroupSchema,
  HomeDeviceListSchema,
  HomeDeviceParams,
  HomeDeviceSchema,
  HomeListSchema,
  HomeParams,
  HomeSchema,
  InvitationListSchema,
  InvitationParams,
  InvitationSchema,
  InviteBody,
  LeftSchema,
  MemberListSchema,
  MemberParams,
  MemberPatchBody,
  MemberSchema,
  RoomBody,
  RoomListSchema,
  RoomParams,
  RoomSchema,
  ShareBody,
  ShareListSchema,
  ShareParams,
  ShareSchema,
  TransferBody,
  UnboundSchema,
  UnsharedSchema,
  UpdateHomeBody,
  type HomeDevice,
} from './home-schema.ts';

/** How a device looks to a caller (DeviceViews.summary in devices/device-view.ts). */
export interface DeviceSummaries {
  summary(d: DeviceRecord, p: Principal): Promise<HomeDevice>;
  /** The summaries of many devices at once (a constant number of queries). */
  summaries(ds: readonly DeviceRecord[], p: Principal): Promise<HomeDevice[]>;
}

const A = '/api/v1';

/**
 * Routes of homes, rooms, members and invitations, devices in homes, sharing, groups and the
 * home audit trail. Every check is the HomeService's (through the AccessService).
 */
export async function homeRoutes(
  app: HttpApp,
  deps: {
    homes: HomeService;
    members: MembershipService;
    bindings: BindingService;
    groups: GroupService;
    views: DeviceSummaries;
    /** The operator's fields of PATCH /devices/{id} (disabled, tags, attributes): the fleet lifecycle's; returns the device. */
    fleetPatch?: (
      p: Principal,
      id: string,
      patch: { disabled?: boolean; tags?: Record<string, string | null>; attributes?: Record<string, unknown> },
    ) => Promise<DeviceRecord>;
  },
): Promise<void> {
  const { homes, members, bindings, groups, views } = deps;

  // ---------------------------------------------------------------- homes

  app.post(
    `${A}/homes`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['homes'],
        summary: 'Create a home; the caller becomes its owner',
        ...AuthHeader,
        body: CreateHomeBody,
        response: { 201: HomeSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN') },
      },
    },
    async (req, reply) => reply.status(201).send(await homes.createHome(principal(req), req.body)),
  );

  app.get(
    `${A}/homes`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['homes'],
        summary: "The caller's homes with their role in each",
        ...AuthHeader,
        response: { 200: HomeListSchema, ...problems('E_UNAUTHENTICATED') },
      },
    },
    async (req) => ({ items: await homes.listHomes(principal(req)) }),
  );

  app.get(
    `${A}/homes/:homeId`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['homes'],
        summary: 'A home',
        ...AuthHeader,
        params: HomeParams,
        response: { 200: HomeSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND') },
      },
    },
    async (req) => homes.getHome(principal(req), req.params.homeId),
  );

  app.patch(
    `${A}/homes/:homeId`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['homes'],
        summary: 'Rename a home or change its time zone or location (owner, admin)',
        ...AuthHeader,
        params: HomeParams,
        body: UpdateHomeBody,
        response: { 200: HomeSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND') },
      },
    },
    async (req) => homes.updateHome(principal(req), req.params.homeId, req.body),
  );

  app.delete(
    `${A}/homes/:homeId`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['homes'],
        summary: 'Delete a home (owner): its devices are unbound, rooms, members, groups and invitations removed',
        ...AuthHeader,
        params: HomeParams,
        response: { 200: DeletedSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND') },
      },
    },
    async (req) => {
      await homes.deleteHome(principal(req), req.params.homeId);
      return { id: req.params.homeId, deleted: true as const };
    },
  );

  app.get(
    `${A}/homes/:homeId/audit`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['homes'],
        summary: "The home's audit trail, newest first (owner)",
        ...AuthHeader,
        params: HomeParams,
        querystring: AuditQuery,
        response: { 200: AuditListSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND') },
      },
    },
    async (req) => ({
      items: await homes.auditLog(principal(req), req.params.homeId, {
        limit: req.query.limit,
        ...(req.query.before ? { before: Date.parse(req.query.before) } : {}),
      }),
    }),
  );

  // ---------------------------------------------------------------- rooms

  app.post(
    `${A}/homes/:homeId/rooms`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['rooms'],
        summary: 'Add a room (owner, admin)',
        ...AuthHeader,
        params: HomeParams,
        body: RoomBody,
        response: { 201: RoomSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND') },
      },
    },
    async (req, reply) => reply.status(201).send(await homes.createRoom(principal(req), req.params.homeId, req.body.name)),
  );

  app.get(
    `${A}/homes/:homeId/rooms`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['rooms'],
        summary: 'The rooms of a home',
        ...AuthHeader,
        params: HomeParams,
        response: { 200: RoomListSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND') },
      },
    },
    async (req) => ({ items: await homes.listRooms(principal(req), req.params.homeId) }),
  );

  app.patch(
    `${A}/homes/:homeId/rooms/:roomId`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['rooms'],
        summary: 'Rename a room (owner, admin)',
        ...AuthHeader,
        params: RoomParams,
        body: RoomBody,
        response: { 200: RoomSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND', 'E_ROOM_NOT_FOUND') },
      },
    },
    async (req) => homes.updateRoom(principal(req), req.params.homeId, req.params.roomId, req.body.name),
  );

  app.delete(
    `${A}/homes/:homeId/rooms/:roomId`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['rooms'],
        summary: 'Remove a room (owner, admin); its devices stay in the home without a room',
        ...AuthHeader,
        params: RoomParams,
        response: { 200: DeletedSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND', 'E_ROOM_NOT_FOUND') },
      },
    },
    async (req) => {
      await homes.deleteRoom(principal(req), req.params.homeId, req.params.roomId);
      return { id: req.params.roomId, deleted: true as const };
    },
  );

  // ---------------------------------------------------------------- members and invitations

  app.get(
    `${A}/homes/:homeId/members`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['members'],
        summary: 'The people of a home and their roles',
        ...AuthHeader,
        params: HomeParams,
        response: { 200: MemberListSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND') },
      },
    },
    async (req) => ({ items: await members.listMembers(principal(req), req.params.homeId) }),
  );

  app.post(
    `${A}/homes/:homeId/invitations`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['members'],
        summary: 'Invite someone by e-mail (owner, admin; only the owner invites admins)',
        ...AuthHeader,
        description:
          "The inviter's own e-mail address must be verified (the e-mail names them). At most 20 at once and 60 an hour per user (then 429 with Retry-After).",
        params: HomeParams,
        body: InviteBody,
        response: {
          201: InvitationSchema,
          ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_EMAIL_NOT_VERIFIED', 'E_HOME_NOT_FOUND', 'E_CONFLICT', 'E_RATE_LIMITED'),
        },
      },
    },
    async (req, reply) => reply.status(201).send(await members.invite(principal(req), req.params.homeId, req.body)),
  );

  app.get(
    `${A}/homes/:homeId/invitations`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['members'],
        summary: 'Invitations of a home, newest first (owner, admin)',
        ...AuthHeader,
        params: HomeParams,
        response: { 200: InvitationListSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND') },
      },
    },
    async (req) => ({ items: await members.listInvitations(principal(req), req.params.homeId) }),
  );

  app.delete(
    `${A}/homes/:homeId/invitations/:invitationId`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['members'],
        summary: 'Revoke an invitation (owner, admin)',
        ...AuthHeader,
        params: InvitationParams,
        response: { 200: InvitationSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND', 'E_INVITATION_NOT_FOUND', 'E_CONFLICT') },
      },
    },
    async (req) => members.revokeInvitation(principal(req), req.params.homeId, req.params.invitationId),
  );

  app.post(
    `${A}/invitations/accept`,
    {
      config: { auth: Auth.password },
      schema: {
        tags: ['members'],
        summary: 'Accept an invitation sent to your e-mail address',
        ...AuthHeader,
        body: AcceptBody,
        description:
          "Your e-mail address must be verified first (403 E_EMAIL_NOT_VERIFIED): an account made with somebody else's address gets nothing sent to it.",
        response: {
          200: AcceptedSchema,
          ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_EMAIL_NOT_VERIFIED', 'E_INVITATION_NOT_FOUND', 'E_CONFLICT'),
        },
      },
    },
    async (req) => members.acceptInvitation(principal(req), req.body.token),
  );

  app.patch(
    `${A}/homes/:homeId/members/:userId`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['members'],
        summary: "Change a member's role or a guest's devices and end of access (owner, admin; only the owner changes admins)",
        ...AuthHeader,
        params: MemberParams,
        body: MemberPatchBody,
        response: { 200: MemberSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND', 'E_USER_NOT_FOUND', 'E_CONFLICT') },
      },
    },
    async (req) => members.updateMember(principal(req), req.params.homeId, req.params.userId, req.body),
  );

  app.delete(
    `${A}/homes/:homeId/members/:userId`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['members'],
        summary: 'Remove a member (owner, admin; not the owner)',
        ...AuthHeader,
        params: MemberParams,
        response: { 200: LeftSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND', 'E_USER_NOT_FOUND', 'E_CONFLICT') },
      },
    },
    async (req) => {
      await members.removeMember(principal(req), req.params.homeId, req.params.userId);
      return { homeId: req.params.homeId, userId: req.params.userId, removed: true as const };
    },
  );

  app.post(
    `${A}/homes/:homeId/leave`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['members'],
        summary: 'Leave a home (the owner transfers ownership first)',
        ...AuthHeader,
        params: HomeParams,
        response: { 200: LeftSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND', 'E_CONFLICT') },
      },
    },
    async (req) => {
      const p = principal(req);
      await members.leave(p, req.params.homeId);
      return { homeId: req.params.homeId, userId: p.userId, removed: true as const };
    },
  );

  app.post(
    `${A}/homes/:homeId/transfer`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['members'],
        summary: 'Hand the home to another member (owner); the old owner becomes an admin',
        ...AuthHeader,
        params: HomeParams,
        body: TransferBody,
        response: { 200: HomeSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND', 'E_USER_NOT_FOUND', 'E_CONFLICT') },
      },
    },
    async (req) => members.transfer(principal(req), req.params.homeId, req.body.userId),
  );

  // ---------------------------------------------------------------- devices in homes

  app.post(
    `${A}/homes/:homeId/devices`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['homes'],
        summary: 'Add a device to the home with the pairing code from its box (owner, admin); its sub-devices follow',
        ...AuthHeader,
        params: HomeParams,
        body: ClaimBody,
        response: {
          201: HomeDeviceSchema,
          ...problems(
            'E_VALIDATION',
            'E_UNAUTHENTICATED',
            'E_FORBIDDEN',
            'E_HOME_NOT_FOUND',
            'E_ROOM_NOT_FOUND',
            'E_PAIRING_CODE_INVALID',
            'E_DEVICE_ALREADY_CLAIMED',
            'E_CONFLICT',
          ),
        },
      },
    },
    async (req, reply) => {
      const p = principal(req);
      const d = await bindings.claim(p, req.params.homeId, req.body);
      return reply.status(201).send(await views.summary(d, p));
    },
  );

  app.get(
    `${A}/homes/:homeId/devices`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['homes'],
        summary: 'The devices of a home the caller may use (guests: their own), sub-devices included',
        ...AuthHeader,
        params: HomeParams,
        response: { 200: HomeDeviceListSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND') },
      },
    },
    async (req) => {
      const p = principal(req);
      const items = await bindings.listDevices(p, req.params.homeId);
      return { items: await views.summaries(items, p) };
    },
  );

  app.delete(
    `${A}/homes/:homeId/devices/:deviceId`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['homes'],
        summary: 'Remove a device (and its sub-devices) from the home (owner, admin); its desired state is cleared',
        ...AuthHeader,
        params: HomeDeviceParams,
        response: { 200: UnboundSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND', 'E_DEVICE_NOT_FOUND', 'E_CONFLICT') },
      },
    },
    async (req) => ({ deviceId: req.params.deviceId, unbound: await bindings.unbind(principal(req), req.params.homeId, req.params.deviceId) }),
  );

  app.patch(
    `${A}/devices/:id`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['homes', 'devices'],
        ...AuthHeader,
        summary:
          "Name a device or put it in a room of its home (owner, admin, operator); the operator's registry name stays. The operator also disables/enables it and sets its tags and attributes (docs/fleet.md)",
        params: DeviceParams,
        body: DevicePatchBody,
        response: {
          200: HomeDeviceSchema,
          ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_DEVICE_NOT_FOUND', 'E_ROOM_NOT_FOUND', 'E_CONFLICT'),
        },
      },
    },
    async (req) => {
      const p = principal(req);
      const { disabled, tags, attributes, ...home } = req.body;
      let device: DeviceRecord | undefined;
      if ((disabled !== undefined || tags !== undefined || attributes !== undefined) && deps.fleetPatch)
        device = await deps.fleetPatch(p, req.params.id, { disabled, tags, attributes });
      if (home.name !== undefined || home.roomId !== undefined || !device) device = await bindings.updateDevice(p, req.params.id, home);
      return views.summary(device, p);
    },
  );

  // ---------------------------------------------------------------- sharing

  app.post(
    `${A}/devices/:id/shares`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['sharing'],
        summary: 'Share one device with somebody outside its home (owner, admin)',
        ...AuthHeader,
        description: 'The e-mail must belong to an account that has verified it; otherwise 404 E_USER_NOT_FOUND, as for an unknown address.',
        params: DeviceParams,
        body: ShareBody,
        response: { 201: ShareSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_DEVICE_NOT_FOUND', 'E_USER_NOT_FOUND', 'E_CONFLICT') },
      },
    },
    async (req, reply) => reply.status(201).send(await bindings.share(principal(req), req.params.id, req.body)),
  );

  app.get(
    `${A}/devices/:id/shares`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['sharing'],
        summary: 'Who a device is shared with (owner, admin)',
        ...AuthHeader,
        params: DeviceParams,
        response: { 200: ShareListSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_DEVICE_NOT_FOUND') },
      },
    },
    async (req) => ({ items: await bindings.listShares(principal(req), req.params.id) }),
  );

  app.delete(
    `${A}/devices/:id/shares/:userId`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['sharing'],
        summary: 'Stop sharing a device with a user (owner, admin)',
        ...AuthHeader,
        params: ShareParams,
        response: { 200: UnsharedSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_DEVICE_NOT_FOUND', 'E_USER_NOT_FOUND') },
      },
    },
    async (req) => {
      await bindings.unshare(principal(req), req.params.id, req.params.userId);
      return { deviceId: req.params.id, userId: req.params.userId, removed: true as const };
    },
  );

  // ---------------------------------------------------------------- groups

  app.post(
    `${A}/homes/:homeId/groups`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['groups'],
        summary: 'Create a device group (owner, admin); every device must be in the home',
        ...AuthHeader,
        params: HomeParams,
        body: GroupBody,
        response: { 201: GroupSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND') },
      },
    },
    async (req, reply) => reply.status(201).send(await groups.createGroup(principal(req), req.params.homeId, req.body)),
  );

  app.get(
    `${A}/homes/:homeId/groups`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['groups'],
        summary: 'The device groups of a home',
        ...AuthHeader,
        params: HomeParams,
        response: { 200: GroupListSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_HOME_NOT_FOUND') },
      },
    },
    async (req) => ({ items: await groups.listGroups(principal(req), req.params.homeId) }),
  );

  app.get(
    `${A}/groups/:groupId`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['groups'],
        summary: 'A device group',
        ...AuthHeader,
        params: GroupParams,
        response: { 200: GroupSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_GROUP_NOT_FOUND') },
      },
    },
    async (req) => groups.getGroup(principal(req), req.params.groupId),
  );

  app.patch(
    `${A}/groups/:groupId`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['groups'],
        summary: 'Rename a group or change its devices (owner, admin)',
        ...AuthHeader,
        params: GroupParams,
        body: GroupPatchBody,
        response: { 200: GroupSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_GROUP_NOT_FOUND') },
      },
    },
    async (req) => groups.updateGroup(principal(req), req.params.groupId, req.body),
  );

  app.delete(
    `${A}/groups/:groupId`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['groups'],
        summary: 'Delete a group (owner, admin)',
        ...AuthHeader,
        params: GroupParams,
        response: { 200: DeletedSchema, ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_GROUP_NOT_FOUND') },
      },
    },
    async (req) => {
      await groups.deleteGroup(principal(req), req.params.groupId);
      return { id: req.params.groupId, deleted: true as const };
    },
  );

  app.post(
    `${A}/groups/:groupId/commands`,
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['groups'],
        summary: 'Send a command to every device of the group in parallel; one result per device',
        ...AuthHeader,
        params: GroupParams,
        body: GroupCommandBody,
        response: { 200: GroupCommandResultSchema, ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_GROUP_NOT_FOUND') },
      },
    },
    async (req) => ({ results: await groups.groupCommand(principal(req), req.params.groupId, req.body) }),
  );
}
