import { Button, Space } from 'antd';
import { useState } from 'react';
import { useTranslation } from 'react-i18next';

/** Pages by cursor (the API's nextCursor): the cursors that led to each page so far, and back/forward. */
export function useCursorPages() {
  const [cursors, setCursors] = useState<Array<string | undefined>>([undefined]);
  return {
    cursor: cursors[cursors.length - 1],
    canBack: cursors.length > 1,
    back: () => setCursors((c) => (c.length > 1 ? c.slice(0, -1) : c)),
    forward: (next: string | null | undefined) => next && setCursors((c) => [...c, next]),
    reset: () => setCursors([undefined]),
  };
}

export function CursorButtons({ pages, next, extra }: { pages: ReturnType<typeof useCursorPages>; next: string | null | undefined; extra?: React.ReactNode }) {
  const { t } = useTranslation();
  return (
    <Space style={{ marginTop: 12, width: '100%', justifyContent: 'flex-end' }} wrap>
      {extra}
      <Button disabled={!pages.canBack} onClick={pages.back}>
        {t('devices.previous')}
      </Button>
      <Button disabled={!next} onClick={() => pages.forward(next)}>
        {t('devices.next')}
      </Button>
    </Space>
  );
}
