import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { App as AntApp, ConfigProvider, theme as antTheme } from 'antd';
import enUS from 'antd/locale/en_US';
import zhCN from 'antd/locale/zh_CN';
import { useEffect } from 'react';
import { useTranslation } from 'react-i18next';
import { BrowserRouter, Navigate, Route, Routes, useLocation } from 'react-router';
import { ApiError } from './api/client';
import { useSession } from './api/session';
import { rememberedLanguage, setLanguage } from './i18n';
import { AppLayout } from './layout/app-layout';
import { useThemeMode } from './lib/preferences';
import { PAGES } from './pages/registry';
import { SignInPage } from './pages/sign-in';
import { NotFound } from './components/page-state';

const queries = new QueryClient({
  defaultOptions: {
    queries: {
      // A 4xx will not fix itself by asking again.
      retry: (n, err) => !(err instanceof ApiError && err.status < 500) && n < 2,
      refetchOnWindowFocus: false,
      staleTime: 5_000,
    },
  },
});

function RequireSession({ children }: { children: React.ReactNode }) {
  const s = useSession();
  const loc = useLocation();
  if (!s) return <Navigate to={`/sign-in?next=${encodeURIComponent(loc.pathname + loc.search)}`} replace />;
  return <>{children}</>;
}

export function App() {
  const { i18n } = useTranslation();
  const mode = useThemeMode();
  const s = useSession();
  const userId = s?.user.id;
  // The signed-in user's own language, remembered per user.
  useEffect(() => {
    if (userId) setLanguage(rememberedLanguage(userId), userId);
  }, [userId]);
  useEffect(() => {
    document.documentElement.dataset.theme = mode;
  }, [mode]);
  return (
    <ConfigProvider
      locale={i18n.language === 'zh-CN' ? zhCN : enUS}
      theme={{ algorithm: mode === 'dark' ? antTheme.darkAlgorithm : antTheme.defaultAlgorithm, token: { colorPrimary: '#d4621a' } }}
    >
      <AntApp>
        <QueryClientProvider client={queries}>
          <BrowserRouter>
            <Routes>
              <Route path="/sign-in" element={<SignInPage />} />
              <Route
                element={
                  <RequireSession>
                    <AppLayout />
                  </RequireSession>
                }
              >
                {PAGES.map((p) => (
                  <Route key={p.path} path={p.path} element={<p.component />} />
                ))}
                <Route path="*" element={<NotFound />} />
              </Route>
            </Routes>
          </BrowserRouter>
        </QueryClientProvider>
      </AntApp>
    </ConfigProvider>
  );
}
