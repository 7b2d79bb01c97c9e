/** The homes capability's types, views and small pure helpers, shared by its services. */
import type { Db } from '../core/store/db.ts';
import { fromJson } from '../core/store/db.ts';
import type { Database } from '../core/store/schema.ts';
import { HearthError } from '../core/errors.ts';
import type { Mailer } from '../core/mailer.ts';
import type { AuditService } from '../audit/audit-service.ts';
import type { DeviceService } from '../devices/device-service.ts';
import type { ShadowService } from '../shadow/shadow-service.ts';
import type { CommandService } from '../commands/command-service.ts';
import type { AccessService, HomeRole } from '../access/access-service.ts';

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

export interface HomesDeps {
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

export type InvitableRole = 'admin' | 'member' | 'guest';
export type HomeRow = Database['homes'];
export type InvitationRow = Database['invitations'];

export const DAY = 24 * 60 * 60 * 1000;
export const iso = (n: number | string | null) => (n == null ? null : new Date(Number(n)).toISOString());
export const isoOf = (n: number | string) => new Date(Number(n)).toISOString();

/** Checks an IANA time zone name and returns its canonical spelling. */
export function checkTimezone(tz: string): string {
  try {
    return new Intl.DateTimeFormat('en-US', { timeZone: tz.trim() }).resolvedOptions().timeZone;
  } catch {
    throw new HearthError('E_VALIDATION', `"${tz}" is not an IANA time zone (e.g. Europe/Berlin)`, { field: 'body.timezone' });
  }
}

export function ownerLike(role: HomeRole | 'operator'): boolean {
  return role === 'owner' || role === 'operator';
}

export function homeView(
  r: Pick<HomeRow, 'id' | 'name' | 'timezone' | 'latitude' | 'longitude' | 'owner_id' | 'created_at'>,
  role: HomeRole | 'operator',
): HomeView {
  return {
    id: r.id,
    name: r.name,
    timezone: r.timezone,
    latitude: r.latitude == null ? null : Number(r.latitude),
    longitude: r.longitude == null ? null : Number(r.longitude),
    ownerId: r.owner_id,
    role,
    createdAt: isoOf(r.created_at),
  };
}

export function roomView(r: Database['rooms']): RoomView {
  return { id: r.id, homeId: r.home_id, name: r.name, createdAt: isoOf(r.created_at) };
}

export function memberView(r: Database['home_members'], email: string): MemberView {
  return {
    userId: r.user_id,
    email,
    role: r.role as HomeRole,
    guestDevices: fromJson<string[] | null>(r.guest_devices),
    guestUntil: iso(r.guest_until),
    joinedAt: isoOf(r.created_at),
  };
}

export function invitationView(r: InvitationRow, now: number): InvitationView {
  const status: InvitationStatus = r.accepted_at != null ? 'accepted' : r.revoked_at != null ? 'revoked' : Number(r.expires_at) < now ? 'expired' : 'pending';
  return {
    id: r.id,
    homeId: r.home_id,
    email: r.email,
    role: r.role as HomeRole,
    guestDevices: fromJson<string[] | null>(r.guest_devices),
    guestUntil: iso(r.guest_until),
    status,
    invitedBy: r.invited_by,
    createdAt: isoOf(r.created_at),
    expiresAt: isoOf(r.expires_at),
  };
}

export function shareView(r: Database['device_shares'], email: string): ShareView {
  return {
    deviceId: r.device_id,
    userId: r.user_id,
    email,
    permission: r.permission as 'control' | 'view',
    sharedBy: r.shared_by,
    createdAt: isoOf(r.created_at),
  };
}
