import { Type } from 'typebox';

/** TypeBox schemas of the OTA API: one source for validation, types and the OpenAPI document. */

export const VersionString = Type.String({
  minLength: 5,
  maxLength: 64,
  description: 'A semantic version (semver.org), e.g. 1.2.0 or 2.0.0-rc.1',
  examples: ['1.2.0'],
});
const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);

const jobExample = {
  id: 'j_4k2m9x7p1q8r0t',
  campaign: 'ota_7m2k9x4p1q8r0t',
  device: 'd_9x2k7m4p1q8r0t',
  hub: null,
  wave: 0,
  state: 'succeeded',
  progress: 100,
  error: null,
  fromVersion: '1.1.0',
  createdAt: '2026-12-06T08:00:00.000Z',
  sentAt: '2026-12-06T08:00:00.100Z',
  updatedAt: '2026-12-06T08:01:10.000Z',
  finishedAt: '2026-12-06T08:01:10.000Z',
};
export const campaignExample = {
  id: 'ota_7m2k9x4p1q8r0t',
  name: 'Light 1.2.0',
  product: 'light',
  firmware: 'fw_7m2k9x4p1q8r0t',
  version: '1.2.0',
  state: 'running',
  wave: 1,
  waves: [{ percent: 1, soakMinutes: 30 }, { percent: 10, soakMinutes: 60 }, { percent: 100 }],
  target: { versions: { below: '1.2.0' } },
  abort: { maxFailureRate: 0.2, maxOfflineAfterUpdate: 0.05, minDevices: 5 },
  window: { startHour: 2, endHour: 5 },
  timeoutMinutes: 60,
  allowDowngrade: false,
  soakUntil: null,
  reason: null,
  counts: { pending: 900, inProgress: 40, succeeded: 58, failed: 2, cancelled: 0 },
  createdBy: 'user:u_4k2m9x7p1q8r0t',
  createdAt: '2026-12-06T08:00:00.000Z',
  updatedAt: '2026-12-06T08:40:00.000Z',
  finishedAt: null,
};

export const FirmwareSchema = Type.Object(
  {
    id: Type.String(),
    product: Type.String(),
    version: Type.String(),
    size: Type.Integer({ description: 'Bytes' }),
    sha256: Type.String({ description: 'SHA-256 of the image, hex' }),
    signature: Type.String({
      description: "Base64 Ed25519 signature by the product's key (GET /products/{key}/firmware-key) over the 32 bytes of the SHA-256 digest",
    }),
    makerSignature: Nullable(Type.String({ description: "The maker's own detached signature as uploaded (base64), passed on to devices" })),
    notes: Nullable(Type.String()),
    minVersion: Nullable(Type.String({ description: 'Devices below this version cannot take the package' })),
    createdBy: Type.String(),
    createdAt: Type.String({ format: 'date-time' }),
  },
  {
    examples: [
      {
        id: 'fw_7m2k9x4p1q8r0t',
        product: 'light',
        version: '1.2.0',
        size: 1048576,
        sha256: '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08',
        signature: 'pX2…==',
        makerSignature: null,
        notes: 'Faster pairing',
        minVersion: '1.0.0',
        createdBy: 'user:u_4k2m9x7p1q8r0t',
        createdAt: '2026-12-06T08:00:00.000Z',
      },
    ],
  },
);

export const UploadQuery = Type.Object({
  version: Type.String({ minLength: 1, maxLength: 64, description: 'The semantic version of the image' }),
  notes: Type.Optional(Type.String({ maxLength: 4000, description: 'Release notes' })),
  minVersion: Type.Optional(Type.String({ maxLength: 64, description: 'Devices below this version cannot take this package' })),
  signature: Type.Optional(Type.String({ maxLength: 1024, description: "The maker's detached signature (base64), kept and sent to devices with Hearth's" })),
  sha256: Type.Optional(
    Type.String({
      pattern: '^[0-9a-fA-F]{64}$',
      description: 'Expected SHA-256 (hex): the upload is refused when the image differs (changed or cut short on the way)',
    }),
  ),
});

export const Wave = Type.Object(
  {
    percent: Type.Number({ exclusiveMinimum: 0, maximum: 100, description: 'Cumulative share of the target devices updated once this wave is done' }),
    soakMinutes: Type.Optional(
      Type.Number({
        minimum: 0,
        maximum: 43200,
        description: 'Watch the wave this long after its last job ended (its gates still apply) before the next wave starts',
      }),
    ),
  },
  { additionalProperties: false },
);

export const AbortGates = Type.Object(
  {
    maxFailureRate: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'Abort when failed / ended jobs of the wave exceed this' })),
    maxOfflineAfterUpdate: Type.Optional(
      Type.Number({ minimum: 0, maximum: 1, description: 'Abort when this share of the wave’s updated devices is offline' }),
    ),
    minDevices: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 1000000, description: 'Gates are evaluated once this many jobs of the wave ended (default 1)' }),
    ),
  },
  { additionalProperties: false },
);

export const UpdateWindow = Type.Object(
  {
    startHour: Type.Integer({
      minimum: 0,
      maximum: 23,
      description: "First local hour (in each device's home time zone; UTC without a home) a job may be sent",
    }),
    endHour: Type.Integer({ minimum: 0, maximum: 23, description: 'First local hour that is outside again; below startHour wraps midnight (22 → 4)' }),
  },
  { additionalProperties: false },
);

export const CampaignTarget = Type.Object(
  {
    versions: Type.Optional(
      Type.Object(
        {
          min: Type.Optional(Type.String({ maxLength: 64, description: 'Current version at least this' })),
          below: Type.Optional(Type.String({ maxLength: 64, description: 'Current version below this' })),
        },
        { additionalProperties: false },
      ),
    ),
    homes: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 10000, description: 'Devices in these homes' })),
    devices: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 100000, description: 'These devices only' })),
    tags: Type.Optional(
      Type.Record(Type.String({ minLength: 1, maxLength: 64 }), Type.String({ maxLength: 256 }), {
        maxProperties: 20,
        description: 'Devices carrying every one of these operator tags (docs/fleet.md), e.g. {"site": "berlin"}',
      }),
    ),
  },
  { additionalProperties: false, description: 'Which devices of the product: all of them when empty; every condition given must hold' },
);

export const CreateCampaignBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200 }),
    product: Type.String({ minLength: 1, maxLength: 64 }),
    firmware: Type.String({ minLength: 1, maxLength: 64, description: 'The package id' }),
    target: Type.Optional(CampaignTarget),
    waves: Type.Optional(Type.Array(Wave, { minItems: 1, maxItems: 20, description: 'Default: one wave of 100 %' })),
    abort: Type.Optional(AbortGates),
    window: Type.Optional(UpdateWindow),
    timeoutMinutes: Type.Optional(
      Type.Number({
        minimum: 0.01,
        maximum: 43200,
        description: 'A job not finished this long after it was sent (or after its wave started, for a device that stayed offline) fails; default 60',
      }),
    ),
    allowDowngrade: Type.Optional(Type.Boolean({ description: "Allow a package older than a device's version (a rollback)" })),
    startAt: Type.Optional(Type.String({ format: 'date-time', description: 'Start later (state scheduled until then)' })),
  },
  {
    additionalProperties: false,
    examples: [
      {
        name: 'Light 1.2.0',
        product: 'light',
        firmware: 'fw_7m2k9x4p1q8r0t',
        waves: [{ percent: 1, soakMinutes: 30 }, { percent: 10, soakMinutes: 60 }, { percent: 100 }],
        abort: { maxFailureRate: 0.2, maxOfflineAfterUpdate: 0.05, minDevices: 5 },
        window: { startHour: 2, endHour: 5 },
      },
    ],
  },
);

const Counts = Type.Object({
  pending: Type.Integer({ description: 'Jobs not sent yet (later waves, offline devices)' }),
  inProgress: Type.Integer({ description: 'Sent, not finished' }),
  succeeded: Type.Integer(),
  failed: Type.Integer(),
  cancelled: Type.Integer({ description: 'Not sent because the campaign was cancelled or aborted' }),
});

export const CampaignSchema = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    product: Type.String(),
    firmware: Type.String(),
    version: Type.String(),
    state: Type.String({ description: 'scheduled, running, paused, aborted, completed or cancelled' }),
    wave: Type.Integer({ description: 'The wave under way (0-based)' }),
    waves: Type.Array(Wave),
    target: CampaignTarget,
    abort: Type.Union([AbortGates, Type.Null()]),
    window: Type.Union([UpdateWindow, Type.Null()]),
    timeoutMinutes: Type.Number(),
    allowDowngrade: Type.Boolean(),
    soakUntil: Nullable(Type.String({ format: 'date-time' })),
    reason: Nullable(Type.String({ description: 'Why it was aborted or cancelled' })),
    counts: Counts,
    skipped: Type.Optional(
      Type.Record(Type.String(), Type.Integer(), {
        description: 'At creation: devices of the target left out, by reason (alreadyOnVersion, newerVersion, belowMinVersion, unknownVersion)',
      }),
    ),
    createdBy: Type.String(),
    createdAt: Type.String({ format: 'date-time' }),
    updatedAt: Type.String({ format: 'date-time' }),
    finishedAt: Nullable(Type.String({ format: 'date-time' })),
  },
  { examples: [campaignExample] },
);

export const JobSchema = Type.Object(
  {
    id: Type.String(),
    campaign: Type.String(),
    device: Type.String(),
    hub: Nullable(Type.String({ description: "The hub a sub-device's job goes through" })),
    wave: Type.Integer(),
    state: Type.String({ description: 'queued, sent, downloading, verifying, installing, rebooting, succeeded, failed or cancelled' }),
    progress: Type.Union([Type.Integer(), Type.Null()]),
    error: Nullable(Type.String()),
    fromVersion: Nullable(Type.String()),
    createdAt: Type.String({ format: 'date-time' }),
    sentAt: Nullable(Type.String({ format: 'date-time' })),
    updatedAt: Type.String({ format: 'date-time' }),
    finishedAt: Nullable(Type.String({ format: 'date-time' })),
  },
  { examples: [jobExample] },
);

export const CampaignListSchema = Type.Object(
  { items: Type.Array(CampaignSchema), total: Type.Integer() },
  { examples: [{ items: [campaignExample], total: 1 }] },
);
export const JobListSchema = Type.Object({ items: Type.Array(JobSchema), total: Type.Integer() }, { examples: [{ items: [jobExample], total: 1 }] });
export const FirmwareKeySchema = Type.Object(
  { product: Type.String(), algorithm: Type.Literal('Ed25519'), publicKey: Type.String(), publicKeyRaw: Type.String() },
  {
    examples: [
      {
        product: 'light',
        algorithm: 'Ed25519',
        publicKey: '-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA…\n-----END PUBLIC KEY-----\n',
        publicKeyRaw: 'q1bX…=',
      },
    ],
  },
);
export const VersionsSchema = Type.Object(
  {
    product: Type.String(),
    total: Type.Integer(),
    versions: Type.Array(Type.Object({ version: Type.String({ description: '`unknown`: never reported one' }), devices: Type.Integer() })),
  },
  {
    examples: [
      {
        product: 'light',
        total: 1000,
        versions: [
          { version: '1.2.0', devices: 60 },
          { version: '1.1.0', devices: 930 },
          { version: 'unknown', devices: 10 },
        ],
      },
    ],
  },
);
export const DeviceFirmwareSchema = Type.Object(
  {
    version: Type.Union([Type.String(), Type.Null()]),
    reportedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    lastJob: Type.Union([JobSchema, Type.Null()]),
  },
  { examples: [{ version: '1.2.0', reportedAt: '2026-12-06T08:01:10.000Z', lastJob: jobExample }] },
);
export const ImageSchema = Type.String({
  description:
    'The image bytes (application/octet-stream); 206 with Content-Range for a range, 304 for a matching If-None-Match, 416 for a range outside the image',
  examples: ['<binary>'],
});
