import { Type, type TSchema } from 'typebox';
import { ERRORS, type ErrorCode } from '../../core/errors.ts';

/** RFC 9457 problem details, as every error response of the API. */
export const ProblemSchema = Type.Object(
  {
    type: Type.String({ examples: ['urn:hearth:error:E_DEVICE_NOT_FOUND'] }),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    code: Type.String({ description: 'Stable error code; see docs/errors.md' }),
    instance: Type.Optional(Type.String()),
  },
  { additionalProperties: true, $id: 'Problem', description: 'application/problem+json' },
);

/** Response schemas for the given error codes, keyed by status, for the OpenAPI document. */
export function problems(...codes: ErrorCode[]): Record<number, TSchema> {
  const out: Record<number, TSchema> = {};
  for (const code of codes) {
    const { status, title } = ERRORS[code];
    const prev = out[status] as { description?: string } | undefined;
    out[status] = Type.Ref('Problem', { description: prev?.description ? `${prev.description}; ${title}` : title });
  }
  return out;
}

export const AuthHeader: { security: Array<Record<string, string[]>> } = { security: [{ bearerAuth: [] }, { apiKey: [] }] };

/** An object of arbitrary JSON values (shadow states, params). */
export const JsonObject = Type.Record(Type.String(), Type.Unknown(), { examples: [{ on: true, brightness: 80 }] });

/**
 * The largest `offset` a list accepts. Every integer a request carries has a range that the
 * stores hold exactly (SQLite and PostgreSQL 64-bit integers; JavaScript safe integers).
 */
export const MAX_OFFSET = 1_000_000_000;

export const Pagination = {
  limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
  offset: Type.Integer({ minimum: 0, maximum: MAX_OFFSET, default: 0 }),
};
