/**
 * Table types of the store. Each capability owns its tables (named in the comment) and is the
 * only one that queries them; others call its service. Timestamps are epoch milliseconds;
 * JSON columns are text so that one set of migrations runs on SQLite and PostgreSQL alike.
 */
export interface Database {
  /** core: key/value settings (token signing key, demo state) */
  settings: { key: string; value: string };
  /** auth */
  users: { id: string; email: string; password_hash: string; role: string; name: string | null; created_at: number };
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
  };
  /** devices (presence) */
  presence: { device_id: string; online: number; session: number; reason: string; changed_at: number; last_seen: number | null; node: string | null };
  /** shadow */
  shadows: { device_id: string; reported: string; desired: string; metadata: string; version: number; updated_at: number };
  /** history */
  history: { device_id: string; property: string; ts: number; num: number | null; val: string | null };
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
  };
}
