import { useQuery, useQueryClient } from '@tanstack/react-query';
import { Alert, App, Button, Card, Col, Form, Input, List, Modal, Row, Table, Tabs, Tag, Typography } from 'antd';
import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { useSearchParams } from 'react-router';
import { ApiError, api, unwrap, type Product } from '../../api/client';
import { useSession } from '../../api/session';
import { PageState } from '../../components/page-state';
import type { ModelField, ModelProperty } from '../../lib/thing-form';
import { CasPanel, FactoryRecordsPanel, ProvisioningPanel, RetentionPanel } from './product-admin';

/** Products and their thing models; the operator creates new ones (the API's validation messages shown). */
export default function ProductsPage() {
  const { t } = useTranslation();
  const s = useSession();
  const [params, setParams] = useSearchParams();
  const [creating, setCreating] = useState(false);
  const products = useQuery({ queryKey: ['products'], queryFn: () => unwrap(api.GET('/api/v1/products')) });
  const selected = products.data?.items.find((p) => p.key === params.get('key')) ?? products.data?.items[0];

  return (
    <>
      <div style={{ display: 'flex', justifyContent: 'space-between', marginBottom: 16 }}>
        <Typography.Title level={3} style={{ margin: 0 }}>
          {t('products.title')}
        </Typography.Title>
        {s?.user.role === 'operator' && (
          <Button type="primary" onClick={() => setCreating(true)}>
            {t('products.new')}
          </Button>
        )}
      </div>
      <PageState loading={products.isLoading} error={products.error} empty={products.data?.items.length === 0} onRetry={() => void products.refetch()}>
        <Row gutter={16}>
          <Col xs={24} md={7}>
            <Card size="small">
              <List
                dataSource={products.data?.items}
                renderItem={(p) => (
                  <List.Item
                    onClick={() => setParams({ key: p.key })}
                    style={{ cursor: 'pointer', fontWeight: p.key === selected?.key ? 600 : undefined }}
                    extra={p.builtin ? <Tag>{t('products.builtin')}</Tag> : undefined}
                  >
                    <List.Item.Meta title={p.name} description={`${p.key} · ${p.category}`} />
                  </List.Item>
                )}
              />
            </Card>
          </Col>
          <Col xs={24} md={17}>
            {selected && <ModelView product={selected} />}
          </Col>
        </Row>
      </PageState>
      {creating && <ProductForm open onClose={() => setCreating(false)} />}
    </>
  );
}

function fieldColumns(t: (k: string) => string) {
  return [
    { title: 'ID', dataIndex: 'id' },
    { title: t('products.type'), dataIndex: 'type', render: (v: string, f: ModelField) => (f.values ? `${v} (${f.values.join(', ')})` : v) },
    { title: t('products.unit'), dataIndex: 'unit' },
    {
      title: t('products.range'),
      key: 'range',
      render: (_: unknown, f: ModelField) => (f.min !== undefined || f.max !== undefined ? `${f.min ?? ''} … ${f.max ?? ''}` : ''),
    },
    { title: t('products.description'), dataIndex: 'description' },
  ];
}

function ModelView({ product }: { product: Product }) {
  const { t } = useTranslation();
  const operator = useSession()?.user.role === 'operator';
  const [editing, setEditing] = useState(false);
  const m = product.model;
  const ops = (list: Array<{ id: string; params?: ModelField[]; description?: string }>) => (
    <Table
      size="small"
      rowKey="id"
      pagination={false}
      dataSource={list}
      columns={[
        { title: 'ID', dataIndex: 'id' },
        {
          title: t('products.params'),
          dataIndex: 'params',
          render: (ps?: ModelField[]) => (ps ?? []).map((p) => `${p.id}: ${p.type}${p.required ? '' : '?'}`).join(', '),
        },
        { title: t('products.description'), dataIndex: 'description' },
      ]}
    />
  );
  return (
    <Card
      title={`${product.name} (${product.key})`}
      size="small"
      extra={
        operator && !product.builtin ? (
          <Button size="small" onClick={() => setEditing(true)}>
            {t('products.edit')}
          </Button>
        ) : undefined
      }
    >
      {editing && <ProductForm product={product} open onClose={() => setEditing(false)} />}
      <Tabs
        key={product.key}
        destroyInactiveTabPane
        items={[
          {
            key: 'properties',
            label: `${t('products.properties')} (${m.properties.length})`,
            children: (
              <Table
                size="small"
                rowKey="id"
                pagination={false}
                dataSource={m.properties as ModelProperty[]}
                columns={[...fieldColumns(t), { title: t('products.access'), dataIndex: 'access' }]}
              />
            ),
          },
          { key: 'events', label: `${t('products.events')} (${m.events.length})`, children: ops(m.events as never) },
          { key: 'actions', label: `${t('products.actions')} (${m.actions.length})`, children: ops(m.actions as never) },
          { key: 'json', label: t('products.json'), children: <pre style={{ maxHeight: 480, overflow: 'auto' }}>{JSON.stringify(m, null, 2)}</pre> },
        ]}
      />
      {operator && (
        <Tabs
          key={`${product.key}-operator`}
          destroyInactiveTabPane
          style={{ marginTop: 16 }}
          items={[
            { key: 'retention', label: t('products.retention'), children: <RetentionPanel productKey={product.key} /> },
            { key: 'cas', label: t('products.cas'), children: <CasPanel productKey={product.key} /> },
            { key: 'provisioning', label: t('products.provisioning'), children: <ProvisioningPanel productKey={product.key} /> },
            { key: 'records', label: t('products.records'), children: <FactoryRecordsPanel productKey={product.key} /> },
          ]}
        />
      )}
    </Card>
  );
}

const EXAMPLE = JSON.stringify({ properties: [{ id: 'on', type: 'boolean', access: 'rw' }], events: [], actions: [{ id: 'toggle' }] }, null, 2);

/**
 * POST /products (new) or PATCH /products/{key} (`product`: one of one's own): the model as JSON,
 * checked by the API; every problem it names is listed.
 */
function ProductForm({ open, onClose, product }: { open: boolean; onClose: () => void; product?: Product }) {
  const { t } = useTranslation();
  const { message } = App.useApp();
  const qc = useQueryClient();
  const [form] = Form.useForm<{ key: string; name: string; category: string; model: string }>();
  const [problems, setProblems] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);
  const submit = async () => {
    const v = await form.validateFields();
    let model: unknown;
    try {
      model = JSON.parse(v.model);
    } catch {
      setProblems([t('products.badJson')]);
      return;
    }
    setBusy(true);
    setProblems([]);
    try {
      if (product) {
        await unwrap(
          api.PATCH('/api/v1/products/{key}', { params: { path: { key: product.key } }, body: { name: v.name, category: v.category, model } as never }),
        );
        message.success(t('products.saved'));
      } else {
        await unwrap(api.POST('/api/v1/products', { body: { key: v.key, name: v.name, category: v.category, model } as never }));
        message.success(t('products.created'));
      }
      void qc.invalidateQueries({ queryKey: ['products'] });
      onClose();
    } catch (e) {
      const errors =
        e instanceof ApiError
          ? ((e.problem?.errors ?? e.problem?.problems) as Array<{ field?: string; path?: string; message: string }> | undefined)
          : undefined;
      setProblems(errors?.length ? errors.map((x) => `${x.field ?? x.path ?? ''} ${x.message}`) : [(e as Error).message]);
    } finally {
      setBusy(false);
    }
  };
  return (
    <Modal
      open={open}
      width={640}
      title={product ? t('products.editTitle', { key: product.key }) : t('products.new')}
      onOk={() => void submit()}
      onCancel={onClose}
      confirmLoading={busy}
      okText={product ? t('common.save') : t('common.create')}
      cancelText={t('common.cancel')}
    >
      <Form
        form={form}
        layout="vertical"
        initialValues={
          product
            ? { key: product.key, name: product.name, category: product.category, model: JSON.stringify(product.model, null, 2) }
            : { model: EXAMPLE, category: 'light' }
        }
      >
        <Form.Item name="key" label={t('products.key')} rules={[{ required: true, message: t('form.required') }]}>
          <Input disabled={!!product} />
        </Form.Item>
        <Form.Item name="name" label={t('products.name')} rules={[{ required: true, message: t('form.required') }]}>
          <Input />
        </Form.Item>
        <Form.Item name="category" label={t('products.category')} rules={[{ required: true, message: t('form.required') }]}>
          <Input />
        </Form.Item>
        <Form.Item name="model" label={t('products.modelJson')} rules={[{ required: true, message: t('form.required') }]}>
          <Input.TextArea rows={10} spellCheck={false} style={{ fontFamily: 'monospace' }} />
        </Form.Item>
        {problems.length > 0 && (
          <Alert
            type="error"
            showIcon
            message={
              <ul style={{ margin: 0, paddingInlineStart: 16 }}>
                {problems.map((p) => (
                  <li key={p}>{p}</li>
                ))}
              </ul>
            }
          />
        )}
      </Form>
    </Modal>
  );
}
