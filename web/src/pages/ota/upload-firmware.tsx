import { UploadOutlined } from '@ant-design/icons';
import { useQueryClient } from '@tanstack/react-query';
import { Alert, App, Button, Form, Input, Modal, Upload } from 'antd';
import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { api, unwrap } from '../../api/client';

const SEMVER = /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/;

/** Upload a firmware image: the file is the raw body (streamed to storage by the API), the version and notes go in the query. */
export function UploadFirmware({ product, open, onClose }: { product: string; open: boolean; onClose: () => void }) {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const qc = useQueryClient();
  const [form] = Form.useForm<{ version: string; minVersion?: string; notes?: string }>();
  const [file, setFile] = useState<File>();
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const submit = async () => {
    const v = await form.validateFields();
    if (!file) {
      setError(t('ota.fileRequired'));
      return;
    }
    setBusy(true);
    setError(undefined);
    try {
      await unwrap(
        api.POST('/api/v1/products/{key}/firmware', {
          params: {
            path: { key: product },
            query: { version: v.version.trim(), minVersion: v.minVersion?.trim() || undefined, notes: v.notes?.trim() || undefined },
          },
          body: file as never,
          bodySerializer: (b: unknown) => b as Blob,
          headers: { 'content-type': 'application/octet-stream' },
        }),
      );
      message.success(t('ota.uploadedOk', { version: v.version }));
      void qc.invalidateQueries({ queryKey: ['firmware', product] });
      form.resetFields();
      setFile(undefined);
      onClose();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Modal
      open={open}
      title={t('ota.uploadTitle', { product })}
      onOk={() => void submit()}
      onCancel={onClose}
      confirmLoading={busy}
      okText={t('ota.upload')}
      cancelText={t('common.cancel')}
    >
      {error && <Alert type="error" showIcon message={error} style={{ marginBottom: 16 }} data-testid="upload-error" />}
      <Form form={form} name="firmware" layout="vertical">
        <Form.Item label={t('ota.file')} required>
          <Upload
            maxCount={1}
            beforeUpload={(f) => {
              setFile(f);
              return false;
            }}
            onRemove={() => setFile(undefined)}
            fileList={file ? [{ uid: '1', name: file.name, size: file.size, status: 'done' }] : []}
          >
            <Button icon={<UploadOutlined />}>{t('ota.pickFile')}</Button>
          </Upload>
        </Form.Item>
        <Form.Item
          name="version"
          label={t('ota.version')}
          rules={[
            { required: true, message: t('form.required') },
            { pattern: SEMVER, message: t('ota.badVersion') },
          ]}
        >
          <Input placeholder="1.2.0" />
        </Form.Item>
        <Form.Item name="minVersion" label={t('ota.minVersion')} rules={[{ pattern: SEMVER, message: t('ota.badVersion') }]} tooltip={t('ota.minVersionHelp')}>
          <Input placeholder="1.0.0" />
        </Form.Item>
        <Form.Item name="notes" label={t('ota.notes')}>
          <Input.TextArea rows={3} maxLength={4000} />
        </Form.Item>
      </Form>
    </Modal>
  );
}
