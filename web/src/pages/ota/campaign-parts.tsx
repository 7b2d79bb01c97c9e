import { MinusCircleOutlined, PlusOutlined } from '@ant-design/icons';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import {
  Alert,
  App,
  Button,
  Checkbox,
  Descriptions,
  Drawer,
  Form,
  Input,
  InputNumber,
  Modal,
  Popconfirm,
  Progress,
  Select,
  Space,
  Steps,
  Table,
  Tag,
  Tooltip,
} from 'antd';
import { useEffect, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { Link } from 'react-router';
import { api, unwrap, type paths } from '../../api/client';
import { PageState } from '../../components/page-state';
import { parseTags } from '../../lib/fleet-query';
import { formatDateTime, formatRelative } from '../../lib/format';

export type Firmware = paths['/api/v1/firmware/{id}']['get']['responses'][200]['content']['application/json'];
export type Campaign = paths['/api/v1/ota/campaigns/{id}']['get']['responses'][200]['content']['application/json'];
type CampaignBody = paths['/api/v1/ota/campaigns']['post']['requestBody']['content']['application/json'];
type Job = paths['/api/v1/ota/campaigns/{id}/devices']['get']['responses'][200]['content']['application/json']['items'][number];

/** Campaign states a person can still act on. */
export const LIVE_STATES = ['scheduled', 'running', 'paused'];
const JOB_STATES = ['queued', 'sent', 'downloading', 'verifying', 'installing', 'rebooting', 'succeeded', 'failed', 'cancelled'];

export function stateColor(state: string): string {
  return (
    (
      { running: 'processing', scheduled: 'default', paused: 'warning', completed: 'success', aborted: 'error', cancelled: 'default' } as Record<string, string>
    )[state] ?? 'default'
  );
}

export function ProductSelect({ value, onChange, allowClear }: { value?: string; onChange?: (v: string | undefined) => void; allowClear?: boolean }) {
  const { t } = useTranslation();
  const products = useQuery({ queryKey: ['products'], queryFn: () => unwrap(api.GET('/api/v1/products')) });
  return (
    <Select
      showSearch
      allowClear={allowClear}
      style={{ minWidth: 220 }}
      placeholder={t('ota.pickProduct')}
      aria-label={t('devices.product')}
      value={value}
      loading={products.isLoading}
      optionFilterProp="label"
      options={products.data?.items.map((p) => ({ value: p.key, label: `${p.name} (${p.key})` }))}
      onChange={onChange}
    />
  );
}

/** The jobs of a campaign as one bar: succeeded (green) and ended over all its jobs. */
export function CampaignProgress({ campaign }: { campaign: Campaign }) {
  const { t } = useTranslation();
  const c = campaign.counts;
  const total = c.pending + c.inProgress + c.succeeded + c.failed + c.cancelled;
  const done = c.succeeded + c.failed + c.cancelled;
  return (
    <Tooltip
      title={`${t('ota.counts.succeeded')} ${c.succeeded} · ${t('ota.counts.failed')} ${c.failed} · ${t('ota.counts.inProgress')} ${c.inProgress} · ${t('ota.counts.pending')} ${c.pending} · ${t('ota.counts.cancelled')} ${c.cancelled}`}
    >
      <Progress
        size="small"
        style={{ margin: 0 }}
        percent={total ? Math.round((done / total) * 100) : 0}
        success={{ percent: total ? Math.round((c.succeeded / total) * 100) : 0 }}
        status={c.failed > 0 ? 'exception' : undefined}
        format={() => `${c.succeeded}/${total}`}
        data-testid={`campaign-progress-${campaign.id}`}
      />
    </Tooltip>
  );
}

interface FormValues {
  name: string;
  product: string;
  firmware: string;
  versionMin?: string;
  versionBelow?: string;
  tags?: string;
  devices?: string;
  waves: Array<{ percent: number; soakMinutes?: number }>;
  maxFailureRate?: number;
  maxOfflineAfterUpdate?: number;
  minDevices?: number;
  timeoutMinutes?: number;
  allowDowngrade?: boolean;
  startHour?: number;
  endHour?: number;
  startAt?: string;
}

/** A new campaign: product, package, target, waves and abort gates; `initial` prefills it (a rollback). Undefined: closed. */
export function CampaignForm({ initial, onClose, onCreated }: { initial?: Partial<Campaign>; onClose: () => void; onCreated: (id: string) => void }) {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const qc = useQueryClient();
  const [form] = Form.useForm<FormValues>();
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const product = Form.useWatch('product', form);
  const firmware = useQuery({
    queryKey: ['firmware', product],
    enabled: !!product,
    queryFn: () => unwrap(api.GET('/api/v1/products/{key}/firmware', { params: { path: { key: product } } })),
  });
  useEffect(() => {
    if (!initial) return;
    setError(undefined);
    form.resetFields();
    form.setFieldsValue({
      name: initial.name,
      product: initial.product,
      versionMin: initial.target?.versions?.min,
      versionBelow: initial.target?.versions?.below,
      allowDowngrade: initial.allowDowngrade,
      waves: [{ percent: 100 }],
    });
  }, [initial, form]);

  const submit = async () => {
    const v = await form.validateFields();
    const tags = parseTags(v.tags);
    if (tags instanceof Error) {
      setError(t('ota.badTags', { pair: tags.message }));
      return;
    }
    const devices = (v.devices ?? '')
      .split(/[\s,]+/)
      .map((s) => s.trim())
      .filter(Boolean);
    const versions = v.versionMin || v.versionBelow ? { min: v.versionMin || undefined, below: v.versionBelow || undefined } : undefined;
    const target = { versions, tags, devices: devices.length ? devices : undefined };
    const abort =
      v.maxFailureRate !== undefined || v.maxOfflineAfterUpdate !== undefined || v.minDevices !== undefined
        ? {
            maxFailureRate: v.maxFailureRate !== undefined && v.maxFailureRate !== null ? v.maxFailureRate / 100 : undefined,
            maxOfflineAfterUpdate: v.maxOfflineAfterUpdate !== undefined && v.maxOfflineAfterUpdate !== null ? v.maxOfflineAfterUpdate / 100 : undefined,
            minDevices: v.minDevices ?? undefined,
          }
        : undefined;
    const body: CampaignBody = {
      name: v.name,
      product: v.product,
      firmware: v.firmware,
      target: versions || tags || devices.length ? target : undefined,
      waves: v.waves.map((w) => ({ percent: w.percent, soakMinutes: w.soakMinutes ?? undefined })),
      abort,
      timeoutMinutes: v.timeoutMinutes ?? undefined,
      allowDowngrade: v.allowDowngrade || undefined,
      window:
        v.startHour !== undefined && v.startHour !== null && v.endHour !== undefined && v.endHour !== null
          ? { startHour: v.startHour, endHour: v.endHour }
          : undefined,
      startAt: v.startAt ? new Date(v.startAt).toISOString() : undefined,
    };
    setBusy(true);
    setError(undefined);
    try {
      const c = await unwrap(api.POST('/api/v1/ota/campaigns', { body }));
      message.success(t('ota.campaignCreated'));
      void qc.invalidateQueries({ queryKey: ['campaigns'] });
      onClose();
      onCreated(c.id);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Modal
      open={!!initial}
      width={720}
      title={initial?.allowDowngrade ? t('ota.rollback') : t('ota.newCampaign')}
      onOk={() => void submit()}
      onCancel={onClose}
      confirmLoading={busy}
      okText={t('ota.start')}
      cancelText={t('common.cancel')}
      destroyOnClose
    >
      {error && <Alert type="error" showIcon message={error} style={{ marginBottom: 16 }} data-testid="campaign-error" />}
      <Form form={form} name="campaign" layout="vertical" initialValues={{ waves: [{ percent: 100 }] }}>
        <Form.Item name="name" label={t('ota.name')} rules={[{ required: true, message: t('form.required') }]}>
          <Input maxLength={200} />
        </Form.Item>
        <Space wrap align="start">
          <Form.Item name="product" label={t('devices.product')} rules={[{ required: true, message: t('form.required') }]}>
            <ProductSelect onChange={() => form.setFieldValue('firmware', undefined)} />
          </Form.Item>
          <Form.Item name="firmware" label={t('ota.package')} rules={[{ required: true, message: t('form.required') }]}>
            <Select
              style={{ minWidth: 220 }}
              aria-label={t('ota.package')}
              loading={firmware.isLoading}
              notFoundContent={t('ota.noPackages')}
              options={firmware.data?.items.map((f) => ({ value: f.id, label: `${f.version}${f.notes ? ` · ${f.notes}` : ''}` }))}
            />
          </Form.Item>
        </Space>
        <Form.Item label={t('ota.target')} tooltip={t('ota.targetHelp')} style={{ marginBottom: 0 }}>
          <Space wrap align="start">
            <Form.Item name="versionMin">
              <Input placeholder={t('ota.versionMin')} aria-label={t('ota.versionMin')} />
            </Form.Item>
            <Form.Item name="versionBelow">
              <Input placeholder={t('ota.versionBelow')} aria-label={t('ota.versionBelow')} />
            </Form.Item>
            <Form.Item name="tags">
              <Input placeholder={t('ota.tagsPlaceholder')} aria-label={t('ota.tags')} style={{ width: 240 }} />
            </Form.Item>
          </Space>
        </Form.Item>
        <Form.Item name="devices" label={t('ota.devices')}>
          <Input.TextArea rows={2} placeholder={t('ota.devicesPlaceholder')} />
        </Form.Item>
        <Form.Item label={t('ota.waves')} tooltip={t('ota.wavesHelp')} required>
          <Form.List name="waves">
            {(fields, { add, remove }) => (
              <>
                {fields.map((f, i) => (
                  <Space key={f.key} align="baseline">
                    <span>{t('ota.waveN', { n: i + 1 })}</span>
                    <Form.Item name={[f.name, 'percent']} rules={[{ required: true, message: t('form.required') }]}>
                      <InputNumber min={0.01} max={100} addonAfter="%" aria-label={t('ota.wavePercent', { n: i + 1 })} />
                    </Form.Item>
                    <Form.Item name={[f.name, 'soakMinutes']}>
                      <InputNumber min={0} max={43200} placeholder={t('ota.soak')} aria-label={t('ota.soak')} />
                    </Form.Item>
                    {fields.length > 1 && <MinusCircleOutlined onClick={() => remove(f.name)} aria-label={t('ota.removeWave')} />}
                  </Space>
                ))}
                <Button type="dashed" icon={<PlusOutlined />} onClick={() => add({ percent: 100 })} disabled={fields.length >= 20}>
                  {t('ota.addWave')}
                </Button>
              </>
            )}
          </Form.List>
        </Form.Item>
        <Space wrap align="start">
          <Form.Item name="maxFailureRate" label={t('ota.maxFailureRate')}>
            <InputNumber min={0} max={100} addonAfter="%" />
          </Form.Item>
          <Form.Item name="maxOfflineAfterUpdate" label={t('ota.maxOffline')}>
            <InputNumber min={0} max={100} addonAfter="%" />
          </Form.Item>
          <Form.Item name="minDevices" label={t('ota.minDevices')}>
            <InputNumber min={1} />
          </Form.Item>
          <Form.Item name="timeoutMinutes" label={t('ota.timeout')}>
            <InputNumber min={0.01} max={43200} placeholder="60" />
          </Form.Item>
        </Space>
        <Space wrap align="start">
          <Form.Item name="startHour" label={t('ota.windowStart')} tooltip={t('ota.windowHelp')}>
            <InputNumber min={0} max={23} />
          </Form.Item>
          <Form.Item name="endHour" label={t('ota.windowEnd')}>
            <InputNumber min={0} max={23} />
          </Form.Item>
          <Form.Item name="startAt" label={t('ota.startAt')}>
            <Input type="datetime-local" aria-label={t('ota.startAt')} />
          </Form.Item>
        </Space>
        <Form.Item name="allowDowngrade" valuePropName="checked">
          <Checkbox>{t('ota.allowDowngrade')}</Checkbox>
        </Form.Item>
      </Form>
    </Modal>
  );
}

/** One campaign: its waves as steps, its counts, why it stopped, and every device's job. */
export function CampaignDrawer({
  id,
  onClose,
  onMove,
}: {
  id?: string;
  onClose: () => void;
  onMove: (id: string, to: 'pause' | 'resume' | 'cancel') => Promise<void>;
}) {
  const { t } = useTranslation();
  const [jobState, setJobState] = useState<string>();
  const live = (c?: Campaign) => !!c && LIVE_STATES.includes(c.state);
  const campaign = useQuery({
    queryKey: ['campaign', id],
    enabled: !!id,
    queryFn: () => unwrap(api.GET('/api/v1/ota/campaigns/{id}', { params: { path: { id: id! } } })),
    refetchInterval: (q) => (live(q.state.data) ? 2000 : false),
  });
  const jobs = useQuery({
    queryKey: ['campaign-jobs', id, jobState],
    enabled: !!id,
    queryFn: () => unwrap(api.GET('/api/v1/ota/campaigns/{id}/devices', { params: { path: { id: id! }, query: { state: jobState, limit: 1000, offset: 0 } } })),
    refetchInterval: live(campaign.data) ? 2000 : false,
  });
  const c = campaign.data;
  const updatedAt = c?.updatedAt;
  const refetchJobs = jobs.refetch;
  // The campaign moved (a wave, its end): its jobs are asked again, once more after the last poll.
  useEffect(() => {
    if (updatedAt) void refetchJobs();
  }, [updatedAt, refetchJobs]);
  return (
    <Drawer open={!!id} onClose={onClose} width={860} title={c ? `${c.name} · ${c.version}` : t('ota.campaign')}>
      <PageState loading={campaign.isLoading} error={campaign.error} onRetry={() => void campaign.refetch()}>
        {c && (
          <Space direction="vertical" size="middle" style={{ width: '100%' }}>
            <Space wrap>
              <Tag color={stateColor(c.state)} data-testid="campaign-state" data-state={c.state}>
                {t(`ota.states.${c.state}`, { defaultValue: c.state })}
              </Tag>
              {(c.state === 'running' || c.state === 'scheduled') && (
                <Button size="small" onClick={() => void onMove(c.id, 'pause')}>
                  {t('ota.pause')}
                </Button>
              )}
              {c.state === 'paused' && (
                <Button size="small" onClick={() => void onMove(c.id, 'resume')}>
                  {t('ota.resume')}
                </Button>
              )}
              {live(c) && (
                <Popconfirm title={t('ota.cancelConfirm')} onConfirm={() => void onMove(c.id, 'cancel')} okText={t('common.yes')} cancelText={t('common.no')}>
                  <Button size="small" danger>
                    {t('ota.cancelCampaign')}
                  </Button>
                </Popconfirm>
              )}
            </Space>
            {c.reason && <Alert type={c.state === 'aborted' ? 'error' : 'info'} showIcon message={c.reason} />}
            <Steps
              size="small"
              current={c.wave}
              status={c.state === 'aborted' ? 'error' : c.state === 'completed' ? 'finish' : 'process'}
              items={c.waves.map((w, i) => ({
                title: t('ota.waveN', { n: i + 1 }),
                description: `${w.percent} %${w.soakMinutes ? ` · ${t('ota.soakFor', { minutes: w.soakMinutes })}` : ''}`,
              }))}
            />
            <CampaignProgress campaign={c} />
            <Descriptions size="small" column={2} bordered>
              <Descriptions.Item label={t('devices.product')}>{c.product}</Descriptions.Item>
              <Descriptions.Item label={t('ota.package')}>{c.firmware}</Descriptions.Item>
              {(['succeeded', 'failed', 'inProgress', 'pending', 'cancelled'] as const).map((k) => (
                <Descriptions.Item key={k} label={t(`ota.counts.${k}`)}>
                  <span data-count={k}>{c.counts[k]}</span>
                </Descriptions.Item>
              ))}
              {c.soakUntil && <Descriptions.Item label={t('ota.soakUntil')}>{formatRelative(c.soakUntil)}</Descriptions.Item>}
              {c.skipped && Object.keys(c.skipped).length > 0 && (
                <Descriptions.Item label={t('ota.skipped')} span={2}>
                  {Object.entries(c.skipped).map(([k, n]) => (
                    <Tag key={k}>
                      {t(`ota.skip.${k}`, { defaultValue: k })}: {n}
                    </Tag>
                  ))}
                </Descriptions.Item>
              )}
              <Descriptions.Item label={t('ota.created')}>{formatDateTime(c.createdAt)}</Descriptions.Item>
              <Descriptions.Item label={t('ota.finished')}>{formatDateTime(c.finishedAt)}</Descriptions.Item>
            </Descriptions>
            <Select
              allowClear
              style={{ minWidth: 180 }}
              placeholder={t('ota.allJobStates')}
              aria-label={t('ota.jobState')}
              value={jobState}
              onChange={setJobState}
              options={JOB_STATES.map((s) => ({ value: s, label: t(`ota.jobStates.${s}`) }))}
            />
            <Table<Job>
              size="small"
              rowKey="id"
              loading={jobs.isFetching && !jobs.data}
              dataSource={jobs.data?.items}
              pagination={{ pageSize: 50, showTotal: (n) => t('common.total', { count: n, formatted: String(jobs.data?.total ?? n) }) }}
              columns={[
                { title: t('devices.id'), dataIndex: 'device', render: (d: string) => <Link to={`/devices/${d}`}>{d}</Link> },
                { title: t('ota.wave'), dataIndex: 'wave', render: (w: number) => w + 1 },
                {
                  title: t('ota.state'),
                  dataIndex: 'state',
                  render: (s: string, j) => (
                    <Tag color={s === 'succeeded' ? 'success' : s === 'failed' ? 'error' : undefined}>
                      {t(`ota.jobStates.${s}`, { defaultValue: s })}
                      {j.progress !== null && s !== 'succeeded' && s !== 'queued' ? ` ${j.progress} %` : ''}
                    </Tag>
                  ),
                },
                { title: t('ota.from'), dataIndex: 'fromVersion', render: (v: string | null) => v ?? '—' },
                { title: t('ota.error'), dataIndex: 'error', render: (v: string | null) => v ?? '' },
                { title: t('ota.updated'), dataIndex: 'updatedAt', render: (v: string) => formatRelative(v) },
              ]}
            />
          </Space>
        )}
      </PageState>
    </Drawer>
  );
}
