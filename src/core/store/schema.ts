import type { Generated } from 'kysely';

/**
 * Table types of the store. Each capability owns its tables (named in the comment) and is the
 * only one that queries them; others call its service. Timestamps are epoch milliseconds;
 * JSON columns are text so that one set of migrations runs on SQLite and PostgreSQL alike.
 */
export interface Database {
  /** core: key/value settings (token signing key, demo state) */
  settings: { key: string; value: string };
  /** auth */
  users: { id: string; email: string; password_hash: string; role: string; name: string | null; created_at: number; email_verified_at: number | null };
  /** products */
  products: { key: string; name: string; category: string; model: string; builtin: number; created_at: number; updated_at: number };
  /** devices */
  devices: {
    id: string;
    product_key: string;
    name: string;
    parent_id: string | null;
    hwid: string | null;
    secret_hash: string | null;
    pairing_code: string | null;
    created_at: number;
    /** fleet lifecycle (0014): a disabled device is refused; a deleted one stays as a tombstone so its id is never reused */
    disabled_at: number | null;
    deleted_at: number | null;
    /** the firmware version it last reported, and its sortable key (numeric parts zero-padded) */
    firmware: string | null;
    firmware_key: string | null;
    /** the operator's attributes (JSON object) */
    attributes: string | null;
  };
  /** devices: the operator's tags, searchable (tag.site:berlin) */
  device_tags: { device_id: string; key: string; value: string };
  /** devices: the operator's scalar attributes, searchable (attr.floor>2); the JSON on the device row is the source */
  device_attributes: { device_id: string; key: string; value: string; num: number | null };
  /** fleet: static groups (members in fleet_group_members) and dynamic groups (a saved query) */
  fleet_groups: {
    id: string;
    name: string;
    description: string | null;
    parent_id: string | null;
    query: string | null;
    created_at: number;
    updated_at: number;
  };
  fleet_group_members: { group_id: string; device_id: string; added_at: number };
  /** fleet: bulk jobs (spec and target JSON; status queued | running | done | cancelled) and their per-device results (pending | running | ok | failed | cancelled) */
  fleet_jobs: {
    id: string;
    shard: number;
    kind: string;
    spec: string;
    target: string;
    rate: number;
    status: string;
    total: number;
    created_by: string;
    created_at: number;
    started_at: number | null;
    finished_at: number | null;
  };
  fleet_job_targets: {
    job_id: string;
    seq: number;
    device_id: string;
    status: string;
    error: string | null;
    result: string | null;
    finished_at: number | null;
  };
  /** devices (presence) */
  presence: {
    device_id: string;
    online: number;
    session: number;
    reason: string;
    changed_at: number;
    last_seen: number | null;
    node: string | null;
    listening: number;
  };
  /** devices (presence changes, for connectivity analytics) */
  presence_log: { device_id: string; at: number; session: number; online: number; reason: string };
  /** history: the fleet tier of the rollups (all devices of a product together) */
  fleet_rollups: {
    product_key: string;
    property: string;
    tier: number;
    bucket: number;
    count: number;
    sum: number | null;
    min: number | null;
    max: number | null;
  };
  /** exports: fleet export jobs */
  export_jobs: {
    id: string;
    product_key: string;
    properties: string;
    from_ts: number;
    to_ts: number;
    format: string;
    status: string;
    devices_total: number;
    devices_done: number;
    rows: number;
    bytes: number;
    error: string | null;
    created_by: string;
    created_at: number;
    started_at: number | null;
    finished_at: number | null;
    expires_at: number | null;
    owner: string | null;
    lease_until: number;
  };
  /** message gateway */
  gateway_config: { version: number; doc: string; created_at: number; created_by: string };
  partners: { id: string; name: string; secret: string; products: string; amqp: string | null; created_at: number };
  dead_letters: {
    id: string;
    route_id: string;
    route_name: string;
    target_index: number;
    target: string;
    envelope: string;
    body: string;
    lane: string | null;
    reason: string;
    attempts: number;
    status: string;
    created_at: number;
    updated_at: number;
  };
  /** cluster */
  cluster_nodes: { id: string; roles: string; started_at: number; heartbeat_at: number };
  shard_leases: { shard: number; owner: string | null; expires_at: number };
  /** shadow */
  shadows: { device_id: string; reported: string; desired: string; metadata: string; version: number; updated_at: number };
  /** history */
  history: { device_id: string; property: string; ts: number; num: number | null; val: string | null; msg_id: string | null };
  /** history: a small integer per device and property (keys the rollups) */
  history_series: { id: Generated<number>; device_id: string; property: string; product_key: string };
  /** history: rollups per series, tier (0: 1m, 1: 1h, 2: 1d) and bucket; state '' numeric, else a boolean's or enum's value */
  history_rollups: {
    series: number;
    tier: number;
    bucket: number;
    state: string;
    count: number;
    sum: number | null;
    min: number | null;
    max: number | null;
    last: number | null;
    last_ts: number;
    dur: number;
  };
  /** retention: a product's policy (JSON) */
  retention_policies: { product_key: string; policy: string; updated_at: number };
  /** history (device events) */
  device_events: { id: string; device_id: string; event: string; params: string; ts: number };
  /** commands (the ledger) */
  commands: {
    id: string;
    device_id: string;
    action: string;
    params: string;
    source: string;
    status: string;
    accepted_at: number;
    sent_at: number | null;
    answered_at: number | null;
    timed_out_at: number | null;
    ok: number | null;
    result: string | null;
    error: string | null;
    latency_ms: number | null;
    /** JSON array of strings: how the answer did not fit the model without failing it; null: it fit */
    warnings: string | null;
    /** Queued commands only (docs/api.md): when an unanswered one expires; null for a command sent at once */
    expires_at: number | null;
    /** Queued commands only: the delivery order within the device */
    queue_seq: number | null;
    /** `{caller}:{Idempotency-Key}` of the POST that created it */
    idempotency_key: string | null;
    /** Queued commands only: how many times it was published to the device */
    attempts: number | null;
    cancelled_at: number | null;
  };
  /** sessions: subscriptions of MQTT sessions with clean=false */
  mqtt_subscriptions: { client_id: string; topic: string; qos: number; updated_at: number };
  /** sessions: QoS 1 messages not yet acknowledged by a clean=false session (payload base64) */
  mqtt_outgoing: { key: string; client_id: string; seq: number; topic: string; payload: string; qos: number; message_id: number | null; created_at: number };
  /** auth: refresh tokens; a family is one sign-in session, rotated on every refresh */
  refresh_tokens: {
    id: string;
    user_id: string;
    family_id: string;
    token_hash: string;
    created_at: number;
    expires_at: number;
    used_at: number | null;
    revoked_at: number | null;
  };
  /** auth: one-time password reset tokens */
  password_resets: { token_hash: string; user_id: string; created_at: number; expires_at: number; used_at: number | null };
  /** auth: one-time e-mail verification tokens, bound to the address they were sent to */
  email_verifications: { token_hash: string; user_id: string; email: string; created_at: number; expires_at: number; used_at: number | null };
  /** auth: API keys for server-to-server integrations */
  api_keys: {
    id: string;
    user_id: string;
    name: string;
    key_hash: string;
    scopes: string;
    home_ids: string | null;
    created_at: number;
    last_used_at: number | null;
    revoked_at: number | null;
  };
  /** homes */
  homes: { id: string; name: string; timezone: string; latitude: number | null; longitude: number | null; owner_id: string; created_at: number };
  /** homes */
  rooms: { id: string; home_id: string; name: string; created_at: number };
  /** homes: role is owner | admin | member | guest; a guest's devices and expiry in guest_devices / guest_until */
  home_members: {
    home_id: string;
    user_id: string;
    role: string;
    guest_devices: string | null;
    guest_until: number | null;
    created_at: number;
    rights_since: number | null;
  };
  /** homes */
  invitations: {
    id: string;
    home_id: string;
    email: string;
    role: string;
    token_hash: string;
    guest_devices: string | null;
    guest_until: number | null;
    invited_by: string;
    created_at: number;
    expires_at: number;
    accepted_at: number | null;
    revoked_at: number | null;
  };
  /** homes: which home (and room) a device belongs to, and the name its people gave it */
  device_bindings: { device_id: string; home_id: string; room_id: string | null; name: string | null; bound_at: number; bound_by: string };
  /** homes: one device shared with a user outside its home; permission is control | view */
  device_shares: { device_id: string; user_id: string; permission: string; shared_by: string; created_at: number };
  /** homes */
  device_groups: { id: string; home_id: string; name: string; device_ids: string; created_at: number };
  /** notifications: the in-app inbox, one row per recipient */
  notification_inbox: {
    id: string;
    notification_id: string;
    user_id: string;
    home_id: string;
    kind: string;
    severity: string;
    title: string;
    body: string;
    data: string | null;
    source: string | null;
    created_at: number;
    read_at: number | null;
  };
  /** notifications: a user's preferences in a home (JSON) */
  notification_preferences: { user_id: string; home_id: string; prefs: string; updated_at: number };
  /** notifications: last delivery per recipient ('' = the home's channels) and de-duplication key */
  notification_dedupe: { recipient: string; key: string; sent_at: number };
  /** notifications: a home's webhook and chat-bot channels; kinds is a JSON list or null (all) */
  notification_channels: {
    id: string;
    home_id: string;
    type: string;
    name: string;
    url: string;
    secret: string | null;
    kinds: string | null;
    min_severity: string;
    created_at: number;
    created_by: string;
  };
  /** notifications: Web Push subscriptions */
  push_subscriptions: { id: string; user_id: string; endpoint: string; p256dh: string; auth: string; created_at: number };
  /** notifications: mobile push tokens; platform is fcm | apns */
  push_tokens: { id: string; user_id: string; platform: string; token: string; created_at: number };
  /** audit */
  audit_log: {
    id: string;
    at: number;
    actor: string;
    action: string;
    home_id: string | null;
    target_type: string | null;
    target_id: string | null;
    details: string | null;
  };
  /** scenes: states and actions are JSON lists */
  scenes: { id: string; home_id: string; name: string; states: string; actions: string; created_by: string; created_at: number; updated_at: number };
  /** scenes: recent activations, results a JSON list of per-device results */
  scene_activations: { id: string; scene_id: string; seq: number; home_id: string; source: string; at: number; ok: number; results: string };
  /** timers: spec and payload are JSON; next_at is null once the timer has no more due times; version counts upserts */
  timers: {
    key: string;
    owner: string;
    shard: number;
    spec: string;
    payload: string;
    grace_ms: number;
    next_at: number | null;
    version: number;
    created_at: number;
    updated_at: number;
    last_fired_at: number | null;
  };
  /** automations */
  automations: {
    id: string;
    home_id: string;
    shard: number;
    name: string;
    description: string | null;
    enabled: number;
    mode: string;
    max_runs: number;
    cooldown_ms: number;
    triggers: string;
    conditions: string;
    actions: string;
    webhook_id: string | null;
    status: string;
    status_reason: string | null;
    created_by: string;
    created_at: number;
    updated_at: number;
  };
  /** automations: runs with their traces */
  automation_runs: {
    id: string;
    automation_id: string;
    home_id: string;
    status: string;
    reason: string | null;
    trigger_type: string;
    started_at: number;
    finished_at: number | null;
    trace: string;
  };
  /** devices: the previous secret after a rotation, accepted until `until` */
  device_secret_grace: { device_id: string; secret_hash: string; until: number };
  /** identity: product CAs, device certificates, revocations, zero-touch provisioning */
  product_cas: {
    id: string;
    product_key: string;
    fingerprint: string;
    subject: string;
    pem: string;
    not_after: number;
    jit: number;
    created_at: number;
    revoked_at: number | null;
  };
  device_certificates: {
    fingerprint: string;
    device_id: string;
    ca_id: string;
    subject: string;
    not_after: number;
    first_seen_at: number;
    /** Its serial number (upper-case hex, no leading zeros); null for those seen before migration 0018. */
    serial?: string | null;
  };
  /** identity: the CRL of a product CA (its revoked serials as a JSON array) */
  product_ca_crls: {
    ca_id: string;
    pem: string;
    serials: string;
    number: string | null;
    this_update: number;
    next_update: number | null;
    uploaded_at: number;
  };
  revoked_certificates: { fingerprint: string; reason: string | null; revoked_at: number };
  product_provisioning: { product_key: string; secret: string; device_limit: number | null; allow_list_only: number; created_at: number; updated_at: number };
  factory_records: {
    product_key: string;
    hwid: string;
    serial: string | null;
    mac: string | null;
    attributes: string;
    imported_at: number;
    device_id: string | null;
    provisioned_at: number | null;
  };
  provision_nonces: { product_key: string; nonce: string; expires_at: number };
  /** ota: firmware packages (the image itself is in a FirmwareStorage) */
  firmware: {
    id: string;
    product_key: string;
    version: string;
    size: number;
    sha256: string;
    signature: string;
    maker_signature: string | null;
    notes: string | null;
    min_version: string | null;
    created_by: string;
    created_at: number;
  };
  /** ota: firmware images as base64 chunks (the store-backed FirmwareStorage of cluster mode) */
  firmware_chunks: { firmware_id: string; seq: number; byte_offset: number; data: string };
  /** ota: one Ed25519 key pair per product (PEM) */
  ota_keys: { product_key: string; public_key: string; private_key: string; created_at: number };
  /** ota: campaigns; target, waves, abort and window are JSON */
  ota_campaigns: {
    id: string;
    name: string;
    product_key: string;
    firmware_id: string;
    target: string;
    waves: string;
    abort: string | null;
    window: string | null;
    timeout_ms: number;
    allow_downgrade: number;
    state: string;
    wave: number;
    soak_until: number | null;
    reason: string | null;
    created_by: string;
    created_at: number;
    updated_at: number;
    finished_at: number | null;
  };
  /** ota: one job per device of a campaign */
  ota_jobs: {
    id: string;
    campaign_id: string;
    device_id: string;
    hub_id: string | null;
    wave: number;
    state: string;
    progress: number | null;
    error: string | null;
    from_version: string | null;
    created_at: number;
    sent_at: number | null;
    updated_at: number;
    finished_at: number | null;
  };
  /** ota: the firmware version each device last reported */
  ota_device_versions: { device_id: string; product_key: string; version: string; reported_at: number; last_job_id: string | null };
}
