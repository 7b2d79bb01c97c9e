import { fromJson, toJson } from '../core/store/db.ts';
import type { Database } from '../core/store/schema.ts';
import { HearthError, isHearthError } from '../core/errors.ts';
import { newId } from '../core/ids.ts';
import { actorOf, type Principal } from '../access/principal.ts';
import type { HomeNeed } from '../access/access-service.ts';
import { type GroupView, type GroupCommandResult, isoOf } from './home-types.ts';
import { HomesPart } from './homes-part.ts';

/**
 * Device groups of a home, and one command to every device of a group.
 */
export class GroupService extends HomesPart {
  /** The devices of a group of the home (no access check); undefined when the group is not in the home. */
  async groupDevices(homeId: string, groupId: string): Promise<string[] | undefined> {
    const row = await this.deps.db.selectFrom('device_groups').select('device_ids').where('id', '=', groupId).where('home_id', '=', homeId).executeTakeFirst();
    return row ? (JSON.parse(row.device_ids) as string[]) : undefined;
  }

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
    this.audit(p, 'group.update', row.home_id, 'group', groupId, {
      ...(set.name ? { name: set.name } : {}),
      ...(set.device_ids ? { deviceIds: fromJson<string[]>(set.device_ids) } : {}),
    });
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
  async groupCommand(
    p: Principal,
    groupId: string,
    input: { action: string; params?: Record<string, unknown>; timeoutMs?: number },
  ): Promise<GroupCommandResult[]> {
    const row = await this.group(p, groupId, 'control');
    const source = actorOf(p);
    const ids = await this.visible(p, fromJson<string[]>(row.device_ids));
    this.audit(p, 'group.command', row.home_id, 'group', groupId, { action: input.action, params: input.params ?? {}, deviceIds: ids });
    return Promise.all(
      ids.map(async (deviceId): Promise<GroupCommandResult> => {
        try {
          await this.deps.access.requireDevice(p, deviceId, 'control');
          if ((await this.deps.access.placement(deviceId))?.homeId !== row.home_id)
            throw new HearthError('E_DEVICE_NOT_FOUND', `device "${deviceId}" is no longer in this home`);
          const out = await this.deps.commands.send(deviceId, input, source);
          return {
            deviceId,
            ok: out.ok,
            status: 200,
            commandId: out.id,
            ...(out.result !== undefined ? { result: out.result } : {}),
            ...(out.error !== undefined ? { error: out.error } : {}),
            latencyMs: out.latencyMs,
          };
        } catch (err) {
          if (isHearthError(err))
            return {
              deviceId,
              ok: false,
              status: err.status,
              code: err.code,
              error: err.message,
              ...(typeof err.extras?.commandId === 'string' ? { commandId: err.extras.commandId } : {}),
            };
          return { deviceId, ok: false, status: 500, code: 'E_INTERNAL', error: 'the command could not be sent' };
        }
      }),
    );
  }

  /** A group the caller may use as `need` requires; groups of homes they cannot see do not exist. */
  protected async group(p: Principal, groupId: string, need: HomeNeed): Promise<Database['device_groups']> {
    const row = await this.deps.db.selectFrom('device_groups').selectAll().where('id', '=', groupId).executeTakeFirst();
    const notFound = () => new HearthError('E_GROUP_NOT_FOUND', `group "${groupId}" does not exist`);
    if (!row) throw notFound();
    await this.deps.access.requireHomeOf(p, row.home_id, need, notFound);
    return row;
  }

  protected async groupView(p: Principal, row: Database['device_groups']): Promise<GroupView> {
    return {
      id: row.id,
      homeId: row.home_id,
      name: row.name,
      deviceIds: await this.visible(p, fromJson<string[]>(row.device_ids)),
      createdAt: isoOf(row.created_at),
    };
  }
}
