import { useQuery, useQueryClient } from '@tanstack/react-query';
import { Badge, Card, Descriptions, Space, Table, Tabs, Tag, Typography } from 'antd';
import { lazy, Suspense, useEffect, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { Link, useParams } from 'react-router';
import { ApiError, api, unwrap, type Device } from '../../api/client';
import { useSession } from '../../api/session';
import { PageState } from '../../components/page-state';
import { formatDateTime, formatRelative, formatValue } from '../../lib/format';
import type { ModelAction, ModelProperty } from '../../lib/thing-form';
import { useStream, type StreamEvent } from '../../stream/use-stream';
import { CommandsPanel } from './commands-panel';
import { DesiredPanel } from './desired-panel';
import { CredentialsPanel, LabelsPanel, LifecycleActions, PresenceTimeline } from './device-admin';

// ECharts is large: loaded with the history tab only.
const HistoryPanel = lazy(() => import('./history-panel'));

/** One device: live properties (the stream), desired state, commands from its thing model, events, history. */
export default function DevicePage() {
  const { t } = useTranslation();
  const { id = '' } = useParams();
  const qc = useQueryClient();
  const device = useQuery({ queryKey: ['device', id], queryFn: () => unwrap(api.GET('/api/v1/devices/{id}', { params: { path: { id } } })) });
  const productKey = device.data?.product;
  const product = useQuery({
    queryKey: ['product', productKey],
    enabled: !!productKey,
    queryFn: () => unwrap(api.GET('/api/v1/products/{key}', { params: { path: { key: productKey! } } })),
  });
  const [live, setLive] = useState<{ reported: Record<string, unknown>; at: Record<string, string>; changed: Set<string> }>({
    reported: {},
    at: {},
    changed: new Set(),
  });
  const [presence, setPresence] = useState<{ online: boolean; reason: string; at: string }>();
  const operator = useSession()?.user.role === 'operator';

  useEffect(() => {
    // A fresh load replaces what the stream had said before it.
    if (device.data) {
      setLive({ reported: { ...device.data.shadow.reported }, at: {}, changed: new Set() });
      setPresence(undefined);
    }
  }, [device.data]);

  const state = useStream({ deviceId: id, types: ['property', 'presence', 'event', 'command'] }, (e: StreamEvent) => {
    if (e.type === 'property') {
      const values = (e.data.values ?? {}) as Record<string, unknown>;
      setLive((l) => ({
        reported: { ...l.reported, ...values },
        at: { ...l.at, ...Object.fromEntries(Object.keys(values).map((k) => [k, e.at])) },
        changed: new Set(Object.keys(values)),
      }));
    } else if (e.type === 'presence') {
      const change = { online: Boolean(e.data.online), reason: String(e.data.reason ?? ''), at: e.at };
      setPresence(change);
      void qc.invalidateQueries({ queryKey: ['presence-history', id] });
    } else if (e.type === 'event') {
      void qc.invalidateQueries({ queryKey: ['device-events', id] });
    } else if (e.type === 'command') {
      void qc.invalidateQueries({ queryKey: ['device-commands', id] });
    } else if (e.type === 'reset') {
      void device.refetch();
    }
  });

  if (device.error instanceof ApiError && device.error.status === 404) return <PageState error={new Error(t('device.notFound'))} />;
  if (!device.data) return <PageState loading={device.isLoading} error={device.error} onRetry={() => void device.refetch()} />;
  const d: Device = device.data;
  const model = product.data?.model;
  const online = presence ? presence.online : d.online;
  const props = (model?.properties ?? []) as ModelProperty[];
  const known = new Set(props.map((p) => p.id));
  const rows = [
    ...props.map((p) => ({ id: p.id, unit: p.unit, value: live.reported[p.id] })),
    ...Object.keys(live.reported)
      .filter((k) => !known.has(k))
      .map((k) => ({ id: k, unit: undefined, value: live.reported[k] })),
  ];
  const metaAt = (d.shadow.metadata?.reported ?? {}) as Record<string, unknown>;

  return (
    <Space direction="vertical" size="large" style={{ width: '100%' }}>
      <Space align="center" wrap>
        <Typography.Title level={3} style={{ margin: 0 }}>
          {d.name}
        </Typography.Title>
        <Badge status={online ? 'success' : 'default'} text={online ? t('devices.online') : t('devices.offline')} data-testid="presence" />
        <Tag>{d.product}</Tag>
        <Typography.Text code copyable>
          {d.id}
        </Typography.Text>
        {d.disabled && (
          <Tag color="red" data-testid="disabled">
            {t('device.disabled')}
          </Tag>
        )}
        {operator && <LifecycleActions device={d} />}
      </Space>
      <Card title={t('device.details')} size="small">
        <Descriptions size="small" column={{ xs: 1, md: 3 }}>
          <Descriptions.Item label={t('devices.product')}>
            <Link to={`/products?key=${d.product}`}>{product.data?.name ?? d.product}</Link>
          </Descriptions.Item>
          <Descriptions.Item label={t('devices.home')}>{d.homeId ?? t('devices.noHome')}</Descriptions.Item>
          {d.parentId && (
            <Descriptions.Item label={t('devices.parent')}>
              <Link to={`/devices/${d.parentId}`}>{d.parentId}</Link>
            </Descriptions.Item>
          )}
          {d.pairingCode && <Descriptions.Item label={t('device.pairingCode')}>{d.pairingCode}</Descriptions.Item>}
          <Descriptions.Item label={t('device.presence')}>
            {presence ? presence.reason : d.presence.reason} · {formatRelative(presence ? presence.at : d.presence.changedAt)}
          </Descriptions.Item>
          <Descriptions.Item label={t('device.session')}>{d.presence.session}</Descriptions.Item>
          <Descriptions.Item label={t('devices.lastSeen')}>{formatDateTime(d.lastSeen)}</Descriptions.Item>
          {d.firmware && (
            <Descriptions.Item label={t('devices.firmware')}>
              <span data-testid="firmware">
                {d.firmware.version ?? t('ota.unknownVersion')}
                {d.firmware.lastJob && (
                  <Tag style={{ marginInlineStart: 8 }} color={d.firmware.lastJob.state === 'failed' ? 'red' : undefined}>
                    {t(`ota.jobStates.${d.firmware.lastJob.state}`, { defaultValue: d.firmware.lastJob.state })}
                    {d.firmware.lastJob.error ? ` · ${d.firmware.lastJob.error}` : ''}
                  </Tag>
                )}
              </span>
            </Descriptions.Item>
          )}
          <Descriptions.Item label={t('devices.created')}>{formatDateTime(d.createdAt)}</Descriptions.Item>
        </Descriptions>
      </Card>
      <Tabs
        items={[
          {
            key: 'properties',
            label: t('device.properties'),
            children: (
              <Card
                size="small"
                extra={<Badge status={state === 'live' ? 'processing' : 'default'} text={t('device.live')} data-testid="stream-state" data-state={state} />}
              >
                <PageState empty={rows.length === 0} emptyText={t('device.noProperties')}>
                  <Table
                    size="small"
                    rowKey="id"
                    pagination={false}
                    dataSource={rows}
                    rowClassName={(r) => (live.changed.has(r.id) ? 'hearth-flash' : '')}
                    columns={[
                      { title: t('device.property'), dataIndex: 'id' },
                      { title: t('device.value'), dataIndex: 'value', render: (v: unknown, r) => <span data-property={r.id}>{formatValue(v, r.unit)}</span> },
                      {
                        title: t('device.updated'),
                        dataIndex: 'id',
                        key: 'at',
                        render: (k: string) =>
                          formatRelative(
                            live.at[k] ?? (typeof metaAt[k] === 'object' && metaAt[k] ? (metaAt[k] as { timestamp?: string }).timestamp : undefined),
                          ),
                      },
                    ]}
                  />
                </PageState>
              </Card>
            ),
          },
          { key: 'desired', label: t('device.desired'), children: <DesiredPanel device={d} fields={props.filter((p) => p.access === 'rw')} /> },
          { key: 'commands', label: t('device.commands'), children: <CommandsPanel deviceId={d.id} actions={(model?.actions ?? []) as ModelAction[]} /> },
          { key: 'events', label: t('device.events'), children: <EventsPanel deviceId={d.id} /> },
          { key: 'presence', label: t('device.presenceTab'), children: <PresenceTimeline deviceId={id} /> },
          ...(operator
            ? [
                { key: 'labels', label: t('device.labels'), children: <LabelsPanel device={d} /> },
                { key: 'credentials', label: t('device.credentials'), children: <CredentialsPanel deviceId={d.id} /> },
              ]
            : []),
          {
            key: 'history',
            label: t('device.history'),
            children: (
              <Suspense fallback={<PageState loading />}>
                <HistoryPanel deviceId={d.id} properties={props.filter((p) => p.history && (p.type === 'number' || p.type === 'integer')).map((p) => p.id)} />
              </Suspense>
            ),
          },
        ]}
      />
    </Space>
  );
}

function EventsPanel({ deviceId }: { deviceId: string }) {
  const { t } = useTranslation();
  const events = useQuery({
    queryKey: ['device-events', deviceId],
    queryFn: () => unwrap(api.GET('/api/v1/devices/{id}/events', { params: { path: { id: deviceId }, query: { limit: 100 } } })),
  });
  return (
    <Card size="small">
      <PageState
        loading={events.isLoading}
        error={events.error}
        empty={events.data?.items.length === 0}
        emptyText={t('device.noEvents')}
        onRetry={() => void events.refetch()}
      >
        <Table
          size="small"
          rowKey="id"
          dataSource={events.data?.items}
          columns={[
            { title: t('device.at'), dataIndex: 'ts', render: (v: string) => formatDateTime(v) },
            { title: t('device.event'), dataIndex: 'event' },
            { title: t('device.params'), dataIndex: 'params', render: (v: unknown) => <Typography.Text code>{JSON.stringify(v)}</Typography.Text> },
          ]}
        />
      </PageState>
    </Card>
  );
}
