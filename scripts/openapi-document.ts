import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hearth } from '../src/app.ts';
import { loadConfig } from '../src/core/config/config-schema.ts';
import { createLogger } from '../src/core/logger.ts';

/**
 * The OpenAPI document of this checkout, as `GET /docs/json` serves it, without starting anything:
 * the app is built (every route registered) on a throwaway data directory and asked in-process.
 */
export async function openApiDocument(): Promise<Record<string, unknown>> {
  const dataDir = mkdtempSync(join(tmpdir(), 'hearth-openapi-'));
  try {
    const config = loadConfig({}, { httpPort: 0, mqttPort: 0, httpHost: '127.0.0.1', mqttHost: '127.0.0.1', dataDir, demo: false });
    const hearth = new Hearth(config, { log: createLogger('error') });
    const app = await hearth.buildApp();
    await app.ready();
    const res = await app.inject({ method: 'GET', url: '/docs/json' });
    await app.close();
    if (res.statusCode !== 200) throw new Error(`GET /docs/json answered ${res.statusCode}`);
    return res.json();
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}
