import { useQuery, useQueryClient } from '@tanstack/react-query';
import { Alert, App, Button, Card, Drawer, Form, Input, Popconfirm, Select, Space, Table, Tabs, Tag, Typography } from 'antd';
import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { api, unwrap, type paths } from '../../api/client';
import { PageState } from '../../components/page-state';
import { formatDateTime } from '../../lib/format';

type DeadLetter = paths['/api/v1/dead-letters']['get']['responses'][200]['content']['application/json']['items'][number];
type Status = 'waiting' | 'replayed' | 'discarded';
const KINDS = ['properties', 'events', 'result', 'join', 'presence', 'command'] as const;

/** The message gateway (docs/message-gateway.md): routes, filters and lanes, the dry-run tool, dead letters. */
export default function GatewayPage() {
  const { t } = useTranslation();
  return (
    <>
      <Typography.Title level={3}>{t('gateway.title')}</Typography.Title>
      <Tabs
        items={[
          { key: 'routes', label: t('gateway.routes'), children: <RoutesTab /> },
          { key: 'dry-run', label: t('gateway.dryRun'), children: <DryRunTab /> },
          { key: 'dead', label: t('gateway.deadLetters'), children: <DeadLettersTab /> },
        ]}
      />
    </>
  );
}

function RoutesTab() {
  const { t } = useTranslation();
  const routes = useQuery({ queryKey: ['routes'], queryFn: () => unwrap(api.GET('/api/v1/routes')) });
  const filters = useQuery({ queryKey: ['gateway-filters'], queryFn: () => unwrap(api.GET('/api/v1/gateway/filters')) });
  const lanes = useQuery({ queryKey: ['gateway-lanes'], queryFn: () => unwrap(api.GET('/api/v1/gateway/lanes')) });
  return (
    <Space direction="vertical" size="middle" style={{ width: '100%' }}>
      <Card size="small" title={t('gateway.routes')}>
        <PageState
          loading={routes.isLoading}
          error={routes.error}
          empty={routes.data?.items.length === 0}
          emptyText={t('gateway.noRoutes')}
          onRetry={() => void routes.refetch()}
        >
          <Table
            size="small"
            rowKey="id"
            pagination={false}
            dataSource={routes.data?.items}
            expandable={{ expandedRowRender: (r) => <pre style={{ margin: 0 }}>{JSON.stringify(r, null, 2)}</pre> }}
            columns={[
              { title: t('gateway.name'), dataIndex: 'name' },
              {
                title: t('gateway.enabled'),
                dataIndex: 'enabled',
                render: (v?: boolean) => (v === false ? <Tag>{t('common.no')}</Tag> : <Tag color="green">{t('common.yes')}</Tag>),
              },
              { title: t('gateway.match'), dataIndex: 'match', render: (v: unknown) => <Typography.Text code>{JSON.stringify(v)}</Typography.Text> },
              { title: t('gateway.targets'), dataIndex: 'targets', render: (v: Array<{ type?: string }>) => v.map((x) => x.type ?? '?').join(', ') },
            ]}
          />
        </PageState>
      </Card>
      <Card size="small" title={t('gateway.filters')}>
        <PageState loading={filters.isLoading} error={filters.error} empty={filters.data?.filters.length === 0}>
          <pre style={{ margin: 0 }}>{JSON.stringify(filters.data?.filters, null, 2)}</pre>
        </PageState>
      </Card>
      <Card size="small" title={t('gateway.lanes')}>
        <PageState loading={lanes.isLoading} error={lanes.error} empty={lanes.data?.lanes.length === 0}>
          <pre style={{ margin: 0 }}>{JSON.stringify(lanes.data?.lanes, null, 2)}</pre>
        </PageState>
      </Card>
    </Space>
  );
}

function DryRunTab() {
  const { t } = useTranslation();
  const [result, setResult] = useState<unknown>();
  const [error, setError] = useState<string>();
  const run = async (v: { deviceId: string; kind: (typeof KINDS)[number]; payload: string }) => {
    setError(undefined);
    setResult(undefined);
    let payload: unknown;
    try {
      payload = JSON.parse(v.payload);
    } catch {
      setError(t('products.badJson'));
      return;
    }
    try {
      setResult(await unwrap(api.POST('/api/v1/gateway/dry-run', { body: { deviceId: v.deviceId, kind: v.kind, payload } })));
    } catch (e) {
      setError((e as Error).message);
    }
  };
  return (
    <Card size="small">
      <Typography.Paragraph type="secondary">{t('gateway.dryRunHelp')}</Typography.Paragraph>
      <Form layout="vertical" onFinish={(v) => void run(v)} initialValues={{ kind: 'properties', payload: '{"on": true}' }} style={{ maxWidth: 640 }}>
        <Form.Item name="deviceId" label={t('devices.id')} rules={[{ required: true, message: t('form.required') }]}>
          <Input />
        </Form.Item>
        <Form.Item name="kind" label={t('gateway.kind')}>
          <Select options={KINDS.map((k) => ({ value: k, label: k }))} />
        </Form.Item>
        <Form.Item name="payload" label={t('gateway.payload')}>
          <Input.TextArea rows={4} spellCheck={false} style={{ fontFamily: 'monospace' }} />
        </Form.Item>
        <Button type="primary" htmlType="submit">
          {t('gateway.dryRun')}
        </Button>
      </Form>
      {error && <Alert style={{ marginTop: 16 }} type="error" showIcon message={error} />}
      {result !== undefined && <pre style={{ marginTop: 16 }}>{JSON.stringify(result, null, 2)}</pre>}
    </Card>
  );
}

function DeadLettersTab() {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const qc = useQueryClient();
  const [status, setStatus] = useState<Status>('waiting');
  const [open, setOpen] = useState<DeadLetter>();
  const list = useQuery({
    queryKey: ['dead-letters', status],
    queryFn: () => unwrap(api.GET('/api/v1/dead-letters', { params: { query: { status, limit: 100 } } })),
  });
  const act = async (what: 'replay' | 'discard', d: DeadLetter) => {
    try {
      if (what === 'replay') await unwrap(api.POST('/api/v1/dead-letters/{id}/replay', { params: { path: { id: d.id } } }));
      else await unwrap(api.DELETE('/api/v1/dead-letters/{id}', { params: { path: { id: d.id } } }));
      message.success(what === 'replay' ? t('gateway.replayed') : t('gateway.discarded'));
    } catch (e) {
      message.error((e as Error).message);
    }
    setOpen(undefined);
    void qc.invalidateQueries({ queryKey: ['dead-letters'] });
  };
  return (
    <Card size="small">
      <Select
        aria-label={t('gateway.status')}
        style={{ width: 200, marginBottom: 16 }}
        value={status}
        onChange={setStatus}
        options={(['waiting', 'replayed', 'discarded'] as Status[]).map((s) => ({ value: s, label: t(`gateway.statuses.${s}`) }))}
      />
      <PageState
        loading={list.isLoading}
        error={list.error}
        empty={list.data?.items.length === 0}
        emptyText={t('gateway.noDeadLetters')}
        onRetry={() => void list.refetch()}
      >
        <Table<DeadLetter>
          size="small"
          rowKey="id"
          dataSource={list.data?.items}
          columns={[
            { title: t('gateway.at'), dataIndex: 'createdAt', render: (v: string) => formatDateTime(v) },
            { title: t('gateway.route'), dataIndex: 'routeName' },
            { title: t('gateway.reason'), dataIndex: 'reason' },
            { title: t('gateway.attempts'), dataIndex: 'attempts' },
            {
              key: 'ops',
              render: (_: unknown, d) => (
                <Space>
                  <Button size="small" onClick={() => setOpen(d)}>
                    {t('gateway.inspect')}
                  </Button>
                  {d.status === 'waiting' && (
                    <>
                      <Button size="small" onClick={() => void act('replay', d)}>
                        {t('gateway.replay')}
                      </Button>
                      <Popconfirm
                        title={t('gateway.discardConfirm')}
                        onConfirm={() => void act('discard', d)}
                        okText={t('common.yes')}
                        cancelText={t('common.no')}
                      >
                        <Button size="small" danger>
                          {t('gateway.discard')}
                        </Button>
                      </Popconfirm>
                    </>
                  )}
                </Space>
              ),
            },
          ]}
        />
      </PageState>
      <Drawer open={!!open} width={640} title={open?.routeName} onClose={() => setOpen(undefined)}>
        <pre>{JSON.stringify(open, null, 2)}</pre>
      </Drawer>
    </Card>
  );
}
