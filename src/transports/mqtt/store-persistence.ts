import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Logger } from '../../core/logger.ts';
import type { SessionStore, StoredSubscription } from '../../sessions/session-store.ts';

const require = createRequire(import.meta.url);
// aedes-persistence's in-memory implementation (the subscription trie, wills, QoS 2 state), and
// aedes-packet, the packet shape Aedes queues; both CommonJS without type declarations.
const MemoryPersistence = require('aedes-persistence/asyncPersistence.js') as new () => AsyncPersistence;
const Packet = require('aedes-packet') as new (original: Partial<QueuedPacket>, broker?: unknown) => QueuedPacket;

/** The part of a packet Aedes queues for a client that this adapter reads. */
interface QueuedPacket {
  cmd: string;
  topic: string;
  payload: Buffer;
  qos: number;
  retain: boolean;
  dup: boolean;
  brokerId: string;
  brokerCounter: number;
  messageId?: number;
}

/** The async persistence interface Aedes 1.2 calls (aedes-persistence 11). */
type AsyncPersistence = Record<string, (...args: never[]) => unknown> & {
  setup(broker: unknown): Promise<void>;
  addSubscriptions(client: { id: string }, subs: Array<{ topic: string; qos: number }>): Promise<void>;
  removeSubscriptions(client: { id: string }, topics: string[]): Promise<void>;
  cleanSubscriptions(client: { id: string }): Promise<void>;
  countOffline(): Promise<unknown>;
  subscriptionsByTopic(topic: string): Promise<Array<{ clientId: string }>>;
  incomingStorePacket(client: unknown, packet: unknown): Promise<void>;
  incomingGetPacket(client: unknown, packet: unknown): Promise<unknown>;
  incomingDelPacket(client: unknown, packet: unknown): Promise<void>;
  cleanIncoming(client: unknown): Promise<void>;
  putWill(client: unknown, packet: unknown): Promise<void>;
  getWill(client: unknown): Promise<unknown>;
  delWill(client: unknown): Promise<unknown>;
  streamWill(brokers?: unknown): Readable;
  getClientList(topic: string): Readable;
  destroy(): Promise<void>;
};

interface Entry {
  key: string;
  packet: QueuedPacket;
}

/**
 * An Aedes persistence whose sessions with clean=false live in Hearth's store (SessionStore), so
 * that a device's subscriptions and the QoS 1 messages it has not acknowledged survive a restart
 * and follow it to another node (docs/protocol.md, persistent sessions).
 *
 * The hot copy stays in memory (aedes-persistence's own trie for subscriptions, a queue per client
 * here), written through to the store; only sessions with clean=false ever reach this state, so
 * devices with clean sessions cost one look-up on connect. At most `maxMessages` messages are kept
 * per client: the oldest is dropped (and counted) for a new one.
 *
 * Retained messages are not supported (the gateway refuses them): nothing is stored for them, and
 * a subscription gets none. Wills and QoS 2 state stay in memory (devices publish at QoS 0 or 1).
 */
export class StorePersistence {
  private readonly inner: AsyncPersistence = new MemoryPersistence();
  private readonly queues = new Map<string, Entry[]>();
  /** Clients with stored state (known completely when this node loads every session). */
  private readonly stored = new Set<string>();
  /** Keys unique across nodes and restarts; brokerId of restored packets, so they never collide with this process's counters. */
  private readonly prefix = randomBytes(6).toString('hex');
  private counter = 0;

  constructor(
    private readonly deps: {
      store: SessionStore;
      log: Logger;
      /** Most unacknowledged messages kept per client. */
      maxMessages: number;
      /** Load every stored session at start (one node serves every device: embedded mode). */
      loadAll: boolean;
      /** The oldest message of a full session was dropped. */
      onDropped?: (clientId: string, count: number) => void;
    },
  ) {}

  async setup(broker: unknown): Promise<void> {
    await this.inner.setup(broker);
    if (!this.deps.loadAll) return;
    const subs = await this.deps.store.allSubscriptions();
    const by = new Map<string, StoredSubscription[]>();
    for (const s of subs) by.set(s.clientId, [...(by.get(s.clientId) ?? []), { topic: s.topic, qos: s.qos }]);
    for (const [clientId, list] of by) {
      await this.inner.addSubscriptions({ id: clientId }, list);
      this.stored.add(clientId);
    }
    for (const m of await this.deps.store.allOutgoing()) this.restore(m.clientId, m);
    if (by.size) this.deps.log.info({ sessions: by.size }, 'persistent MQTT sessions loaded');
  }

  private restore(clientId: string, m: { key: string; topic: string; payload: Buffer; qos: number }): void {
    const queue = this.queues.get(clientId) ?? [];
    if (queue.some((e) => e.key === m.key)) return;
    const packet = new Packet({
      cmd: 'publish',
      topic: m.topic,
      payload: m.payload,
      qos: m.qos,
      retain: false,
      dup: false,
      brokerId: `restored-${this.prefix}`,
      brokerCounter: ++this.counter,
    });
    queue.push({ key: m.key, packet });
    this.queues.set(clientId, queue);
    this.stored.add(clientId);
  }

  // -- retained messages: none ------------------------------------------------------------

  async storeRetained(): Promise<void> {}

  createRetainedStream(): Readable {
    return Readable.from([]);
  }

  createRetainedStreamCombi(): Readable {
    return Readable.from([]);
  }

  // -- subscriptions -----------------------------------------------------------------------

  async addSubscriptions(client: { id: string }, subs: Array<{ topic: string; qos: number }>): Promise<void> {
    await this.inner.addSubscriptions(client, subs);
    this.stored.add(client.id);
    await this.deps.store.addSubscriptions(
      client.id,
      subs.map((s) => ({ topic: s.topic, qos: s.qos })),
    );
  }

  async removeSubscriptions(client: { id: string }, topics: string[]): Promise<void> {
    await this.inner.removeSubscriptions(client, topics);
    await this.deps.store.removeSubscriptions(client.id, topics);
  }

  /** A connect with clean=false: the session as the store has it (it may come from another node). */
  async subscriptionsByClient(client: { id: string }): Promise<StoredSubscription[]> {
    const subs = await this.deps.store.subscriptions(client.id);
    if (subs.length) await this.inner.addSubscriptions(client, subs);
    for (const m of await this.deps.store.outgoing(client.id)) this.restore(client.id, m);
    return subs.map((s) => ({ topic: s.topic, qos: s.qos }));
  }

  /** A connect with clean=true: whatever was stored for the client goes. */
  async cleanSubscriptions(client: { id: string }): Promise<void> {
    await this.inner.cleanSubscriptions(client);
    this.queues.delete(client.id);
    if (this.deps.loadAll && !this.stored.has(client.id)) return;
    this.stored.delete(client.id);
    await this.deps.store.clear(client.id);
  }

  /** Forgets the in-memory copy of a session another node took over (its store rows stay). */
  async forget(clientId: string): Promise<void> {
    await this.inner.cleanSubscriptions({ id: clientId });
    this.queues.delete(clientId);
  }

  countOffline(): Promise<unknown> {
    return this.inner.countOffline();
  }

  subscriptionsByTopic(topic: string): Promise<Array<{ clientId: string }>> {
    return this.inner.subscriptionsByTopic(topic);
  }

  // -- unacknowledged messages ------------------------------------------------------------

  async outgoingEnqueue(sub: { clientId: string }, packet: QueuedPacket): Promise<void> {
    await this.enqueue(sub.clientId, packet);
  }

  async outgoingEnqueueCombi(subs: Array<{ clientId: string }>, packet: QueuedPacket): Promise<void> {
    for (const sub of subs) await this.enqueue(sub.clientId, packet);
  }

  private async enqueue(clientId: string, original: QueuedPacket): Promise<void> {
    const packet = new Packet(original);
    const key = `${this.prefix}-${++this.counter}`;
    const queue = this.queues.get(clientId) ?? [];
    queue.push({ key, packet });
    this.queues.set(clientId, queue);
    this.stored.add(clientId);
    await this.deps.store.enqueue({
      key,
      clientId,
      seq: Date.now() * 1000 + (this.counter % 1000),
      topic: packet.topic,
      payload: packet.payload,
      qos: packet.qos,
      messageId: null,
    });
    if (queue.length > this.deps.maxMessages) {
      const dropped = queue.splice(0, queue.length - this.deps.maxMessages);
      await this.deps.store.remove(dropped.map((e) => e.key));
      this.deps.onDropped?.(clientId, dropped.length);
    }
  }

  async outgoingUpdate(client: { id: string }, packet: QueuedPacket): Promise<void> {
    const queue = this.queues.get(client.id) ?? [];
    for (let i = 0; i < queue.length; i++) {
      const e = queue[i];
      if (e.packet.brokerId === packet.brokerId) {
        if (e.packet.brokerCounter === packet.brokerCounter) {
          e.packet.messageId = packet.messageId;
          if (packet.messageId !== undefined) await this.deps.store.setMessageId(e.key, packet.messageId);
          return;
        }
      } else if (e.packet.messageId === packet.messageId) {
        queue[i] = { key: e.key, packet };
        return;
      }
    }
    throw new Error('no such packet');
  }

  async outgoingClearMessageId(client: { id: string }, packet: { messageId?: number }): Promise<QueuedPacket | undefined> {
    const queue = this.queues.get(client.id);
    if (!queue) return undefined;
    const i = queue.findIndex((e) => e.packet.messageId === packet.messageId);
    if (i < 0) return undefined;
    const [e] = queue.splice(i, 1);
    await this.deps.store.remove([e.key]);
    return e.packet;
  }

  outgoingStream(client: { id: string }): Readable {
    return Readable.from((this.queues.get(client.id) ?? []).map((e) => e.packet));
  }

  // -- QoS 2 and wills: in memory -----------------------------------------------------------

  incomingStorePacket(client: unknown, packet: unknown): Promise<void> {
    return this.inner.incomingStorePacket(client, packet);
  }

  incomingGetPacket(client: unknown, packet: unknown): Promise<unknown> {
    return this.inner.incomingGetPacket(client, packet);
  }

  incomingDelPacket(client: unknown, packet: unknown): Promise<void> {
    return this.inner.incomingDelPacket(client, packet);
  }

  cleanIncoming(client: unknown): Promise<void> {
    return this.inner.cleanIncoming(client);
  }

  putWill(client: unknown, packet: unknown): Promise<void> {
    return this.inner.putWill(client, packet);
  }

  getWill(client: unknown): Promise<unknown> {
    return this.inner.getWill(client);
  }

  delWill(client: unknown): Promise<unknown> {
    return this.inner.delWill(client);
  }

  streamWill(brokers?: unknown): Readable {
    return this.inner.streamWill(brokers);
  }

  getClientList(topic: string): Readable {
    return this.inner.getClientList(topic);
  }

  destroy(): Promise<void> {
    return this.inner.destroy();
  }
}
