import { useQuery, useQueryClient } from '@tanstack/react-query';
import { App, Button, Card, Popconfirm, Progress, Select, Space, Table, Tabs, Tag, Tooltip, Typography } from 'antd';
import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { useSearchParams } from 'react-router';
import { api, unwrap } from '../../api/client';
import { PageState } from '../../components/page-state';
import { formatDateTime, formatNumber } from '../../lib/format';
import type { Firmware } from './campaign-parts';
import { CampaignDrawer, CampaignForm, CampaignProgress, LIVE_STATES, ProductSelect, stateColor, type Campaign } from './campaign-parts';
import { UploadFirmware } from './upload-firmware';

/** Firmware packages per product (upload, delete) and update campaigns (create, watch waves, pause/resume/cancel, roll back). */
export default function OtaPage() {
  const { t } = useTranslation();
  const [params, setParams] = useSearchParams();
  const tab = params.get('tab') ?? 'campaigns';
  return (
    <>
      <Typography.Title level={3} style={{ marginTop: 0 }}>
        {t('ota.title')}
      </Typography.Title>
      <Tabs
        activeKey={tab}
        onChange={(k) => setParams({ tab: k })}
        items={[
          { key: 'campaigns', label: t('ota.campaigns'), children: <Campaigns /> },
          { key: 'packages', label: t('ota.packages'), children: <Packages /> },
        ]}
      />
    </>
  );
}

function Packages() {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const qc = useQueryClient();
  const [params, setParams] = useSearchParams();
  const product = params.get('product') ?? undefined;
  const [uploading, setUploading] = useState(false);
  const list = useQuery({
    queryKey: ['firmware', product],
    enabled: !!product,
    queryFn: () => unwrap(api.GET('/api/v1/products/{key}/firmware', { params: { path: { key: product! } } })),
  });
  const versions = useQuery({
    queryKey: ['firmware-versions', product],
    enabled: !!product,
    queryFn: () => unwrap(api.GET('/api/v1/products/{key}/firmware-versions', { params: { path: { key: product! } } })),
  });
  const remove = async (id: string) => {
    try {
      await unwrap(api.DELETE('/api/v1/firmware/{id}', { params: { path: { id } } }));
      message.success(t('ota.deleted'));
      void qc.invalidateQueries({ queryKey: ['firmware', product] });
    } catch (e) {
      message.error((e as Error).message);
    }
  };
  return (
    <Space direction="vertical" size="middle" style={{ width: '100%' }}>
      <Space wrap>
        <ProductSelect value={product} onChange={(v) => setParams(v ? { tab: 'packages', product: v } : { tab: 'packages' })} />
        <Button type="primary" disabled={!product} onClick={() => setUploading(true)}>
          {t('ota.upload')}
        </Button>
      </Space>
      {!product ? (
        <Card>
          <PageState empty emptyText={t('ota.pickProductFirst')} />
        </Card>
      ) : (
        <>
          <Card size="small" title={t('ota.packages')}>
            <PageState
              loading={list.isLoading}
              error={list.error}
              empty={list.data?.items.length === 0}
              emptyText={t('ota.noPackages')}
              onRetry={() => void list.refetch()}
            >
              <Table<Firmware>
                size="small"
                rowKey="id"
                dataSource={list.data?.items}
                columns={[
                  { title: t('ota.version'), dataIndex: 'version', render: (v: string) => <Tag color="blue">{v}</Tag> },
                  { title: t('ota.size'), dataIndex: 'size', render: (n: number) => `${formatNumber(n / 1024, 1)} KiB` },
                  { title: t('ota.minVersion'), dataIndex: 'minVersion', render: (v: string | null) => v ?? '—' },
                  { title: t('ota.notes'), dataIndex: 'notes', render: (v: string | null) => v ?? '—' },
                  {
                    title: t('ota.sha256'),
                    dataIndex: 'sha256',
                    render: (v: string) => (
                      <Tooltip title={v}>
                        <Typography.Text code copyable={{ text: v }}>
                          {v.slice(0, 12)}
                        </Typography.Text>
                      </Tooltip>
                    ),
                  },
                  { title: t('ota.uploaded'), dataIndex: 'createdAt', render: (v: string) => formatDateTime(v) },
                  {
                    key: 'delete',
                    render: (_: unknown, f) => (
                      <Popconfirm title={t('ota.deleteConfirm')} onConfirm={() => void remove(f.id)} okText={t('common.yes')} cancelText={t('common.no')}>
                        <Button danger size="small">
                          {t('ota.delete')}
                        </Button>
                      </Popconfirm>
                    ),
                  },
                ]}
              />
            </PageState>
          </Card>
          <Card size="small" title={t('ota.inventory')}>
            <PageState loading={versions.isLoading} error={versions.error} empty={versions.data?.total === 0} emptyText={t('ota.noDevices')}>
              <Space direction="vertical" style={{ width: '100%' }}>
                {versions.data?.versions.map((v) => (
                  <div key={v.version} style={{ display: 'flex', gap: 12, alignItems: 'center' }}>
                    <Tag style={{ minWidth: 90 }}>{v.version === 'unknown' ? t('ota.unknownVersion') : v.version}</Tag>
                    <Progress
                      style={{ flex: 1, margin: 0 }}
                      percent={Math.round((v.devices / Math.max(1, versions.data.total)) * 100)}
                      format={() => formatNumber(v.devices, 0)}
                    />
                  </div>
                ))}
              </Space>
            </PageState>
          </Card>
        </>
      )}
      {product && <UploadFirmware product={product} open={uploading} onClose={() => setUploading(false)} />}
    </Space>
  );
}

function Campaigns() {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const qc = useQueryClient();
  const [state, setState] = useState<string>();
  const [creating, setCreating] = useState<Partial<Campaign> | undefined>();
  const [open, setOpen] = useState<string>();
  const list = useQuery({
    queryKey: ['campaigns', state],
    queryFn: () => unwrap(api.GET('/api/v1/ota/campaigns', { params: { query: { state, limit: 100, offset: 0 } } })),
    // Progress moves while a campaign runs: asked again every two seconds then.
    refetchInterval: (q) => (q.state.data?.items.some((c) => LIVE_STATES.includes(c.state)) ? 2000 : false),
  });
  const move = async (id: string, to: 'pause' | 'resume' | 'cancel') => {
    try {
      if (to === 'pause') await unwrap(api.POST('/api/v1/ota/campaigns/{id}/pause', { params: { path: { id } } }));
      if (to === 'resume') await unwrap(api.POST('/api/v1/ota/campaigns/{id}/resume', { params: { path: { id } } }));
      if (to === 'cancel') await unwrap(api.POST('/api/v1/ota/campaigns/{id}/cancel', { params: { path: { id } } }));
      void qc.invalidateQueries({ queryKey: ['campaigns'] });
      void qc.invalidateQueries({ queryKey: ['campaign', id] });
    } catch (e) {
      message.error((e as Error).message);
    }
  };
  return (
    <Space direction="vertical" size="middle" style={{ width: '100%' }}>
      <Space wrap>
        <Select
          allowClear
          style={{ minWidth: 180 }}
          placeholder={t('ota.allStates')}
          aria-label={t('ota.state')}
          value={state}
          onChange={setState}
          options={['scheduled', 'running', 'paused', 'completed', 'aborted', 'cancelled'].map((s) => ({ value: s, label: t(`ota.states.${s}`) }))}
        />
        <Button type="primary" onClick={() => setCreating({})}>
          {t('ota.newCampaign')}
        </Button>
      </Space>
      <Card>
        <PageState
          loading={list.isLoading}
          error={list.error}
          empty={list.data?.items.length === 0}
          emptyText={t('ota.noCampaigns')}
          onRetry={() => void list.refetch()}
        >
          <Table<Campaign>
            size="small"
            rowKey="id"
            dataSource={list.data?.items}
            onRow={(c) => ({ onClick: () => setOpen(c.id), style: { cursor: 'pointer' } })}
            columns={[
              { title: t('ota.name'), dataIndex: 'name' },
              { title: t('devices.product'), dataIndex: 'product' },
              { title: t('ota.version'), dataIndex: 'version', render: (v: string, c) => <Tag color={c.allowDowngrade ? 'orange' : 'blue'}>{v}</Tag> },
              {
                title: t('ota.state'),
                dataIndex: 'state',
                render: (s: string) => (
                  <Tag color={stateColor(s)} data-state={s}>
                    {t(`ota.states.${s}`, { defaultValue: s })}
                  </Tag>
                ),
              },
              { title: t('ota.wave'), key: 'wave', render: (_: unknown, c) => `${c.wave + 1} / ${c.waves.length}` },
              { title: t('ota.progress'), key: 'progress', width: 220, render: (_: unknown, c) => <CampaignProgress campaign={c} /> },
              { title: t('ota.created'), dataIndex: 'createdAt', render: (v: string) => formatDateTime(v) },
              {
                key: 'moves',
                render: (_: unknown, c) => (
                  <Space onClick={(e) => e.stopPropagation()}>
                    {(c.state === 'running' || c.state === 'scheduled') && (
                      <Button size="small" onClick={() => void move(c.id, 'pause')}>
                        {t('ota.pause')}
                      </Button>
                    )}
                    {c.state === 'paused' && (
                      <Button size="small" onClick={() => void move(c.id, 'resume')}>
                        {t('ota.resume')}
                      </Button>
                    )}
                    {LIVE_STATES.includes(c.state) && (
                      <Popconfirm
                        title={t('ota.cancelConfirm')}
                        onConfirm={() => void move(c.id, 'cancel')}
                        okText={t('common.yes')}
                        cancelText={t('common.no')}
                      >
                        <Button size="small" danger>
                          {t('ota.cancelCampaign')}
                        </Button>
                      </Popconfirm>
                    )}
                    {!LIVE_STATES.includes(c.state) && c.counts.succeeded > 0 && (
                      <Tooltip title={t('ota.rollbackHelp')}>
                        <Button
                          size="small"
                          onClick={() =>
                            setCreating({
                              name: t('ota.rollbackName', { name: c.name }),
                              product: c.product,
                              allowDowngrade: true,
                              target: { versions: { min: c.version } },
                            })
                          }
                        >
                          {t('ota.rollback')}
                        </Button>
                      </Tooltip>
                    )}
                  </Space>
                ),
              },
            ]}
          />
        </PageState>
      </Card>
      <CampaignForm initial={creating} onClose={() => setCreating(undefined)} onCreated={(id) => setOpen(id)} />
      <CampaignDrawer id={open} onClose={() => setOpen(undefined)} onMove={move} />
    </Space>
  );
}
