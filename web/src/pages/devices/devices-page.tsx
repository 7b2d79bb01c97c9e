import { PlusOutlined } from '@ant-design/icons';
import { keepPreviousData, useQuery } from '@tanstack/react-query';
import { Alert, Badge, Button, Card, Input, Select, Space, Table, Tag, Tooltip, Typography } from 'antd';
import { useEffect, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { Link, useNavigate, useSearchParams } from 'react-router';
import { ApiError, api, unwrap, type DeviceListItem } from '../../api/client';
import { useSession } from '../../api/session';
import { MatchCount, TOTAL_LIMIT } from '../../components/match-count';
import { PageState } from '../../components/page-state';
import { asDeviceId, narrow } from '../../lib/fleet-query';
import { formatDateTime, formatNumber, formatRelative } from '../../lib/format';

const PAGE_SIZES = [20, 100, 500, 1000];
const COUNT_BY = ['product', 'firmware', 'online', 'disabled', 'parent'];

/**
 * The fleet: without a query, server-side pages (limit/offset) filtered by product; with one, fleet
 * search (docs/fleet.md) paged by cursor, with counts by a field. Up to 1000 rows a page in a
 * virtualised table, so a long page scrolls without rendering every row. State lives in the URL
 * (the cursors of the pages before, in memory).
 */
export default function DevicesPage() {
  const { t } = useTranslation();
  const nav = useNavigate();
  const s = useSession();
  const [params, setParams] = useSearchParams();
  const product = params.get('product') ?? undefined;
  const q = params.get('q') ?? undefined;
  const countBy = params.get('countBy') ?? undefined;
  const page = Math.max(1, Number(params.get('page') ?? 1) || 1);
  const size = PAGE_SIZES.includes(Number(params.get('size'))) ? Number(params.get('size')) : 20;
  const search = !!(q || countBy);
  const [text, setText] = useState(q ?? '');
  // Fleet search pages by cursor: the cursors that led to each page so far.
  const [cursors, setCursors] = useState<Array<string | undefined>>([undefined]);
  const cursor = cursors[cursors.length - 1];
  // A new search (or page size) starts again from its first page.
  // biome-ignore lint/correctness/useExhaustiveDependencies: countBy, product and size change the search, so its cursors go
  useEffect(() => {
    setText(q ?? '');
    setCursors([undefined]);
  }, [q, countBy, product, size]);
  const products = useQuery({ queryKey: ['products'], queryFn: () => unwrap(api.GET('/api/v1/products')) });
  const list = useQuery({
    queryKey: ['devices', product, page, size, q, countBy, cursor],
    placeholderData: keepPreviousData,
    queryFn: () =>
      unwrap(
        api.GET('/api/v1/devices', {
          params: {
            query: search
              ? {
                  q: product ? (q ? `product:${product} AND (${q})` : `product:${product}`) : q,
                  countBy,
                  cursor,
                  limit: size,
                  offset: 0,
                  totalLimit: TOTAL_LIMIT,
                }
              : { product, limit: size, offset: (page - 1) * size },
          },
        }),
      ),
  });
  const set = (changes: Record<string, string | undefined>) => {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) {
      if (v === undefined || v === '') next.delete(k);
      else next.set(k, v);
    }
    setParams(next);
  };
  const queryError = search && list.error instanceof ApiError && list.error.status === 400 ? list.error : undefined;
  const items = queryError ? [] : list.data?.items;

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
          {s?.user.role === 'operator' && q && (
            <Link to={`/fleet?tab=jobs&query=${encodeURIComponent(q)}`}>
              <Button>{t('fleet.actOnThese')}</Button>
            </Link>
          )}
          {s?.user.role === 'operator' && (
            <Link to="/onboarding">
              <Button type="primary" icon={<PlusOutlined />}>
                {t('devices.add')}
              </Button>
            </Link>
          )}
        </Space>
      </Space>
      <Space direction="vertical" style={{ width: '100%', marginBottom: 16 }}>
        <Space.Compact style={{ width: '100%' }}>
          <Input.Search
            allowClear
            enterButton={t('devices.search')}
            placeholder={t('devices.queryPlaceholder')}
            aria-label={t('devices.query')}
            value={text}
            status={queryError ? 'error' : undefined}
            onChange={(e) => setText(e.target.value)}
            onSearch={(v) => {
              const id = asDeviceId(v);
              if (id) nav(`/devices/${encodeURIComponent(id)}`);
              else set({ q: v.trim() || undefined, page: undefined });
            }}
          />
          <Select
            allowClear
            showSearch
            style={{ width: 220 }}
            placeholder={t('devices.countBy')}
            aria-label={t('devices.countBy')}
            value={countBy}
            onChange={(v: string | undefined) => set({ countBy: v })}
            options={[
              ...COUNT_BY.map((f) => ({ value: f, label: t('devices.countByField', { field: f }) })),
              ...tagKeys(list.data?.items).map((k) => ({ value: `tag.${k}`, label: t('devices.countByField', { field: `tag.${k}` }) })),
            ]}
          />
        </Space.Compact>
        {queryError && <Alert type="error" showIcon message={queryError.message} data-testid="query-error" />}
        {!queryError && list.data?.counts && (
          <Space wrap data-testid="counts">
            {list.data.counts.map((c) => (
              <Tooltip key={String(c.value)} title={t('devices.narrow')}>
                <Tag style={{ cursor: 'pointer' }} onClick={() => countBy && set({ q: narrow(q, countBy === 'parent' ? 'parent' : countBy, c.value) })}>
                  {c.value === null ? t('devices.noValue') : String(c.value)}: <b>{formatNumber(c.count, 0)}</b>
                </Tag>
              </Tooltip>
            ))}
          </Space>
        )}
      </Space>
      <Card>
        <PageState
          error={queryError ? undefined : list.error}
          onRetry={() => void list.refetch()}
          empty={!search && list.data?.total === 0 && !product}
          emptyText={t('devices.empty')}
        >
          <Table<DeviceListItem>
            rowKey="id"
            size="middle"
            virtual
            scroll={{ y: 640, x: 1000 }}
            loading={list.isFetching}
            dataSource={items}
            locale={search ? { emptyText: t('devices.noMatch') } : undefined}
            pagination={
              search
                ? false
                : {
                    current: page,
                    pageSize: size,
                    total: list.data?.total,
                    pageSizeOptions: PAGE_SIZES,
                    showSizeChanger: true,
                    showTotal: (n) => t('common.total', { count: n, formatted: formatNumber(n) }),
                    onChange: (p, sz) => set({ page: String(p), size: String(sz) }),
                  }
            }
            columns={[
              {
                title: t('devices.name'),
                dataIndex: 'name',
                width: 220,
                render: (name: string, d) => (
                  <Space size={4}>
                    <Link to={`/devices/${d.id}`}>{name}</Link>
                    {d.disabled && <Tag color="red">{t('device.disabled')}</Tag>}
                  </Space>
                ),
              },
              { title: t('devices.id'), dataIndex: 'id', width: 200, render: (id: string) => <Typography.Text code>{id}</Typography.Text> },
              { title: t('devices.product'), dataIndex: 'product', width: 130 },
              {
                title: t('devices.status'),
                dataIndex: 'online',
                width: 110,
                render: (online: boolean) => <Badge status={online ? 'success' : 'default'} text={online ? t('devices.online') : t('devices.offline')} />,
              },
              {
                title: t('devices.lastSeen'),
                dataIndex: 'lastSeen',
                width: 150,
                render: (v: string | null) => <span title={formatDateTime(v)}>{v ? formatRelative(v) : t('common.never')}</span>,
              },
              ...(search
                ? [
                    { title: t('devices.firmware'), dataIndex: 'firmware', width: 100, render: (v?: string | null) => v ?? '—' },
                    {
                      title: t('devices.tags'),
                      dataIndex: 'tags',
                      width: 200,
                      render: (v?: Record<string, string>) =>
                        Object.entries(v ?? {}).map(([k, x]) => (
                          <Tag key={k}>
                            {k}={x}
                          </Tag>
                        )),
                    },
                  ]
                : [
                    {
                      title: t('devices.home'),
                      dataIndex: 'homeId',
                      width: 180,
                      render: (v: string | null) => v ?? <Typography.Text type="secondary">{t('devices.noHome')}</Typography.Text>,
                    },
                    { title: t('devices.created'), dataIndex: 'createdAt', width: 200, render: (v: string) => formatDateTime(v) },
                  ]),
            ]}
          />
          {search && (
            <Space style={{ marginTop: 12, width: '100%', justifyContent: 'flex-end' }} wrap>
              {list.data?.total !== undefined && !queryError && <MatchCount total={list.data.total} capped={list.data.totalCapped} testId="search-total" />}
              <Button disabled={cursors.length <= 1} onClick={() => setCursors((c) => c.slice(0, -1))}>
                {t('devices.previous')}
              </Button>
              <Button disabled={!list.data?.nextCursor || !!queryError} onClick={() => setCursors((c) => [...c, list.data?.nextCursor ?? undefined])}>
                {t('devices.next')}
              </Button>
              <Select
                value={size}
                aria-label={t('devices.pageSize')}
                style={{ width: 120 }}
                options={PAGE_SIZES.map((n) => ({ value: n, label: t('devices.perPage', { n }) }))}
                onChange={(n: number) => set({ size: String(n) })}
              />
            </Space>
          )}
        </PageState>
      </Card>
    </>
  );
}

/** The tag keys of the devices shown: the fields a count by tag can use. */
function tagKeys(items: DeviceListItem[] | undefined): string[] {
  const keys = new Set<string>();
  for (const d of items ?? []) for (const k of Object.keys(d.tags ?? {})) keys.add(k);
  return [...keys].sort();
}
