import { useQuery } from '@tanstack/react-query';
import { Alert, Button, Card, Form, Input, Segmented, Space, Typography } from 'antd';
import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { Navigate, useSearchParams } from 'react-router';
import { ApiError } from '../api/client';
import { fromTokens, session, useSession } from '../api/session';
import { LANGUAGES, setLanguage, type Language } from '../i18n';
import { SetupForm } from './setup-form';

/** Sign-in with e-mail and password (POST /auth/login), and the way to ask for a reset link. */
export function SignInPage() {
  const { t, i18n } = useTranslation();
  const s = useSession();
  const [params] = useSearchParams();
  const [form] = Form.useForm<{ email: string; password: string }>();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const [info, setInfo] = useState<string>();
  const next = params.get('next');
  // A fresh server: the operator chooses its credentials first (GET /api/v1/setup).
  const setup = useQuery({
    queryKey: ['setup'],
    enabled: !s,
    queryFn: async () => (await fetch('/api/v1/setup')).json() as Promise<{ needed: boolean; codeRequired: boolean }>,
  });
  if (s) return <Navigate to={next?.startsWith('/') && !next.startsWith('//') ? next : '/'} replace />;

  const submit = async (v: { email: string; password: string }) => {
    setBusy(true);
    setError(undefined);
    try {
      // Plain fetch: the typed client would try to refresh a session on a 401, and there is none yet.
      const res = await fetch('/api/v1/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(v) });
      const body = await res.json().catch(() => undefined);
      if (!res.ok) throw new ApiError(res.status, body);
      session.set(fromTokens(body));
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };

  const forgot = async () => {
    const email = form.getFieldValue('email') as string | undefined;
    if (!email) {
      setInfo(t('signIn.resetNeedsEmail'));
      return;
    }
    await fetch('/api/v1/auth/password-reset', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email }) });
    setInfo(t('signIn.resetSent'));
  };

  return (
    <div style={{ minHeight: '100vh', display: 'grid', placeItems: 'center', padding: 16 }}>
      <Card style={{ width: 380 }}>
        <Space direction="vertical" size="large" style={{ width: '100%' }}>
          <div style={{ display: 'flex', justifyContent: 'space-between', alignItems: 'center' }}>
            <Typography.Title level={3} style={{ margin: 0 }}>
              {setup.data?.needed ? t('setup.title') : t('signIn.title')}
            </Typography.Title>
          </div>
          <Typography.Text type="secondary">{t('signIn.subtitle')}</Typography.Text>
          <Segmented
            aria-label={t('app.language')}
            value={i18n.language}
            options={LANGUAGES.map((l) => ({ value: l.code, label: l.label }))}
            onChange={(v) => setLanguage(v as Language)}
          />
          {setup.data?.needed ? (
            <SetupForm codeRequired={setup.data.codeRequired} />
          ) : (
            <>
              {error && <Alert type="error" showIcon message={error} />}
              {info && <Alert type="info" showIcon message={info} />}
              <Form form={form} layout="vertical" onFinish={(v) => void submit(v)} requiredMark={false}>
                <Form.Item name="email" label={t('signIn.email')} rules={[{ required: true, message: t('signIn.emailRequired') }]}>
                  <Input type="email" autoComplete="username" autoFocus />
                </Form.Item>
                <Form.Item name="password" label={t('signIn.password')} rules={[{ required: true, message: t('signIn.passwordRequired') }]}>
                  <Input.Password autoComplete="current-password" />
                </Form.Item>
                <Button type="primary" htmlType="submit" block loading={busy}>
                  {t('signIn.submit')}
                </Button>
              </Form>
              <Button type="link" onClick={() => void forgot()} style={{ padding: 0 }}>
                {t('signIn.forgot')}
              </Button>
            </>
          )}
        </Space>
      </Card>
    </div>
  );
}
