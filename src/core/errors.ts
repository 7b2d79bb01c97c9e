/**
 * The one catalogue of coded errors. Every error a client can see comes from here,
 * is documented in docs/errors.md (kept in sync by test/errors-doc.test.ts) and is
 * rendered as `application/problem+json` by the HTTP transport.
 */
export const ERRORS = {
  E_VALIDATION: { status: 400, title: 'Request validation failed' },
  E_INVALID_MODEL: { status: 400, title: 'The thing model is invalid' },
  E_MODEL_MISMATCH: { status: 400, title: 'The values do not match the thing model' },
  E_AUTOMATION_INVALID: { status: 400, title: 'The automation is invalid' },
  E_RESET_TOKEN_INVALID: { status: 400, title: 'The password reset token is invalid, used or expired' },
  E_VERIFICATION_TOKEN_INVALID: { status: 400, title: 'The e-mail verification token is invalid, used or expired' },
  E_UNAUTHENTICATED: { status: 401, title: 'Authentication required' },
  E_BAD_CREDENTIALS: { status: 401, title: 'Wrong e-mail or password' },
  E_BAD_SIGNATURE: { status: 401, title: 'The request signature is missing or wrong' },
  E_FORBIDDEN: { status: 403, title: 'Not allowed' },
  E_EMAIL_NOT_VERIFIED: { status: 403, title: 'Verify your e-mail address first' },
  E_NOT_FOUND: { status: 404, title: 'Not found' },
  E_PRODUCT_NOT_FOUND: { status: 404, title: 'Product not found' },
  E_DEVICE_NOT_FOUND: { status: 404, title: 'Device not found' },
  E_HOME_NOT_FOUND: { status: 404, title: 'Home not found' },
  E_ROOM_NOT_FOUND: { status: 404, title: 'Room not found' },
  E_GROUP_NOT_FOUND: { status: 404, title: 'Device group not found' },
  E_KEY_NOT_FOUND: { status: 404, title: 'API key not found' },
  E_USER_NOT_FOUND: { status: 404, title: 'User not found' },
  E_INVITATION_NOT_FOUND: { status: 404, title: 'Invitation not found or expired' },
  E_PARTNER_NOT_FOUND: { status: 404, title: 'Partner not found' },
  E_NOTIFICATION_NOT_FOUND: { status: 404, title: 'Notification not found' },
  E_NOTIFICATION_CHANNEL_NOT_FOUND: { status: 404, title: 'Notification channel not found' },
  E_PUSH_SUBSCRIPTION_NOT_FOUND: { status: 404, title: 'Push subscription not found' },
  E_PUSH_TOKEN_NOT_FOUND: { status: 404, title: 'Push token not found' },
  E_PAIRING_CODE_INVALID: { status: 404, title: 'No device has this pairing code' },
  E_DEAD_LETTER_NOT_FOUND: { status: 404, title: 'Dead letter not found' },
  E_SCENE_NOT_FOUND: { status: 404, title: 'Scene not found' },
  E_AUTOMATION_NOT_FOUND: { status: 404, title: 'Automation not found' },
  E_FLEET_GROUP_NOT_FOUND: { status: 404, title: 'Fleet group not found' },
  E_JOB_NOT_FOUND: { status: 404, title: 'Bulk job not found' },
  E_RUN_NOT_FOUND: { status: 404, title: 'Automation run not found' },
  E_WEBHOOK_NOT_FOUND: { status: 404, title: 'Webhook not found' },
  E_FIRMWARE_NOT_FOUND: { status: 404, title: 'Firmware package not found' },
  E_CAMPAIGN_NOT_FOUND: { status: 404, title: 'Update campaign not found' },
  E_PRODUCT_EXISTS: { status: 409, title: 'A product with this key already exists' },
  E_DEVICE_OFFLINE: { status: 409, title: 'The device is offline' },
  E_EMAIL_TAKEN: { status: 409, title: 'An account with this e-mail already exists' },
  E_DEVICE_ALREADY_CLAIMED: { status: 409, title: 'The device belongs to a home already' },
  E_CONFLICT: { status: 409, title: 'The request conflicts with the current state' },
  E_REPLAYED: { status: 409, title: 'The signed request was seen before (a replay)' },
  E_DEVICE_DISABLED: { status: 409, title: 'The device is disabled' },
  E_PAYLOAD_TOO_LARGE: { status: 413, title: 'Payload too large' },
  E_RATE_LIMITED: { status: 429, title: 'Too many requests' },
  E_TOO_MANY_STREAMS: { status: 429, title: 'Too many live streams' },
  E_INTERNAL: { status: 500, title: 'Internal error' },
  E_NOT_READY: { status: 503, title: 'Not ready' },
  E_UNAVAILABLE: { status: 503, title: 'Temporarily unavailable' },
  E_COMMAND_TIMEOUT: { status: 504, title: 'The device did not answer in time' },
  E_COMMAND_NOT_FOUND: { status: 404, title: 'Command not found' },
  E_COMMAND_QUEUE_FULL: { status: 429, title: "The device's command queue is full" },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof ERRORS;

/**
 * The codes a device can receive on its `devices/{id}/errors` topic (and a hub on its
 * sub-devices'), with a short title. Some share a name and meaning with a REST code above.
 * Documented in the device tables of docs/errors.md and docs/protocol.md; test/errors-doc.test.ts
 * keeps the three in sync and fails on a code literal in src/ that no catalogue holds.
 */
export const DEVICE_ERRORS = {
  E_BAD_JSON: 'The payload is not valid JSON',
  E_PAYLOAD_TOO_LARGE: 'The payload is larger than the limit',
  E_BAD_MESSAGE: 'The message does not have the shape its topic needs',
  E_RETAIN_NOT_SUPPORTED: 'Retained messages are not supported',
  E_FORBIDDEN: 'This device may not join sub-devices',
  E_UNKNOWN_COMMAND: 'The command result names an unknown command id',
  E_MODEL_MISMATCH: 'The values do not match the thing model',
  E_PRODUCT_NOT_FOUND: 'Product not found',
  E_DEVICE_NOT_FOUND: 'Device not found',
  E_FILTERED: "The message gateway's filters refused the message",
  E_RATE_LIMITED: 'Too many messages',
  E_INTERNAL: 'The message could not be processed',
  E_UNKNOWN_OTA_JOB: 'The OTA progress names a job this device does not have',
  E_DEVICE_DISABLED: 'The device (or its hub) is disabled',
} as const satisfies Record<string, string>;

export type DeviceErrorCode = keyof typeof DEVICE_ERRORS;

/**
 * Codes that travel only between Hearth's own nodes and never reach a client (so they are not in
 * docs/errors.md): the shard-owner RPC answers `E_NOT_OWNER` when the shard moved, and the caller
 * asks again.
 */
export const INTERNAL_CODES = {
  E_NOT_OWNER: 'The node asked no longer owns the shard',
} as const satisfies Record<string, string>;

/** One error of the catalogue, with a human detail and optional structured extras. */
export class HearthError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly extras: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, detail?: string, extras?: Record<string, unknown>) {
    super(detail ?? ERRORS[code].title);
    this.name = 'HearthError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.extras = extras;
  }
}

export function isHearthError(err: unknown): err is HearthError {
  return err instanceof HearthError;
}
