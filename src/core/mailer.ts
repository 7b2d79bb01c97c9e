import type { Transporter } from 'nodemailer';
import type { Logger } from './logger.ts';
import { createOutbound, OutboundError, type Outbound } from './outbound.ts';
import type { Metrics } from './observability/metrics.ts';

export interface MailMessage {
  to: string;
  subject: string;
  text: string;
}

/** Sends e-mail (password resets, invitations). */
export interface Mailer {
  send(msg: MailMessage): Promise<void>;
  /** Releases connections, if the mailer holds any. */
  close?(): void;
}

/**
 * The mailer when no SMTP server is configured: the message is written to the log at info
 * level (`mail` field), so the operator can pass a reset or invitation link on by hand.
 */
export class LogMailer implements Mailer {
  constructor(private readonly log: Logger) {}

  async send(msg: MailMessage): Promise<void> {
    this.log.info({ mail: msg }, `e-mail to ${msg.to} (no SMTP configured, logged instead): ${msg.subject}`);
  }
}

/**
 * Sends through an SMTP server given as a URL: `smtp://user:pass@host:587` (STARTTLS when the
 * server offers it) or `smtps://user:pass@host:465` (TLS from the start). Transport options can
 * ride along as query parameters, e.g. `?tls.rejectUnauthorized=false` for a self-signed relay.
 */
export class SmtpMailer implements Mailer {
  /** Made at the first message: nodemailer is loaded only by a node that sends mail. */
  private transport: Promise<Transporter> | undefined;
  /** A relay that is down costs bounded time: 30 s per try, 2 retries, then the breaker opens for a minute. */
  private readonly outbound: Outbound;

  constructor(private readonly opts: { url: string; from: string; log: Logger; metrics?: Metrics }) {
    this.outbound = createOutbound({
      name: 'smtp',
      metrics: opts.metrics,
      timeoutMs: 30_000,
      retries: 2,
      breaker: { consecutiveFailures: 5, halfOpenAfterMs: 60_000 },
    });
  }

  private transporter(): Promise<Transporter> {
    this.transport ??= import('nodemailer').then(({ default: nodemailer }) =>
      nodemailer.createTransport({
        url: this.opts.url,
        // Where the URL does not say otherwise: a hanging relay must not hold a shutdown for minutes.
        connectionTimeout: 10_000,
        greetingTimeout: 10_000,
        socketTimeout: 30_000,
      }),
    );
    return this.transport;
  }

  async send(msg: MailMessage): Promise<void> {
    const info = await this.outbound.execute(async () => {
      try {
        return await (await this.transporter()).sendMail({ from: this.opts.from, to: msg.to, subject: msg.subject, text: msg.text });
      } catch (err) {
        // 5xx: the server refused this message for good (unknown mailbox, policy); another try won't help.
        const code = (err as { responseCode?: number }).responseCode;
        if (code !== undefined && code >= 500 && code < 600) throw new OutboundError('smtp', 'status', (err as Error).message, false, code);
        throw err;
      }
    });
    this.opts.log.debug({ to: msg.to, messageId: (info as { messageId?: string }).messageId }, `e-mail sent: ${msg.subject}`);
  }

  close(): void {
    void this.transport?.then((t) => t.close());
  }
}

/** The SMTP mailer when `smtpUrl` is configured, otherwise the log mailer. */
export function createMailer(config: { smtpUrl?: string; mailFrom: string }, log: Logger, metrics?: Metrics): Mailer {
  const mailLog = log.child({ component: 'mail' });
  return config.smtpUrl ? new SmtpMailer({ url: config.smtpUrl, from: config.mailFrom, log: mailLog, metrics }) : new LogMailer(mailLog);
}
