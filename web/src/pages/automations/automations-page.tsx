import { useQuery, useQueryClient } from '@tanstack/react-query';
import { App, Badge, Button, Card, Drawer, Select, Space, Switch, Table, Tag, Typography } from 'antd';
import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { useSearchParams } from 'react-router';
import { api, unwrap, type paths } from '../../api/client';
import { PageState } from '../../components/page-state';
import { formatDateTime } from '../../lib/format';
import { useStream } from '../../stream/use-stream';
import { AutomationEditor } from './automation-editor';
import { RunsPanel } from './runs-panel';

export type Automation = paths['/api/v1/automations/{automationId}']['get']['responses'][200]['content']['application/json'];

/** A home's automations: list, enable, run now, the editor, and each one's runs with their traces. */
export default function AutomationsPage() {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const qc = useQueryClient();
  const [params, setParams] = useSearchParams();
  const homes = useQuery({ queryKey: ['homes'], queryFn: () => unwrap(api.GET('/api/v1/homes')) });
  const homeId = params.get('home') ?? homes.data?.items[0]?.id;
  const list = useQuery({
    queryKey: ['automations', homeId],
    enabled: !!homeId,
    queryFn: () => unwrap(api.GET('/api/v1/homes/{homeId}/automations', { params: { path: { homeId: homeId! } } })),
  });
  const [editing, setEditing] = useState<Automation | 'new'>();
  const [runsOf, setRunsOf] = useState<Automation>();
  // Runs change the list's last-run state: the stream says when.
  useStream({ homeId, types: ['automation'] }, () => void qc.invalidateQueries({ queryKey: ['automation-runs'] }), !!homeId);

  const toggle = async (a: Automation, enabled: boolean) => {
    await unwrap(api.PATCH('/api/v1/automations/{automationId}', { params: { path: { automationId: a.id } }, body: { enabled } })).catch((e: Error) =>
      message.error(e.message),
    );
    void qc.invalidateQueries({ queryKey: ['automations', homeId] });
  };
  const runNow = async (a: Automation) => {
    try {
      await unwrap(api.POST('/api/v1/automations/{automationId}/run', { params: { path: { automationId: a.id } }, body: {} }));
      message.success(t('automations.started'));
    } catch (e) {
      message.error((e as Error).message);
    }
  };

  return (
    <>
      <Space style={{ width: '100%', justifyContent: 'space-between', marginBottom: 16 }} wrap>
        <Typography.Title level={3} style={{ margin: 0 }}>
          {t('automations.title')}
        </Typography.Title>
        <Space>
          <Select
            style={{ minWidth: 240 }}
            aria-label={t('automations.home')}
            placeholder={t('automations.pickHome')}
            value={homeId}
            loading={homes.isLoading}
            options={homes.data?.items.map((h) => ({ value: h.id, label: h.name }))}
            onChange={(v: string) => setParams({ home: v })}
          />
          <Button type="primary" disabled={!homeId} onClick={() => setEditing('new')}>
            {t('automations.new')}
          </Button>
        </Space>
      </Space>
      <Card>
        <PageState
          loading={homes.isLoading || list.isLoading}
          error={homes.error ?? list.error}
          empty={!homeId || list.data?.items.length === 0}
          emptyText={!homeId ? t('automations.noHomes') : t('automations.empty')}
          onRetry={() => void list.refetch()}
        >
          <Table<Automation>
            rowKey="id"
            size="middle"
            dataSource={list.data?.items}
            columns={[
              { title: t('automations.name'), dataIndex: 'name' },
              {
                title: t('automations.enabled'),
                dataIndex: 'enabled',
                render: (v: boolean, a) => <Switch size="small" checked={v} aria-label={t('automations.enabled')} onChange={(x) => void toggle(a, x)} />,
              },
              {
                title: t('automations.status'),
                dataIndex: 'status',
                render: (v: string, a) => <Badge status={v === 'ok' ? 'success' : 'error'} text={a.statusReason ? `${v}: ${a.statusReason}` : v} />,
              },
              { title: t('automations.triggers'), dataIndex: 'triggers', render: (v: Array<{ type: string }>) => kinds(v) },
              { title: t('automations.actions'), dataIndex: 'actions', render: (v: Array<{ type: string }>) => kinds(v) },
              { title: t('automations.updated'), dataIndex: 'updatedAt', render: (v: string) => formatDateTime(v) },
              {
                key: 'ops',
                render: (_: unknown, a) => (
                  <Space>
                    <Button size="small" onClick={() => setEditing(a)}>
                      {t('automations.edit')}
                    </Button>
                    <Button size="small" onClick={() => void runNow(a)}>
                      {t('automations.run')}
                    </Button>
                    <Button size="small" onClick={() => setRunsOf(a)}>
                      {t('automations.runs')}
                    </Button>
                  </Space>
                ),
              },
            ]}
          />
        </PageState>
      </Card>
      {editing && homeId && (
        <AutomationEditor
          homeId={homeId}
          automation={editing === 'new' ? undefined : editing}
          onClose={(saved) => {
            setEditing(undefined);
            if (saved) void qc.invalidateQueries({ queryKey: ['automations', homeId] });
          }}
        />
      )}
      <Drawer open={!!runsOf} width={760} title={runsOf ? `${t('automations.runs')}: ${runsOf.name}` : ''} onClose={() => setRunsOf(undefined)} destroyOnHidden>
        {runsOf && <RunsPanel automation={runsOf} />}
      </Drawer>
    </>
  );
}

/** The kinds of a list of triggers or actions, each once, with how many. */
function kinds(list: Array<{ type: string }>) {
  const counts = new Map<string, number>();
  for (const x of list) counts.set(x.type, (counts.get(x.type) ?? 0) + 1);
  return [...counts].map(([k, n]) => <Tag key={k}>{n > 1 ? `${k} × ${n}` : k}</Tag>);
}
