import { BulbOutlined, GlobalOutlined, LockOutlined, LogoutOutlined, MoonOutlined, ReadOutlined, UserOutlined } from '@ant-design/icons';
import { Button, Dropdown, Layout, Menu, Segmented, Space, Tooltip, Typography, theme as antTheme } from 'antd';
import { Suspense, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { Outlet, useLocation, useNavigate } from 'react-router';
import { api } from '../api/client';
import { session, useSession } from '../api/session';
import { PageState } from '../components/page-state';
import { LANGUAGES, setLanguage, type Language } from '../i18n';
import { theme, useThemeMode } from '../lib/preferences';
import { PAGES } from '../pages/registry';
import { ChangePasswordModal } from './change-password';

/** The frame of every signed-in page: the menu, the header (language, theme, account) and the page. */
export function AppLayout() {
  const { t, i18n } = useTranslation();
  const s = useSession();
  const mode = useThemeMode();
  const nav = useNavigate();
  const loc = useLocation();
  const [changing, setChanging] = useState(false);
  const { token } = antTheme.useToken();
  const operator = s?.user.role === 'operator';
  const items = PAGES.filter((p) => p.menu && (!p.operator || operator)).map((p) => ({ key: p.path, icon: p.menu!.icon, label: t(p.menu!.label) }));
  const selected = items.filter((i) => (i.key === '/' ? loc.pathname === '/' : loc.pathname.startsWith(i.key))).map((i) => i.key);

  const signOut = async () => {
    await api.POST('/api/v1/auth/logout', {}).catch(() => undefined);
    session.set(null);
    nav('/sign-in');
  };

  return (
    <Layout style={{ minHeight: '100vh' }}>
      <Layout.Sider breakpoint="lg" collapsedWidth={56} theme={mode}>
        <div style={{ padding: '16px 20px', fontWeight: 700, fontSize: 18, color: token.colorPrimary }}>{t('app.name')}</div>
        <Menu mode="inline" theme={mode} selectedKeys={selected} items={items} onClick={(e) => nav(e.key)} />
      </Layout.Sider>
      <Layout>
        <Layout.Header style={{ background: token.colorBgContainer, display: 'flex', justifyContent: 'flex-end', alignItems: 'center', paddingInline: 24 }}>
          <Space size="middle">
            <Space>
              <GlobalOutlined aria-label={t('app.language')} />
              <Segmented
                aria-label={t('app.language')}
                value={i18n.language}
                options={LANGUAGES.map((l) => ({ value: l.code, label: l.label }))}
                onChange={(v) => setLanguage(v as Language, s?.user.id)}
              />
            </Space>
            <Tooltip title={mode === 'dark' ? t('app.theme.light') : t('app.theme.dark')}>
              <Button
                shape="circle"
                aria-label={mode === 'dark' ? t('app.theme.light') : t('app.theme.dark')}
                icon={mode === 'dark' ? <BulbOutlined /> : <MoonOutlined />}
                onClick={() => theme.set(mode === 'dark' ? 'light' : 'dark')}
              />
            </Tooltip>
            <Tooltip title={t('app.apiDocs')}>
              <Button shape="circle" aria-label={t('app.apiDocs')} icon={<ReadOutlined />} href="/docs" target="_blank" />
            </Tooltip>
            <Dropdown
              menu={{
                items: [
                  { key: 'password', icon: <LockOutlined />, label: t('app.changePassword'), onClick: () => setChanging(true) },
                  { key: 'out', icon: <LogoutOutlined />, label: t('app.signOut'), onClick: () => void signOut() },
                ],
              }}
            >
              <Button icon={<UserOutlined />} data-testid="account">
                <Typography.Text>{s?.user.email}</Typography.Text>
                <Typography.Text type="secondary">{operator ? t('app.operator') : t('app.user')}</Typography.Text>
              </Button>
            </Dropdown>
          </Space>
        </Layout.Header>
        <Layout.Content style={{ padding: 24 }}>
          <Suspense fallback={<PageState loading />}>
            <Outlet />
          </Suspense>
        </Layout.Content>
      </Layout>
      <ChangePasswordModal open={changing} onClose={() => setChanging(false)} />
    </Layout>
  );
}
