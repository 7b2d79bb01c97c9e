import assert from 'node:assert/strict';
import { eventually, type ApiResponse, type Platform } from './platform.ts';
import { openMailboxes, mailText } from './smtp.ts';

/** A signed-in person and their API under /api/v1 (paths without the prefix). */
export interface TestUser {
  id: string;
  email: string;
  token: string;
  api: (method: string, path: string, body?: unknown) => Promise<ApiResponse<any>>;
}

/**
 * Signs up `email` (password derived from it) over the API, signs in and confirms the address
 * through the real flow: the token comes from the verification e-mail (see `takeVerificationToken`).
 */
export async function signupUser(p: Platform, email: string): Promise<TestUser> {
  const password = `password-of-${email}`;
  const s = await p.api('POST', '/api/v1/auth/signup', { email, password }, null);
  assert.equal(s.status, 201, JSON.stringify(s.body));
  const l = await p.api('POST', '/api/v1/auth/login', { email, password }, null);
  assert.equal(l.status, 200, JSON.stringify(l.body));
  const token = l.body.token as string;
  const v = await p.api('POST', '/api/v1/auth/verify-email', { token: await takeVerificationToken(p, email) }, token);
  assert.equal(v.status, 200, JSON.stringify(v.body));
  assert.equal(v.body.emailVerified, true);
  return { id: s.body.id, email, token, api: (method, path, body) => p.api(method, `/api/v1${path}`, body, token) };
}

const VERIFY_SUBJECT = /confirm your e-mail address/i;

/**
 * Waits for the newest verification e-mail to `email` and takes it out of the mailbox it came to
 * (the log mailer's lines in `p.logs`, or a test SMTP server of helpers/smtp.ts), as a person
 * deletes a mail they have dealt with: suites that look for "the mail to x" find their own.
 * Returns the token of its link.
 */
export async function takeVerificationToken(p: Platform, email: string): Promise<string> {
  const text = await eventually(
    () => {
      for (let i = p.logs.length - 1; i >= 0; i--) {
        const mail = p.logs[i].mail as { to: string; subject: string; text: string } | undefined;
        if (mail?.to === email && VERIFY_SUBJECT.test(mail.subject)) {
          p.logs.splice(i, 1);
          return mail.text;
        }
      }
      for (const box of openMailboxes) {
        for (let i = box.length - 1; i >= 0; i--) {
          const text = mailText(box[i].raw);
          if (box[i].to.includes(email) && /^Subject: Confirm your e-mail address/im.test(text)) {
            box.splice(i, 1);
            return text;
          }
        }
      }
      return undefined;
    },
    5000,
    `the verification e-mail to ${email}`,
  );
  const m = /\/verify-email\?token=([A-Za-z0-9_-]+)/.exec(text);
  assert.ok(m, `no verification link in: ${text}`);
  return m[1];
}

/**
 * `owner` invites `who` into `homeId` with `role` (and a guest's terms in `extra`), and `who`
 * accepts through the real flow: the token comes from the invitation e-mail in the platform's log.
 */
export async function joinHome(
  p: Platform,
  owner: TestUser,
  homeId: string,
  who: TestUser,
  role: 'admin' | 'member' | 'guest',
  extra: Record<string, unknown> = {},
): Promise<void> {
  const inv = await owner.api('POST', `/homes/${homeId}/invitations`, { email: who.email, role, ...extra });
  assert.equal(inv.status, 201, JSON.stringify(inv.body));
  const mail = [...p.logs].reverse().find((l) => l.mail?.to === who.email && /invitations\/accept\?token=/.test(l.mail.text ?? ''))?.mail;
  const token = /token=([A-Za-z0-9_-]+)/.exec(mail?.text ?? '')?.[1];
  assert.ok(token, `the invitation e-mail to ${who.email}`);
  const accepted = await who.api('POST', '/invitations/accept', { token });
  assert.equal(accepted.status, 200, JSON.stringify(accepted.body));
}
