import { useQuery, useQueryClient } from '@tanstack/react-query';
import { Alert, Button, Card, Form, Input, Modal, Popconfirm, Select, Table, Tag, Typography } from 'antd';
import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { api, unwrap, type paths } from '../../api/client';
import { PageState } from '../../components/page-state';
import { formatDateTime } from '../../lib/format';

type Scope = paths['/api/v1/keys']['post']['requestBody']['content']['application/json']['scopes'][number];
const SCOPES: Scope[] = [
  'devices:read',
  'devices:control',
  'homes:read',
  'homes:manage',
  'automations:manage',
  'products:manage',
  'devices:manage',
  'gateway:read',
  'gateway:manage',
  'partners:manage',
  'audit:read',
  'users:read',
];

/** The caller's API keys: create (the key is shown once), list, revoke. */
export default function KeysPage() {
  const { t } = useTranslation();
  const qc = useQueryClient();
  const keys = useQuery({ queryKey: ['keys'], queryFn: () => unwrap(api.GET('/api/v1/keys')) });
  const [open, setOpen] = useState(false);
  const [secret, setSecret] = useState<string>();
  const [error, setError] = useState<string>();
  const [form] = Form.useForm<{ name: string; scopes: Scope[] }>();

  const create = async () => {
    const v = await form.validateFields();
    setError(undefined);
    try {
      const k = await unwrap(api.POST('/api/v1/keys', { body: { name: v.name, scopes: v.scopes } }));
      setSecret(k.key);
      form.resetFields();
      void qc.invalidateQueries({ queryKey: ['keys'] });
    } catch (e) {
      setError((e as Error).message);
    }
  };
  const revoke = async (id: string) => {
    await unwrap(api.DELETE('/api/v1/keys/{id}', { params: { path: { id } } }));
    void qc.invalidateQueries({ queryKey: ['keys'] });
  };

  return (
    <>
      <div style={{ display: 'flex', justifyContent: 'space-between', marginBottom: 16 }}>
        <Typography.Title level={3} style={{ margin: 0 }}>
          {t('keys.title')}
        </Typography.Title>
        <Button type="primary" onClick={() => setOpen(true)}>
          {t('keys.new')}
        </Button>
      </div>
      {secret && (
        <Alert
          type="success"
          showIcon
          closable
          onClose={() => setSecret(undefined)}
          style={{ marginBottom: 16 }}
          message={t('keys.once')}
          description={
            <Typography.Text code copyable data-testid="new-key">
              {secret}
            </Typography.Text>
          }
        />
      )}
      <Card>
        <PageState loading={keys.isLoading} error={keys.error} empty={keys.data?.items.length === 0} onRetry={() => void keys.refetch()}>
          <Table
            size="small"
            rowKey="id"
            dataSource={keys.data?.items}
            columns={[
              { title: t('keys.name'), dataIndex: 'name' },
              { title: t('keys.scopes'), dataIndex: 'scopes', render: (v: string[]) => v.map((s) => <Tag key={s}>{s}</Tag>) },
              { title: t('keys.homes'), dataIndex: 'homeIds', render: (v: string[] | null) => (v ? v.join(', ') : '—') },
              { title: t('keys.created'), dataIndex: 'createdAt', render: (v: string) => formatDateTime(v) },
              { title: t('keys.lastUsed'), dataIndex: 'lastUsedAt', render: (v: string | null) => (v ? formatDateTime(v) : t('common.never')) },
              {
                key: 'revoke',
                render: (_: unknown, k) =>
                  k.revokedAt ? (
                    <Tag>{formatDateTime(k.revokedAt)}</Tag>
                  ) : (
                    <Popconfirm title={t('keys.revokeConfirm')} onConfirm={() => void revoke(k.id)} okText={t('common.yes')} cancelText={t('common.no')}>
                      <Button danger size="small">
                        {t('keys.revoke')}
                      </Button>
                    </Popconfirm>
                  ),
              },
            ]}
          />
        </PageState>
      </Card>
      <Modal
        open={open}
        title={t('keys.new')}
        onOk={() => void create().then(() => setOpen(false))}
        onCancel={() => setOpen(false)}
        okText={t('common.create')}
        cancelText={t('common.cancel')}
      >
        {error && <Alert type="error" showIcon message={error} style={{ marginBottom: 16 }} />}
        <Form form={form} layout="vertical">
          <Form.Item name="name" label={t('keys.name')} rules={[{ required: true, message: t('form.required') }]}>
            <Input maxLength={100} />
          </Form.Item>
          <Form.Item name="scopes" label={t('keys.scopes')} rules={[{ required: true, message: t('form.required') }]}>
            <Select mode="multiple" options={SCOPES.map((s) => ({ value: s, label: s }))} />
          </Form.Item>
        </Form>
      </Modal>
    </>
  );
}
