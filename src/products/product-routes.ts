import { Type } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { AuthHeader, problems } from '../transports/http/http-schemas.ts';
import { CreateProductBody, ProductKey, ProductSchema, UpdateProductBody } from './product-schema.ts';
import type { ProductService } from './product-service.ts';
import type { ThingModel } from './thing-model.ts';

export async function productRoutes(app: HttpApp, deps: { products: ProductService }): Promise<void> {
  app.post(
    '/api/v1/products',
    {
      config: { auth: Auth.operator('products:manage') },
      schema: {
        tags: ['products'],
        summary: 'Define a product and its thing model',
        ...AuthHeader,
        body: CreateProductBody,
        response: { 201: ProductSchema, ...problems('E_VALIDATION', 'E_INVALID_MODEL', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PRODUCT_EXISTS') },
      },
    },
    async (req, reply) => {
      const p = await deps.products.create({ ...req.body, model: req.body.model as ThingModel });
      return reply.status(201).send(p);
    },
  );

  app.get(
    '/api/v1/products',
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['products'],
        summary: 'List products (the built-in catalog and your own)',
        ...AuthHeader,
        response: { 200: Type.Object({ items: Type.Array(ProductSchema) }), ...problems('E_UNAUTHENTICATED') },
      },
    },
    async () => ({ items: await deps.products.list() }),
  );

  app.get(
    '/api/v1/products/:key',
    {
      config: { auth: Auth.caller() },
      schema: {
        tags: ['products'],
        summary: 'Read one product',
        ...AuthHeader,
        params: Type.Object({ key: ProductKey }),
        response: { 200: ProductSchema, ...problems('E_UNAUTHENTICATED', 'E_PRODUCT_NOT_FOUND') },
      },
    },
    async (req) => deps.products.require(req.params.key),
  );

  app.patch(
    '/api/v1/products/:key',
    {
      config: { auth: Auth.operator('products:manage') },
      schema: {
        tags: ['products'],
        summary: 'Change a product of your own: name, category or thing model',
        description:
          'The model is checked as when the product was made (400 E_INVALID_MODEL naming each problem) and applies to its devices from their next message, on every node (the others hear of it over the bus within a moment). Built-in products answer 409.',
        ...AuthHeader,
        params: Type.Object({ key: ProductKey }),
        body: UpdateProductBody,
        response: {
          200: ProductSchema,
          ...problems('E_VALIDATION', 'E_INVALID_MODEL', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PRODUCT_NOT_FOUND', 'E_CONFLICT'),
        },
      },
    },
    async (req) => deps.products.update(req.params.key, { ...req.body, model: req.body.model as ThingModel | undefined }),
  );
}
