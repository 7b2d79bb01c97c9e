import { useQuery } from '@tanstack/react-query';
import { Card, Col, List, Row, Statistic, Table, Tag, Typography } from 'antd';
import { useRef, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { Link } from 'react-router';
import { api, unwrap } from '../../api/client';
import { useSession } from '../../api/session';
import { PageState } from '../../components/page-state';
import { formatNumber, formatRelative } from '../../lib/format';
import { metricSum, ratePerSecond } from '../../lib/metrics';
import { useStream, type StreamEvent } from '../../stream/use-stream';

/** The fleet at a glance: devices per product, message rate and connections (from /metrics), live activity. */
export default function OverviewPage() {
  const { t } = useTranslation();
  const products = useQuery({ queryKey: ['products'], queryFn: () => unwrap(api.GET('/api/v1/products')) });
  // Two fleet searches counted by product (docs/fleet.md): every device, and those online now.
  const counts = useQuery({
    queryKey: ['overview-counts', products.data?.items.map((p) => p.key)],
    enabled: !!products.data,
    refetchInterval: 15_000,
    queryFn: async () => {
      const [all, online] = await Promise.all([
        unwrap(api.GET('/api/v1/devices', { params: { query: { countBy: 'product', total: false, limit: 1, offset: 0 } } })),
        unwrap(api.GET('/api/v1/devices', { params: { query: { q: 'online:true', countBy: 'product', total: false, limit: 1, offset: 0 } } })),
      ]);
      const on = new Map((online.counts ?? []).map((c) => [String(c.value), c.count]));
      const names = new Map(products.data!.items.map((p) => [p.key, p.name]));
      return (all.counts ?? [])
        .map((c) => ({ key: String(c.value), name: names.get(String(c.value)) ?? String(c.value), total: c.count, online: on.get(String(c.value)) ?? 0 }))
        .sort((a, b) => b.total - a.total);
    },
  });
  const operator = useSession()?.user.role === 'operator';
  const campaigns = useQuery({
    queryKey: ['campaigns', 'running'],
    enabled: operator,
    refetchInterval: 10_000,
    queryFn: () => unwrap(api.GET('/api/v1/ota/campaigns', { params: { query: { state: 'running', limit: 10, offset: 0 } } })),
  });
  const last = useRef<{ value: number; at: number }>(undefined);
  const metrics = useQuery({
    queryKey: ['metrics'],
    refetchInterval: 5000,
    queryFn: async () => {
      const text = await (await fetch('/metrics')).text();
      const sample = { value: metricSum(text, 'hearth_device_messages_total') ?? 0, at: Date.now() };
      const rate = ratePerSecond(last.current, sample);
      last.current = sample;
      return { rate, connected: metricSum(text, 'hearth_devices_connected') };
    },
  });
  const notifications = useQuery({
    queryKey: ['notifications'],
    queryFn: () => unwrap(api.GET('/api/v1/notifications', { params: { query: { limit: 10, offset: 0 } } })),
  });
  const [recent, setRecent] = useState<StreamEvent[]>([]);
  useStream({ types: ['presence', 'event', 'command', 'automation', 'notification'] }, (e) => {
    if (e.type === 'hello' || e.type === 'reset' || e.type === 'end') return;
    if (e.type === 'notification') void notifications.refetch();
    setRecent((r) => [e, ...r].slice(0, 20));
  });
  const total = counts.data?.reduce((s, r) => s + r.total, 0);

  return (
    <>
      <Typography.Title level={3}>{t('overview.title')}</Typography.Title>
      <Row gutter={[16, 16]}>
        <Col xs={24} md={6}>
          <Card>
            <Statistic title={t('overview.devices')} value={total !== undefined ? formatNumber(total) : '—'} loading={counts.isLoading} />
          </Card>
        </Col>
        <Col xs={24} md={6}>
          <Card>
            <Statistic title={t('overview.products')} value={products.data?.items.length ?? '—'} loading={products.isLoading} />
          </Card>
        </Col>
        <Col xs={24} md={6}>
          <Card>
            <Statistic title={t('overview.mqttConnections')} value={formatNumber(metrics.data?.connected)} loading={metrics.isLoading} />
          </Card>
        </Col>
        <Col xs={24} md={6}>
          <Card>
            <Statistic title={t('overview.messagesPerSecond')} value={formatNumber(metrics.data?.rate, 1)} loading={metrics.isLoading} />
          </Card>
        </Col>
        <Col xs={24} lg={12}>
          <Card title={t('overview.perProduct')}>
            <PageState
              loading={products.isLoading || counts.isLoading}
              error={products.error ?? counts.error}
              empty={counts.data?.length === 0}
              onRetry={() => void counts.refetch()}
            >
              <Table
                size="small"
                rowKey="key"
                pagination={false}
                dataSource={counts.data}
                columns={[
                  { title: t('overview.product'), dataIndex: 'name', render: (name: string, r) => <Link to={`/devices?product=${r.key}`}>{name}</Link> },
                  {
                    title: t('overview.online'),
                    dataIndex: 'online',
                    align: 'right',
                    render: (n: number, r) => (
                      <Link to={`/devices?q=${encodeURIComponent(`product:${r.key} AND online:true`)}`} data-online={r.key}>
                        {formatNumber(n)}
                      </Link>
                    ),
                  },
                  {
                    title: t('overview.offline'),
                    key: 'offline',
                    align: 'right',
                    render: (_: unknown, r) => (
                      <Link to={`/devices?q=${encodeURIComponent(`product:${r.key} AND online:false`)}`}>{formatNumber(r.total - r.online)}</Link>
                    ),
                  },
                  { title: t('overview.count'), dataIndex: 'total', align: 'right', render: (n: number) => formatNumber(n) },
                ]}
              />
            </PageState>
          </Card>
        </Col>
        <Col xs={24} lg={12}>
          <Card title={t('overview.notifications')}>
            <PageState
              loading={notifications.isLoading}
              error={notifications.error}
              empty={notifications.data?.items.length === 0}
              emptyText={t('overview.noNotifications')}
            >
              <List
                size="small"
                dataSource={notifications.data?.items}
                renderItem={(n) => (
                  <List.Item>
                    <Tag color={n.severity === 'alarm' ? 'red' : n.severity === 'warning' ? 'orange' : 'blue'}>{n.severity}</Tag>
                    <Typography.Text strong>{n.title}</Typography.Text>
                    <Typography.Text type="secondary" style={{ marginInlineStart: 8 }} ellipsis>
                      {n.body}
                    </Typography.Text>
                    <Typography.Text type="secondary" style={{ marginInlineStart: 'auto' }}>
                      {formatRelative(n.createdAt)}
                    </Typography.Text>
                  </List.Item>
                )}
              />
            </PageState>
          </Card>
        </Col>
        {operator && (
          <Col xs={24} lg={12}>
            <Card title={t('overview.campaigns')} extra={<Link to="/ota">{t('overview.allCampaigns')}</Link>}>
              <PageState loading={campaigns.isLoading} error={campaigns.error} empty={campaigns.data?.items.length === 0} emptyText={t('overview.noCampaigns')}>
                <List
                  size="small"
                  dataSource={campaigns.data?.items}
                  renderItem={(c) => (
                    <List.Item>
                      <Typography.Text strong>{c.name}</Typography.Text>
                      <Tag style={{ marginInlineStart: 8 }}>{c.version}</Tag>
                      <Typography.Text type="secondary" style={{ marginInlineStart: 'auto' }}>
                        {t('overview.campaignProgress', {
                          done: c.counts.succeeded,
                          total: c.counts.pending + c.counts.inProgress + c.counts.succeeded + c.counts.failed + c.counts.cancelled,
                          wave: c.wave + 1,
                        })}
                      </Typography.Text>
                    </List.Item>
                  )}
                />
              </PageState>
            </Card>
          </Col>
        )}
        <Col xs={24} lg={12}>
          <Card title={t('overview.recent')}>
            <List
              size="small"
              locale={{ emptyText: t('overview.noActivity') }}
              dataSource={recent}
              renderItem={(e) => (
                <List.Item>
                  <Tag>{e.type}</Tag>
                  {e.deviceId ? <Link to={`/devices/${e.deviceId}`}>{e.deviceId}</Link> : null}
                  <Typography.Text type="secondary" style={{ marginInlineStart: 8 }}>
                    {summary(e)}
                  </Typography.Text>
                  <Typography.Text type="secondary" style={{ marginInlineStart: 'auto' }}>
                    {formatRelative(e.at)}
                  </Typography.Text>
                </List.Item>
              )}
            />
          </Card>
        </Col>
      </Row>
    </>
  );
}

function summary(e: StreamEvent): string {
  const d = e.data;
  if (e.type === 'presence') return `${d.online ? '●' : '○'} ${String(d.reason ?? '')}`;
  if (e.type === 'event') return String(d.event ?? '');
  if (e.type === 'command') return `${String(d.action ?? '')} ${String(d.status ?? '')}`;
  return '';
}
