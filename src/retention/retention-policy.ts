import { Type, type Static } from 'typebox';

/**
 * Retention policies: how long each kind of data is kept. Pure: parsing, defaults and merging;
 * the RetentionService stores products' policies and prunes by them.
 */

/** `30d`, `12h`; null keeps forever. */
export const Duration = Type.Union([Type.String({ pattern: '^[1-9][0-9]{0,4}[dh]$', examples: ['30d', '12h'] }), Type.Null()], {
  description: '`<n>d` or `<n>h` (n from 1 to 99999); null keeps forever',
});

/** A product's policy as the API takes it (every key optional: absent keys follow the defaults). */
export const RetentionBody = Type.Object(
  {
    raw: Type.Optional(Duration),
    events: Type.Optional(Duration),
    rollups: Type.Optional(
      Type.Object({ '1m': Type.Optional(Duration), '1h': Type.Optional(Duration), '1d': Type.Optional(Duration) }, { additionalProperties: false }),
    ),
    properties: Type.Optional(
      Type.Record(Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_]{0,63}$' }), Type.Object({ raw: Duration }, { additionalProperties: false }), {
        description: 'Raw points of these properties are kept this long instead of `raw`',
      }),
    ),
  },
  {
    additionalProperties: false,
    examples: [{ raw: '30d', events: '90d', rollups: { '1m': '7d', '1h': '365d', '1d': null }, properties: { temperature: { raw: '7d' } } }],
  },
);
export type RetentionInput = Static<typeof RetentionBody>;

/** What GET answers: the same shape with every key filled in (the product's own values over the defaults). */
export const RetentionView = Type.Object({
  product: Type.String(),
  raw: Duration,
  events: Duration,
  rollups: Type.Object({ '1m': Duration, '1h': Duration, '1d': Duration }),
  properties: Type.Record(Type.String(), Type.Object({ raw: Duration })),
  /** Which keys the product sets itself (the others are the configured defaults). */
  custom: Type.Array(Type.String(), { description: 'The keys this product sets; the others are the configured defaults' }),
});
export type RetentionPolicy = Omit<Static<typeof RetentionView>, 'product' | 'custom'>;

/** The configured defaults (HEARTH_RETENTION_*), `forever` for none. */
export interface RetentionDefaults {
  raw: string;
  events: string;
  commands: string;
  audit: string;
  rollup1m: string;
  rollup1h: string;
  rollup1d: string;
}

/** `30d` → ms; null/`forever` → null. */
export function durationMs(d: string | null): number | null {
  if (d === null || d === 'forever') return null;
  const m = /^([1-9][0-9]{0,4})([dh])$/.exec(d);
  if (!m) throw new Error(`not a duration: ${d}`);
  return Number(m[1]) * (m[2] === 'd' ? 86_400_000 : 3_600_000);
}

const fromConfig = (d: string): string | null => (d === 'forever' ? null : d);

/** The effective policy of a product: its own values over the defaults. */
export function effectivePolicy(own: RetentionInput, defaults: RetentionDefaults): RetentionPolicy {
  return {
    raw: own.raw !== undefined ? own.raw : fromConfig(defaults.raw),
    events: own.events !== undefined ? own.events : fromConfig(defaults.events),
    rollups: {
      '1m': own.rollups?.['1m'] !== undefined ? own.rollups['1m'] : fromConfig(defaults.rollup1m),
      '1h': own.rollups?.['1h'] !== undefined ? own.rollups['1h'] : fromConfig(defaults.rollup1h),
      '1d': own.rollups?.['1d'] !== undefined ? own.rollups['1d'] : fromConfig(defaults.rollup1d),
    },
    properties: { ...(own.properties ?? {}) },
  };
}

/** The keys a product's own policy sets (`raw`, `rollups.1h`, `properties.temperature`). */
export function customKeys(own: RetentionInput): string[] {
  const keys: string[] = [];
  if (own.raw !== undefined) keys.push('raw');
  if (own.events !== undefined) keys.push('events');
  for (const t of ['1m', '1h', '1d'] as const) if (own.rollups?.[t] !== undefined) keys.push(`rollups.${t}`);
  for (const p of Object.keys(own.properties ?? {})) keys.push(`properties.${p}`);
  return keys;
}
