import { sql, type Kysely, type Migration } from 'kysely';

/**
 * Device identity (issue 16): secret rotation with a grace period, product CAs and device
 * certificates (mutual TLS), revoked certificates, zero-touch provisioning (a product's secret,
 * limit and allow-list of hardware ids) and the factory records the allow-list is imported from.
 */
export const identity0015: Migration = {
  async up(db: Kysely<any>) {
    // devices: the secret a rotation replaced, accepted until `until` (one per device).
    await db.schema
      .createTable('device_secret_grace')
      .addColumn('device_id', 'text', (c) => c.primaryKey())
      .addColumn('secret_hash', 'text', (c) => c.notNull())
      .addColumn('until', 'bigint', (c) => c.notNull())
      .execute();
    // A top-level device is found by its product and hardware id (certificates, provisioning), and
    // only one has them: two nodes provisioning the same hardware at once make one device.
    await db.schema
      .createIndex('devices_product_hwid')
      .on('devices')
      .columns(['product_key', 'hwid'])
      .unique()
      .where(sql.ref('parent_id'), 'is', null)
      .execute();
    // identity: CAs registered for a product; a device certificate issued by one authenticates.
    await db.schema
      .createTable('product_cas')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('product_key', 'text', (c) => c.notNull())
      .addColumn('fingerprint', 'text', (c) => c.notNull())
      .addColumn('subject', 'text', (c) => c.notNull())
      .addColumn('pem', 'text', (c) => c.notNull())
      .addColumn('not_after', 'bigint', (c) => c.notNull())
      .addColumn('jit', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('revoked_at', 'bigint')
      .execute();
    await db.schema.createIndex('product_cas_product_fingerprint').on('product_cas').columns(['product_key', 'fingerprint']).unique().execute();
    // identity: certificates devices authenticated with (bound to the device on first use).
    await db.schema
      .createTable('device_certificates')
      .addColumn('fingerprint', 'text', (c) => c.primaryKey())
      .addColumn('device_id', 'text', (c) => c.notNull())
      .addColumn('ca_id', 'text', (c) => c.notNull())
      .addColumn('subject', 'text', (c) => c.notNull())
      .addColumn('not_after', 'bigint', (c) => c.notNull())
      .addColumn('first_seen_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('device_certificates_device').on('device_certificates').column('device_id').execute();
    // identity: revoked certificates by fingerprint (seen or not).
    await db.schema
      .createTable('revoked_certificates')
      .addColumn('fingerprint', 'text', (c) => c.primaryKey())
      .addColumn('reason', 'text')
      .addColumn('revoked_at', 'bigint', (c) => c.notNull())
      .execute();
    // identity: zero-touch provisioning of a product.
    await db.schema
      .createTable('product_provisioning')
      .addColumn('product_key', 'text', (c) => c.primaryKey())
      .addColumn('secret', 'text', (c) => c.notNull())
      .addColumn('device_limit', 'integer')
      .addColumn('allow_list_only', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute();
    // identity: factory records (hwid, serial, mac, more columns as JSON): the allow-list of hardware ids.
    await db.schema
      .createTable('factory_records')
      .addColumn('product_key', 'text', (c) => c.notNull())
      .addColumn('hwid', 'text', (c) => c.notNull())
      .addColumn('serial', 'text')
      .addColumn('mac', 'text')
      .addColumn('attributes', 'text', (c) => c.notNull())
      .addColumn('imported_at', 'bigint', (c) => c.notNull())
      .addColumn('device_id', 'text')
      .addColumn('provisioned_at', 'bigint')
      .addPrimaryKeyConstraint('factory_records_pk', ['product_key', 'hwid'])
      .execute();
    // identity: provisioning requests' nonces, kept until their timestamp is out of the window (replays).
    await db.schema
      .createTable('provision_nonces')
      .addColumn('product_key', 'text', (c) => c.notNull())
      .addColumn('nonce', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('provision_nonces_pk', ['product_key', 'nonce'])
      .execute();
    await db.schema.createIndex('provision_nonces_expiry').on('provision_nonces').column('expires_at').execute();
  },
};
