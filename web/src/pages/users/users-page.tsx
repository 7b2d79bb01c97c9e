import { useInfiniteQuery } from '@tanstack/react-query';
import { Button, Card, Input, Table, Tag, Typography } from 'antd';
import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { api, unwrap } from '../../api/client';
import { PageState } from '../../components/page-state';
import { formatDateTime } from '../../lib/format';

const PAGE = 100;

/** The operator's list of accounts (support: find a customer by e-mail), paged in e-mail order. */
export default function UsersPage() {
  const { t } = useTranslation();
  const [q, setQ] = useState<string>();
  const users = useInfiniteQuery({
    queryKey: ['users', q],
    initialPageParam: undefined as string | undefined,
    queryFn: ({ pageParam }) => unwrap(api.GET('/api/v1/users', { params: { query: { limit: PAGE, q, cursor: pageParam } } })),
    getNextPageParam: (last) => last.nextCursor ?? undefined,
  });
  const rows = users.data?.pages.flatMap((p) => p.items) ?? [];
  return (
    <>
      <div style={{ display: 'flex', justifyContent: 'space-between', marginBottom: 16 }}>
        <Typography.Title level={3} style={{ margin: 0 }}>
          {t('users.title')}
        </Typography.Title>
        <Input.Search
          allowClear
          style={{ width: 280 }}
          placeholder={t('users.search')}
          aria-label={t('users.search')}
          onSearch={(v) => setQ(v.trim() || undefined)}
        />
      </div>
      <Card>
        <PageState loading={users.isLoading} error={users.error} empty={rows.length === 0} onRetry={() => void users.refetch()}>
          <Table
            size="small"
            rowKey="id"
            pagination={false}
            dataSource={rows}
            columns={[
              { title: t('users.email'), dataIndex: 'email' },
              { title: t('users.name'), dataIndex: 'name', render: (v: string | null) => v ?? '' },
              {
                title: t('users.role'),
                dataIndex: 'role',
                width: 120,
                render: (v: string) => (v === 'operator' ? <Tag color="gold">{t('users.operator')}</Tag> : t('users.user')),
              },
              {
                title: t('users.verified'),
                dataIndex: 'emailVerified',
                width: 120,
                render: (v: boolean) => (v ? <Tag color="green">{t('users.yes')}</Tag> : <Tag>{t('users.no')}</Tag>),
              },
              { title: t('users.created'), dataIndex: 'createdAt', width: 200, render: (v: string) => formatDateTime(v) },
              { title: 'ID', dataIndex: 'id', width: 180, render: (v: string) => <Typography.Text code>{v}</Typography.Text> },
            ]}
          />
          {users.hasNextPage && (
            <Button style={{ marginTop: 16 }} onClick={() => void users.fetchNextPage()} loading={users.isFetchingNextPage}>
              {t('users.more')}
            </Button>
          )}
        </PageState>
      </Card>
    </>
  );
}
