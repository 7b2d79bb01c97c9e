import { Tooltip } from 'antd';
import { useTranslation } from 'react-i18next';
import { formatNumber } from '../lib/format';

/**
 * The console counts matches up to this many (the API's totalLimit, docs/fleet.md): over a large
 * fleet an exact count of a broad query costs far more than its page; past it, "1,000+".
 */
export const TOTAL_LIMIT = 1000;

/** The number of matches, or "1,000+" (with a hint why) when the API stopped counting (totalCapped). */
export function MatchCount({ total, capped, testId }: { total: number; capped?: boolean; testId?: string }) {
  const { t } = useTranslation();
  const formatted = formatNumber(total, 0);
  if (!capped) return <span data-testid={testId}>{t('devices.matches', { count: total, formatted })}</span>;
  return (
    <Tooltip title={t('devices.matchesCappedHint', { formatted })}>
      <span data-testid={testId} data-capped="true">
        {t('devices.matchesCapped', { count: total, formatted })}
      </span>
    </Tooltip>
  );
}
