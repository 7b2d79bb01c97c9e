import i18next from 'i18next';

/** A date and time in the reader's language and time zone (the browser's). */
export function formatDateTime(value: string | number | Date | null | undefined): string {
  if (value === null || value === undefined) return '—';
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return '—';
  return new Intl.DateTimeFormat(i18next.language, { dateStyle: 'medium', timeStyle: 'medium' }).format(d);
}

/** "3 minutes ago" in the reader's language. */
export function formatRelative(value: string | number | Date | null | undefined, now = Date.now()): string {
  if (value === null || value === undefined) return '—';
  const t = new Date(value).getTime();
  const s = Math.round((t - now) / 1000);
  const rtf = new Intl.RelativeTimeFormat(i18next.language, { numeric: 'auto' });
  const abs = Math.abs(s);
  if (abs < 60) return rtf.format(s, 'second');
  if (abs < 3600) return rtf.format(Math.round(s / 60), 'minute');
  if (abs < 86400) return rtf.format(Math.round(s / 3600), 'hour');
  return rtf.format(Math.round(s / 86400), 'day');
}

/** A number in the reader's language. */
export function formatNumber(n: number | null | undefined, digits = 2): string {
  if (n === null || n === undefined || Number.isNaN(n)) return '—';
  return new Intl.NumberFormat(i18next.language, { maximumFractionDigits: digits }).format(n);
}

/** A reported value as text: numbers localised, objects as compact JSON. */
export function formatValue(v: unknown, unit?: string): string {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'number') return formatNumber(v) + (unit ? ` ${unit}` : '');
  if (typeof v === 'boolean' || typeof v === 'string') return String(v) + (unit && typeof v !== 'boolean' ? ` ${unit}` : '');
  return JSON.stringify(v);
}
