import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';

export interface Mail {
  to: string[];
  raw: string;
}

/** The mailboxes of the SMTP servers running in this process (helpers/people.ts reads verification mails from them). */
export const openMailboxes = new Set<Mail[]>();

/** A mail's raw text with quoted-printable soft breaks and =XX escapes undone, so it can be searched. */
export function mailText(raw: string): string {
  return raw.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** A local SMTP server (no TLS, no auth) on a free loopback port that keeps what it receives. */
export async function startSmtp(): Promise<{ port: number; url: string; mails: Mail[]; close: () => Promise<void> }> {
  const mails: Mail[] = [];
  const smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        mails.push({ to: session.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks).toString('utf8') });
        callback();
      });
    },
  });
  const port = await new Promise<number>((resolve) => smtp.listen(0, '127.0.0.1', () => resolve((smtp.server.address() as AddressInfo).port)));
  openMailboxes.add(mails);
  return {
    port,
    url: `smtp://127.0.0.1:${port}`,
    mails,
    close: () => {
      openMailboxes.delete(mails);
      return new Promise<void>((r) => smtp.close(() => r()));
    },
  };
}
