import { PlusOutlined } from '@ant-design/icons';
import { keepPreviousData, useQuery } from '@tanstack/react-query';
import { Badge, Button, Card, Input, Select, Space, Table, Typography } from 'antd';
import { useTranslation } from 'react-i18next';
import { Link, useNavigate, useSearchParams } from 'react-router';
import { api, unwrap, type DeviceListItem } from '../../api/client';
import { useSession } from '../../api/session';
import { PageState } from '../../components/page-state';
import { formatDateTime, formatNumber, formatRelative } from '../../lib/format';

const PAGE_SIZES = [20, 100, 500, 1000];

/**
 * The fleet: server-side pages (limit/offset) filtered by product, up to 1000 rows a page in a
 * virtualised table, so a long page scrolls without rendering every row. State lives in the URL.
 */
export default function DevicesPage() {
  const { t } = useTranslation();
  const nav = useNavigate();
  const s = useSession();
  const [params, setParams] = useSearchParams();
  const product = params.get('product') ?? undefined;
  const page = Math.max(1, Number(params.get('page') ?? 1) || 1);
  const size = PAGE_SIZES.includes(Number(params.get('size'))) ? Number(params.get('size')) : 20;
  const products = useQuery({ queryKey: ['products'], queryFn: () => unwrap(api.GET('/api/v1/products')) });
  const list = useQuery({
    queryKey: ['devices', product, page, size],
    placeholderData: keepPreviousData,
    queryFn: () => unwrap(api.GET('/api/v1/devices', { params: { query: { product, limit: size, offset: (page - 1) * size } } })),
  });
  const set = (changes: Record<string, string | undefined>) => {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) {
      if (v === undefined) next.delete(k);
      else next.set(k, v);
    }
    setParams(next);
  };

  return (
    <>
      <Space style={{ width: '100%', justifyContent: 'space-between', marginBottom: 16 }} wrap>
        <Typography.Title level={3} style={{ margin: 0 }}>
          {t('devices.title')}
        </Typography.Title>
        <Space wrap>
          <Select
            allowClear
            style={{ minWidth: 200 }}
            placeholder={t('devices.allProducts')}
            aria-label={t('devices.product')}
            value={product}
            loading={products.isLoading}
            options={products.data?.items.map((p) => ({ value: p.key, label: `${p.name} (${p.key})` }))}
            onChange={(v: string | undefined) => set({ product: v, page: undefined })}
          />
          <Input.Search
            allowClear
            style={{ width: 280 }}
            placeholder={t('devices.goTo')}
            aria-label={t('devices.goTo')}
            onSearch={(v) => v.trim() && nav(`/devices/${encodeURIComponent(v.trim())}`)}
          />
          {s?.user.role === 'operator' && (
            <Link to="/onboarding">
              <Button type="primary" icon={<PlusOutlined />}>
                {t('devices.add')}
              </Button>
            </Link>
          )}
        </Space>
      </Space>
      <Card>
        <PageState error={list.error} onRetry={() => void list.refetch()} empty={list.data?.total === 0 && !product} emptyText={t('devices.empty')}>
          <Table<DeviceListItem>
            rowKey="id"
            size="middle"
            virtual
            scroll={{ y: 640, x: 900 }}
            loading={list.isFetching}
            dataSource={list.data?.items}
            pagination={{
              current: page,
              pageSize: size,
              total: list.data?.total,
              pageSizeOptions: PAGE_SIZES,
              showSizeChanger: true,
              showTotal: (n) => t('common.total', { count: n, formatted: formatNumber(n) }),
              onChange: (p, sz) => set({ page: String(p), size: String(sz) }),
            }}
            columns={[
              { title: t('devices.name'), dataIndex: 'name', width: 220, render: (name: string, d) => <Link to={`/devices/${d.id}`}>{name}</Link> },
              { title: t('devices.id'), dataIndex: 'id', width: 200, render: (id: string) => <Typography.Text code>{id}</Typography.Text> },
              { title: t('devices.product'), dataIndex: 'product', width: 150 },
              {
                title: t('devices.status'),
                dataIndex: 'online',
                width: 110,
                render: (online: boolean) => <Badge status={online ? 'success' : 'default'} text={online ? t('devices.online') : t('devices.offline')} />,
              },
              {
                title: t('devices.lastSeen'),
                dataIndex: 'lastSeen',
                width: 160,
                render: (v: string | null) => <span title={formatDateTime(v)}>{v ? formatRelative(v) : t('common.never')}</span>,
              },
              {
                title: t('devices.home'),
                dataIndex: 'homeId',
                width: 180,
                render: (v: string | null) => v ?? <Typography.Text type="secondary">{t('devices.noHome')}</Typography.Text>,
              },
              { title: t('devices.created'), dataIndex: 'createdAt', width: 200, render: (v: string) => formatDateTime(v) },
            ]}
          />
        </PageState>
      </Card>
    </>
  );
}
