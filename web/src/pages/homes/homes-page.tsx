import { useQuery } from '@tanstack/react-query';
import { App, Badge, Button, Card, Descriptions, Drawer, Input, Space, Table, Tabs, Tag, Typography } from 'antd';
import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { Link } from 'react-router';
import { api, unwrap, type paths } from '../../api/client';
import { PageState } from '../../components/page-state';
import { ChannelForm, DeleteChannel, DeleteScene, SceneEditor } from './home-admin';
import { formatDateTime } from '../../lib/format';

type Home = paths['/api/v1/homes']['get']['responses'][200]['content']['application/json']['items'][number];

/** Homes: for the operator, a support view of any customer's home (its people, devices, automations). */
export default function HomesPage() {
  const { t } = useTranslation();
  const homes = useQuery({ queryKey: ['homes'], queryFn: () => unwrap(api.GET('/api/v1/homes')) });
  const [q, setQ] = useState('');
  const [open, setOpen] = useState<Home>();
  const needle = q.trim().toLowerCase();
  const rows = homes.data?.items.filter(
    (h) => !needle || h.name.toLowerCase().includes(needle) || h.id.toLowerCase().includes(needle) || h.ownerId.toLowerCase().includes(needle),
  );
  return (
    <>
      <div style={{ display: 'flex', justifyContent: 'space-between', marginBottom: 16 }}>
        <Typography.Title level={3} style={{ margin: 0 }}>
          {t('homes.title')}
        </Typography.Title>
        <Input.Search allowClear style={{ width: 300 }} placeholder={t('homes.find')} aria-label={t('homes.find')} onChange={(e) => setQ(e.target.value)} />
      </div>
      <Card>
        <PageState loading={homes.isLoading} error={homes.error} empty={rows?.length === 0} emptyText={t('homes.empty')} onRetry={() => void homes.refetch()}>
          <Table<Home>
            rowKey="id"
            size="middle"
            dataSource={rows}
            onRow={(h) => ({ onClick: () => setOpen(h), style: { cursor: 'pointer' } })}
            columns={[
              { title: t('homes.name'), dataIndex: 'name' },
              { title: 'ID', dataIndex: 'id', render: (v: string) => <Typography.Text code>{v}</Typography.Text> },
              { title: t('homes.timezone'), dataIndex: 'timezone' },
              { title: t('homes.role'), dataIndex: 'role', render: (v: string) => <Tag>{v}</Tag> },
              { title: t('homes.created'), dataIndex: 'createdAt', render: (v: string) => formatDateTime(v) },
            ]}
          />
        </PageState>
      </Card>
      <Drawer open={!!open} width={820} title={open?.name} onClose={() => setOpen(undefined)} destroyOnHidden>
        {open && <HomeDetail home={open} />}
      </Drawer>
    </>
  );
}

function HomeDetail({ home }: { home: Home }) {
  const { t } = useTranslation();
  const members = useQuery({
    queryKey: ['home-members', home.id],
    queryFn: () => unwrap(api.GET('/api/v1/homes/{homeId}/members', { params: { path: { homeId: home.id } } })),
  });
  const devices = useQuery({
    queryKey: ['home-devices', home.id],
    queryFn: () => unwrap(api.GET('/api/v1/homes/{homeId}/devices', { params: { path: { homeId: home.id } } })),
  });
  const scenes = useQuery({
    queryKey: ['home-scenes', home.id],
    queryFn: () => unwrap(api.GET('/api/v1/homes/{homeId}/scenes', { params: { path: { homeId: home.id } } })),
  });
  const channels = useQuery({
    queryKey: ['home-channels', home.id],
    queryFn: () => unwrap(api.GET('/api/v1/homes/{homeId}/notification-channels', { params: { path: { homeId: home.id } } })),
  });
  const { message } = App.useApp();
  const [sceneEditor, setSceneEditor] = useState<{ scene?: NonNullable<typeof scenes.data>['items'][number] }>();
  const [addingChannel, setAddingChannel] = useState(false);
  const activate = async (sceneId: string) => {
    try {
      const r = await unwrap(api.POST('/api/v1/scenes/{sceneId}/activate', { params: { path: { sceneId } }, body: {} }));
      if (r.ok) message.success(t('homes.sceneDone'));
      else message.warning(t('homes.scenePartly'));
    } catch (e) {
      message.error((e as Error).message);
    }
  };
  return (
    <>
      <Descriptions size="small" column={2} style={{ marginBottom: 16 }}>
        <Descriptions.Item label="ID">{home.id}</Descriptions.Item>
        <Descriptions.Item label={t('homes.timezone')}>{home.timezone}</Descriptions.Item>
        <Descriptions.Item label={t('homes.owner')}>{home.ownerId}</Descriptions.Item>
        <Descriptions.Item label={t('homes.created')}>{formatDateTime(home.createdAt)}</Descriptions.Item>
      </Descriptions>
      <Link to={`/automations?home=${home.id}`}>
        <Button>{t('homes.automations')}</Button>
      </Link>
      <Tabs
        items={[
          {
            key: 'members',
            label: t('homes.members'),
            children: (
              <PageState loading={members.isLoading} error={members.error} empty={members.data?.items.length === 0}>
                <Table
                  size="small"
                  rowKey="userId"
                  pagination={false}
                  dataSource={members.data?.items}
                  columns={[
                    { title: t('homes.email'), dataIndex: 'email' },
                    { title: t('homes.role'), dataIndex: 'role', render: (v: string) => <Tag>{v}</Tag> },
                    { title: t('homes.joined'), dataIndex: 'joinedAt', render: (v: string) => formatDateTime(v) },
                  ]}
                />
              </PageState>
            ),
          },
          {
            key: 'devices',
            label: t('homes.devices'),
            children: (
              <PageState loading={devices.isLoading} error={devices.error} empty={devices.data?.items.length === 0}>
                <Table
                  size="small"
                  rowKey="id"
                  pagination={false}
                  dataSource={devices.data?.items}
                  columns={[
                    { title: t('devices.name'), dataIndex: 'name', render: (v: string, d) => <Link to={`/devices/${d.id}`}>{v}</Link> },
                    { title: t('devices.product'), dataIndex: 'product' },
                    {
                      title: t('devices.status'),
                      dataIndex: 'online',
                      render: (v: boolean) => <Badge status={v ? 'success' : 'default'} text={v ? t('devices.online') : t('devices.offline')} />,
                    },
                  ]}
                />
              </PageState>
            ),
          },
          {
            key: 'scenes',
            label: t('homes.scenes'),
            children: (
              <Space direction="vertical" style={{ width: '100%' }}>
                <Button onClick={() => setSceneEditor({})}>{t('homes.newScene')}</Button>
                <PageState loading={scenes.isLoading} error={scenes.error} empty={scenes.data?.items.length === 0}>
                  <Table
                    size="small"
                    rowKey="id"
                    pagination={false}
                    dataSource={scenes.data?.items}
                    columns={[
                      { title: t('homes.name'), dataIndex: 'name' },
                      { title: t('homes.devices'), dataIndex: 'states', render: (v: unknown[]) => v.length },
                      {
                        key: 'go',
                        render: (_: unknown, sc) => (
                          <Space>
                            <Button size="small" onClick={() => void activate(sc.id)}>
                              {t('homes.activate')}
                            </Button>
                            <Button size="small" onClick={() => setSceneEditor({ scene: sc })}>
                              {t('homes.edit')}
                            </Button>
                            <DeleteScene homeId={home.id} sceneId={sc.id} />
                          </Space>
                        ),
                      },
                    ]}
                  />
                </PageState>
              </Space>
            ),
          },
          {
            key: 'channels',
            label: t('homes.channels'),
            children: (
              <Space direction="vertical" style={{ width: '100%' }}>
                <Button onClick={() => setAddingChannel(true)}>{t('homes.newChannel')}</Button>
                <PageState loading={channels.isLoading} error={channels.error} empty={channels.data?.items.length === 0}>
                  <Table
                    size="small"
                    rowKey="id"
                    pagination={false}
                    dataSource={channels.data?.items}
                    columns={[
                      { title: t('homes.name'), dataIndex: 'name' },
                      { title: t('homes.channelType'), dataIndex: 'type', render: (v: string) => <Tag>{v}</Tag> },
                      { title: t('homes.minSeverity'), dataIndex: 'minSeverity' },
                      { title: t('homes.created'), dataIndex: 'createdAt', render: (v: string) => formatDateTime(v) },
                      { key: 'delete', render: (_: unknown, c) => <DeleteChannel homeId={home.id} channelId={c.id} /> },
                    ]}
                  />
                </PageState>
              </Space>
            ),
          },
        ]}
      />
      <SceneEditor
        homeId={home.id}
        open={!!sceneEditor}
        scene={sceneEditor?.scene}
        devices={devices.data?.items ?? []}
        onClose={() => setSceneEditor(undefined)}
      />
      <ChannelForm homeId={home.id} open={addingChannel} onClose={() => setAddingChannel(false)} />
    </>
  );
}
