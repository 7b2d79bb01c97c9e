import { useQuery, useQueryClient } from '@tanstack/react-query';
import {
  Alert,
  App,
  Button,
  Card,
  Checkbox,
  Drawer,
  Form,
  Input,
  InputNumber,
  Modal,
  Popconfirm,
  Progress,
  Radio,
  Select,
  Space,
  Table,
  Tag,
  Typography,
} from 'antd';
import { useEffect, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { Link, useSearchParams } from 'react-router';
import { api, unwrap, type paths } from '../../api/client';
import { CursorButtons, useCursorPages } from '../../components/cursor-pager';
import { PageState } from '../../components/page-state';
import { parseTags } from '../../lib/fleet-query';
import { formatDateTime } from '../../lib/format';

/** Examples in the query language and JSON: the same in every language. */
const QUERY_EXAMPLE = 'product:plug AND tag.site:berlin';
const PARAMS_EXAMPLE = '{"times": 3}';
const VALUES_EXAMPLE = '{"on": true}';

type Job = paths['/api/v1/fleet/jobs/{jobId}']['get']['responses'][200]['content']['application/json'];
type JobBody = paths['/api/v1/fleet/jobs']['post']['requestBody']['content']['application/json'];
const KINDS = ['command', 'desired', 'tags', 'disable', 'enable', 'delete'] as const;
const TARGET_STATES = ['pending', 'running', 'ok', 'failed', 'cancelled'];
const live = (j?: Job) => !!j && (j.status === 'queued' || j.status === 'running');

export function JobsTab() {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const qc = useQueryClient();
  const [params] = useSearchParams();
  const [creating, setCreating] = useState<{ query?: string; groupId?: string }>();
  const [open, setOpen] = useState<string>();
  // From the devices page (a query) or a group: the new-job form opens with that target.
  useEffect(() => {
    const query = params.get('query') ?? undefined;
    const groupId = params.get('group') ?? undefined;
    if (query || groupId) setCreating({ query, groupId });
  }, [params]);
  const jobs = useQuery({
    queryKey: ['fleet-jobs'],
    queryFn: () => unwrap(api.GET('/api/v1/fleet/jobs', { params: { query: { limit: 100 } } })),
    refetchInterval: (q) => (q.state.data?.items.some(live) ? 1000 : false),
  });
  const cancel = async (jobId: string) => {
    try {
      await unwrap(api.POST('/api/v1/fleet/jobs/{jobId}/cancel', { params: { path: { jobId } } }));
      void qc.invalidateQueries({ queryKey: ['fleet-jobs'] });
      void qc.invalidateQueries({ queryKey: ['fleet-job', jobId] });
    } catch (e) {
      message.error((e as Error).message);
    }
  };
  return (
    <Space direction="vertical" size="middle" style={{ width: '100%' }}>
      <Button type="primary" onClick={() => setCreating({})}>
        {t('fleet.newJob')}
      </Button>
      <Card>
        <PageState
          loading={jobs.isLoading}
          error={jobs.error}
          empty={jobs.data?.items.length === 0}
          emptyText={t('fleet.noJobs')}
          onRetry={() => void jobs.refetch()}
        >
          <Table<Job>
            size="small"
            rowKey="id"
            dataSource={jobs.data?.items}
            onRow={(j) => ({ onClick: () => setOpen(j.id), style: { cursor: 'pointer' } })}
            columns={[
              { title: t('fleet.kind'), dataIndex: 'kind', render: (k: string) => <Tag>{t(`fleet.kinds.${k}`, { defaultValue: k })}</Tag> },
              { title: t('fleet.target'), dataIndex: 'target', render: (v: Record<string, unknown>) => <TargetText target={v} /> },
              { title: t('fleet.status'), dataIndex: 'status', render: (s: string) => <StatusTag status={s} /> },
              { title: t('fleet.progress'), key: 'progress', width: 220, render: (_: unknown, j) => <JobProgress job={j} /> },
              { title: t('fleet.created'), dataIndex: 'createdAt', render: (v: string) => formatDateTime(v) },
              {
                key: 'cancel',
                render: (_: unknown, j) =>
                  live(j) && (
                    <Space onClick={(e) => e.stopPropagation()}>
                      <Popconfirm title={t('fleet.cancelJobConfirm')} onConfirm={() => void cancel(j.id)} okText={t('common.yes')} cancelText={t('common.no')}>
                        <Button size="small" danger>
                          {t('fleet.cancelJob')}
                        </Button>
                      </Popconfirm>
                    </Space>
                  ),
              },
            ]}
          />
        </PageState>
      </Card>
      <NewJob initial={creating} onClose={() => setCreating(undefined)} onCreated={setOpen} />
      <JobDrawer jobId={open} onClose={() => setOpen(undefined)} onCancel={cancel} />
    </Space>
  );
}

function StatusTag({ status }: { status: string }) {
  const { t } = useTranslation();
  const color = ({ running: 'processing', done: 'success', cancelled: 'default', queued: 'default' } as Record<string, string>)[status];
  return (
    <Tag color={color} data-testid="job-status" data-status={status}>
      {t(`fleet.statuses.${status}`, { defaultValue: status })}
    </Tag>
  );
}

function TargetText({ target }: { target: Record<string, unknown> }) {
  const { t } = useTranslation();
  if (typeof target.query === 'string') return <Typography.Text code>{target.query}</Typography.Text>;
  if (typeof target.groupId === 'string') return <GroupName id={target.groupId} />;
  if (Array.isArray(target.deviceIds)) return <span>{t('fleet.targetDevices', { count: target.deviceIds.length })}</span>;
  return <span>{JSON.stringify(target)}</span>;
}

/** A group by its name (the groups list is cached), its ID until known or when it is gone. */
function GroupName({ id }: { id: string }) {
  const { t } = useTranslation();
  const groups = useQuery({ queryKey: ['fleet-groups'], queryFn: () => unwrap(api.GET('/api/v1/fleet/groups')) });
  return <span>{t('fleet.targetGroup', { id: groups.data?.items.find((g) => g.id === id)?.name ?? id })}</span>;
}

function JobProgress({ job }: { job: Job }) {
  const p = job.progress;
  const total = Math.max(1, job.total);
  const ended = p.ok + p.failed + p.cancelled;
  return (
    <Progress
      size="small"
      style={{ margin: 0 }}
      percent={Math.round((ended / total) * 100)}
      success={{ percent: Math.round((p.ok / total) * 100) }}
      status={p.failed > 0 ? 'exception' : undefined}
      format={() => `${ended}/${job.total}`}
    />
  );
}

interface JobForm {
  kind: (typeof KINDS)[number];
  targetKind: 'query' | 'group' | 'devices';
  query?: string;
  groupId?: string;
  deviceIds?: string;
  action?: string;
  params?: string;
  values?: string;
  tags?: string;
  removeTags?: string;
  purge?: boolean;
  rate?: number;
}

function json(text: string | undefined): Record<string, unknown> | undefined | Error {
  if (!text?.trim()) return undefined;
  try {
    const v = JSON.parse(text);
    return v && typeof v === 'object' && !Array.isArray(v) ? v : new Error('object');
  } catch {
    return new Error('json');
  }
}

function NewJob({ initial, onClose, onCreated }: { initial?: { query?: string; groupId?: string }; onClose: () => void; onCreated: (id: string) => void }) {
  const { t } = useTranslation();
  const qc = useQueryClient();
  const [form] = Form.useForm<JobForm>();
  const kind = Form.useWatch('kind', form);
  const targetKind = Form.useWatch('targetKind', form);
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const groups = useQuery({ queryKey: ['fleet-groups'], enabled: !!initial, queryFn: () => unwrap(api.GET('/api/v1/fleet/groups')) });
  useEffect(() => {
    if (!initial) return;
    setError(undefined);
    form.resetFields();
    form.setFieldsValue({ targetKind: initial.groupId ? 'group' : 'query', query: initial.query, groupId: initial.groupId });
  }, [initial, form]);
  const submit = async () => {
    const v = await form.validateFields();
    let spec: JobBody['spec'];
    if (v.kind === 'command') {
      const params = json(v.params);
      if (params instanceof Error) return setError(t('fleet.badJson'));
      spec = { kind: 'command', action: v.action!, params };
    } else if (v.kind === 'desired') {
      const values = json(v.values);
      if (!values || values instanceof Error) return setError(t('fleet.badJson'));
      spec = { kind: 'desired', values };
    } else if (v.kind === 'tags') {
      const set = parseTags(v.tags);
      if (set instanceof Error) return setError(t('ota.badTags', { pair: set.message }));
      const tags: Record<string, string | null> = { ...set };
      for (const k of (v.removeTags ?? '').split(/[\s,]+/).filter(Boolean)) tags[k] = null;
      if (!Object.keys(tags).length) return setError(t('fleet.noTags'));
      spec = { kind: 'tags', tags };
    } else if (v.kind === 'delete') spec = { kind: 'delete', purge: v.purge || undefined };
    else spec = { kind: v.kind };
    const target: JobBody['target'] =
      v.targetKind === 'query'
        ? { query: v.query! }
        : v.targetKind === 'group'
          ? { groupId: v.groupId! }
          : { deviceIds: (v.deviceIds ?? '').split(/[\s,]+/).filter(Boolean) };
    setBusy(true);
    setError(undefined);
    try {
      const job = await unwrap(api.POST('/api/v1/fleet/jobs', { body: { spec, target, rate: v.rate ?? undefined } }));
      void qc.invalidateQueries({ queryKey: ['fleet-jobs'] });
      onClose();
      onCreated(job.id);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Modal
      open={!!initial}
      width={640}
      title={t('fleet.newJob')}
      onOk={() => void submit()}
      onCancel={onClose}
      confirmLoading={busy}
      okText={t('fleet.startJob')}
      cancelText={t('common.cancel')}
    >
      {error && <Alert type="error" showIcon message={error} style={{ marginBottom: 16 }} data-testid="job-error" />}
      <Form form={form} name="job" layout="vertical" initialValues={{ kind: 'tags', targetKind: 'query', rate: 10 }}>
        <Form.Item name="kind" label={t('fleet.kind')}>
          <Select aria-label={t('fleet.kind')} options={KINDS.map((k) => ({ value: k, label: t(`fleet.kinds.${k}`) }))} />
        </Form.Item>
        {kind === 'command' && (
          <>
            <Form.Item name="action" label={t('fleet.action')} rules={[{ required: true, message: t('form.required') }]}>
              <Input />
            </Form.Item>
            <Form.Item name="params" label={t('fleet.params')}>
              <Input.TextArea rows={2} placeholder={PARAMS_EXAMPLE} style={{ fontFamily: 'monospace' }} />
            </Form.Item>
          </>
        )}
        {kind === 'desired' && (
          <Form.Item name="values" label={t('fleet.values')} rules={[{ required: true, message: t('form.required') }]}>
            <Input.TextArea rows={2} placeholder={VALUES_EXAMPLE} style={{ fontFamily: 'monospace' }} />
          </Form.Item>
        )}
        {kind === 'tags' && (
          <>
            <Form.Item name="tags" label={t('fleet.setTags')}>
              <Input placeholder={t('ota.tagsPlaceholder')} />
            </Form.Item>
            <Form.Item name="removeTags" label={t('fleet.removeTags')}>
              <Input placeholder={t('fleet.removeTagsPlaceholder')} />
            </Form.Item>
          </>
        )}
        {kind === 'delete' && (
          <Form.Item name="purge" valuePropName="checked">
            <Checkbox>{t('fleet.purge')}</Checkbox>
          </Form.Item>
        )}
        <Form.Item name="targetKind" label={t('fleet.target')}>
          <Radio.Group
            optionType="button"
            options={[
              { value: 'query', label: t('fleet.targetQuery') },
              { value: 'group', label: t('fleet.targetAGroup') },
              { value: 'devices', label: t('fleet.targetIds') },
            ]}
          />
        </Form.Item>
        {targetKind === 'query' && (
          <Form.Item name="query" label={t('fleet.query')} rules={[{ required: true, message: t('form.required') }]}>
            <Input.TextArea rows={2} placeholder={QUERY_EXAMPLE} style={{ fontFamily: 'monospace' }} />
          </Form.Item>
        )}
        {targetKind === 'group' && (
          <Form.Item name="groupId" label={t('fleet.group')} rules={[{ required: true, message: t('form.required') }]}>
            <Select aria-label={t('fleet.group')} loading={groups.isLoading} options={groups.data?.items.map((g) => ({ value: g.id, label: g.name }))} />
          </Form.Item>
        )}
        {targetKind === 'devices' && (
          <Form.Item name="deviceIds" label={t('fleet.deviceIds')} rules={[{ required: true, message: t('form.required') }]}>
            <Input.TextArea rows={2} placeholder={t('ota.devicesPlaceholder')} />
          </Form.Item>
        )}
        <Form.Item name="rate" label={t('fleet.rate')}>
          <InputNumber min={1} max={1000} />
        </Form.Item>
      </Form>
    </Modal>
  );
}

function JobDrawer({ jobId, onClose, onCancel }: { jobId?: string; onClose: () => void; onCancel: (id: string) => Promise<void> }) {
  const { t } = useTranslation();
  const [status, setStatus] = useState<string>();
  const pages = useCursorPages();
  const job = useQuery({
    queryKey: ['fleet-job', jobId],
    enabled: !!jobId,
    queryFn: () => unwrap(api.GET('/api/v1/fleet/jobs/{jobId}', { params: { path: { jobId: jobId! } } })),
    refetchInterval: (q) => (live(q.state.data) ? 1000 : false),
  });
  const j = job.data;
  const targets = useQuery({
    queryKey: ['fleet-job-devices', jobId, status, pages.cursor, j?.status, j ? j.progress.ok + j.progress.failed + j.progress.cancelled : 0],
    enabled: !!jobId,
    placeholderData: (prev) => prev,
    queryFn: () =>
      unwrap(api.GET('/api/v1/fleet/jobs/{jobId}/devices', { params: { path: { jobId: jobId! }, query: { status, limit: 100, cursor: pages.cursor } } })),
  });
  return (
    <Drawer
      open={!!jobId}
      width={760}
      onClose={() => {
        pages.reset();
        setStatus(undefined);
        onClose();
      }}
      title={j ? t(`fleet.kinds.${j.kind}`, { defaultValue: j.kind }) : t('fleet.job')}
    >
      <PageState loading={job.isLoading} error={job.error}>
        {j && (
          <Space direction="vertical" size="middle" style={{ width: '100%' }}>
            <Space wrap>
              <StatusTag status={j.status} />
              <TargetText target={j.target} />
              {live(j) && (
                <Popconfirm title={t('fleet.cancelJobConfirm')} onConfirm={() => void onCancel(j.id)} okText={t('common.yes')} cancelText={t('common.no')}>
                  <Button size="small" danger>
                    {t('fleet.cancelJob')}
                  </Button>
                </Popconfirm>
              )}
            </Space>
            <JobProgress job={j} />
            <Space wrap>
              {TARGET_STATES.map((s) => (
                <Tag key={s} data-progress={s}>
                  {t(`fleet.targetStates.${s}`)}: {j.progress[s as keyof Job['progress']]}
                </Tag>
              ))}
            </Space>
            <Typography.Text code style={{ whiteSpace: 'pre-wrap' }}>
              {JSON.stringify(j.spec)}
            </Typography.Text>
            <Select
              allowClear
              style={{ minWidth: 180 }}
              placeholder={t('fleet.allResults')}
              aria-label={t('fleet.result')}
              value={status}
              onChange={(v: string | undefined) => {
                pages.reset();
                setStatus(v);
              }}
              options={TARGET_STATES.map((s) => ({ value: s, label: t(`fleet.targetStates.${s}`) }))}
            />
            <Table
              size="small"
              rowKey="deviceId"
              pagination={false}
              dataSource={targets.data?.items}
              columns={[
                { title: t('devices.id'), dataIndex: 'deviceId', render: (d: string) => <Link to={`/devices/${d}`}>{d}</Link> },
                {
                  title: t('fleet.result'),
                  dataIndex: 'status',
                  render: (s: string) => (
                    <Tag color={s === 'ok' ? 'success' : s === 'failed' ? 'error' : undefined}>{t(`fleet.targetStates.${s}`, { defaultValue: s })}</Tag>
                  ),
                },
                {
                  title: t('fleet.details'),
                  key: 'details',
                  render: (_: unknown, r: { error: string | null; result: unknown }) => r.error ?? (r.result ? JSON.stringify(r.result) : ''),
                },
                { title: t('fleet.finished'), dataIndex: 'finishedAt', render: (v: string | null) => formatDateTime(v) },
              ]}
            />
            <CursorButtons pages={pages} next={targets.data?.nextCursor} />
          </Space>
        )}
      </PageState>
    </Drawer>
  );
}
