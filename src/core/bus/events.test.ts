/**
 * The bus catalogue at work. Most of this file is checked by `tsc` (part of `npm test`): every
 * `@ts-expect-error` below is a publisher and a subscriber that disagree, or a subject missing from
 * the catalogue, and the build fails if any of them ever compiles. The runtime test shows that
 * typed calls reach an engine unchanged.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../logger.ts';
import { broadcast } from '../cluster/broadcast.ts';
import type { Bus, BusMessage } from './bus.ts';
import { MemoryBus } from './memory-bus.ts';
import { subjects, type DownlinkMessage, type UplinkBatch, type UplinkMessage } from './subjects.ts';
import type { Delivery } from '../../routing/envelope.ts';
import {
  foreignSubject,
  type AutomationRpc,
  type AutomationRpcReply,
  type CommandChange,
  type CommandResult,
  type DeviceEvent,
  type EventOf,
  type PresenceEvent,
  type ReplyOf,
  type ReportedEvent,
  type RequestOf,
  type SceneActivation,
  type ShadowReply,
  type ShadowRequest,
  type StreamAnnouncement,
  type TimerChange,
} from './events.ts';

/** `true` only when A and B are the same type. */
type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const same = <A, B>(ok: Equals<A, B>): Equals<A, B> => ok;

// Subjects from the builders, literal patterns and wildcards find their payloads.
same<EventOf<ReturnType<typeof subjects.reported>>, ReportedEvent>(true);
same<EventOf<'device.*.reported'>, ReportedEvent>(true);
same<EventOf<'device.d_1.presence'>, PresenceEvent>(true);
// A shard's uplinks: single messages and batches of them.
same<EventOf<ReturnType<typeof subjects.shardUp>>, UplinkMessage | UplinkBatch>(true);
same<EventOf<typeof subjects.allUp>, UplinkMessage | UplinkBatch>(true);
same<EventOf<ReturnType<typeof subjects.upBatch>>, UplinkBatch>(true);
// A pattern over several subjects gets every payload it can match.
same<EventOf<'device.*.reported' | 'device.*.event'>, ReportedEvent | DeviceEvent>(true);
same<Extract<EventOf<'device.>'>, PresenceEvent | ReportedEvent>, PresenceEvent | ReportedEvent>(true);
same<RequestOf<ReturnType<typeof subjects.shadowRpc>>, ShadowRequest>(true);
same<ReplyOf<ReturnType<typeof subjects.shadowRpc>>, ShadowReply>(true);
same<EventOf<ReturnType<typeof foreignSubject>>, unknown>(true);
// Every builder and constant in subjects.ts finds exactly its own entry.
same<EventOf<ReturnType<typeof subjects.up>>, UplinkMessage>(true);
same<EventOf<ReturnType<typeof subjects.down>>, DownlinkMessage>(true);
same<EventOf<typeof subjects.allDown>, DownlinkMessage>(true);
same<EventOf<ReturnType<typeof subjects.presence>>, PresenceEvent>(true);
same<EventOf<ReturnType<typeof subjects.event>>, DeviceEvent>(true);
same<EventOf<ReturnType<typeof subjects.command>>, CommandChange>(true);
same<EventOf<ReturnType<typeof subjects.commandResult>>, CommandResult>(true);
same<EventOf<typeof subjects.allCommandResults>, CommandResult>(true);
same<EventOf<typeof subjects.streamAnnounce>, StreamAnnouncement>(true);
same<EventOf<ReturnType<typeof subjects.sceneActivated>>, SceneActivation>(true);
same<EventOf<ReturnType<typeof subjects.delivery>>, Delivery>(true);
same<EventOf<typeof subjects.allDelivery>, Delivery>(true);
same<RequestOf<ReturnType<typeof subjects.automationRpc>>, AutomationRpc>(true);
same<ReplyOf<ReturnType<typeof subjects.automationRpc>>, AutomationRpcReply>(true);
same<EventOf<'cluster.timers'>, TimerChange>(true);
// A request subject carries no events, an event subject no requests.
same<EventOf<ReturnType<typeof subjects.shadowRpc>>, never>(true);
same<RequestOf<ReturnType<typeof subjects.reported>>, never>(true);
// @ts-expect-error a subject outside the catalogue has no payload
same<EventOf<'device.*.reportd'>, ReportedEvent>(true);

/** Never called: it only has to compile, with each mismatch refused. */
export function mismatches(bus: Bus): void {
  // @ts-expect-error a presence event published as a property report
  bus.publish(subjects.reported('d_1'), { deviceId: 'd_1', online: true, reason: 'connect', session: 1, at: 0 } satisfies PresenceEvent);
  // @ts-expect-error a subscriber that expects another payload than the subject carries
  bus.subscribe(subjects.presence('*'), (m: BusMessage<ReportedEvent>) => void m.data.values);
  // @ts-expect-error a subject missing from the catalogue (a typo)
  bus.publish('device.d_1.reportd', { deviceId: 'd_1', values: {}, changed: [], version: 1, at: 0 });
  // @ts-expect-error a subject only known at run time must say it is foreign
  bus.publish(String('partner.acme.in'), {});
  bus.publish(foreignSubject(String('partner.acme.in')), { any: 'thing' });
  // @ts-expect-error a request the responder does not understand
  void bus.request(subjects.shadowRpc(0), { op: 'drop', deviceId: 'd_1' });
  // @ts-expect-error a reply read as something else
  void bus.request(subjects.shadowRpc(0), { op: 'view', deviceId: 'd_1' }).then((r): { version: number } => r);
  // @ts-expect-error a responder answering with the wrong reply
  bus.subscribe(subjects.automationRpc(0), (m) => m.respond?.({ ok: true, view: undefined }));
  // @ts-expect-error a durable consumer of the uplink stream handling deliveries
  void bus.consume({ stream: 'UPLINK', durable: 'x', filter: subjects.shardUp(0) }, (m: BusMessage<{ routeId: string }>) => void m);
  // @ts-expect-error a broadcast whose apply expects another payload
  broadcast(bus, 'cluster.placement', (p: { keyId: string }) => void p);
  // @ts-expect-error only cluster subjects are broadcasts
  broadcast(bus, 'stream.announce', () => undefined);
}

test('typed publish, subscribe and request pass through an engine unchanged', async () => {
  const bus: Bus = new MemoryBus(createLogger('silent'));
  const heard: Array<[string, number]> = [];
  const unsub = bus.subscribe(subjects.reported('*'), (m) => void heard.push([m.subject, m.data.version]));
  bus.subscribe(subjects.shadowRpc(0), (m) => m.respond?.({ ok: true, view: undefined, ...(m.data.op === 'view' ? {} : {}) }));
  bus.publish(subjects.reported('d_1'), { deviceId: 'd_1', values: { on: true }, changed: ['on'], version: 7, at: 0 });
  await bus.flush();
  assert.deepEqual(heard, [['device.d_1.reported', 7]]);
  const reply = await bus.request(subjects.shadowRpc(0), { op: 'view', deviceId: 'd_1' });
  assert.equal(reply.ok, true);
  unsub();
  await bus.close();
});
