import { Type, type Static } from 'typebox';

const ValueType = Type.Union(['boolean', 'integer', 'number', 'string', 'enum', 'object'].map((t) => Type.Literal(t)));

const valueFields = {
  id: Type.String({ description: 'Identifier: a letter, then letters, digits or _', examples: ['brightness'] }),
  type: ValueType,
  unit: Type.Optional(Type.String({ examples: ['%'] })),
  min: Type.Optional(Type.Number()),
  max: Type.Optional(Type.Number({ description: 'Maximum value, or maximum length for strings' })),
  step: Type.Optional(Type.Number()),
  values: Type.Optional(Type.Array(Type.String(), { description: 'Allowed values of an enum' })),
  description: Type.Optional(Type.String()),
};

export const ValueSpecSchema = Type.Object({ ...valueFields, required: Type.Optional(Type.Boolean()) });

export const PropertySpecSchema = Type.Object({
  ...valueFields,
  access: Type.Union([Type.Literal('r'), Type.Literal('rw')], { description: '"r": reported by the device only; "rw": also settable through desired state' }),
  history: Type.Optional(Type.Boolean({ description: 'Keep a time series of this property' })),
});

export const ThingModelSchema = Type.Object({
  properties: Type.Array(PropertySpecSchema, { default: [] }),
  events: Type.Array(Type.Object({ id: Type.String(), params: Type.Optional(Type.Array(ValueSpecSchema)), description: Type.Optional(Type.String()) }), {
    default: [],
  }),
  actions: Type.Array(
    Type.Object({
      id: Type.String(),
      params: Type.Optional(Type.Array(ValueSpecSchema)),
      result: Type.Optional(Type.Array(ValueSpecSchema)),
      description: Type.Optional(Type.String()),
    }),
    { default: [] },
  ),
  commandTtlMs: Type.Optional(
    Type.Integer({
      minimum: 1000,
      maximum: 2592000000,
      description: 'TTL of a command sent with "queue": true to a device of this product (default HEARTH_COMMAND_QUEUE_DEFAULT_TTL_MS)',
    }),
  ),
});

const modelExample = {
  properties: [
    { id: 'on', type: 'boolean', access: 'rw', history: true },
    { id: 'brightness', type: 'integer', unit: '%', min: 0, max: 100, access: 'rw', history: true },
  ],
  events: [{ id: 'overheat', params: [{ id: 'temperature', type: 'number', unit: '°C' }] }],
  actions: [{ id: 'blink', params: [{ id: 'times', type: 'integer', min: 1, max: 10 }] }],
};

export const ProductKey = Type.String({
  pattern: '^[a-z0-9][a-z0-9._-]{1,63}$',
  description: 'Product key: lowercase letters, digits, ".", "_" or "-"',
  examples: ['acme-lamp'],
});

export const CreateProductBody = Type.Object(
  {
    key: ProductKey,
    name: Type.String({ minLength: 1, maxLength: 200 }),
    category: Type.String({ minLength: 1, maxLength: 64, examples: ['light'] }),
    model: ThingModelSchema,
  },
  { examples: [{ key: 'acme-lamp', name: 'ACME desk lamp', category: 'light', model: modelExample }] },
);

export type CreateProductBody = Static<typeof CreateProductBody>;

export const UpdateProductBody = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    category: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    model: Type.Optional(ThingModelSchema),
  },
  { additionalProperties: false, minProperties: 1, examples: [{ name: 'ACME desk lamp v2', model: modelExample }] },
);

export const ProductSchema = Type.Object(
  {
    key: Type.String(),
    name: Type.String(),
    category: Type.String(),
    model: ThingModelSchema,
    builtin: Type.Boolean({ description: 'Installed from the built-in catalog' }),
    createdAt: Type.String({ format: 'date-time' }),
    updatedAt: Type.String({ format: 'date-time' }),
  },
  {
    examples: [
      {
        key: 'acme-lamp',
        name: 'ACME desk lamp',
        category: 'light',
        model: modelExample,
        builtin: false,
        createdAt: '2026-11-23T08:00:00.000Z',
        updatedAt: '2026-11-23T08:00:00.000Z',
      },
    ],
  },
);

export type Product = Static<typeof ProductSchema>;
