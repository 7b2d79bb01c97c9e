import { MinusCircleOutlined, PlusOutlined } from '@ant-design/icons';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { Alert, App, Button, Card, Checkbox, Form, Input, InputNumber, Modal, Popconfirm, Radio, Space, Table, Tag, Timeline, Typography } from 'antd';
import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { useNavigate } from 'react-router';
import { ApiError, api, unwrap, type Device } from '../../api/client';
import { PageState } from '../../components/page-state';
import { tagChanges } from '../../lib/fleet-query';
import { formatDateTime, formatRelative } from '../../lib/format';

/** Examples in the query language and JSON: the same in every language. */
const ATTRIBUTES_EXAMPLE = '{"installer": "ACME"}';

/** The operator's lifecycle moves on a device: disable/enable, delete (confirmed; a hub says what becomes of its sub-devices). */
export function LifecycleActions({ device }: { device: Device }) {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const qc = useQueryClient();
  const nav = useNavigate();
  const [deleting, setDeleting] = useState(false);
  const [purge, setPurge] = useState(false);
  const [children, setChildren] = useState<'delete' | 'detach'>();
  const [error, setError] = useState<string>();
  const [hub, setHub] = useState(false);
  const toggle = async () => {
    try {
      await unwrap(api.PATCH('/api/v1/devices/{id}', { params: { path: { id: device.id } }, body: { disabled: !device.disabled } }));
      message.success(device.disabled ? t('device.enabledOk') : t('device.disabledOk'));
      void qc.invalidateQueries({ queryKey: ['device', device.id] });
    } catch (e) {
      message.error((e as Error).message);
    }
  };
  const remove = async () => {
    setError(undefined);
    try {
      await unwrap(api.DELETE('/api/v1/devices/{id}', { params: { path: { id: device.id }, query: { purge: purge || undefined, children } } }));
      message.success(t('device.deleted'));
      void qc.invalidateQueries({ queryKey: ['devices'] });
      nav('/devices');
    } catch (e) {
      // A hub with sub-devices needs to be told what becomes of them.
      if (e instanceof ApiError && e.code === 'E_CONFLICT') setHub(true);
      setError((e as Error).message);
    }
  };
  return (
    <>
      <Button onClick={() => void toggle()} danger={!device.disabled}>
        {device.disabled ? t('device.enable') : t('device.disable')}
      </Button>
      <Button danger type="primary" onClick={() => setDeleting(true)}>
        {t('device.delete')}
      </Button>
      <Modal
        open={deleting}
        title={t('device.deleteTitle', { name: device.name })}
        okText={t('device.delete')}
        okButtonProps={{ danger: true, disabled: hub && !children }}
        cancelText={t('common.cancel')}
        onOk={() => void remove()}
        onCancel={() => {
          setDeleting(false);
          setError(undefined);
        }}
      >
        <Typography.Paragraph>{t('device.deleteHelp')}</Typography.Paragraph>
        <Checkbox checked={purge} onChange={(e) => setPurge(e.target.checked)}>
          {t('device.purge')}
        </Checkbox>
        {hub && (
          <Radio.Group
            style={{ marginTop: 12, display: 'block' }}
            value={children}
            onChange={(e) => setChildren(e.target.value)}
            options={[
              { value: 'detach', label: t('device.childrenDetach') },
              { value: 'delete', label: t('device.childrenDelete') },
            ]}
          />
        )}
        {error && <Alert type="error" showIcon message={error} style={{ marginTop: 12 }} />}
      </Modal>
    </>
  );
}

/** The operator's tags (searchable) and attributes (any JSON) of a device, edited and saved as one PATCH of what changed. */
export function LabelsPanel({ device }: { device: Device }) {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const qc = useQueryClient();
  const before = (device.tags ?? {}) as Record<string, string>;
  const beforeAttrs = (device.attributes ?? {}) as Record<string, unknown>;
  const [form] = Form.useForm<{ tags: Array<{ key: string; value: string }>; attributes: string }>();
  const [error, setError] = useState<string>();
  const save = async () => {
    const v = await form.validateFields();
    setError(undefined);
    const after = Object.fromEntries((v.tags ?? []).filter((r) => r?.key).map((r) => [r.key.trim(), r.value ?? '']));
    let attrs: Record<string, unknown>;
    try {
      attrs = v.attributes.trim() ? JSON.parse(v.attributes) : {};
      if (!attrs || typeof attrs !== 'object' || Array.isArray(attrs)) throw new Error();
    } catch {
      setError(t('device.badAttributes'));
      return;
    }
    const attrChanges: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(attrs)) if (JSON.stringify(beforeAttrs[k]) !== JSON.stringify(x)) attrChanges[k] = x;
    for (const k of Object.keys(beforeAttrs)) if (!(k in attrs)) attrChanges[k] = null;
    const tags = tagChanges(before, after);
    if (!Object.keys(tags).length && !Object.keys(attrChanges).length) return;
    try {
      await unwrap(
        api.PATCH('/api/v1/devices/{id}', {
          params: { path: { id: device.id } },
          body: { ...(Object.keys(tags).length ? { tags } : {}), ...(Object.keys(attrChanges).length ? { attributes: attrChanges } : {}) } as never,
        }),
      );
      message.success(t('device.labelsSaved'));
      void qc.invalidateQueries({ queryKey: ['device', device.id] });
    } catch (e) {
      setError((e as Error).message);
    }
  };
  return (
    <Card size="small">
      <Form
        form={form}
        name="labels"
        layout="vertical"
        key={JSON.stringify([before, beforeAttrs])}
        initialValues={{
          tags: Object.entries(before).map(([key, value]) => ({ key, value })),
          attributes: Object.keys(beforeAttrs).length ? JSON.stringify(beforeAttrs, null, 2) : '',
        }}
      >
        <Form.Item label={t('device.tags')} tooltip={t('device.tagsHelp')}>
          <Form.List name="tags">
            {(fields, { add, remove }) => (
              <>
                {fields.map((f, i) => (
                  <Space key={f.key} align="baseline">
                    <Form.Item
                      name={[f.name, 'key']}
                      rules={[
                        { required: true, message: t('form.required') },
                        { pattern: /^[A-Za-z0-9_-]{1,64}$/, message: t('device.badTagKey') },
                      ]}
                    >
                      <Input placeholder={t('device.tagKey')} aria-label={t('device.tagKeyN', { n: i + 1 })} />
                    </Form.Item>
                    <Form.Item name={[f.name, 'value']} rules={[{ required: true, message: t('form.required') }]}>
                      <Input placeholder={t('device.tagValue')} aria-label={t('device.tagValueN', { n: i + 1 })} maxLength={256} />
                    </Form.Item>
                    <MinusCircleOutlined onClick={() => remove(f.name)} aria-label={t('device.removeTag')} />
                  </Space>
                ))}
                <Button type="dashed" icon={<PlusOutlined />} onClick={() => add({ key: '', value: '' })}>
                  {t('device.addTag')}
                </Button>
              </>
            )}
          </Form.List>
        </Form.Item>
        <Form.Item name="attributes" label={t('device.attributes')} tooltip={t('device.attributesHelp')}>
          <Input.TextArea rows={4} spellCheck={false} style={{ fontFamily: 'monospace' }} placeholder={ATTRIBUTES_EXAMPLE} />
        </Form.Item>
        {error && <Alert type="error" showIcon message={error} style={{ marginBottom: 12 }} />}
        <Button type="primary" onClick={() => void save()}>
          {t('common.save')}
        </Button>
      </Form>
    </Card>
  );
}

/** The device's credentials: rotate its secret (the new one shown once, the old one kept for a grace period), its client certificates. */
export function CredentialsPanel({ deviceId }: { deviceId: string }) {
  const { t } = useTranslation();
  const [grace, setGrace] = useState<number | null>(0);
  const [secret, setSecret] = useState<{ secret: string; until: string | null }>();
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const qc = useQueryClient();
  const { message } = App.useApp();
  const revokeCert = async (fingerprint: string) => {
    try {
      await unwrap(api.POST('/api/v1/certificates/revoked', { body: { fingerprint } }));
      void qc.invalidateQueries({ queryKey: ['device-certs', deviceId] });
    } catch (e) {
      message.error((e as Error).message);
    }
  };
  const certs = useQuery({
    queryKey: ['device-certs', deviceId],
    queryFn: () => unwrap(api.GET('/api/v1/devices/{id}/certificates', { params: { path: { id: deviceId } } })),
  });
  const rotate = async () => {
    setBusy(true);
    setError(undefined);
    try {
      const r = await unwrap(api.POST('/api/v1/devices/{id}/secret', { params: { path: { id: deviceId } }, body: { graceSeconds: grace ?? 0 } }));
      setSecret({ secret: r.secret, until: r.previousSecretValidUntil });
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Space direction="vertical" size="middle" style={{ width: '100%' }}>
      <Card size="small" title={t('device.secret')}>
        <Typography.Paragraph type="secondary">{t('device.rotateHelp')}</Typography.Paragraph>
        <Space wrap>
          <InputNumber min={0} max={604800} value={grace} onChange={setGrace} addonBefore={t('device.grace')} addonAfter="s" aria-label={t('device.grace')} />
          <Button type="primary" danger loading={busy} onClick={() => void rotate()}>
            {t('device.rotate')}
          </Button>
        </Space>
        {error && <Alert type="error" showIcon message={error} style={{ marginTop: 12 }} />}
        {secret && (
          <Alert
            style={{ marginTop: 12 }}
            type="success"
            showIcon
            closable
            onClose={() => setSecret(undefined)}
            message={secret.until ? t('device.rotatedGrace', { until: formatDateTime(secret.until) }) : t('device.rotated')}
            description={
              <Typography.Text code copyable data-testid="new-secret">
                {secret.secret}
              </Typography.Text>
            }
          />
        )}
      </Card>
      <Card size="small" title={t('device.certificates')}>
        <PageState loading={certs.isLoading} error={certs.error} empty={certs.data?.items.length === 0} emptyText={t('device.noCertificates')}>
          <Table
            size="small"
            rowKey="fingerprint"
            pagination={false}
            dataSource={certs.data?.items}
            columns={[
              { title: t('device.subject'), dataIndex: 'subject' },
              { title: t('device.issuer'), dataIndex: 'caId' },
              { title: t('device.notAfter'), dataIndex: 'notAfter', render: (v: string) => formatDateTime(v) },
              { title: t('device.firstSeen'), dataIndex: 'firstSeenAt', render: (v: string) => formatDateTime(v) },
              {
                title: t('device.statusCol'),
                dataIndex: 'revoked',
                render: (r: boolean) => (r ? <Tag color="red">{t('device.revoked')}</Tag> : <Tag color="green">{t('device.valid')}</Tag>),
              },
              {
                key: 'revoke',
                render: (_: unknown, c: { fingerprint: string; revoked: boolean }) =>
                  !c.revoked && (
                    <Popconfirm
                      title={t('device.revokeCertConfirm')}
                      onConfirm={() => void revokeCert(c.fingerprint)}
                      okText={t('common.yes')}
                      cancelText={t('common.no')}
                    >
                      <Button size="small" danger>
                        {t('products.revoke')}
                      </Button>
                    </Popconfirm>
                  ),
              },
            ]}
          />
        </PageState>
      </Card>
    </Space>
  );
}

/** How far back the presence timeline reads. */
const PRESENCE_DAYS = 7;

/**
 * The device's connects and disconnects with their reasons, newest first, from its recorded
 * presence history (the last week); the device page refetches it when the stream says presence changed.
 */
export function PresenceTimeline({ deviceId }: { deviceId: string }) {
  const { t } = useTranslation();
  const history = useQuery({
    queryKey: ['presence-history', deviceId],
    queryFn: () =>
      unwrap(
        api.GET('/api/v1/devices/{id}/presence/history', {
          params: { path: { id: deviceId }, query: { from: new Date(Date.now() - PRESENCE_DAYS * 86_400_000).toISOString(), limit: 100 } },
        }),
      ),
  });
  const changes = history.data?.items ?? [];
  return (
    <Card size="small" title={t('device.presenceTimeline')} extra={<Typography.Text type="secondary">{t('device.presenceTimelineHelp')}</Typography.Text>}>
      <PageState loading={history.isLoading} error={history.error} empty={changes.length === 0} onRetry={() => void history.refetch()}>
        <Timeline
          data-testid="presence-timeline"
          items={changes.map((c) => ({
            color: c.online ? 'green' : 'gray',
            children: (
              <span>
                <b>{c.online ? t('devices.online') : t('devices.offline')}</b> · {t(`device.reasons.${c.reason}`, { defaultValue: c.reason })} ·{' '}
                <span title={formatDateTime(c.at)}>{formatRelative(c.at)}</span>
              </span>
            ),
          }))}
        />
      </PageState>
    </Card>
  );
}
