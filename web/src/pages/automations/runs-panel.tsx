import { useQuery } from '@tanstack/react-query';
import { Alert, Button, Card, Input, Space, Table, Tag, Typography } from 'antd';
import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { api, unwrap } from '../../api/client';
import { PageState } from '../../components/page-state';
import { formatDateTime, formatNumber } from '../../lib/format';
import type { Automation } from './automations-page';

const STATUS_COLOR: Record<string, string> = { completed: 'green', failed: 'red', 'condition-failed': 'orange', running: 'blue' };

/** An automation's runs, newest first, each with its trace; and a dry run against a sample trigger. */
export function RunsPanel({ automation }: { automation: Automation }) {
  const { t } = useTranslation();
  const runs = useQuery({
    queryKey: ['automation-runs', automation.id],
    refetchInterval: 5000,
    queryFn: () => unwrap(api.GET('/api/v1/automations/{automationId}/runs', { params: { path: { automationId: automation.id }, query: { limit: 50 } } })),
  });
  const first = automation.triggers[0] as Record<string, unknown> | undefined;
  const [sample, setSample] = useState(
    JSON.stringify(
      first?.type === 'property'
        ? { type: 'property', data: { device: first.device, property: first.property, from: null, to: first.to ?? true } }
        : { type: first?.type ?? 'manual', data: {} },
      null,
      2,
    ),
  );
  const [dry, setDry] = useState<{ ok: boolean; text: string; trace?: unknown }>();
  const dryRun = async () => {
    let trigger: unknown;
    try {
      trigger = JSON.parse(sample);
    } catch {
      setDry({ ok: false, text: t('products.badJson') });
      return;
    }
    try {
      const r = await unwrap(
        api.POST('/api/v1/automations/{automationId}/test', {
          params: { path: { automationId: automation.id } },
          body: { trigger: trigger as { type: 'manual' } },
        }),
      );
      setDry({ ok: r.wouldRun, text: `${r.wouldRun ? t('automations.wouldRun') : t('automations.wouldNotRun')}: ${r.why}`, trace: r.trace });
    } catch (e) {
      setDry({ ok: false, text: (e as Error).message });
    }
  };
  return (
    <Space direction="vertical" style={{ width: '100%' }} size="middle">
      <Card size="small" title={t('automations.dryRun')}>
        <Typography.Paragraph type="secondary">{t('automations.dryRunHelp')}</Typography.Paragraph>
        <Input.TextArea
          aria-label={t('automations.dryRun')}
          rows={5}
          value={sample}
          onChange={(e) => setSample(e.target.value)}
          spellCheck={false}
          style={{ fontFamily: 'monospace' }}
        />
        <Button style={{ marginTop: 8 }} onClick={() => void dryRun()}>
          {t('automations.dryRun')}
        </Button>
        {dry && (
          <Alert
            style={{ marginTop: 8 }}
            type={dry.ok ? 'success' : 'warning'}
            message={dry.text}
            description={dry.trace ? <pre style={{ margin: 0, maxHeight: 240, overflow: 'auto' }}>{JSON.stringify(dry.trace, null, 2)}</pre> : undefined}
          />
        )}
      </Card>
      <PageState
        loading={runs.isLoading}
        error={runs.error}
        empty={runs.data?.items.length === 0}
        emptyText={t('automations.noRuns')}
        onRetry={() => void runs.refetch()}
      >
        <Table
          size="small"
          rowKey="id"
          dataSource={runs.data?.items}
          expandable={{ expandedRowRender: (r) => <pre style={{ margin: 0, maxHeight: 320, overflow: 'auto' }}>{JSON.stringify(r.trace, null, 2)}</pre> }}
          columns={[
            { title: t('automations.started'), dataIndex: 'startedAt', render: (v: string) => formatDateTime(v) },
            { title: t('automations.status'), dataIndex: 'status', render: (v: string) => <Tag color={STATUS_COLOR[v]}>{v}</Tag> },
            { title: t('automations.reason'), dataIndex: 'reason', render: (v: string | null) => v ?? '—' },
            { title: t('device.latency'), dataIndex: 'ms', render: (v: number | null) => (v === null ? '—' : `${formatNumber(v, 0)} ms`) },
          ]}
        />
      </PageState>
    </Space>
  );
}
