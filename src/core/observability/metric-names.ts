/**
 * Every metric Hearth defines itself, by name. Grafana dashboards and alert rules refer to these
 * names, so they are a contract: `Metrics` builds its registry from this list, and
 * metrics.test.ts checks that the registry exposes exactly these (besides prom-client's
 * `hearth_process_*` and `hearth_nodejs_*` defaults).
 *
 * The full set of series names a scrape can contain (the defaults included, and the
 * `_bucket`/`_sum`/`_count` series of histograms) is `new Metrics().seriesNames()`; a check of
 * dashboard queries wants that one.
 */
export const METRIC_TYPES = {
  hearth_devices_connected: 'gauge',
  hearth_device_messages_total: 'counter',
  hearth_device_messages_rejected_total: 'counter',
  hearth_ingest_lag_seconds: 'histogram',
  hearth_command_duration_seconds: 'histogram',
  hearth_command_result_warnings_total: 'counter',
  hearth_command_queue_events_total: 'counter',
  hearth_mqtt_session_messages_dropped_total: 'counter',
  hearth_ota_jobs_total: 'counter',
  hearth_presence_changes_total: 'counter',
  hearth_connections_refused_total: 'counter',
  hearth_bus_publish_duration_seconds: 'histogram',
  hearth_bus_request_duration_seconds: 'histogram',
  hearth_db_query_duration_seconds: 'histogram',
  hearth_http_request_duration_seconds: 'histogram',
  hearth_circuit_breaker_state: 'gauge',
  hearth_outbound_requests_total: 'counter',
  hearth_gateway_deliveries_total: 'counter',
  hearth_dead_letters_total: 'counter',
  hearth_shards_owned: 'gauge',
  hearth_node_ready: 'gauge',
  hearth_node_info: 'gauge',
  hearth_stream_clients: 'gauge',
  hearth_gateway_filter_total: 'counter',
  hearth_gateway_routed_total: 'counter',
  hearth_login_failures_total: 'counter',
  hearth_login_spray_detected_total: 'counter',
  hearth_history_partitions_dropped_total: 'counter',
} as const;

export type MetricName = keyof typeof METRIC_TYPES;

/** The names of `METRIC_TYPES`, for checks that only need the names. */
export const METRIC_NAMES = Object.keys(METRIC_TYPES) as MetricName[];

/** Prefix of every Hearth metric, prom-client's defaults included. */
export const METRIC_PREFIX = 'hearth_';
