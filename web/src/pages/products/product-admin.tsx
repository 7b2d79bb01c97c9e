import { MinusCircleOutlined, PlusOutlined } from '@ant-design/icons';
import { useQuery, useQueryClient } from '@tanstack/react-query';
import { Alert, App, Button, Card, Checkbox, Descriptions, Form, Input, InputNumber, Popconfirm, Space, Table, Tag, Typography } from 'antd';
import { useMemo, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { ApiError, api, unwrap, type paths } from '../../api/client';
import { PageState } from '../../components/page-state';
import { formatDateTime, formatNumber } from '../../lib/format';

type Ca = paths['/api/v1/products/{key}/cas']['get']['responses'][200]['content']['application/json']['items'][number];
type RetentionBody = paths['/api/v1/products/{key}/retention']['put']['requestBody']['content']['application/json'];
const DURATION = /^([1-9][0-9]{0,4})[dh]$/;
const DURATION_EXAMPLE = '7d';
const PEM_EXAMPLE = '-----BEGIN CERTIFICATE-----\n…\n-----END CERTIFICATE-----';

/** A problem+json's field errors as lines, else its message. */
function problemLines(e: unknown): string[] {
  const errors = e instanceof ApiError ? (e.problem?.errors as Array<{ field?: string; path?: string; message: string }> | undefined) : undefined;
  return errors?.length ? errors.map((x) => `${x.field ?? x.path ?? ''} ${x.message}`.trim()) : [(e as Error).message];
}

interface RetentionForm {
  raw?: string;
  events?: string;
  r1m?: string;
  r1h?: string;
  r1d?: string;
  properties?: Array<{ id: string; raw: string }>;
}

/**
 * How long a product's data is kept (docs/telemetry.md): each duration is the product's own or the
 * configured default (marked); a blank field follows the default, "forever" keeps it.
 */
export function RetentionPanel({ productKey }: { productKey: string }) {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const qc = useQueryClient();
  const [form] = Form.useForm<RetentionForm>();
  const [problems, setProblems] = useState<string[]>([]);
  const view = useQuery({
    queryKey: ['retention', productKey],
    queryFn: () => unwrap(api.GET('/api/v1/products/{key}/retention', { params: { path: { key: productKey } } })),
  });
  const v = view.data;
  const custom = new Set(v?.custom ?? []);
  const own = (key: string, value: string | null | undefined) => (custom.has(key) ? (value ?? 'forever') : undefined);
  const durationRule = {
    validator: (_: unknown, x?: string) =>
      !x || x === 'forever' || DURATION.test(x) ? Promise.resolve() : Promise.reject(new Error(t('products.badDuration'))),
  };
  const save = async () => {
    const f = await form.validateFields();
    const d = (x?: string) => (x === undefined || x === '' ? undefined : x === 'forever' ? null : x);
    const rollups = { '1m': d(f.r1m), '1h': d(f.r1h), '1d': d(f.r1d) };
    const body: RetentionBody = {
      raw: d(f.raw),
      events: d(f.events),
      rollups: Object.values(rollups).some((x) => x !== undefined) ? rollups : undefined,
      properties: f.properties?.length ? Object.fromEntries(f.properties.map((p) => [p.id, { raw: d(p.raw) ?? null }])) : undefined,
    } as RetentionBody;
    setProblems([]);
    try {
      await unwrap(api.PUT('/api/v1/products/{key}/retention', { params: { path: { key: productKey } }, body }));
      message.success(t('products.retentionSaved'));
      void qc.invalidateQueries({ queryKey: ['retention', productKey] });
    } catch (e) {
      setProblems(problemLines(e));
    }
  };
  const shown = (key: string, value: string | null | undefined) => (
    <span>
      {value ?? t('products.forever')} {custom.has(key) ? <Tag color="orange">{t('products.own')}</Tag> : <Tag>{t('products.default')}</Tag>}
    </span>
  );
  return (
    <PageState loading={view.isLoading} error={view.error} onRetry={() => void view.refetch()}>
      {v && (
        <Space direction="vertical" size="middle" style={{ width: '100%' }}>
          <Descriptions size="small" column={{ xs: 1, md: 3 }} bordered data-testid="retention-now">
            <Descriptions.Item label={t('products.raw')}>{shown('raw', v.raw)}</Descriptions.Item>
            <Descriptions.Item label={t('products.eventsKept')}>{shown('events', v.events)}</Descriptions.Item>
            <Descriptions.Item label={t('products.rollup', { size: '1m' })}>{shown('rollups.1m', v.rollups['1m'])}</Descriptions.Item>
            <Descriptions.Item label={t('products.rollup', { size: '1h' })}>{shown('rollups.1h', v.rollups['1h'])}</Descriptions.Item>
            <Descriptions.Item label={t('products.rollup', { size: '1d' })}>{shown('rollups.1d', v.rollups['1d'])}</Descriptions.Item>
          </Descriptions>
          <Form
            form={form}
            name="retention"
            layout="vertical"
            key={JSON.stringify(v)}
            initialValues={{
              raw: own('raw', v.raw),
              events: own('events', v.events),
              r1m: own('rollups.1m', v.rollups['1m']),
              r1h: own('rollups.1h', v.rollups['1h']),
              r1d: own('rollups.1d', v.rollups['1d']),
              properties: Object.entries(v.properties).map(([id, p]) => ({ id, raw: p.raw ?? 'forever' })),
            }}
          >
            <Typography.Paragraph type="secondary">{t('products.retentionHelp')}</Typography.Paragraph>
            <Space wrap align="start">
              <Form.Item name="raw" label={t('products.raw')} rules={[durationRule]}>
                <Input placeholder={v.raw ?? t('products.forever')} style={{ width: 140 }} />
              </Form.Item>
              <Form.Item name="events" label={t('products.eventsKept')} rules={[durationRule]}>
                <Input placeholder={v.events ?? t('products.forever')} style={{ width: 140 }} />
              </Form.Item>
              <Form.Item name="r1m" label={t('products.rollup', { size: '1m' })} rules={[durationRule]}>
                <Input placeholder={v.rollups['1m'] ?? t('products.forever')} style={{ width: 140 }} />
              </Form.Item>
              <Form.Item name="r1h" label={t('products.rollup', { size: '1h' })} rules={[durationRule]}>
                <Input placeholder={v.rollups['1h'] ?? t('products.forever')} style={{ width: 140 }} />
              </Form.Item>
              <Form.Item name="r1d" label={t('products.rollup', { size: '1d' })} rules={[durationRule]}>
                <Input placeholder={v.rollups['1d'] ?? t('products.forever')} style={{ width: 140 }} />
              </Form.Item>
            </Space>
            <Form.Item label={t('products.perProperty')}>
              <Form.List name="properties">
                {(fields, { add, remove }) => (
                  <>
                    {fields.map((f, i) => (
                      <Space key={f.key} align="baseline">
                        <Form.Item name={[f.name, 'id']} rules={[{ required: true, message: t('form.required') }]}>
                          <Input placeholder={t('device.property')} aria-label={t('products.propertyN', { n: i + 1 })} />
                        </Form.Item>
                        <Form.Item name={[f.name, 'raw']} rules={[{ required: true, message: t('form.required') }, durationRule]}>
                          <Input placeholder={DURATION_EXAMPLE} aria-label={t('products.propertyRawN', { n: i + 1 })} style={{ width: 140 }} />
                        </Form.Item>
                        <MinusCircleOutlined onClick={() => remove(f.name)} aria-label={t('products.removeProperty')} />
                      </Space>
                    ))}
                    <Button type="dashed" icon={<PlusOutlined />} onClick={() => add()}>
                      {t('products.addProperty')}
                    </Button>
                  </>
                )}
              </Form.List>
            </Form.Item>
            {problems.length > 0 && <Alert type="error" showIcon style={{ marginBottom: 12 }} message={problems.join('; ')} data-testid="retention-error" />}
            <Button type="primary" onClick={() => void save()}>
              {t('common.save')}
            </Button>
          </Form>
        </Space>
      )}
    </PageState>
  );
}

/** The product's CAs (docs/tls.md): device certificates they issue authenticate on the MQTT TLS port; add (PEM), revoke. */
export function CasPanel({ productKey }: { productKey: string }) {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const qc = useQueryClient();
  const [pem, setPem] = useState('');
  const [jit, setJit] = useState(false);
  const [error, setError] = useState<string>();
  const cas = useQuery({
    queryKey: ['cas', productKey],
    queryFn: () => unwrap(api.GET('/api/v1/products/{key}/cas', { params: { path: { key: productKey } } })),
  });
  const add = async () => {
    setError(undefined);
    try {
      await unwrap(api.POST('/api/v1/products/{key}/cas', { params: { path: { key: productKey } }, body: { pem: pem.trim(), jit } }));
      setPem('');
      message.success(t('products.caAdded'));
      void qc.invalidateQueries({ queryKey: ['cas', productKey] });
    } catch (e) {
      setError(problemLines(e).join('; '));
    }
  };
  const revoke = async (id: string) => {
    try {
      await unwrap(api.DELETE('/api/v1/products/{key}/cas/{id}', { params: { path: { key: productKey, id } } }));
      void qc.invalidateQueries({ queryKey: ['cas', productKey] });
    } catch (e) {
      message.error((e as Error).message);
    }
  };
  return (
    <Space direction="vertical" size="middle" style={{ width: '100%' }}>
      <PageState
        loading={cas.isLoading}
        error={cas.error}
        empty={cas.data?.items.length === 0}
        emptyText={t('products.noCas')}
        onRetry={() => void cas.refetch()}
      >
        <Table<Ca>
          size="small"
          rowKey="id"
          pagination={false}
          dataSource={cas.data?.items}
          columns={[
            { title: t('device.subject'), dataIndex: 'subject' },
            {
              title: t('products.fingerprint'),
              dataIndex: 'fingerprint',
              render: (v: string) => <Typography.Text code copyable={{ text: v }}>{`${v.slice(0, 23)}…`}</Typography.Text>,
            },
            { title: t('device.notAfter'), dataIndex: 'notAfter', render: (v: string) => formatDateTime(v) },
            { title: t('products.jit'), dataIndex: 'jit', render: (v: boolean) => (v ? t('common.yes') : t('common.no')) },
            {
              title: t('device.statusCol'),
              dataIndex: 'revokedAt',
              render: (v: string | null) => (v ? <Tag color="red">{t('device.revoked')}</Tag> : <Tag color="green">{t('device.valid')}</Tag>),
            },
            {
              key: 'revoke',
              render: (_: unknown, ca) =>
                !ca.revokedAt && (
                  <Popconfirm title={t('products.revokeCaConfirm')} onConfirm={() => void revoke(ca.id)} okText={t('common.yes')} cancelText={t('common.no')}>
                    <Button size="small" danger>
                      {t('products.revoke')}
                    </Button>
                  </Popconfirm>
                ),
            },
          ]}
        />
      </PageState>
      <RevokedCertificates />
      <Card size="small" title={t('products.addCa')}>
        <Input.TextArea
          rows={5}
          value={pem}
          onChange={(e) => setPem(e.target.value)}
          placeholder={PEM_EXAMPLE}
          aria-label={t('products.caPem')}
          spellCheck={false}
          style={{ fontFamily: 'monospace' }}
        />
        <Space style={{ marginTop: 12 }} wrap>
          <Checkbox checked={jit} onChange={(e) => setJit(e.target.checked)}>
            {t('products.jitHelp')}
          </Checkbox>
          <Button type="primary" disabled={!pem.trim()} onClick={() => void add()}>
            {t('products.addCa')}
          </Button>
        </Space>
        {error && <Alert type="error" showIcon message={error} style={{ marginTop: 12 }} data-testid="ca-error" />}
      </Card>
    </Space>
  );
}

/** Device certificates revoked one by one (of every product): refused on the TLS port. */
function RevokedCertificates() {
  const { t } = useTranslation();
  const revoked = useQuery({ queryKey: ['revoked-certificates'], queryFn: () => unwrap(api.GET('/api/v1/certificates/revoked')) });
  if (!revoked.data?.items.length) return null;
  return (
    <Card size="small" title={t('products.revokedCerts')}>
      <Table
        size="small"
        rowKey="fingerprint"
        pagination={{ pageSize: 20, hideOnSinglePage: true }}
        dataSource={revoked.data.items}
        columns={[
          {
            title: t('products.fingerprint'),
            dataIndex: 'fingerprint',
            render: (v: string) => <Typography.Text code copyable={{ text: v }}>{`${v.slice(0, 23)}…`}</Typography.Text>,
          },
          { title: t('products.reason'), dataIndex: 'reason', render: (v: string | null) => v ?? '—' },
          { title: t('products.revokedAt'), dataIndex: 'revokedAt', render: (v: string) => formatDateTime(v) },
        ]}
      />
    </Card>
  );
}

/** Zero-touch provisioning of the product (docs/tls.md): on/off with a limit and an allow-list; the secret shown once when made or rotated. */
export function ProvisioningPanel({ productKey }: { productKey: string }) {
  const { t } = useTranslation();
  const qc = useQueryClient();
  const [secret, setSecret] = useState<string>();
  const [error, setError] = useState<string>();
  const [limit, setLimit] = useState<number | null>();
  const [allowListOnly, setAllowListOnly] = useState<boolean>();
  const current = useQuery({
    queryKey: ['provisioning', productKey],
    retry: false,
    queryFn: () => unwrap(api.GET('/api/v1/products/{key}/provisioning', { params: { path: { key: productKey } } })),
  });
  const off = current.error instanceof ApiError && current.error.status === 404;
  const c = current.data;
  const save = async (rotateSecret?: boolean) => {
    setError(undefined);
    try {
      const r = await unwrap(
        api.PUT('/api/v1/products/{key}/provisioning', {
          params: { path: { key: productKey } },
          body: { limit: limit === undefined ? undefined : limit, allowListOnly, rotateSecret },
        }),
      );
      if (r.secret) setSecret(r.secret);
      void qc.invalidateQueries({ queryKey: ['provisioning', productKey] });
    } catch (e) {
      setError((e as Error).message);
    }
  };
  return (
    <PageState loading={current.isLoading} error={off ? undefined : current.error}>
      <Space direction="vertical" size="middle" style={{ width: '100%' }}>
        {off && <Alert type="info" showIcon message={t('products.provisioningOff')} />}
        {c && (
          <Descriptions size="small" column={{ xs: 1, md: 3 }} bordered>
            <Descriptions.Item label={t('products.provisioned')}>{formatNumber(c.provisioned, 0)}</Descriptions.Item>
            <Descriptions.Item label={t('products.limit')}>{c.limit === null ? t('products.noLimit') : formatNumber(c.limit, 0)}</Descriptions.Item>
            <Descriptions.Item label={t('products.allowListOnly')}>{c.allowListOnly ? t('common.yes') : t('common.no')}</Descriptions.Item>
          </Descriptions>
        )}
        <Space wrap>
          <InputNumber
            min={0}
            value={limit === undefined ? c?.limit : limit}
            onChange={(v) => setLimit(v)}
            addonBefore={t('products.limit')}
            placeholder={t('products.noLimit')}
            aria-label={t('products.limit')}
          />
          <Checkbox checked={allowListOnly ?? c?.allowListOnly ?? false} onChange={(e) => setAllowListOnly(e.target.checked)}>
            {t('products.allowListOnly')}
          </Checkbox>
          <Button type="primary" onClick={() => void save()}>
            {off ? t('products.turnOn') : t('common.save')}
          </Button>
          {c && (
            <Popconfirm title={t('products.rotateProvisioningConfirm')} onConfirm={() => void save(true)} okText={t('common.yes')} cancelText={t('common.no')}>
              <Button danger>{t('products.rotateProvisioning')}</Button>
            </Popconfirm>
          )}
        </Space>
        {error && <Alert type="error" showIcon message={error} />}
        {secret && (
          <Alert
            type="success"
            showIcon
            closable
            onClose={() => setSecret(undefined)}
            message={t('products.provisioningSecret')}
            description={
              <Typography.Text code copyable data-testid="provisioning-secret">
                {secret}
              </Typography.Text>
            }
          />
        )}
      </Space>
    </PageState>
  );
}

const CSV_EXAMPLE = 'hwid,serial,mac\nAB-0001,SN-1,00:11:22:33:44:01';

/** The product's factory records (docs/tls.md): import a CSV (all or none, the API names a bad line), optionally making a device for each; the list. */
export function FactoryRecordsPanel({ productKey }: { productKey: string }) {
  const { t } = useTranslation();
  const qc = useQueryClient();
  const [csv, setCsv] = useState('');
  const [provision, setProvision] = useState(false);
  const [error, setError] = useState<string>();
  const [made, setMade] = useState<{ imported: number; total: number; devices?: Array<{ hwid: string; id: string; secret: string }> }>();
  const [page, setPage] = useState(1);
  const records = useQuery({
    queryKey: ['factory-records', productKey, page],
    queryFn: () =>
      unwrap(api.GET('/api/v1/products/{key}/factory-records', { params: { path: { key: productKey }, query: { limit: 100, offset: (page - 1) * 100 } } })),
  });
  const upload = async () => {
    setError(undefined);
    setMade(undefined);
    try {
      const r = await unwrap(
        api.POST('/api/v1/products/{key}/factory-records', {
          params: { path: { key: productKey }, query: { provision: provision || undefined } },
          body: csv,
          bodySerializer: (b: unknown) => b as string,
          headers: { 'content-type': 'text/csv' },
        }),
      );
      setMade(r);
      setCsv('');
      void qc.invalidateQueries({ queryKey: ['factory-records', productKey] });
    } catch (e) {
      setError(problemLines(e).join('; '));
    }
  };
  // The devices made, as a file for the factory: one object URL per import.
  const flashUrl = useMemo(() => {
    if (!made?.devices?.length) return undefined;
    const text = `hwid,id,secret\n${made.devices.map((d) => `${d.hwid},${d.id},${d.secret}`).join('\n')}\n`;
    return URL.createObjectURL(new Blob([text], { type: 'text/csv' }));
  }, [made]);
  return (
    <Space direction="vertical" size="middle" style={{ width: '100%' }}>
      <Card size="small" title={t('products.importRecords')}>
        <Input.TextArea
          rows={5}
          value={csv}
          onChange={(e) => setCsv(e.target.value)}
          placeholder={CSV_EXAMPLE}
          aria-label={t('products.recordsCsv')}
          spellCheck={false}
          style={{ fontFamily: 'monospace' }}
        />
        <Space style={{ marginTop: 12 }} wrap>
          <input type="file" accept=".csv,text/csv" aria-label={t('products.recordsFile')} onChange={(e) => void e.target.files?.[0]?.text().then(setCsv)} />
          <Checkbox checked={provision} onChange={(e) => setProvision(e.target.checked)}>
            {t('products.provisionToo')}
          </Checkbox>
          <Button type="primary" disabled={!csv.trim()} onClick={() => void upload()}>
            {t('products.import')}
          </Button>
        </Space>
        {error && <Alert type="error" showIcon message={error} style={{ marginTop: 12 }} data-testid="records-error" />}
        {made && (
          <Alert
            type="success"
            showIcon
            style={{ marginTop: 12 }}
            data-testid="records-imported"
            message={t('products.imported', { imported: made.imported, total: made.total })}
            description={
              flashUrl && (
                <Space direction="vertical">
                  <span>{t('products.devicesMade', { count: made.devices!.length })}</span>
                  <a href={flashUrl} download={`${productKey}-flash.csv`}>
                    {t('products.downloadFlash')}
                  </a>
                </Space>
              )
            }
          />
        )}
      </Card>
      <PageState loading={records.isLoading} error={records.error} empty={records.data?.total === 0} emptyText={t('products.noRecords')}>
        <Table
          size="small"
          rowKey="hwid"
          dataSource={records.data?.items}
          pagination={{ current: page, pageSize: 100, total: records.data?.total, onChange: setPage, showSizeChanger: false }}
          columns={[
            { title: t('products.hwid'), dataIndex: 'hwid' },
            { title: t('products.serial'), dataIndex: 'serial', render: (v: string | null) => v ?? '—' },
            { title: t('products.mac'), dataIndex: 'mac', render: (v: string | null) => v ?? '—' },
            { title: t('devices.id'), dataIndex: 'deviceId', render: (v: string | null) => v ?? '—' },
            { title: t('products.provisionedAt'), dataIndex: 'provisionedAt', render: (v: string | null) => formatDateTime(v) },
          ]}
        />
      </PageState>
    </Space>
  );
}
