import { useQuery } from '@tanstack/react-query';
import { Alert, Button, Col, Divider, Drawer, Form, Input, Row, Select, Space, Switch, Typography } from 'antd';
import { useMemo, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { ApiError, api, unwrap } from '../../api/client';
import { actionOf, draftText, parseDraft, triggerOf, type ActionInput, type Draft, type TriggerInput } from '../../lib/automation-draft';
import type { Automation } from './automations-page';

const MODES = ['single', 'restart', 'queued', 'parallel'];

/**
 * The editor: name, mode and switches in a form; triggers, conditions and actions as JSON beside
 * it (the whole language of docs/automations.md), with forms that add the common kinds from the
 * home's devices and their thing models. The API checks everything and names each bad part.
 */
export function AutomationEditor({ homeId, automation, onClose }: { homeId: string; automation?: Automation; onClose: (saved: boolean) => void }) {
  const { t } = useTranslation();
  const [name, setName] = useState(automation?.name ?? '');
  const [enabled, setEnabled] = useState(automation?.enabled ?? true);
  const [mode, setMode] = useState(automation?.mode ?? 'single');
  const [text, setText] = useState(
    draftText(
      automation
        ? { triggers: automation.triggers, conditions: automation.conditions, actions: automation.actions }
        : { triggers: [], conditions: [], actions: [] },
    ),
  );
  const [problems, setProblems] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);
  const parsed = useMemo(() => parseDraft(text), [text]);
  const devices = useQuery({
    queryKey: ['home-devices', homeId],
    queryFn: () => unwrap(api.GET('/api/v1/homes/{homeId}/devices', { params: { path: { homeId } } })),
  });
  const products = useQuery({ queryKey: ['products'], queryFn: () => unwrap(api.GET('/api/v1/products')) });
  const deviceOptions = devices.data?.items.map((d) => ({ value: d.id, label: `${d.name} (${d.product})` })) ?? [];
  const modelOf = (deviceId?: string) => products.data?.items.find((p) => p.key === devices.data?.items.find((d) => d.id === deviceId)?.product)?.model;

  const update = (f: (d: Draft) => Draft) => {
    if (parsed.draft) setText(draftText(f(parsed.draft)));
  };

  const save = async () => {
    if (!parsed.draft) return;
    setBusy(true);
    setProblems([]);
    const body = { name, enabled, mode: mode as 'single', ...parsed.draft } as never;
    try {
      if (automation) await unwrap(api.PATCH('/api/v1/automations/{automationId}', { params: { path: { automationId: automation.id } }, body }));
      else await unwrap(api.POST('/api/v1/homes/{homeId}/automations', { params: { path: { homeId } }, body }));
      onClose(true);
    } catch (e) {
      const errors = e instanceof ApiError ? (e.problem?.errors as Array<{ field: string; message: string }> | undefined) : undefined;
      setProblems(errors?.length ? errors.map((x) => `${x.field}: ${x.message}`) : [(e as Error).message]);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Drawer
      open
      width={1100}
      title={automation ? automation.name : t('automations.new')}
      onClose={() => onClose(false)}
      extra={
        <Button type="primary" onClick={() => void save()} loading={busy} disabled={!parsed.draft || !name.trim()}>
          {t('common.save')}
        </Button>
      }
    >
      {problems.length > 0 && (
        <Alert
          type="error"
          showIcon
          style={{ marginBottom: 16 }}
          data-testid="automation-problems"
          message={
            <ul style={{ margin: 0, paddingInlineStart: 16 }}>
              {problems.map((p) => (
                <li key={p}>{p}</li>
              ))}
            </ul>
          }
        />
      )}
      <Row gutter={24}>
        <Col xs={24} lg={11}>
          <Form layout="vertical">
            <Form.Item label={t('automations.name')} required>
              <Input aria-label={t('automations.name')} value={name} onChange={(e) => setName(e.target.value)} maxLength={200} />
            </Form.Item>
            <Space size="large">
              <Form.Item label={t('automations.enabled')}>
                <Switch checked={enabled} onChange={setEnabled} aria-label={t('automations.enabled')} />
              </Form.Item>
              <Form.Item label={t('automations.mode')}>
                <Select
                  style={{ width: 160 }}
                  value={mode}
                  onChange={setMode}
                  options={MODES.map((m) => ({ value: m, label: m }))}
                  aria-label={t('automations.mode')}
                />
              </Form.Item>
            </Space>
          </Form>
          <Divider titlePlacement="start">{t('automations.addTrigger')}</Divider>
          <TriggerForm deviceOptions={deviceOptions} modelOf={modelOf} onAdd={(tr) => update((d) => ({ ...d, triggers: [...d.triggers, triggerOf(tr)] }))} />
          <Divider titlePlacement="start">{t('automations.addAction')}</Divider>
          <ActionForm deviceOptions={deviceOptions} modelOf={modelOf} onAdd={(a) => update((d) => ({ ...d, actions: [...d.actions, actionOf(a)] }))} />
        </Col>
        <Col xs={24} lg={13}>
          <Typography.Text strong>{t('automations.json')}</Typography.Text>
          <Input.TextArea
            aria-label={t('automations.json')}
            value={text}
            onChange={(e) => setText(e.target.value)}
            rows={28}
            spellCheck={false}
            style={{ fontFamily: 'monospace', marginTop: 8 }}
            status={parsed.error ? 'error' : undefined}
          />
          {parsed.error && <Typography.Text type="danger">{t('products.badJson')}</Typography.Text>}
        </Col>
      </Row>
    </Drawer>
  );
}

type ModelOf = (deviceId?: string) => { properties: Array<{ id: string }>; actions: Array<{ id: string }> } | undefined;

function TriggerForm({
  deviceOptions,
  modelOf,
  onAdd,
}: {
  deviceOptions: Array<{ value: string; label: string }>;
  modelOf: ModelOf;
  onAdd: (t: TriggerInput) => void;
}) {
  const { t } = useTranslation();
  const [type, setType] = useState<TriggerInput['type']>('property');
  const [device, setDevice] = useState<string>();
  const [property, setProperty] = useState<string>();
  const [to, setTo] = useState('');
  const [cron, setCron] = useState('0 7 * * *');
  const ready = type === 'schedule' ? !!cron : !!device && (type !== 'property' || !!property);
  const add = () => {
    if (type === 'schedule') onAdd({ type, cron });
    else if (type === 'property') onAdd({ type, device: device!, property: property!, to: to || undefined });
    else onAdd({ type, device: device! });
  };
  return (
    <Space wrap align="end">
      <Select
        aria-label={t('automations.triggerType')}
        style={{ width: 130 }}
        value={type}
        onChange={setType}
        options={['property', 'online', 'offline', 'schedule'].map((v) => ({ value: v, label: t(`automations.kinds.${v}`) }))}
      />
      {type !== 'schedule' && (
        <Select
          aria-label={t('automations.triggerDevice')}
          placeholder={t('automations.device')}
          style={{ width: 220 }}
          value={device}
          onChange={setDevice}
          options={deviceOptions}
          showSearch
          optionFilterProp="label"
        />
      )}
      {type === 'property' && (
        <>
          <Select
            aria-label={t('automations.triggerProperty')}
            placeholder={t('automations.property')}
            style={{ width: 150 }}
            value={property}
            onChange={setProperty}
            options={modelOf(device)?.properties.map((p) => ({ value: p.id, label: p.id }))}
          />
          <Input
            aria-label={t('automations.becomes')}
            placeholder={t('automations.becomes')}
            style={{ width: 110 }}
            value={to}
            onChange={(e) => setTo(e.target.value)}
          />
        </>
      )}
      {type === 'schedule' && (
        <Input aria-label={t('automations.kinds.schedule')} style={{ width: 160 }} value={cron} onChange={(e) => setCron(e.target.value)} />
      )}
      <Button onClick={add} disabled={!ready}>
        {t('automations.add')}
      </Button>
    </Space>
  );
}

function ActionForm({
  deviceOptions,
  modelOf,
  onAdd,
}: {
  deviceOptions: Array<{ value: string; label: string }>;
  modelOf: ModelOf;
  onAdd: (a: ActionInput) => void;
}) {
  const { t } = useTranslation();
  const [type, setType] = useState<ActionInput['type']>('set');
  const [device, setDevice] = useState<string>();
  const [property, setProperty] = useState<string>();
  const [value, setValue] = useState('');
  const [action, setAction] = useState<string>();
  const [title, setTitle] = useState('');
  const [message, setMessage] = useState('');
  const ready = type === 'notify' ? !!title : !!device && (type === 'set' ? !!property && value !== '' : !!action);
  const add = () => {
    if (type === 'set') onAdd({ type, device: device!, property: property!, value });
    else if (type === 'command') onAdd({ type, device: device!, action: action! });
    else onAdd({ type, title, message });
  };
  return (
    <Space wrap align="end">
      <Select
        aria-label={t('automations.actionType')}
        style={{ width: 130 }}
        value={type}
        onChange={setType}
        options={['set', 'command', 'notify'].map((v) => ({ value: v, label: t(`automations.kinds.${v}`) }))}
      />
      {type !== 'notify' && (
        <Select
          aria-label={t('automations.actionDevice')}
          placeholder={t('automations.device')}
          style={{ width: 220 }}
          value={device}
          onChange={setDevice}
          options={deviceOptions}
          showSearch
          optionFilterProp="label"
        />
      )}
      {type === 'set' && (
        <>
          <Select
            aria-label={t('automations.actionProperty')}
            placeholder={t('automations.property')}
            style={{ width: 150 }}
            value={property}
            onChange={setProperty}
            options={modelOf(device)?.properties.map((p) => ({ value: p.id, label: p.id }))}
          />
          <Input
            aria-label={t('automations.value')}
            placeholder={t('automations.value')}
            style={{ width: 110 }}
            value={value}
            onChange={(e) => setValue(e.target.value)}
          />
        </>
      )}
      {type === 'command' && (
        <Select
          aria-label={t('automations.actionAction')}
          placeholder={t('device.action')}
          style={{ width: 150 }}
          value={action}
          onChange={setAction}
          options={modelOf(device)?.actions.map((p) => ({ value: p.id, label: p.id }))}
        />
      )}
      {type === 'notify' && (
        <>
          <Input
            aria-label={t('automations.notifyTitle')}
            placeholder={t('automations.notifyTitle')}
            style={{ width: 180 }}
            value={title}
            onChange={(e) => setTitle(e.target.value)}
          />
          <Input
            aria-label={t('automations.notifyMessage')}
            placeholder={t('automations.notifyMessage')}
            style={{ width: 220 }}
            value={message}
            onChange={(e) => setMessage(e.target.value)}
          />
        </>
      )}
      <Button onClick={add} disabled={!ready}>
        {t('automations.add')}
      </Button>
    </Space>
  );
}
