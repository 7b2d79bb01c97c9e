import { sql, type Kysely, type Migration } from 'kysely';

/**
 * Fleet search, second part (docs/fleet.md): the operator's attributes become searchable
 * (`attr.floor>2`, `attr.site:berlin`) through `device_attributes`, one row per scalar attribute
 * (its text, and its number when it is one), kept by the devices capability with the JSON on the
 * device row and filled here from the attributes already set. And covering indexes that let the
 * store count and join without reading table rows: live devices by id (with the firmware, for
 * counts by firmware), by product and firmware together, and presence by device with its state.
 *
 * Device identity (docs/tls.md): the certificate revocation list a product CA publishes, uploaded
 * by the operator (`product_ca_crls`, one per CA, its revoked serials as JSON), and the serial
 * number of each certificate a device authenticated with, so that a new list closes the sessions
 * of the certificates it revokes.
 */
export const fleetSearch0018: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('device_attributes')
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('key', 'text', (c) => c.notNull())
      .addColumn('value', 'text', (c) => c.notNull())
      .addColumn('num', 'double precision')
      .addPrimaryKeyConstraint('device_attributes_pk', ['device_id', 'key'])
      .execute();
    await db.schema.createIndex('device_attributes_key_value').on('device_attributes').columns(['key', 'value', 'device_id']).execute();
    await db.schema.createIndex('device_attributes_key_num').on('device_attributes').columns(['key', 'num', 'device_id']).execute();
    const rows = await db.selectFrom('devices').select(['id', 'attributes']).where('attributes', 'is not', null).where('deleted_at', 'is', null).execute();
    const out: Array<{ device_id: string; key: string; value: string; num: number | null }> = [];
    for (const r of rows as Array<{ id: string; attributes: string }>) {
      let attrs: unknown;
      try {
        attrs = JSON.parse(r.attributes);
      } catch {
        continue;
      }
      if (attrs && typeof attrs === 'object' && !Array.isArray(attrs))
        for (const [key, v] of Object.entries(attrs)) {
          const row = /^[A-Za-z0-9_-]{1,64}$/.test(key) ? attributeRow(v) : undefined;
          if (row) out.push({ device_id: r.id, key, ...row });
        }
    }
    for (let i = 0; i < out.length; i += 500)
      await db
        .insertInto('device_attributes')
        .values(out.slice(i, i + 500))
        .execute();
    const live = sql<boolean>`deleted_at is null`;
    await db.schema.createIndex('devices_live_id').on('devices').columns(['id', 'firmware']).where(live).execute();
    await db.schema.createIndex('devices_live_product_firmware').on('devices').columns(['product_key', 'firmware_key', 'id']).where(live).execute();
    await db.schema.createIndex('presence_device_state').on('presence').columns(['device_id', 'online', 'last_seen']).execute();
    await db.schema
      .createTable('product_ca_crls')
      .addColumn('ca_id', 'text', (c) => c.primaryKey())
      .addColumn('pem', 'text', (c) => c.notNull())
      .addColumn('serials', 'text', (c) => c.notNull())
      .addColumn('number', 'text')
      .addColumn('this_update', 'bigint', (c) => c.notNull())
      .addColumn('next_update', 'bigint')
      .addColumn('uploaded_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.alterTable('device_certificates').addColumn('serial', 'text').execute();
    await db.schema.createIndex('device_certificates_ca_serial').on('device_certificates').columns(['ca_id', 'serial']).execute();
  },
};

/** How an attribute value is indexed (as DeviceTags does it, frozen here as of this migration). */
function attributeRow(v: unknown): { value: string; num: number | null } | undefined {
  if (typeof v === 'string') return v.length <= 256 ? { value: v, num: null } : undefined;
  if (typeof v === 'number' && Number.isFinite(v)) return { value: String(v), num: v };
  if (typeof v === 'boolean') return { value: String(v), num: null };
  return undefined;
}
