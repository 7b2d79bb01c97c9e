import { Button, Empty, Result, Spin } from 'antd';
import type { ReactNode } from 'react';
import { useTranslation } from 'react-i18next';
import { Link } from 'react-router';
import { ApiError } from '../api/client';

/** The loading, error and empty states every page shows the same way. */
export function PageState({
  loading,
  error,
  empty,
  emptyText,
  onRetry,
  children,
}: {
  loading?: boolean;
  error?: unknown;
  empty?: boolean;
  emptyText?: ReactNode;
  onRetry?: () => void;
  children?: ReactNode;
}) {
  const { t } = useTranslation();
  if (error) {
    const message = error instanceof Error ? error.message : String(error);
    const code = error instanceof ApiError ? error.code : undefined;
    return (
      <Result
        status="warning"
        title={t('common.error')}
        subTitle={code ? `${message} (${code})` : message}
        extra={onRetry ? <Button onClick={onRetry}>{t('common.retry')}</Button> : undefined}
      />
    );
  }
  if (loading) {
    return (
      <div style={{ padding: 48, textAlign: 'center' }} role="status">
        <Spin tip={t('common.loading')}>
          <div style={{ minHeight: 40 }} />
        </Spin>
      </div>
    );
  }
  if (empty) return <Empty description={emptyText ?? t('common.empty')} />;
  return <>{children}</>;
}

export function NotFound() {
  const { t } = useTranslation();
  return (
    <Result
      status="404"
      title="404"
      subTitle={t('common.notFound')}
      extra={
        <Link to="/">
          <Button type="primary">{t('common.backHome')}</Button>
        </Link>
      }
    />
  );
}
