import { useQueryClient } from '@tanstack/react-query';
import { Alert, App, Button, Form, Input, Modal, Popconfirm, Select, Space } from 'antd';
import { useEffect, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { ApiError, api, unwrap, type paths } from '../../api/client';

type Scene = paths['/api/v1/scenes/{sceneId}']['get']['responses'][200]['content']['application/json'];
type ChannelBody = paths['/api/v1/homes/{homeId}/notification-channels']['post']['requestBody']['content']['application/json'];
const CHANNEL_TYPES: ChannelBody['type'][] = ['webhook', 'slack', 'feishu', 'dingtalk', 'wecom'];
const SEVERITIES = ['info', 'warning', 'alarm'] as const;
const URL_EXAMPLE = 'https://hooks.slack.com/services/…';

/** A problem+json's field errors as lines, else its message. */
function problemLines(e: unknown): string[] {
  const errors = e instanceof ApiError ? (e.problem?.errors as Array<{ field?: string; path?: string; message: string }> | undefined) : undefined;
  return errors?.length ? errors.map((x) => `${x.field ?? x.path ?? ''} ${x.message}`.trim()) : [(e as Error).message];
}

function Problems({ lines }: { lines: string[] }) {
  if (!lines.length) return null;
  return (
    <Alert
      type="error"
      showIcon
      style={{ marginBottom: 12 }}
      data-testid="home-admin-error"
      message={
        <ul style={{ margin: 0, paddingInlineStart: 16 }}>
          {lines.map((p) => (
            <li key={p}>{p}</li>
          ))}
        </ul>
      }
    />
  );
}

/**
 * A scene made or edited as JSON (states and actions, checked by the API against the thing
 * models: each problem listed), or captured from the devices' current state. `scene` undefined: a new one.
 */
export function SceneEditor({
  homeId,
  open,
  scene,
  devices,
  onClose,
}: {
  homeId: string;
  open: boolean;
  scene?: Scene;
  devices: Array<{ id: string; name: string }>;
  onClose: () => void;
}) {
  const { t } = useTranslation();
  const qc = useQueryClient();
  const [form] = Form.useForm<{ name: string; json: string; capture: string[] }>();
  const [mode, setMode] = useState<'json' | 'capture'>('json');
  const [problems, setProblems] = useState<string[]>([]);
  useEffect(() => {
    if (!open) return;
    setProblems([]);
    setMode('json');
    form.setFieldsValue({
      name: scene?.name ?? '',
      json: JSON.stringify(
        { states: scene?.states ?? devices.slice(0, 1).map((d) => ({ device: d.id, properties: { on: true } })), actions: scene?.actions ?? [] },
        null,
        2,
      ),
      capture: [],
    });
  }, [open, scene, devices, form]);
  const save = async () => {
    const v = await form.validateFields();
    setProblems([]);
    try {
      if (mode === 'capture') {
        await unwrap(api.POST('/api/v1/homes/{homeId}/scenes/capture', { params: { path: { homeId } }, body: { name: v.name, devices: v.capture } }));
      } else {
        let body: { states: never[]; actions?: never[] };
        try {
          body = JSON.parse(v.json);
        } catch {
          setProblems([t('products.badJson')]);
          return;
        }
        if (scene) await unwrap(api.PATCH('/api/v1/scenes/{sceneId}', { params: { path: { sceneId: scene.id } }, body: { ...body, name: v.name } }));
        else await unwrap(api.POST('/api/v1/homes/{homeId}/scenes', { params: { path: { homeId } }, body: { ...body, name: v.name } }));
      }
      void qc.invalidateQueries({ queryKey: ['home-scenes', homeId] });
      onClose();
    } catch (e) {
      setProblems(problemLines(e));
    }
  };
  return (
    <Modal
      open={open}
      width={640}
      title={scene ? t('homes.editScene') : t('homes.newScene')}
      onOk={() => void save()}
      onCancel={onClose}
      okText={t('common.save')}
      cancelText={t('common.cancel')}
    >
      <Form form={form} name="scene" layout="vertical">
        <Form.Item name="name" label={t('homes.name')} rules={[{ required: true, message: t('form.required') }]}>
          <Input maxLength={200} />
        </Form.Item>
        {!scene && (
          <Form.Item label={t('homes.sceneFrom')}>
            <Select
              value={mode}
              onChange={setMode}
              aria-label={t('homes.sceneFrom')}
              options={[
                { value: 'json', label: t('homes.sceneJson') },
                { value: 'capture', label: t('homes.sceneCapture') },
              ]}
            />
          </Form.Item>
        )}
        {mode === 'json' ? (
          <Form.Item name="json" label={t('homes.sceneStates')} rules={[{ required: true, message: t('form.required') }]}>
            <Input.TextArea rows={10} spellCheck={false} style={{ fontFamily: 'monospace' }} />
          </Form.Item>
        ) : (
          <Form.Item name="capture" label={t('homes.captureDevices')} rules={[{ required: true, message: t('form.required') }]}>
            <Select mode="multiple" aria-label={t('homes.captureDevices')} options={devices.map((d) => ({ value: d.id, label: d.name }))} />
          </Form.Item>
        )}
        <Problems lines={problems} />
      </Form>
    </Modal>
  );
}

export function DeleteScene({ homeId, sceneId }: { homeId: string; sceneId: string }) {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const qc = useQueryClient();
  const remove = async () => {
    try {
      await unwrap(api.DELETE('/api/v1/scenes/{sceneId}', { params: { path: { sceneId } } }));
      void qc.invalidateQueries({ queryKey: ['home-scenes', homeId] });
    } catch (e) {
      message.error((e as Error).message);
    }
  };
  return (
    <Popconfirm title={t('homes.deleteSceneConfirm')} onConfirm={() => void remove()} okText={t('common.yes')} cancelText={t('common.no')}>
      <Button size="small" danger>
        {t('fleet.delete')}
      </Button>
    </Popconfirm>
  );
}

/** A home's chat or webhook channel for notifications: add (type, URL, secret, least severity), remove. */
export function ChannelForm({ homeId, open, onClose }: { homeId: string; open: boolean; onClose: () => void }) {
  const { t } = useTranslation();
  const qc = useQueryClient();
  const [form] = Form.useForm<{ type: ChannelBody['type']; name: string; url: string; secret?: string; minSeverity?: (typeof SEVERITIES)[number] }>();
  const [problems, setProblems] = useState<string[]>([]);
  const save = async () => {
    const v = await form.validateFields();
    setProblems([]);
    try {
      await unwrap(
        api.POST('/api/v1/homes/{homeId}/notification-channels', {
          params: { path: { homeId } },
          body: { type: v.type, name: v.name, url: v.url, secret: v.secret || undefined, minSeverity: v.minSeverity },
        }),
      );
      void qc.invalidateQueries({ queryKey: ['home-channels', homeId] });
      form.resetFields();
      onClose();
    } catch (e) {
      setProblems(problemLines(e));
    }
  };
  return (
    <Modal open={open} title={t('homes.newChannel')} onOk={() => void save()} onCancel={onClose} okText={t('common.create')} cancelText={t('common.cancel')}>
      <Form form={form} name="channel" layout="vertical" initialValues={{ type: 'webhook', minSeverity: 'info' }}>
        <Space wrap align="start">
          <Form.Item name="type" label={t('homes.channelType')}>
            <Select style={{ width: 160 }} aria-label={t('homes.channelType')} options={CHANNEL_TYPES.map((c) => ({ value: c, label: c }))} />
          </Form.Item>
          <Form.Item name="minSeverity" label={t('homes.minSeverity')}>
            <Select style={{ width: 160 }} aria-label={t('homes.minSeverity')} options={SEVERITIES.map((s) => ({ value: s, label: s }))} />
          </Form.Item>
        </Space>
        <Form.Item name="name" label={t('homes.name')} rules={[{ required: true, message: t('form.required') }]}>
          <Input maxLength={200} />
        </Form.Item>
        <Form.Item name="url" label={t('homes.channelUrl')} rules={[{ required: true, message: t('form.required') }]}>
          <Input placeholder={URL_EXAMPLE} />
        </Form.Item>
        <Form.Item name="secret" label={t('homes.channelSecret')} tooltip={t('homes.channelSecretHelp')}>
          <Input.Password />
        </Form.Item>
        <Problems lines={problems} />
      </Form>
    </Modal>
  );
}

export function DeleteChannel({ homeId, channelId }: { homeId: string; channelId: string }) {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const qc = useQueryClient();
  const remove = async () => {
    try {
      await unwrap(api.DELETE('/api/v1/notification-channels/{channelId}', { params: { path: { channelId } } }));
      void qc.invalidateQueries({ queryKey: ['home-channels', homeId] });
    } catch (e) {
      message.error((e as Error).message);
    }
  };
  return (
    <Popconfirm title={t('homes.deleteChannelConfirm')} onConfirm={() => void remove()} okText={t('common.yes')} cancelText={t('common.no')}>
      <Button size="small" danger>
        {t('fleet.delete')}
      </Button>
    </Popconfirm>
  );
}
