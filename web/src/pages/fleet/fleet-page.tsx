import { Tabs, Typography } from 'antd';
import { useTranslation } from 'react-i18next';
import { useSearchParams } from 'react-router';
import { GroupsTab } from './groups-tab';
import { JobsTab } from './jobs-tab';

/** The operator's fleet tools (docs/fleet.md): groups (static and dynamic) and bulk jobs. */
export default function FleetPage() {
  const { t } = useTranslation();
  const [params, setParams] = useSearchParams();
  const tab = params.get('tab') ?? 'groups';
  return (
    <>
      <Typography.Title level={3} style={{ marginTop: 0 }}>
        {t('fleet.title')}
      </Typography.Title>
      <Tabs
        activeKey={tab}
        onChange={(k) => setParams({ tab: k })}
        destroyInactiveTabPane
        items={[
          { key: 'groups', label: t('fleet.groups'), children: <GroupsTab /> },
          { key: 'jobs', label: t('fleet.jobs'), children: <JobsTab /> },
        ]}
      />
    </>
  );
}
