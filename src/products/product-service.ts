import type { Db } from '../core/store/db.ts';
import { fromJson, toJson } from '../core/store/db.ts';
import { HearthError } from '../core/errors.ts';
import { CompiledModel, checkModel, type ThingModel } from './thing-model.ts';
import { CATALOG } from './catalog.ts';
import type { Product } from './product-schema.ts';

interface ProductEntry {
  product: Product;
  compiled: CompiledModel;
}

/**
 * Products (device types) and their thing models. Models are compiled once and cached,
 * because every device message is validated against one.
 */
export class ProductService {
  private readonly cache = new Map<string, ProductEntry>();

  constructor(private readonly deps: { db: Db }) {}

  /** Installs or refreshes the built-in catalog; user-defined products are never touched. */
  async installCatalog(now = Date.now()): Promise<void> {
    for (const p of CATALOG) {
      await this.deps.db
        .insertInto('products')
        .values({ key: p.key, name: p.name, category: p.category, model: toJson(p.model), builtin: 1, created_at: now, updated_at: now })
        .onConflict((oc) =>
          oc
            .column('key')
            .doUpdateSet({ name: p.name, category: p.category, model: toJson(p.model), updated_at: now })
            .where('products.builtin', '=', 1),
        )
        .execute();
      this.cache.delete(p.key);
    }
  }

  async create(input: { key: string; name: string; category: string; model: ThingModel }): Promise<Product> {
    const model: ThingModel = {
      properties: input.model.properties ?? [],
      events: input.model.events ?? [],
      actions: input.model.actions ?? [],
      ...(input.model.commandTtlMs !== undefined ? { commandTtlMs: input.model.commandTtlMs } : {}),
    };
    const problems = checkModel(model);
    if (problems.length) {
      throw new HearthError('E_INVALID_MODEL', problems.map((p) => `${p.field}: ${p.message}`).join('; '), { field: problems[0].field, problems });
    }
    const now = Date.now();
    const existing = await this.deps.db.selectFrom('products').select('key').where('key', '=', input.key).executeTakeFirst();
    if (existing) throw new HearthError('E_PRODUCT_EXISTS', `product "${input.key}" already exists`);
    await this.deps.db
      .insertInto('products')
      .values({ key: input.key, name: input.name, category: input.category, model: toJson(model), builtin: 0, created_at: now, updated_at: now })
      .execute();
    return (await this.get(input.key))!;
  }

  async list(): Promise<Product[]> {
    const rows = await this.deps.db.selectFrom('products').selectAll().orderBy('key').execute();
    return rows.map(toProduct);
  }

  async get(key: string): Promise<Product | undefined> {
    return (await this.entry(key))?.product;
  }

  async require(key: string): Promise<Product> {
    const p = await this.get(key);
    if (!p) throw new HearthError('E_PRODUCT_NOT_FOUND', `product "${key}" does not exist`);
    return p;
  }

  /** The compiled model of a product, cached. */
  async model(key: string): Promise<CompiledModel | undefined> {
    return (await this.entry(key))?.compiled;
  }

  private async entry(key: string): Promise<ProductEntry | undefined> {
    const hit = this.cache.get(key);
    if (hit) return hit;
    const row = await this.deps.db.selectFrom('products').selectAll().where('key', '=', key).executeTakeFirst();
    if (!row) return undefined;
    const product = toProduct(row);
    const entry = { product, compiled: new CompiledModel(product.model as ThingModel) };
    this.cache.set(key, entry);
    return entry;
  }
}

function toProduct(row: { key: string; name: string; category: string; model: string; builtin: number; created_at: number; updated_at: number }): Product {
  return {
    key: row.key,
    name: row.name,
    category: row.category,
    model: fromJson(row.model),
    builtin: row.builtin === 1,
    createdAt: new Date(Number(row.created_at)).toISOString(),
    updatedAt: new Date(Number(row.updated_at)).toISOString(),
  };
}
