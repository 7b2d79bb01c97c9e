import { useQuery, useQueryClient } from '@tanstack/react-query';
import { Alert, App, Badge, Button, Card, Drawer, Form, Input, Modal, Popconfirm, Radio, Select, Space, Table, Tag, Typography } from 'antd';
import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { Link, useNavigate } from 'react-router';
import { api, unwrap, type paths } from '../../api/client';
import { CursorButtons, useCursorPages } from '../../components/cursor-pager';
import { MatchCount, TOTAL_LIMIT } from '../../components/match-count';
import { PageState } from '../../components/page-state';
import { formatDateTime } from '../../lib/format';

/** An example in the query language: the same in every language. */
const QUERY_EXAMPLE = 'product:light AND tag.site:berlin';

type Group = paths['/api/v1/fleet/groups/{groupId}']['get']['responses'][200]['content']['application/json'];

export function GroupsTab() {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const qc = useQueryClient();
  const [creating, setCreating] = useState(false);
  const [open, setOpen] = useState<string>();
  const groups = useQuery({ queryKey: ['fleet-groups'], queryFn: () => unwrap(api.GET('/api/v1/fleet/groups')) });
  const remove = async (groupId: string) => {
    try {
      await unwrap(api.DELETE('/api/v1/fleet/groups/{groupId}', { params: { path: { groupId } } }));
      message.success(t('fleet.groupDeleted'));
      void qc.invalidateQueries({ queryKey: ['fleet-groups'] });
    } catch (e) {
      message.error((e as Error).message);
    }
  };
  const byId = new Map(groups.data?.items.map((g) => [g.id, g]));
  return (
    <Space direction="vertical" size="middle" style={{ width: '100%' }}>
      <Button type="primary" onClick={() => setCreating(true)}>
        {t('fleet.newGroup')}
      </Button>
      <Card>
        <PageState
          loading={groups.isLoading}
          error={groups.error}
          empty={groups.data?.items.length === 0}
          emptyText={t('fleet.noGroups')}
          onRetry={() => void groups.refetch()}
        >
          <Table<Group>
            size="small"
            rowKey="id"
            dataSource={groups.data?.items}
            onRow={(g) => ({ onClick: () => setOpen(g.id), style: { cursor: 'pointer' } })}
            columns={[
              { title: t('fleet.name'), dataIndex: 'name' },
              {
                title: t('fleet.type'),
                dataIndex: 'type',
                render: (v: string) => <Tag color={v === 'dynamic' ? 'purple' : 'blue'}>{t(`fleet.types.${v}`)}</Tag>,
              },
              { title: t('fleet.query'), dataIndex: 'query', render: (v: string | null) => (v ? <Typography.Text code>{v}</Typography.Text> : '—') },
              { title: t('fleet.parent'), dataIndex: 'parentId', render: (v: string | null) => (v ? (byId.get(v)?.name ?? v) : '—') },
              { title: t('fleet.created'), dataIndex: 'createdAt', render: (v: string) => formatDateTime(v) },
              {
                key: 'delete',
                render: (_: unknown, g) => (
                  <Space onClick={(e) => e.stopPropagation()}>
                    <Popconfirm title={t('fleet.deleteGroupConfirm')} onConfirm={() => void remove(g.id)} okText={t('common.yes')} cancelText={t('common.no')}>
                      <Button size="small" danger>
                        {t('fleet.delete')}
                      </Button>
                    </Popconfirm>
                  </Space>
                ),
              },
            ]}
          />
        </PageState>
      </Card>
      <NewGroup open={creating} groups={groups.data?.items ?? []} onClose={() => setCreating(false)} />
      <GroupDrawer group={open ? byId.get(open) : undefined} onClose={() => setOpen(undefined)} />
    </Space>
  );
}

function NewGroup({ open, groups, onClose }: { open: boolean; groups: Group[]; onClose: () => void }) {
  const { t } = useTranslation();
  const qc = useQueryClient();
  const [form] = Form.useForm<{ name: string; description?: string; type: 'static' | 'dynamic'; query?: string; parentId?: string }>();
  const type = Form.useWatch('type', form);
  const [error, setError] = useState<string>();
  const submit = async () => {
    const v = await form.validateFields();
    setError(undefined);
    try {
      await unwrap(
        api.POST('/api/v1/fleet/groups', {
          body: { name: v.name, description: v.description || undefined, query: v.type === 'dynamic' ? v.query : undefined, parentId: v.parentId || undefined },
        }),
      );
      void qc.invalidateQueries({ queryKey: ['fleet-groups'] });
      form.resetFields();
      onClose();
    } catch (e) {
      setError((e as Error).message);
    }
  };
  return (
    <Modal open={open} title={t('fleet.newGroup')} onOk={() => void submit()} onCancel={onClose} okText={t('common.create')} cancelText={t('common.cancel')}>
      {error && <Alert type="error" showIcon message={error} style={{ marginBottom: 16 }} data-testid="group-error" />}
      <Form form={form} name="group" layout="vertical" initialValues={{ type: 'static' }}>
        <Form.Item name="name" label={t('fleet.name')} rules={[{ required: true, message: t('form.required') }]}>
          <Input maxLength={200} />
        </Form.Item>
        <Form.Item name="description" label={t('fleet.description')}>
          <Input maxLength={1000} />
        </Form.Item>
        <Form.Item name="type" label={t('fleet.type')}>
          <Radio.Group
            optionType="button"
            options={[
              { value: 'static', label: t('fleet.types.static') },
              { value: 'dynamic', label: t('fleet.types.dynamic') },
            ]}
          />
        </Form.Item>
        {type === 'dynamic' && (
          <Form.Item name="query" label={t('fleet.query')} rules={[{ required: true, message: t('form.required') }]} extra={t('fleet.queryHelp')}>
            <Input.TextArea rows={2} placeholder={QUERY_EXAMPLE} style={{ fontFamily: 'monospace' }} />
          </Form.Item>
        )}
        <Form.Item name="parentId" label={t('fleet.parent')}>
          <Select
            allowClear
            aria-label={t('fleet.parent')}
            options={groups.filter((g) => g.type === 'static' && !g.parentId).map((g) => ({ value: g.id, label: g.name }))}
          />
        </Form.Item>
      </Form>
    </Modal>
  );
}

function GroupDrawer({ group, onClose }: { group?: Group; onClose: () => void }) {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const qc = useQueryClient();
  const nav = useNavigate();
  const pages = useCursorPages();
  const [ids, setIds] = useState('');
  const [query, setQuery] = useState<string>();
  const [error, setError] = useState<string>();
  const groupId = group?.id;
  const devices = useQuery({
    queryKey: ['fleet-group-devices', groupId, pages.cursor],
    enabled: !!groupId,
    queryFn: () =>
      unwrap(
        api.GET('/api/v1/fleet/groups/{groupId}/devices', {
          params: { path: { groupId: groupId! }, query: { limit: 100, cursor: pages.cursor, totalLimit: TOTAL_LIMIT } },
        }),
      ),
  });
  const refresh = () => {
    pages.reset();
    void qc.invalidateQueries({ queryKey: ['fleet-group-devices', groupId] });
  };
  const add = async () => {
    const deviceIds = ids.split(/[\s,]+/).filter(Boolean);
    if (!deviceIds.length || !groupId) return;
    setError(undefined);
    try {
      await unwrap(api.POST('/api/v1/fleet/groups/{groupId}/devices', { params: { path: { groupId } }, body: { deviceIds } }));
      setIds('');
      refresh();
    } catch (e) {
      setError((e as Error).message);
    }
  };
  const takeOut = async (deviceId: string) => {
    try {
      await unwrap(api.DELETE('/api/v1/fleet/groups/{groupId}/devices/{deviceId}', { params: { path: { groupId: groupId!, deviceId } } }));
      refresh();
    } catch (e) {
      message.error((e as Error).message);
    }
  };
  const patch = async (body: { name?: string; description?: string | null }) => {
    if (!groupId) return;
    setError(undefined);
    try {
      await unwrap(api.PATCH('/api/v1/fleet/groups/{groupId}', { params: { path: { groupId } }, body }));
      void qc.invalidateQueries({ queryKey: ['fleet-groups'] });
    } catch (e) {
      setError((e as Error).message);
    }
  };
  const rename = (name: string) => (name.trim() && name !== group?.name ? patch({ name: name.trim() }) : undefined);
  const describe = (d: string) => (d !== (group?.description ?? '') ? patch({ description: d.trim() || null }) : undefined);
  const saveQuery = async () => {
    if (!groupId || !query) return;
    setError(undefined);
    try {
      await unwrap(api.PATCH('/api/v1/fleet/groups/{groupId}', { params: { path: { groupId } }, body: { query } }));
      message.success(t('fleet.saved'));
      void qc.invalidateQueries({ queryKey: ['fleet-groups'] });
      refresh();
    } catch (e) {
      setError((e as Error).message);
    }
  };
  return (
    <Drawer
      open={!!group}
      onClose={() => {
        setError(undefined);
        setQuery(undefined);
        pages.reset();
        onClose();
      }}
      width={760}
      title={group?.name}
      extra={
        group && (
          <Button onClick={() => nav(`/fleet?tab=jobs&group=${group.id}`)} type="primary">
            {t('fleet.jobOnGroup')}
          </Button>
        )
      }
    >
      {group && (
        <Space direction="vertical" size="middle" style={{ width: '100%' }}>
          <Typography.Title level={5} style={{ margin: 0 }} editable={{ onChange: (name) => void rename(name), text: group.name, tooltip: t('fleet.rename') }}>
            {group.name}
          </Typography.Title>
          <Typography.Paragraph
            type="secondary"
            style={{ margin: 0 }}
            editable={{ onChange: (d) => void describe(d), text: group.description ?? '', tooltip: t('fleet.describe') }}
          >
            {group.description ?? t('fleet.noDescription')}
          </Typography.Paragraph>
          {error && <Alert type="error" showIcon message={error} data-testid="group-error" />}
          {group.type === 'dynamic' ? (
            <Space.Compact style={{ width: '100%' }}>
              <Input
                aria-label={t('fleet.query')}
                value={query ?? group.query ?? ''}
                onChange={(e) => setQuery(e.target.value)}
                style={{ fontFamily: 'monospace' }}
              />
              <Button onClick={() => void saveQuery()} disabled={!query || query === group.query}>
                {t('common.save')}
              </Button>
            </Space.Compact>
          ) : (
            <Space.Compact style={{ width: '100%' }}>
              <Input aria-label={t('fleet.addDevices')} placeholder={t('fleet.addDevicesPlaceholder')} value={ids} onChange={(e) => setIds(e.target.value)} />
              <Button onClick={() => void add()} disabled={!ids.trim()}>
                {t('fleet.add')}
              </Button>
            </Space.Compact>
          )}
          <PageState loading={devices.isLoading} error={devices.error} empty={devices.data?.items.length === 0} emptyText={t('fleet.noMembers')}>
            <Table
              size="small"
              rowKey="id"
              pagination={false}
              dataSource={devices.data?.items}
              columns={[
                { title: t('devices.name'), dataIndex: 'name', render: (n: string, d) => <Link to={`/devices/${d.id}`}>{n}</Link> },
                { title: t('devices.id'), dataIndex: 'id', render: (id: string) => <Typography.Text code>{id}</Typography.Text> },
                { title: t('devices.product'), dataIndex: 'product' },
                {
                  title: t('devices.status'),
                  dataIndex: 'online',
                  render: (o: boolean) => <Badge status={o ? 'success' : 'default'} text={o ? t('devices.online') : t('devices.offline')} />,
                },
                ...(group.type === 'static'
                  ? [
                      {
                        key: 'out',
                        render: (_: unknown, d: { id: string }) => (
                          <Button size="small" onClick={() => void takeOut(d.id)}>
                            {t('fleet.takeOut')}
                          </Button>
                        ),
                      },
                    ]
                  : []),
              ]}
            />
            <CursorButtons
              pages={pages}
              next={devices.data?.nextCursor}
              extra={devices.data?.total !== undefined && <MatchCount total={devices.data.total} capped={devices.data.totalCapped} testId="group-total" />}
            />
          </PageState>
        </Space>
      )}
    </Drawer>
  );
}
