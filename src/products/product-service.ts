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

  /** Told when a product changed here, so that every other node forgets its cached model (the composition root broadcasts it). */
  onChanged: ((key: string) => void | Promise<void>) | undefined;

  async create(input: { key: string; name: string; category: string; model: ThingModel }): Promise<Product> {
    const model = checkedModel(input.model);
    const now = Date.now();
    const existing = await this.deps.db.selectFrom('products').select('key').where('key', '=', input.key).executeTakeFirst();
    if (existing) throw new HearthError('E_PRODUCT_EXISTS', `product "${input.key}" already exists`);
    await this.deps.db
      .insertInto('products')
      .values({ key: input.key, name: input.name, category: input.category, model: toJson(model), builtin: 0, created_at: now, updated_at: now })
      .execute();
    return (await this.get(input.key))!;
  }

  /**
   * Changes a product of one's own: its name, category or thing model (checked as when created).
   * Devices are validated against the new model from their next message, on every node. The
   * built-in catalog is not editable (a start would put it back): 409.
   */
  async update(key: string, patch: { name?: string; category?: string; model?: ThingModel }): Promise<Product> {
    const current = await this.require(key);
    if (current.builtin) throw new HearthError('E_CONFLICT', `product "${key}" is built in (the catalog): define a product of your own to change its model`);
    const model = patch.model ? checkedModel(patch.model) : undefined;
    await this.deps.db
      .updateTable('products')
      .set({
        ...(patch.name !== undefined ? { name: patch.name } : {}),
        ...(patch.category !== undefined ? { category: patch.category } : {}),
        ...(model ? { model: toJson(model) } : {}),
        updated_at: Date.now(),
      })
      .where('key', '=', key)
      .execute();
    this.forget(key);
    await this.onChanged?.(key);
    return this.require(key);
  }

  /** Drops the cached model of a product that changed (here or on another node). */
  forget(key: string): void {
    this.cache.delete(key);
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

/** The model with its lists filled in, or E_INVALID_MODEL naming every problem. */
function checkedModel(input: ThingModel): ThingModel {
  const model: ThingModel = {
    properties: input.properties ?? [],
    events: input.events ?? [],
    actions: input.actions ?? [],
    ...(input.commandTtlMs !== undefined ? { commandTtlMs: input.commandTtlMs } : {}),
  };
  const problems = checkModel(model);
  if (problems.length) {
    throw new HearthError('E_INVALID_MODEL', problems.map((p) => `${p.field}: ${p.message}`).join('; '), { field: problems[0].field, problems });
  }
  return model;
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
