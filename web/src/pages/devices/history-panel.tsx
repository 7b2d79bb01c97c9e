import { useQuery } from '@tanstack/react-query';
import { Card, DatePicker, Select, Space } from 'antd';
import { LineChart } from 'echarts/charts';
import { DataZoomComponent, GridComponent, TooltipComponent } from 'echarts/components';
import * as echarts from 'echarts/core';
import { CanvasRenderer } from 'echarts/renderers';
import type { Dayjs } from 'dayjs';
import { useEffect, useRef, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { api, unwrap } from '../../api/client';
import { PageState } from '../../components/page-state';
import { useThemeMode } from '../../lib/preferences';

echarts.use([LineChart, GridComponent, TooltipComponent, DataZoomComponent, CanvasRenderer]);

/** A property's time series (GET /devices/{id}/history) over a chosen range, as a line chart. */
export default function HistoryPanel({ deviceId, properties }: { deviceId: string; properties: string[] }) {
  const { t } = useTranslation();
  const mode = useThemeMode();
  const [property, setProperty] = useState(properties[0]);
  const [range, setRange] = useState<[Dayjs, Dayjs] | null>(null);
  const el = useRef<HTMLDivElement>(null);
  const history = useQuery({
    queryKey: ['history', deviceId, property, range?.[0]?.valueOf(), range?.[1]?.valueOf()],
    enabled: !!property,
    queryFn: () =>
      unwrap(
        api.GET('/api/v1/devices/{id}/history', {
          params: { path: { id: deviceId }, query: { property, limit: 5000, ...(range ? { from: range[0].toISOString(), to: range[1].toISOString() } : {}) } },
        }),
      ),
  });
  const points = history.data?.points ?? [];

  useEffect(() => {
    if (!el.current || points.length === 0) return;
    const chart = echarts.init(el.current, mode === 'dark' ? 'dark' : undefined);
    chart.setOption({
      backgroundColor: 'transparent',
      tooltip: { trigger: 'axis' },
      grid: { left: 48, right: 24, top: 24, bottom: 56 },
      xAxis: { type: 'time' },
      yAxis: { type: 'value', scale: true },
      dataZoom: [{ type: 'inside' }, { type: 'slider' }],
      series: [{ type: 'line', name: property, showSymbol: false, data: points.map((p) => [p.ts, p.value]) }],
    });
    const resize = () => chart.resize();
    window.addEventListener('resize', resize);
    return () => {
      window.removeEventListener('resize', resize);
      chart.dispose();
    };
  }, [points, mode, property]);

  return (
    <Card size="small">
      <PageState empty={properties.length === 0} emptyText={t('device.noHistory')}>
        <Space wrap style={{ marginBottom: 16 }}>
          <Select
            aria-label={t('device.property')}
            style={{ width: 200 }}
            value={property}
            onChange={setProperty}
            options={properties.map((p) => ({ value: p, label: p }))}
          />
          <DatePicker.RangePicker aria-label={t('device.range')} showTime value={range} onChange={(v) => setRange(v?.[0] && v[1] ? [v[0], v[1]] : null)} />
        </Space>
        <PageState loading={history.isLoading} error={history.error} empty={points.length === 0} onRetry={() => void history.refetch()}>
          <div ref={el} style={{ height: 360 }} />
        </PageState>
      </PageState>
    </Card>
  );
}
