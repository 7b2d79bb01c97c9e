import type { ErrorCode } from '../core/errors.ts';
import type { DeviceRecord } from '../devices/device-service.ts';
import type { ProductService } from '../products/product-service.ts';

/** The kinds a device HTTP post or a partner may send: what a device reports. */
export type ReportKind = 'properties' | 'events';

/** Why a message was refused where it entered. */
export interface SourceProblem {
  code: Extract<ErrorCode, 'E_VALIDATION' | 'E_MODEL_MISMATCH' | 'E_PRODUCT_NOT_FOUND'>;
  problems: string[];
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const MAX_EPOCH_MS = 8.64e15;

/**
 * The checks the ingest makes (shape, `ts`, the thing model), made where a message enters over
 * a channel that cannot hear the device's error topic (device HTTP, partners), so the sender is
 * told at once. The ingest still checks again: this is an early answer, not the authority.
 */
export async function checkReport(products: ProductService, device: DeviceRecord, kind: ReportKind, payload: unknown): Promise<SourceProblem | undefined> {
  const model = await products.model(device.productKey);
  if (!model) return { code: 'E_PRODUCT_NOT_FOUND', problems: [`product "${device.productKey}" does not exist`] };
  if (!isObject(payload))
    return {
      code: 'E_VALIDATION',
      problems: [kind === 'properties' ? 'a property report must be a JSON object' : 'an event is {"event": "<id>", "params": {...}}'],
    };
  const { ts } = payload;
  if (ts !== undefined && (typeof ts !== 'number' || !(ts > 0 && ts <= MAX_EPOCH_MS)))
    return { code: 'E_VALIDATION', problems: ['"ts" must be a positive epoch time in milliseconds'] };
  if (kind === 'properties') {
    const { ts: _ts, ...values } = payload;
    const check = model.checkReport(values);
    return check.ok ? undefined : { code: 'E_MODEL_MISMATCH', problems: check.problems };
  }
  if (typeof payload.event !== 'string') return { code: 'E_VALIDATION', problems: ['an event is {"event": "<id>", "params": {...}}'] };
  const params = payload.params ?? {};
  if (!isObject(params)) return { code: 'E_VALIDATION', problems: ['"params" must be an object'] };
  const check = model.checkEvent(payload.event, params);
  return check.ok ? undefined : { code: 'E_MODEL_MISMATCH', problems: check.problems };
}
