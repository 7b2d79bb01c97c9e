import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { migrate, openStore } from '../core/store/db.ts';
import { SettingsStore } from '../core/settings-store.ts';
import { AuthService } from './auth-service.ts';

// verify() remembers a token's checked signature; what may change (expiry, revocation) is checked every time.
test('a token verified before still expires and is still revoked at once; a forged one is never let in', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'hearth-token-cache-'));
  const store = openStore({ dataDir });
  try {
    await migrate(store.db);
    const auth = new AuthService({ db: store.db, settings: new SettingsStore(store.db), ttlSeconds: 900 });
    await auth.start();
    const user = { userId: 'u_1', email: 'u@test.local', role: 'user' as const, sessionId: 'f_1' };
    const token = auth.sign(user);
    for (let i = 0; i < 3; i++) assert.equal(auth.verify(token).userId, 'u_1');
    // The signature is checked on the payload as sent: a changed payload or signature fails, also after the good one was remembered.
    const [prefix, body, sig] = token.split('.');
    const other = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(body, 'base64url').toString()), sub: 'u_2' })).toString('base64url');
    assert.throws(() => auth.verify(`${prefix}.${other}.${sig}`), /invalid access token/);
    assert.throws(() => auth.verify(`${prefix}.${body}.${sig.slice(0, -2)}AA`), /invalid access token/);
    // Revocation: at once, though the token was remembered.
    auth.learnRevoked('f_1', Date.now() + 60_000);
    assert.throws(() => auth.verify(token), /session has ended/);
    // Expiry: a token of one second, verified, then used after its end.
    const short = auth.sign({ ...user, sessionId: 'f_2' }, 1);
    assert.equal(auth.verify(short).userId, 'u_1');
    await new Promise((r) => setTimeout(r, 2100));
    assert.throws(() => auth.verify(short), /expired/);
  } finally {
    await store.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
