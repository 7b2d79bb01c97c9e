import { useSyncExternalStore } from 'react';

/** The signed-in user as the API describes it (`user` of POST /auth/login). */
export interface SessionUser {
  id: string;
  email: string;
  role: string;
  name: string | null;
  emailVerified: boolean;
}

export interface Session {
  token: string;
  refreshToken: string;
  /** Epoch ms when the access token expires. */
  expiresAt: number;
  user: SessionUser;
}

const KEY = 'hearth.session';
let current: Session | null = read();
const listeners = new Set<() => void>();

function read(): Session | null {
  try {
    const raw = localStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as Session) : null;
  } catch {
    return null;
  }
}

/** The session of this browser (kept in localStorage, shared by its tabs). */
export const session = {
  get: (): Session | null => current,
  set(next: Session | null): void {
    current = next;
    if (next) localStorage.setItem(KEY, JSON.stringify(next));
    else localStorage.removeItem(KEY);
    for (const l of listeners) l();
  },
  subscribe(listener: () => void): () => void {
    listeners.add(listener);
    return () => listeners.delete(listener);
  },
};

// Another tab signed in or out.
window.addEventListener('storage', (e) => {
  if (e.key !== KEY) return;
  current = read();
  for (const l of listeners) l();
});

/** The current session, re-rendering on sign-in, refresh and sign-out. */
export function useSession(): Session | null {
  return useSyncExternalStore(session.subscribe, session.get);
}

/** Turns an answer of POST /auth/login or /auth/refresh into a session. */
export function fromTokens(t: { token: string; refreshToken: string; expiresIn: number; user: SessionUser }): Session {
  return { token: t.token, refreshToken: t.refreshToken, expiresAt: Date.now() + t.expiresIn * 1000, user: t.user };
}
