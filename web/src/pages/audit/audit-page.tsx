import { useInfiniteQuery } from '@tanstack/react-query';
import { Button, Card, Input, Table, Typography } from 'antd';
import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { api, unwrap } from '../../api/client';
import { PageState } from '../../components/page-state';
import { formatDateTime } from '../../lib/format';

/** The operator's audit log, newest first, paged backwards, filtered by action. */
export default function AuditPage() {
  const { t } = useTranslation();
  const [action, setAction] = useState<string>();
  const log = useInfiniteQuery({
    queryKey: ['audit', action],
    initialPageParam: undefined as string | undefined,
    queryFn: ({ pageParam }) => unwrap(api.GET('/api/v1/audit', { params: { query: { limit: 100, action, before: pageParam } } })),
    getNextPageParam: (last) => (last.items.length === 100 ? last.items[last.items.length - 1].id : undefined),
  });
  const rows = log.data?.pages.flatMap((p) => p.items) ?? [];
  return (
    <>
      <div style={{ display: 'flex', justifyContent: 'space-between', marginBottom: 16 }}>
        <Typography.Title level={3} style={{ margin: 0 }}>
          {t('audit.title')}
        </Typography.Title>
        <Input.Search
          allowClear
          style={{ width: 260 }}
          placeholder={t('audit.filterAction')}
          aria-label={t('audit.filterAction')}
          onSearch={(v) => setAction(v.trim() || undefined)}
        />
      </div>
      <Card>
        <PageState loading={log.isLoading} error={log.error} empty={rows.length === 0} onRetry={() => void log.refetch()}>
          <Table
            size="small"
            rowKey="id"
            pagination={false}
            dataSource={rows}
            columns={[
              { title: t('audit.at'), dataIndex: 'at', width: 200, render: (v: string) => formatDateTime(v) },
              { title: t('audit.actor'), dataIndex: 'actor', width: 200 },
              { title: t('audit.action'), dataIndex: 'action', width: 200 },
              { title: t('audit.target'), key: 'target', render: (_: unknown, r) => `${r.targetType} ${r.targetId}` },
              {
                title: t('audit.details'),
                dataIndex: 'details',
                render: (v: unknown) => (v ? <Typography.Text code>{JSON.stringify(v)}</Typography.Text> : null),
              },
            ]}
          />
          {log.hasNextPage && (
            <Button style={{ marginTop: 16 }} onClick={() => void log.fetchNextPage()} loading={log.isFetchingNextPage}>
              {t('audit.older')}
            </Button>
          )}
        </PageState>
      </Card>
    </>
  );
}
