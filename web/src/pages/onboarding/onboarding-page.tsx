import { CheckCircleFilled, LoadingOutlined } from '@ant-design/icons';
import { useQuery } from '@tanstack/react-query';
import { Alert, Button, Card, Descriptions, Form, Input, InputNumber, Result, Select, Space, Steps, Tabs, Typography } from 'antd';
import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { Link } from 'react-router';
import { api, unwrap } from '../../api/client';
import { PageState } from '../../components/page-state';
import { SNIPPET_KINDS, SNIPPET_LABELS, samplePayload, snippet } from '../../lib/snippets';
import { useStream } from '../../stream/use-stream';

interface Created {
  id: string;
  secret: string;
  product: string;
  name: string;
}

/** Pick a product, create a device, copy a snippet with its credentials, watch its first message arrive. */
export default function OnboardingPage() {
  const { t } = useTranslation();
  const products = useQuery({ queryKey: ['products'], queryFn: () => unwrap(api.GET('/api/v1/products')) });
  const [form] = Form.useForm<{ product: string; name: string }>();
  const [created, setCreated] = useState<Created>();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const [host, setHost] = useState(location.hostname);
  const [port, setPort] = useState(1883);
  const [heard, setHeard] = useState<{ online?: boolean; message?: boolean }>({});

  useStream(
    { deviceId: created?.id, types: ['property', 'presence', 'event'] },
    (e) => {
      if (e.deviceId !== created?.id) return;
      if (e.type === 'presence' && e.data.online) setHeard((h) => ({ ...h, online: true }));
      if (e.type === 'property' || e.type === 'event') setHeard((h) => ({ ...h, message: true }));
    },
    !!created,
  );

  const create = async (v: { product: string; name: string }) => {
    setBusy(true);
    setError(undefined);
    try {
      const d = await unwrap(api.POST('/api/v1/devices', { body: { product: v.product, name: v.name } }));
      setHeard({});
      setCreated({ id: d.id, secret: d.secret, product: d.product, name: d.name });
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };

  const product = products.data?.items.find((p) => p.key === created?.product);
  const payload = samplePayload((product?.model.properties ?? []) as { id: string; type: string }[]);
  const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/mqtt`;
  const step = !created ? 0 : heard.message ? 3 : 1;

  return (
    <Space direction="vertical" size="large" style={{ width: '100%', maxWidth: 960 }}>
      <Typography.Title level={3} style={{ margin: 0 }}>
        {t('onboarding.title')}
      </Typography.Title>
      <Steps current={step} items={[{ title: t('onboarding.stepProduct') }, { title: t('onboarding.stepConnect') }, { title: t('onboarding.stepWait') }]} />
      {!created && (
        <Card>
          <PageState loading={products.isLoading} error={products.error} onRetry={() => void products.refetch()}>
            {error && <Alert type="error" showIcon message={error} style={{ marginBottom: 16 }} />}
            <Form form={form} layout="vertical" onFinish={(v) => void create(v)} style={{ maxWidth: 420 }}>
              <Form.Item name="product" label={t('onboarding.product')} rules={[{ required: true, message: t('form.required') }]}>
                <Select showSearch optionFilterProp="label" options={products.data?.items.map((p) => ({ value: p.key, label: `${p.name} (${p.key})` }))} />
              </Form.Item>
              <Form.Item name="name" label={t('onboarding.name')} rules={[{ required: true, message: t('form.required') }]}>
                <Input placeholder={t('onboarding.namePlaceholder')} maxLength={200} />
              </Form.Item>
              <Button type="primary" htmlType="submit" loading={busy}>
                {t('onboarding.create')}
              </Button>
            </Form>
          </PageState>
        </Card>
      )}
      {created && (
        <>
          <Card title={t('onboarding.credentials')}>
            <Alert type="warning" showIcon message={t('onboarding.secretOnce')} style={{ marginBottom: 16 }} />
            <Descriptions column={1} size="small" bordered>
              <Descriptions.Item label={t('onboarding.clientId')}>
                <Typography.Text code copyable data-testid="device-id">
                  {created.id}
                </Typography.Text>
              </Descriptions.Item>
              <Descriptions.Item label={t('onboarding.secret')}>
                <Typography.Text code copyable data-testid="device-secret">
                  {created.secret}
                </Typography.Text>
              </Descriptions.Item>
            </Descriptions>
          </Card>
          <Card title={t('onboarding.snippets')}>
            <Space wrap style={{ marginBottom: 16 }}>
              <span>{t('onboarding.host')}</span>
              <Input aria-label={t('onboarding.host')} value={host} onChange={(e) => setHost(e.target.value)} style={{ width: 220 }} />
              <span>{t('onboarding.port')}</span>
              <InputNumber aria-label={t('onboarding.port')} value={port} min={1} max={65535} onChange={(v) => setPort(v ?? 1883)} />
            </Space>
            <Tabs
              items={SNIPPET_KINDS.map((k) => ({
                key: k,
                label: SNIPPET_LABELS[k],
                children: (
                  <Typography.Paragraph copyable={{ text: snippet(k, { id: created.id, secret: created.secret, host, port, wsUrl, payload }) }}>
                    <pre data-testid={`snippet-${k}`} style={{ margin: 0, whiteSpace: 'pre-wrap' }}>
                      {snippet(k, { id: created.id, secret: created.secret, host, port, wsUrl, payload })}
                    </pre>
                  </Typography.Paragraph>
                ),
              }))}
            />
          </Card>
          <Card>
            {heard.message ? (
              <Result
                status="success"
                icon={<CheckCircleFilled style={{ color: '#52c41a' }} />}
                title={t('onboarding.firstMessage')}
                subTitle={heard.online ? t('onboarding.online') : undefined}
                data-testid="first-message"
                extra={[
                  <Link key="open" to={`/devices/${created.id}`}>
                    <Button type="primary">{t('onboarding.open')}</Button>
                  </Link>,
                  <Button
                    key="again"
                    onClick={() => {
                      setCreated(undefined);
                      form.resetFields();
                    }}
                  >
                    {t('onboarding.another')}
                  </Button>,
                ]}
              />
            ) : (
              <Result
                icon={<LoadingOutlined />}
                title={heard.online ? t('onboarding.online') : t('onboarding.waiting')}
                subTitle={t('onboarding.waitingHelp')}
              />
            )}
          </Card>
        </>
      )}
    </Space>
  );
}
