import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The operator's generated first password, kept for the local operator until the first sign-in,
 * so that a banner scrolled away, a lost terminal or a failed first start never costs it. Only
 * the owner of the data directory may read it (mode 0600), like the database next to it.
 * `hearth admin show-initial-password` prints it; starts and that command remove it once the
 * operator has signed in or the password was changed.
 */
export const INITIAL_PASSWORD_FILE = 'initial-operator-password';

export function initialPasswordPath(dataDir: string): string {
  return join(dataDir, INITIAL_PASSWORD_FILE);
}

export function writeInitialPassword(dataDir: string, password: string): void {
  mkdirSync(dataDir, { recursive: true });
  const path = initialPasswordPath(dataDir);
  writeFileSync(path, password + '\n', { mode: 0o600 });
  chmodSync(path, 0o600); // an existing file keeps its mode on write
}

export function readInitialPassword(dataDir: string): string | undefined {
  try {
    return readFileSync(initialPasswordPath(dataDir), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

export function removeInitialPassword(dataDir: string): void {
  rmSync(initialPasswordPath(dataDir), { force: true });
}
