import { Form, Input, InputNumber, Select, Switch } from 'antd';
import { useTranslation } from 'react-i18next';
import { fieldKind, type ModelField } from '../lib/thing-form';

/** Form controls for thing-model fields (an action's parameters, writable properties). */
export function ModelFields({ fields, prefix }: { fields: ModelField[]; prefix?: string }) {
  const { t } = useTranslation();
  return (
    <>
      {fields.map((f) => {
        const kind = fieldKind(f);
        const label = f.unit ? `${f.id} (${f.unit})` : f.id;
        const common = { name: prefix ? [prefix, f.id] : f.id, label, tooltip: f.description, required: f.required };
        const rules = f.required ? [{ required: true, message: t('form.required') }] : [];
        if (kind === 'switch')
          return (
            <Form.Item key={f.id} {...common} valuePropName="checked">
              <Switch aria-label={f.id} />
            </Form.Item>
          );
        if (kind === 'number')
          return (
            <Form.Item key={f.id} {...common} rules={rules}>
              <InputNumber
                aria-label={f.id}
                min={f.min}
                max={f.max}
                step={f.step ?? (f.type === 'integer' ? 1 : undefined)}
                precision={f.type === 'integer' ? 0 : undefined}
                style={{ width: 200 }}
              />
            </Form.Item>
          );
        if (kind === 'select')
          return (
            <Form.Item key={f.id} {...common} rules={rules}>
              <Select aria-label={f.id} allowClear style={{ width: 200 }} options={(f.values ?? []).map((v) => ({ value: v, label: v }))} />
            </Form.Item>
          );
        if (kind === 'json')
          return (
            <Form.Item key={f.id} {...common} rules={rules}>
              <Input.TextArea aria-label={f.id} rows={3} spellCheck={false} />
            </Form.Item>
          );
        return (
          <Form.Item key={f.id} {...common} rules={rules}>
            <Input aria-label={f.id} maxLength={f.max} />
          </Form.Item>
        );
      })}
    </>
  );
}
