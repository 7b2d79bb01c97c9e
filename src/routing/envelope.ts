/**
 * The message gateway's one envelope: every message, whatever channel it came in on (device
 * MQTT, device HTTP, partner AMQP, partner HTTP push, or the API itself), travels through the
 * filter chain and the router as one of these. See docs/message-gateway.md.
 */

/** Where a message entered: `mqtt`, `http` (device HTTP), `api` (the REST API), `amqp:<partnerId>`, `partner:<partnerId>` (HTTP push). */
export type Source = 'mqtt' | 'http' | 'api' | `amqp:${string}` | `partner:${string}`;

/** Message kinds: the device uplink kinds, plus `command` for commands sent through the API. */
export type EnvelopeKind = 'properties' | 'events' | 'result' | 'join' | 'presence' | 'subscribed' | 'command' | 'ota' | 'reset';

export interface Envelope {
  /** Unique per message, assigned where it entered; a redelivery keeps it. */
  id: string;
  source: Source;
  deviceId: string;
  /** The device's product key (filled in by the pipeline when the source does not know it). */
  product?: string;
  kind: EnvelopeKind;
  /** The MQTT topic, or the topic the message would have had over MQTT (`devices/{id}/{suffix}`). */
  topic: string;
  payload: unknown;
  /** When Hearth received it (epoch ms). */
  receivedAt: number;
  /** The sender's own message id, if it gave one: the de-duplication filter uses it. */
  sourceId?: string;
  /** Labels set by sources and filters, e.g. `class=alarm`, `lane=gray`. Routes match on them. */
  tags: Record<string, string>;
  /** The authenticated client that sent it (a hub may send for its sub-devices). */
  via?: string;
  /** The user whose API call produced it (source `api`). */
  userId?: string;
  /** W3C trace context (`traceparent`, `tracestate`). */
  trace?: Record<string, string>;
}

/** Where a route sends a message. */
export type Target =
  | { type: 'builtin'; handler: 'device' }
  | {
      type: 'webhook';
      url: string;
      secret?: string;
      lane?: string;
      concurrency?: number;
      timeoutMs?: number;
      retries?: number;
      template?: unknown;
      headers?: Record<string, string>;
    }
  | { type: 'nats'; subject: string; lane?: string; template?: unknown }
  | { type: 'amqp'; url: string; exchange: string; routingKey?: string; lane?: string; template?: unknown }
  | {
      type: 'file';
      directory: string;
      maxBytes?: number;
      maxAgeMs?: number;
      gzip?: boolean;
      upload?: { bucket: string; prefix?: string };
      concurrency?: number;
      retries?: number;
      lane?: string;
      template?: unknown;
    };

/** A job on the delivery stream: one message for one external target of one route. */
export interface Delivery {
  routeId: string;
  routeName: string;
  /** Index of the target in the route (with the route's config version, it names the target). */
  targetIndex: number;
  target: Exclude<Target, { type: 'builtin' }>;
  envelope: Envelope;
  /** The body as the target gets it (after the template), serialised once. */
  body: string;
  lane?: string;
}

/** A route as the router and the delivery service see it (the config schema in config-schema.ts is the source of truth). */
export interface RouteSpec {
  id: string;
  name: string;
  targets: Target[];
}

/** The delivery side of the gateway (src/delivery/delivery-service.ts). */
export interface DeliveryQueue {
  /** Stores a delivery job durably; resolves once stored (the message may be acknowledged then). */
  enqueue(d: Delivery): Promise<void>;
  /** The live routes changed: start delivering for new external targets, stop for removed ones. */
  reconcile(routes: RouteSpec[]): Promise<void>;
}
