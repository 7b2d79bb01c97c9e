import { useSyncExternalStore } from 'react';

export type ThemeMode = 'light' | 'dark';
const KEY = 'hearth.theme';
const listeners = new Set<() => void>();

function read(): ThemeMode {
  const saved = localStorage.getItem(KEY);
  if (saved === 'light' || saved === 'dark') return saved;
  return window.matchMedia?.('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}

let mode = read();

/** Light or dark, remembered in this browser; the system's preference until chosen. */
export const theme = {
  get: () => mode,
  set(next: ThemeMode) {
    mode = next;
    localStorage.setItem(KEY, next);
    for (const l of listeners) l();
  },
  subscribe(l: () => void) {
    listeners.add(l);
    return () => listeners.delete(l);
  },
};

export function useThemeMode(): ThemeMode {
  return useSyncExternalStore(theme.subscribe, theme.get);
}
