import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, ConfigSchema, envName, loadConfig } from './config-schema.ts';

test('defaults', () => {
  const c = loadConfig({ HEARTH_DATA_DIR: mkdtempSync(join(tmpdir(), 'cfg-')) });
  assert.equal(c.httpPort, 8080);
  assert.equal(c.mqttPort, 1883);
  assert.equal(c.demo, true);
  assert.ok(Object.isFrozen(c));
});

test('environment variables are coerced and validated with the variable named', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
  const c = loadConfig({ HEARTH_DATA_DIR: dir, HEARTH_HTTP_PORT: '9000', HEARTH_DEMO: '0' });
  assert.equal(c.httpPort, 9000);
  assert.equal(c.demo, false);
  assert.throws(
    () => loadConfig({ HEARTH_DATA_DIR: dir, HEARTH_HTTP_PORT: 'eighty' }),
    (e: Error) => e instanceof ConfigError && /HEARTH_HTTP_PORT must be an integer/.test(e.message),
  );
  assert.throws(
    () => loadConfig({ HEARTH_DATA_DIR: dir, HEARTH_MQTT_PORT: '70000' }),
    (e: Error) => /HEARTH_MQTT_PORT \(mqttPort\): must be <= 65535/.test(e.message),
  );
  assert.throws(() => loadConfig({ HEARTH_DATA_DIR: dir, HEARTH_DEMO: 'maybe' }), /HEARTH_DEMO must be 1 or 0/);
  assert.throws(() => loadConfig({ HEARTH_DATA_DIR: dir, HEARTH_ADMIN_PASSWORD: 'short' }), /HEARTH_ADMIN_PASSWORD/);
});

test('a config file is read, unknown keys are refused, env wins', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
  const file = join(dir, 'hearth.json');
  writeFileSync(file, JSON.stringify({ httpPort: 7000, mqttPort: 7001 }));
  const c = loadConfig({ HEARTH_DATA_DIR: dir, HEARTH_MQTT_PORT: '7002' });
  assert.equal(c.httpPort, 7000);
  assert.equal(c.mqttPort, 7002);
  writeFileSync(file, JSON.stringify({ htpPort: 1 }));
  assert.throws(() => loadConfig({ HEARTH_DATA_DIR: dir }), /unknown keys: htpPort/);
  assert.equal(envName('maxPayloadBytes'), 'HEARTH_MAX_PAYLOAD_BYTES');
});

test('a value outside an enum is one line listing the allowed values', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
  assert.throws(
    () => loadConfig({ HEARTH_DATA_DIR: dir, HEARTH_LOG_LEVEL: 'verbose' }),
    (err: Error) => {
      const lines = err.message.split('\n').filter((l) => l.includes('HEARTH_LOG_LEVEL'));
      assert.equal(lines.length, 1, err.message);
      assert.match(lines[0], /must be one of fatal, error, warn, info, debug, trace, silent, got "verbose"/);
      assert.doesNotMatch(err.message, /constant/);
      return true;
    },
  );
});

test('every setting has a description (hearth help prints it beside the variable)', () => {
  for (const [key, schema] of Object.entries(ConfigSchema.properties)) {
    const description = (schema as { description?: string }).description;
    assert.ok(description && description.trim().length > 10, `${envName(key)} (${key}) has a description`);
  }
});
