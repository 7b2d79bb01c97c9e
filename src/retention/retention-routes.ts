import { Type } from 'typebox';
import type { HttpApp } from '../transports/http/http-server.ts';
import { principal } from '../transports/http/http-server.ts';
import { Auth } from '../transports/http/route-auth.ts';
import { AuthHeader, problems } from '../transports/http/http-schemas.ts';
import { actorOf } from '../access/principal.ts';
import type { AuditService } from '../audit/audit-service.ts';
import { ProductKey } from '../products/product-schema.ts';
import { RetentionBody, RetentionView } from './retention-policy.ts';
import type { RetentionService } from './retention-service.ts';

const example = {
  product: 'acme-thermostat',
  raw: '30d',
  events: '90d',
  rollups: { '1m': '7d', '1h': '365d', '1d': null },
  properties: { temperature: { raw: '7d' } },
  custom: ['raw', 'properties.temperature'],
};

export async function retentionRoutes(app: HttpApp, deps: { retention: RetentionService; audit: AuditService }): Promise<void> {
  app.put(
    '/api/v1/products/:key/retention',
    {
      config: { auth: Auth.operator('products:manage') },
      schema: {
        tags: ['telemetry'],
        summary: "Set how long a product's data is kept",
        ...AuthHeader,
        description:
          "Replaces the product's own policy: keys left out follow the configured defaults (HEARTH_RETENTION_*). Durations are `<n>d` or `<n>h`; null keeps forever. " +
          '`properties` keeps the raw points of some properties for another time than `raw`. The background pass (every HEARTH_RETENTION_INTERVAL_MS) deletes what is older.',
        params: Type.Object({ key: ProductKey }),
        body: RetentionBody,
        response: {
          200: Type.Object(RetentionView.properties, { examples: [example] }),
          ...problems('E_VALIDATION', 'E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PRODUCT_NOT_FOUND'),
        },
      },
    },
    async (req) => {
      const view = await deps.retention.put(req.params.key, req.body);
      deps.audit.record({
        actor: actorOf(principal(req)),
        action: 'product.retention',
        targetType: 'product',
        targetId: req.params.key,
        details: { policy: req.body },
      });
      return view;
    },
  );

  app.get(
    '/api/v1/products/:key/retention',
    {
      config: { auth: Auth.operator('products:manage') },
      schema: {
        tags: ['telemetry'],
        summary: "Read a product's retention (its own values over the defaults)",
        ...AuthHeader,
        params: Type.Object({ key: ProductKey }),
        response: {
          200: Type.Object(RetentionView.properties, { examples: [example] }),
          ...problems('E_UNAUTHENTICATED', 'E_FORBIDDEN', 'E_PRODUCT_NOT_FOUND'),
        },
      },
    },
    async (req) => deps.retention.get(req.params.key),
  );
}
