import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import type { Logger } from '../core/logger.ts';
import { isHearthError } from '../core/errors.ts';
import type { UplinkIngress, Submission } from '../ingress/ingress.ts';
import { redactUrl, type Partner, type PartnerService } from './partner-service.ts';

const DEFAULT_PREFETCH = 50;
const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 30_000;
const CONNECT_TIMEOUT_MS = 10_000;

/** One broker URL: a connection shared by the consumers of every partner queue on it. */
class Link {
  private current: Promise<ChannelModel> | undefined;
  private model: ChannelModel | undefined;
  private closed = false;
  users = 0;

  constructor(
    readonly url: string,
    private readonly log: Logger,
  ) {}

  /** The open connection, or a new attempt (one at a time, shared by the consumers waiting for it). */
  connection(): Promise<ChannelModel> {
    if (this.closed) return Promise.reject(new Error('AMQP link closed'));
    // amqplib is loaded at the first AMQP source, not by every node.
    this.current ??= import('amqplib')
      .then(({ connect }) => connect(this.url, { timeout: CONNECT_TIMEOUT_MS, clientProperties: { connection_name: 'hearth' } }))
      .then(
        (model) => {
          if (this.closed) {
            void model.close().catch(() => undefined);
            throw new Error('AMQP link closed');
          }
          this.model = model;
          model.on('error', (err: Error) => this.log.warn({ url: redactUrl(this.url), err: err.message }, 'AMQP connection error'));
          model.on('close', () => {
            if (this.model !== model) return;
            this.model = undefined;
            this.current = undefined;
          });
          return model;
        },
        (err: Error) => {
          this.current = undefined;
          this.log.warn({ url: redactUrl(this.url), err: err.message }, 'AMQP connection failed; retrying with backoff');
          throw err;
        },
      );
    return this.current;
  }

  async close(): Promise<void> {
    this.closed = true;
    const model = this.model;
    this.model = undefined;
    this.current = undefined;
    await model?.close().catch(() => undefined);
  }
}

/** A partner's queue being consumed: its channel comes and goes with the connection. */
interface QueueConsumer {
  partner: Partner;
  /** What the consumer was started with; a partner whose key changes is restarted. */
  key: string;
  link: Link;
  channel?: Channel;
  tag?: string;
  stopped: boolean;
  /** Wakes the consumer's backoff sleep (and a requeue delay) when it stops. */
  wake: AbortController;
  inFlight: Set<Promise<void>>;
}

const keyOf = (p: Partner) => JSON.stringify([p.amqp, p.products]);

/**
 * Partner AMQP 0-9-1 sources: consumes the queue configured for each partner (one connection
 * per broker URL, one channel with its prefetch per queue) and hands each message to the
 * pipeline. A message is acknowledged only after it is stored; one that can never be taken
 * (bad JSON, wrong shape, unknown device, not the partner's product, not fitting the model) is
 * rejected without requeue, so a queue with a dead-letter exchange keeps it; one that could not
 * be stored (bus down) is requeued after a short delay. Runs on worker nodes; `reload()` after
 * partners change.
 */
export class AmqpSources {
  private readonly consumers = new Map<string, QueueConsumer>();
  private readonly links = new Map<string, Link>();
  private running = false;
  /** Reloads run one at a time, in order. */
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly deps: { partners: PartnerService; ingress: UplinkIngress; log: Logger; requeueDelayMs?: number }) {}

  /** Starts consuming every configured partner queue; connections are made in the background. */
  async start(): Promise<void> {
    this.running = true;
    await this.reload();
  }

  /** Brings the consumers in line with the partners as they are stored now. */
  reload(): Promise<void> {
    this.chain = this.chain.then(() => this.apply()).catch((err) => this.deps.log.error({ err }, 'AMQP sources: reload failed'));
    return this.chain;
  }

  /** Cancels the consumers, waits for the messages in flight to be settled, closes channels and connections. */
  async stop(): Promise<void> {
    this.running = false;
    await this.chain;
    await Promise.all([...this.consumers.keys()].map((id) => this.remove(id)));
    await Promise.all([...this.links.values()].map((l) => l.close()));
    this.links.clear();
  }

  private async apply(): Promise<void> {
    if (!this.running) return;
    const wanted = new Map((await this.deps.partners.withAmqp()).map((p) => [p.id, p]));
    for (const [id, c] of [...this.consumers]) {
      const p = wanted.get(id);
      if (!p || keyOf(p) !== c.key) await this.remove(id);
    }
    for (const [id, p] of wanted) if (!this.consumers.has(id)) this.add(p);
    for (const [url, link] of [...this.links]) {
      if (link.users > 0) continue;
      this.links.delete(url);
      await link.close();
    }
  }

  private add(partner: Partner): void {
    const url = partner.amqp!.url;
    let link = this.links.get(url);
    if (!link) this.links.set(url, (link = new Link(url, this.deps.log)));
    link.users++;
    const c: QueueConsumer = { partner, key: keyOf(partner), link, stopped: false, wake: new AbortController(), inFlight: new Set() };
    this.consumers.set(partner.id, c);
    void this.run(c);
  }

  private async remove(id: string): Promise<void> {
    const c = this.consumers.get(id);
    if (!c) return;
    this.consumers.delete(id);
    c.stopped = true;
    c.wake.abort();
    const ch = c.channel;
    // No new deliveries; the ones in flight are acknowledged on the open channel, then it closes.
    if (ch && c.tag) await ch.cancel(c.tag).catch(() => undefined);
    await Promise.all(c.inFlight);
    await ch?.close().catch(() => undefined);
    c.link.users--;
  }

  /** Keeps one partner's queue consumed: (re)opens its channel after every loss, with backoff. */
  private async run(c: QueueConsumer): Promise<void> {
    const { log } = this.deps;
    const amqp = c.partner.amqp!;
    const where = { partner: c.partner.id, queue: amqp.queue, url: redactUrl(amqp.url) };
    let failures = 0;
    while (!c.stopped) {
      try {
        const model = await c.link.connection();
        if (c.stopped) break;
        const ch = await model.createChannel();
        // remove() closes what it finds; a channel opened after it ran is closed here.
        if (c.stopped) {
          await ch.close().catch(() => undefined);
          break;
        }
        c.channel = ch;
        const closed = new Promise<void>((resolve) => ch.once('close', () => resolve()));
        ch.on('error', (err: Error) => log.warn({ ...where, err: err.message }, 'AMQP channel closed by the broker'));
        await ch.prefetch(amqp.prefetch ?? DEFAULT_PREFETCH);
        const { consumerTag } = await ch.consume(amqp.queue, (msg) => {
          // null: the broker cancelled the consumer (the queue was deleted); start over.
          if (msg === null) void ch.close().catch(() => undefined);
          else this.track(c, ch, msg);
        });
        c.tag = consumerTag;
        if (failures > 0) log.warn({ ...where }, 'AMQP consumer running again');
        failures = 0;
        await closed;
      } catch (err) {
        if (!c.stopped && failures === 0) log.warn({ ...where, err: (err as Error).message }, 'AMQP consumer failed; retrying with backoff');
      }
      c.channel = undefined;
      c.tag = undefined;
      if (c.stopped) break;
      failures++;
      const backoff = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** (failures - 1));
      await sleep(backoff * (0.8 + Math.random() * 0.4), c.wake.signal);
    }
  }

  private track(c: QueueConsumer, ch: Channel, msg: ConsumeMessage): void {
    const p = this.handle(c, ch, msg).finally(() => c.inFlight.delete(p));
    c.inFlight.add(p);
  }

  private async handle(c: QueueConsumer, ch: Channel, msg: ConsumeMessage): Promise<void> {
    const { log, partners, ingress } = this.deps;
    const where = { partner: c.partner.id, queue: c.partner.amqp!.queue };
    let sub: Submission;
    try {
      let body: unknown;
      try {
        body = JSON.parse(msg.content.toString('utf8'));
      } catch (err) {
        throw refusal(`the body is not valid JSON: ${(err as Error).message}`);
      }
      const messageId: unknown = msg.properties.messageId;
      if (
        typeof body === 'object' &&
        body !== null &&
        !Array.isArray(body) &&
        (body as { id?: unknown }).id === undefined &&
        typeof messageId === 'string' &&
        messageId !== ''
      ) {
        body = { ...body, id: messageId };
      }
      sub = await partners.admit(c.partner, body, `amqp:${c.partner.id}`);
    } catch (err) {
      if (isHearthError(err) || err instanceof Refusal) {
        log.warn({ ...where, reason: err.message, code: isHearthError(err) ? err.code : 'E_BAD_JSON' }, 'AMQP message refused (rejected without requeue)');
        settle(() => ch.nack(msg, false, false));
      } else {
        await this.requeue(c, ch, msg, err as Error);
      }
      return;
    }
    try {
      await ingress.submit(sub);
      settle(() => ch.ack(msg));
    } catch (err) {
      if (!isHearthError(err)) return this.requeue(c, ch, msg, err as Error);
      log.warn({ ...where, reason: err.message, code: err.code }, 'AMQP message refused (rejected without requeue)');
      settle(() => ch.nack(msg, false, false));
    }
  }

  /** Our side failed (store or bus down): the message goes back to the queue after a pause, so it is not spun on. */
  private async requeue(c: QueueConsumer, ch: Channel, msg: ConsumeMessage, err: Error): Promise<void> {
    this.deps.log.warn({ partner: c.partner.id, queue: c.partner.amqp!.queue, err: err.message }, 'AMQP message could not be stored; requeued');
    await sleep(this.deps.requeueDelayMs ?? 1000, c.wake.signal);
    settle(() => ch.nack(msg, false, true));
  }
}

/** A message that can never be taken, whatever happens on our side. */
class Refusal extends Error {}
const refusal = (message: string) => new Refusal(message);

/** Acks and nacks on a channel that closed meanwhile throw; the broker redelivers those messages anyway. */
function settle(fn: () => void): void {
  try {
    fn();
  } catch {
    /* channel gone: redelivered */
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
