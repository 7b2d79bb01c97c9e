import type { Bus } from '../core/bus/bus.ts';
import { subjects, uplinkTopic, type UplinkKind, type UplinkMessage } from '../core/bus/subjects.ts';
import { shardOf } from '../core/cluster/shards.ts';
import { MessageIds } from '../core/ids.ts';
import { HearthError } from '../core/errors.ts';
import { jsonDepthExceeds, MAX_JSON_DEPTH } from '../core/json-limits.ts';

/** What a source hands to the pipeline: a message about one device. */
export interface Submission {
  source: string;
  deviceId: string;
  kind: UplinkKind;
  payload: unknown;
  /** The authenticated sender (a hub for its sub-devices; the partner; the device itself). */
  via?: string;
  /** The sender's own message id: a repeat within the bus's window is dropped, and the dedupe filter sees it. */
  sourceId?: string;
  tags?: Record<string, string>;
  userId?: string;
  trace?: Record<string, string>;
  /** MQTT topic suffix the message would have had (`properties`, `events`, `commands/result`…); default: the kind. */
  topicSuffix?: string;
}

/**
 * The way into the message pipeline for every source other than the MQTT gateway (which does the
 * same itself): the message is stored on the durable uplink stream, on its device's shard, and
 * the returned promise resolves once it is stored — acknowledge the sender only then.
 */
export class UplinkIngress {
  private readonly ids: MessageIds;

  constructor(private readonly deps: { bus: Bus; shards: number; nodeId: string }) {
    this.ids = new MessageIds(deps.nodeId, 'i');
  }

  /** Throws E_VALIDATION (refuse the sender, do not retry) for a payload nested deeper than devices may send. */
  async submit(s: Submission): Promise<string> {
    if (jsonDepthExceeds(s.payload, MAX_JSON_DEPTH))
      throw new HearthError('E_VALIDATION', `the message nests objects and arrays deeper than ${MAX_JSON_DEPTH} levels`, { field: 'body' });
    const id = this.ids.next();
    const msg: UplinkMessage = {
      id,
      deviceId: s.deviceId,
      via: s.via ?? s.deviceId,
      kind: s.kind,
      topic: s.topicSuffix ? `devices/${s.deviceId}/${s.topicSuffix}` : uplinkTopic(s.deviceId, s.kind),
      payload: s.payload,
      receivedAt: Date.now(),
      source: s.source,
      ...(s.sourceId !== undefined ? { sourceId: s.sourceId } : {}),
      ...(s.tags ? { tags: s.tags } : {}),
      ...(s.userId ? { userId: s.userId } : {}),
      ...(s.trace ? { trace: s.trace } : {}),
    };
    // A sender retrying with its own id within the bus's window is stored once.
    const msgId = s.sourceId !== undefined ? `${s.source}:${s.deviceId}:${s.sourceId}` : id;
    await this.deps.bus.publishDurable(subjects.up(shardOf(s.deviceId, this.deps.shards), s.deviceId, s.kind), msg, { msgId });
    return id;
  }
}
