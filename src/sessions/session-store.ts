import type { Db } from '../core/store/db.ts';

/** One subscription of a stored session. */
export interface StoredSubscription {
  topic: string;
  qos: number;
}

/** One QoS 1 message a stored session has not acknowledged yet. */
export interface StoredMessage {
  /** Unique across nodes and restarts. */
  key: string;
  clientId: string;
  /** Delivery order within the client. */
  seq: number;
  topic: string;
  payload: Buffer;
  qos: number;
  /** The packet id it was last sent with; null before the first send. */
  messageId: number | null;
}

/**
 * MQTT sessions with clean=false, kept in Hearth's store (SQLite or PostgreSQL) so that they
 * survive a restart of the server and a reconnect to another node (docs/protocol.md, persistent
 * sessions). It knows nothing of MQTT brokers: the gateway's persistence adapter
 * (transports/mqtt/store-persistence.ts) keeps the hot copy in memory and writes through here.
 */
export class SessionStore {
  constructor(private readonly deps: { db: Db }) {}

  async subscriptions(clientId: string): Promise<StoredSubscription[]> {
    return this.deps.db.selectFrom('mqtt_subscriptions').select(['topic', 'qos']).where('client_id', '=', clientId).orderBy('topic').execute();
  }

  /** Every stored session's subscriptions (a node loading the sessions it serves). */
  async allSubscriptions(): Promise<Array<StoredSubscription & { clientId: string }>> {
    const rows = await this.deps.db.selectFrom('mqtt_subscriptions').select(['client_id', 'topic', 'qos']).orderBy('client_id').orderBy('topic').execute();
    return rows.map((r) => ({ clientId: r.client_id, topic: r.topic, qos: Number(r.qos) }));
  }

  async addSubscriptions(clientId: string, subs: StoredSubscription[]): Promise<void> {
    if (!subs.length) return;
    const now = Date.now();
    await this.deps.db
      .insertInto('mqtt_subscriptions')
      .values(subs.map((s) => ({ client_id: clientId, topic: s.topic, qos: s.qos, updated_at: now })))
      .onConflict((oc) => oc.columns(['client_id', 'topic']).doUpdateSet((eb) => ({ qos: eb.ref('excluded.qos'), updated_at: now })))
      .execute();
  }

  async removeSubscriptions(clientId: string, topics: string[]): Promise<void> {
    if (!topics.length) return;
    await this.deps.db.deleteFrom('mqtt_subscriptions').where('client_id', '=', clientId).where('topic', 'in', topics).execute();
  }

  /** A clean session started (or the device is gone): its stored state goes. */
  async clear(clientId: string): Promise<void> {
    await this.deps.db.deleteFrom('mqtt_subscriptions').where('client_id', '=', clientId).execute();
    await this.deps.db.deleteFrom('mqtt_outgoing').where('client_id', '=', clientId).execute();
  }

  async enqueue(m: StoredMessage): Promise<void> {
    await this.deps.db
      .insertInto('mqtt_outgoing')
      .values({
        key: m.key,
        client_id: m.clientId,
        seq: m.seq,
        topic: m.topic,
        payload: m.payload.toString('base64'),
        qos: m.qos,
        message_id: m.messageId,
        created_at: Date.now(),
      })
      .onConflict((oc) => oc.column('key').doNothing())
      .execute();
  }

  async setMessageId(key: string, messageId: number): Promise<void> {
    await this.deps.db.updateTable('mqtt_outgoing').set({ message_id: messageId }).where('key', '=', key).execute();
  }

  async remove(keys: string[]): Promise<void> {
    if (!keys.length) return;
    await this.deps.db.deleteFrom('mqtt_outgoing').where('key', 'in', keys).execute();
  }

  /** A client's unacknowledged messages, oldest first. */
  async outgoing(clientId: string): Promise<StoredMessage[]> {
    const rows = await this.deps.db.selectFrom('mqtt_outgoing').selectAll().where('client_id', '=', clientId).orderBy('seq').execute();
    return rows.map(toMessage);
  }

  async allOutgoing(): Promise<StoredMessage[]> {
    const rows = await this.deps.db.selectFrom('mqtt_outgoing').selectAll().orderBy('client_id').orderBy('seq').execute();
    return rows.map(toMessage);
  }
}

function toMessage(r: { key: string; client_id: string; seq: number; topic: string; payload: string; qos: number; message_id: number | null }): StoredMessage {
  return {
    key: r.key,
    clientId: r.client_id,
    seq: Number(r.seq),
    topic: r.topic,
    payload: Buffer.from(r.payload, 'base64'),
    qos: Number(r.qos),
    messageId: r.message_id == null ? null : Number(r.message_id),
  };
}
