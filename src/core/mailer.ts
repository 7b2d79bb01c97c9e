import type { Logger } from './logger.ts';

export interface MailMessage {
  to: string;
  subject: string;
  text: string;
}

/** Sends e-mail (password resets, invitations). */
export interface Mailer {
  send(msg: MailMessage): Promise<void>;
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
