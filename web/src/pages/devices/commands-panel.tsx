import { useQuery, useQueryClient } from '@tanstack/react-query';
import { Alert, Button, Card, Checkbox, Form, InputNumber, Select, Space, Table, Tag, Typography } from 'antd';
import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { ApiError, api, unwrap, type CommandRecord } from '../../api/client';
import { ModelFields } from '../../components/model-fields';
import { PageState } from '../../components/page-state';
import { formatDateTime, formatNumber } from '../../lib/format';
import { toParams, type ModelAction } from '../../lib/thing-form';

type Outcome = { ok: boolean; text: string; result?: unknown; code?: string };

/** A command built as a form from the product's actions; the device's answer shown; the ledger below. */
export function CommandsPanel({ deviceId, actions }: { deviceId: string; actions: ModelAction[] }) {
  const { t } = useTranslation();
  const qc = useQueryClient();
  const [form] = Form.useForm();
  const [action, setAction] = useState<string | undefined>(actions[0]?.id);
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<Outcome>();
  // Queued (offline delivery, docs/api.md): kept until the device comes back, for ttl minutes.
  const [queue, setQueue] = useState(false);
  const [ttl, setTtl] = useState<number | null>(60);
  const ledger = useQuery({
    queryKey: ['device-commands', deviceId],
    queryFn: () => unwrap(api.GET('/api/v1/devices/{id}/commands', { params: { path: { id: deviceId }, query: { limit: 50 } } })),
  });
  const chosen = actions.find((a) => a.id === action);

  const send = async () => {
    if (!chosen) return;
    const values = await form.validateFields();
    const { params, problems } = toParams(chosen.params ?? [], values);
    const bad = Object.entries(problems);
    if (bad.length) {
      form.setFields(bad.map(([name, code]) => ({ name, errors: [t(`form.${code}`)] })));
      return;
    }
    setBusy(true);
    setOutcome(undefined);
    try {
      const r = await unwrap(
        api.POST('/api/v1/devices/{id}/commands', {
          params: { path: { id: deviceId } },
          body: { action: chosen.id, params, ...(queue ? { ttlMs: Math.round((ttl ?? 60) * 60_000) } : {}) },
        }),
      );
      if ('state' in r) setOutcome({ ok: true, text: `${t('device.queued')} (${r.state})` });
      else setOutcome({ ok: r.ok, text: r.ok ? t('device.sent') : `${t('device.failed')}: ${r.error ?? ''}`, result: r.result });
    } catch (e) {
      setOutcome({ ok: false, text: (e as Error).message, code: e instanceof ApiError ? e.code : undefined });
    } finally {
      setBusy(false);
      void qc.invalidateQueries({ queryKey: ['device-commands', deviceId] });
    }
  };

  const cancel = async (commandId: string) => {
    try {
      await unwrap(api.DELETE('/api/v1/devices/{id}/commands/{commandId}', { params: { path: { id: deviceId, commandId } } }));
    } catch (e) {
      setOutcome({ ok: false, text: (e as Error).message, code: e instanceof ApiError ? e.code : undefined });
    }
    void qc.invalidateQueries({ queryKey: ['device-commands', deviceId] });
  };

  return (
    <Space direction="vertical" size="middle" style={{ width: '100%' }}>
      <Card size="small">
        <PageState empty={actions.length === 0} emptyText={t('device.noActions')}>
          <Form form={form} layout="vertical" onFinish={() => void send()} key={action}>
            <Form.Item label={t('device.action')}>
              <Select
                aria-label={t('device.action')}
                style={{ width: 240 }}
                value={action}
                onChange={(v: string) => {
                  setAction(v);
                  setOutcome(undefined);
                }}
                options={actions.map((a) => ({ value: a.id, label: a.description ? `${a.id} · ${a.description}` : a.id }))}
              />
            </Form.Item>
            <ModelFields fields={chosen?.params ?? []} />
            <Space wrap>
              <Button type="primary" htmlType="submit" loading={busy}>
                {t('device.send')}
              </Button>
              <Checkbox checked={queue} onChange={(e) => setQueue(e.target.checked)}>
                {t('device.queueOffline')}
              </Checkbox>
              {queue && <InputNumber min={1} max={10080} value={ttl} onChange={setTtl} addonAfter={t('device.minutes')} aria-label={t('device.ttl')} />}
            </Space>
          </Form>
          {outcome && (
            <Alert
              style={{ marginTop: 16 }}
              data-testid="command-outcome"
              type={outcome.ok ? 'success' : 'error'}
              showIcon
              message={outcome.code ? `${outcome.text} (${outcome.code})` : outcome.text}
              description={outcome.result !== undefined ? <Typography.Text code>{JSON.stringify(outcome.result)}</Typography.Text> : undefined}
            />
          )}
        </PageState>
      </Card>
      <Card size="small" title={t('device.ledger')}>
        <PageState loading={ledger.isLoading} error={ledger.error} onRetry={() => void ledger.refetch()}>
          <Table<CommandRecord>
            size="small"
            rowKey="id"
            dataSource={ledger.data?.items}
            columns={[
              { title: t('device.at'), dataIndex: 'acceptedAt', render: (v: string) => formatDateTime(v) },
              { title: t('device.action'), dataIndex: 'action' },
              { title: t('device.params'), dataIndex: 'params', render: (v: unknown) => <Typography.Text code>{JSON.stringify(v)}</Typography.Text> },
              { title: t('device.source'), dataIndex: 'source' },
              {
                title: t('device.statusCol'),
                dataIndex: 'status',
                render: (v: string, r) => <Tag color={r.ok ? 'green' : r.ok === false || v === 'timeout' ? 'red' : 'blue'}>{v}</Tag>,
              },
              { title: t('device.result'), dataIndex: 'result', render: (v: unknown, r) => (r.error ? r.error : v ? JSON.stringify(v) : '—') },
              { title: t('device.latency'), dataIndex: 'latencyMs', render: (v: number | null) => (v === null ? '—' : `${formatNumber(v, 1)} ms`) },
              {
                key: 'cancel',
                render: (_: unknown, r) =>
                  r.status === 'queued' && (
                    <Button size="small" onClick={() => void cancel(r.id)}>
                      {t('device.cancelQueued')}
                    </Button>
                  ),
              },
            ]}
          />
        </PageState>
      </Card>
    </Space>
  );
}
