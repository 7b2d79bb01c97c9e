import { useQueryClient } from '@tanstack/react-query';
import { Alert, App, Button, Card, Form, Typography } from 'antd';
import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { api, unwrap, type Device } from '../../api/client';
import { ModelFields } from '../../components/model-fields';
import { PageState } from '../../components/page-state';
import { changed, initialValue, toParams, type ModelProperty } from '../../lib/thing-form';

/** Desired state of the writable properties (PATCH /devices/{id}/shadow); the pending delta shown. */
export function DesiredPanel({ device, fields }: { device: Device; fields: ModelProperty[] }) {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const qc = useQueryClient();
  const [form] = Form.useForm();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const current = { ...device.shadow.reported, ...device.shadow.desired } as Record<string, unknown>;
  const initial = Object.fromEntries(fields.map((f) => [f.id, initialValue(f, current[f.id])]));

  const save = async () => {
    const { params, problems } = toParams(fields, await form.validateFields());
    const bad = Object.entries(problems);
    if (bad.length) {
      form.setFields(bad.map(([name, code]) => ({ name, errors: [t(`form.${code}`)] })));
      return;
    }
    const patch = changed(current, params);
    if (!Object.keys(patch).length) return;
    setBusy(true);
    setError(undefined);
    try {
      await unwrap(api.PATCH('/api/v1/devices/{id}/shadow', { params: { path: { id: device.id } }, body: { desired: patch } }));
      message.success(t('device.desiredSaved'));
      void qc.invalidateQueries({ queryKey: ['device', device.id] });
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };

  const delta = Object.keys(device.shadow.delta ?? {});
  return (
    <Card size="small">
      <PageState empty={fields.length === 0}>
        <Typography.Paragraph type="secondary">{t('device.desiredHelp')}</Typography.Paragraph>
        {delta.length > 0 && <Alert type="info" showIcon style={{ marginBottom: 16 }} message={`${t('device.pending')}: ${delta.join(', ')}`} />}
        {error && <Alert type="error" showIcon style={{ marginBottom: 16 }} message={error} />}
        <Form form={form} layout="vertical" initialValues={initial} onFinish={() => void save()}>
          <ModelFields fields={fields} />
          <Button type="primary" htmlType="submit" loading={busy}>
            {t('common.save')}
          </Button>
        </Form>
      </PageState>
    </Card>
  );
}
