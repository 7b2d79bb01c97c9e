import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { startPlatform, ADMIN, type Platform, inbox, storeEnv } from './helpers/platform.ts';
import { buildConsole } from '../scripts/build-console.ts';
import { Hearth } from '../src/app.ts';
import { loadConfig } from '../src/core/config/config-schema.ts';
import { createLogger } from '../src/core/logger.ts';

/**
 * The console in a real browser (Debian's chromium through playwright-core) against a started
 * Hearth: sign-in, the language switch, onboarding a device that a real MQTT client then brings
 * online, a live property change, a command built from the thing model, and the budgets (gzipped
 * JavaScript of the first load, first contentful paint). Screenshots: see SHOTS.
 */
const CHROMIUM = process.env.HEARTH_CHROMIUM ?? '/usr/bin/chromium';
const SKIP = existsSync(CHROMIUM) ? false : `needs Chromium at ${CHROMIUM} (Debian: apt-get install -y chromium; or set HEARTH_CHROMIUM)`;
/** The screenshots of docs/console.md: refreshed with HEARTH_UPDATE_SCREENSHOTS=1, else kept in a temp dir (the tree stays clean). */
const SHOTS =
  process.env.HEARTH_UPDATE_SCREENSHOTS === '1' ? fileURLToPath(new URL('../docs/console/', import.meta.url)) : join(tmpdir(), 'hearth-console-shots/');
/** Budgets of issue 19, measured on loopback. */
const FIRST_LOAD_JS_GZIP_BYTES = 600 * 1024;
const FIRST_CONTENTFUL_PAINT_MS = 1500;

let p: Platform;
let browser: Browser;
let context: BrowserContext;
let page: Page;

before(async () => {
  if (SKIP) return;
  await buildConsole({ quiet: true });
  p = await startPlatform();
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: process.getuid?.() === 0 ? ['--no-sandbox'] : [] });
  context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US', timezoneId: 'Europe/Berlin' });
  page = await context.newPage();
  page.setDefaultTimeout(10_000);
  mkdirSync(SHOTS, { recursive: true });
});
after(async () => {
  await browser?.close();
  await p?.stop();
});

const shot = (name: string) => page.screenshot({ path: `${SHOTS}${name}.png` });

test('sign in within the budgets, switch to 中文 and back, remembered across a reload', { skip: SKIP }, async () => {
  const js: Array<{ url: string; bytes: number }> = [];
  const onResponse = async (res: import('playwright-core').Response) => {
    if (!res.url().endsWith('.js')) return;
    const h = await res.allHeaders();
    assert.equal(h['content-encoding'], 'gzip', `${res.url()} is sent gzipped`);
    js.push({ url: res.url(), bytes: Number(h['content-length']) });
  };
  page.on('response', onResponse);
  await page.goto(`${p.httpUrl}/devices`);
  // Not signed in: the sign-in page, which returns to the page asked for.
  await page.waitForURL(/\/sign-in\?next=%2Fdevices/);
  await page.getByRole('heading', { name: 'Sign in to Hearth' }).waitFor();
  const fcp = await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime);
  assert.ok(fcp !== undefined && fcp < FIRST_CONTENTFUL_PAINT_MS, `first contentful paint ${fcp} ms < ${FIRST_CONTENTFUL_PAINT_MS}`);
  await shot('sign-in');

  await page.getByLabel('E-mail').fill(ADMIN.email);
  await page.getByLabel('Password').fill('wrong-password-1');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page
    .getByRole('alert')
    .filter({ hasText: /password/i })
    .waitFor();
  await page.getByLabel('Password').fill(ADMIN.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${p.httpUrl}/devices`);
  await page.getByRole('heading', { name: 'Devices' }).waitFor();
  page.off('response', onResponse);
  const total = js.reduce((s, f) => s + f.bytes, 0);
  assert.ok(total < FIRST_LOAD_JS_GZIP_BYTES, `first load: ${Math.round(total / 1024)} KB of gzipped JavaScript (${js.length} files) < 600 KB`);
  assert.ok(!js.some((f) => /history-panel/.test(f.url)), 'the charts are not in the first load');
  console.log(`# console first load: ${(total / 1024).toFixed(0)} KB gzipped JavaScript in ${js.length} files, first contentful paint ${fcp!.toFixed(0)} ms`);

  await page.getByRole('navigation').or(page.locator('.ant-menu')).getByText('Overview', { exact: true }).click();
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  await page.getByText('中文').first().click();
  await page.getByRole('heading', { name: '概览' }).waitFor();
  assert.equal(await page.evaluate(() => (globalThis as any).document.documentElement.lang), 'zh-CN');
  await page.locator('.ant-menu').getByText('设备', { exact: true }).waitFor();
  await page.locator('.ant-segmented-item-selected').filter({ hasText: '中文' }).waitFor();
  await shot('overview-zh');
  await page.reload();
  await page.getByRole('heading', { name: '概览' }).waitFor();
  await page.getByText('English').first().click();
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  await shot('overview');
});

let device: { id: string; secret: string };
let client: Awaited<ReturnType<Platform['connect']>>;

test('onboarding: create a light, copy its snippet, a real MQTT client connects and the wizard turns green', { skip: SKIP }, async () => {
  await page.goto(`${p.httpUrl}/onboarding`);
  await page.getByRole('heading', { name: 'Add a device' }).waitFor();
  await page.getByLabel('Product').click();
  await page.keyboard.type('light');
  await page.locator('.ant-select-item-option').filter({ hasText: '(light)' }).first().click();
  await page.getByLabel('Device name').fill('Hall light');
  await page.getByRole('button', { name: 'Create the device' }).click();
  const id = (await page.getByTestId('device-id').textContent())!.trim();
  const secret = (await page.getByTestId('device-secret').textContent())!.trim();
  assert.match(id, /^d_/);
  device = { id, secret };
  const snippet = await page.getByTestId('snippet-mosquitto').textContent();
  assert.ok(snippet?.includes(`-u ${id}`) && snippet.includes(secret), 'the snippet carries the credentials');
  await page.getByText('Waiting for its first message…').waitFor();
  await shot('onboarding-waiting');

  // Be the device, with the credentials the page showed.
  client = await p.connect(id, secret);
  await client.publishAsync(`devices/${id}/properties`, JSON.stringify({ on: true, brightness: 40 }), { qos: 1 });
  await page.getByTestId('first-message').waitFor();
  await page.getByText('First message received').waitFor();
  await shot('onboarding-done');
});

test('device page: a property change arrives live, and a command from the thing model shows the answer', { skip: SKIP }, async () => {
  const commands = inbox(client);
  await client.subscribeAsync(`devices/${device.id}/commands`, { qos: 1 });
  await page.getByRole('button', { name: 'Open the device' }).click();
  await page.getByRole('heading', { name: 'Hall light' }).waitFor();
  await page.getByTestId('presence').getByText('Online').waitFor();
  await page.locator('[data-testid="stream-state"][data-state="live"]').waitFor();
  await page.locator('[data-property="brightness"]').filter({ hasText: '40 %' }).waitFor();

  // No reload: the new value comes over the stream.
  await client.publishAsync(`devices/${device.id}/properties`, JSON.stringify({ brightness: 85 }), { qos: 1 });
  await page.locator('[data-property="brightness"]').filter({ hasText: '85 %' }).waitFor();
  await shot('device');

  await page.getByRole('tab', { name: 'Commands' }).click();
  await page.getByLabel('Action').click();
  await page.locator('.ant-select-item-option').filter({ hasText: 'blink' }).click();
  await page.getByLabel('times').fill('3');
  await page.getByRole('button', { name: 'Send' }).click();
  const cmd = await commands.next((m) => m.topic === `devices/${device.id}/commands`);
  assert.equal(cmd.payload.action, 'blink');
  assert.deepEqual(cmd.payload.params, { times: 3 }, 'the form sent an integer from the model');
  await client.publishAsync(`devices/${device.id}/commands/result`, JSON.stringify({ id: cmd.payload.id, ok: true }), { qos: 1 });
  await page.getByTestId('command-outcome').getByText('Command answered').waitFor();
  // The ledger shows it answered.
  await page.locator('.ant-table-row').filter({ hasText: 'blink' }).filter({ hasText: 'answered' }).waitFor();
  await shot('device-command');

  // Desired state: a form of the writable properties; only what changed is sent.
  await page.getByRole('tab', { name: 'Desired state' }).click();
  await page.getByLabel('colorTemp').fill('3000');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText('Desired state saved').waitFor();
  const shadow = (await p.device(device.id)).shadow;
  assert.deepEqual(shadow.desired, { colorTemp: 3000 });
  await page.getByText('Pending: colorTemp').waitFor();
  await page.getByRole('tab', { name: 'Commands' }).click();

  // Out of range: the form refuses before anything is sent.
  await page.getByLabel('times').fill('');
  await page.getByLabel('times').fill('99');
  await page.getByLabel('times').blur();
  const value = await page.getByLabel('times').inputValue();
  assert.ok(Number(value) <= 10, `the number box keeps to the model's maximum (${value})`);
});

test("an automation made in the editor fires on the device's report, and its run shows with its trace", { skip: SKIP }, async () => {
  // The operator's home, with the light of the onboarding in it.
  const home = await p.api('POST', '/api/v1/homes', { name: 'Test flat', timezone: 'Europe/Berlin' });
  assert.equal(home.status, 201, JSON.stringify(home.body));
  const code = (await p.device(device.id)).pairingCode;
  assert.equal((await p.api('POST', `/api/v1/homes/${home.body.id}/devices`, { pairingCode: code })).status, 201);

  await page.goto(`${p.httpUrl}/automations?home=${home.body.id}`);
  await page.getByText('This home has no automations yet.').waitFor();
  await page.getByRole('button', { name: 'New automation' }).click();
  await page.getByLabel('Name', { exact: true }).fill('Bright alert');
  const pick = async (label: string, option: string) => {
    await page.getByLabel(label, { exact: true }).click();
    await page.locator('.ant-select-dropdown:visible .ant-select-item-option').filter({ hasText: option }).first().click();
  };
  await pick('Trigger device', 'Hall light');
  await pick('Trigger property', 'brightness');
  await page.getByLabel('Becomes', { exact: true }).fill('99');
  await page.getByRole('button', { name: 'Add', exact: true }).first().click();
  await pick('Action kind', 'Notify');
  await page.getByLabel('Title', { exact: true }).fill('Very bright');
  await page.getByLabel('Message', { exact: true }).fill('{{trigger.description}}');
  await page.getByRole('button', { name: 'Add', exact: true }).last().click();
  const json = await page.getByLabel('Triggers, conditions and actions (JSON)').inputValue();
  assert.deepEqual(JSON.parse(json).triggers, [{ type: 'property', device: device.id, property: 'brightness', to: 99 }]);
  await shot('automation-editor');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('.ant-table-row').filter({ hasText: 'Bright alert' }).waitFor();

  // The device reports: the automation runs.
  await client.publishAsync(`devices/${device.id}/properties`, JSON.stringify({ brightness: 99 }), { qos: 1 });
  await page.locator('.ant-table-row').filter({ hasText: 'Bright alert' }).getByRole('button', { name: 'Runs' }).click();
  await page.locator('.ant-drawer .ant-table-row').filter({ hasText: 'completed' }).waitFor({ timeout: 15_000 });
  await shot('automation-runs');
  await page.keyboard.press('Escape');
  // Its notification is on the overview.
  await page.locator('.ant-menu').getByText('Overview', { exact: true }).click();
  await page.locator('.ant-card').filter({ hasText: 'Recent notifications' }).getByText('Very bright').waitFor();
});

test("operator pages: a customer's home, the gateway dry run, the audit log, an API key shown once", { skip: SKIP }, async () => {
  const homeId = (await p.api('GET', '/api/v1/homes')).body.items.find((h: { name: string }) => h.name === 'Test flat').id;
  const scene = await p.api('POST', `/api/v1/homes/${homeId}/scenes`, { name: 'Evening', states: [{ device: device.id, properties: { on: true } }] });
  assert.equal(scene.status, 201, JSON.stringify(scene.body));
  await page.goto(`${p.httpUrl}/homes`);
  await page.getByLabel("Find a home: name, ID or owner's user ID").fill('test fl');
  await page.locator('.ant-table-row').filter({ hasText: 'Test flat' }).click();
  await page.locator('.ant-drawer').getByRole('tab', { name: 'Devices' }).click();
  await page.locator('.ant-drawer').getByText('Hall light').waitFor();
  await shot('homes');
  await page.locator('.ant-drawer').getByRole('tab', { name: 'Scenes' }).click();
  await page.locator('.ant-drawer').getByText('Evening').waitFor();
  await page.keyboard.press('Escape');

  await page.goto(`${p.httpUrl}/gateway`);
  await page.locator('.ant-table-row').filter({ hasText: 'device-core' }).waitFor();
  await page.getByRole('tab', { name: 'Dry run' }).click();
  await page.getByLabel('ID', { exact: true }).fill(device.id);
  await page.getByRole('button', { name: 'Dry run' }).click();
  await page.getByText('"action": "pass"').waitFor();
  await page.getByRole('tab', { name: 'Dead letters' }).click();
  await page.getByText('No dead letters.').waitFor();

  await page.goto(`${p.httpUrl}/audit`);
  await page.locator('.ant-table-row').filter({ hasText: 'automation.create' }).first().waitFor();
  await shot('audit');

  await page.goto(`${p.httpUrl}/keys`);
  await page.getByRole('button', { name: 'New API key' }).click();
  await page.getByLabel('Name', { exact: true }).fill('Home Assistant');
  await page.getByLabel('Scopes', { exact: true }).click();
  await page.locator('.ant-select-dropdown:visible .ant-select-item-option').filter({ hasText: 'devices:read' }).click();
  await page.keyboard.press('Escape');
  await page.getByRole('button', { name: 'Create' }).click();
  const key = (await page.getByTestId('new-key').textContent())!.trim();
  assert.match(key, /^hk_/);
  const me = await fetch(`${p.httpUrl}/api/v1/auth/me`, { headers: { 'x-api-key': key } }).then((r) => r.json() as Promise<{ scopes: string[] }>);
  assert.deepEqual(me.scopes, ['devices:read'], 'the key works, with the scope chosen');
  await page.locator('.ant-table-row').filter({ hasText: 'Home Assistant' }).waitFor();
});

test('first run: a fresh server asks for the operator in the browser, then signs it in', { skip: SKIP }, async () => {
  // A server without HEARTH_ADMIN_PASSWORD: its operator has a generated password and never signed in.
  const dataDir = mkdtempSync(join(tmpdir(), 'hearth-console-'));
  const config = loadConfig(await storeEnv(dataDir), { httpPort: 0, mqttPort: 0, httpHost: '127.0.0.1', mqttHost: '127.0.0.1', dataDir, demo: false });
  const fresh = new Hearth(config, { log: createLogger('error') });
  await fresh.start();
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'zh-CN' });
  try {
    const tab = await ctx.newPage();
    tab.setDefaultTimeout(10_000);
    const base = `http://127.0.0.1:${fresh.httpPort}`;
    await tab.goto(`${base}/`);
    // A browser in Chinese gets the console in Chinese before anyone signed in.
    await tab.getByRole('heading', { name: '欢迎使用 Hearth' }).waitFor();
    await tab.getByText('English').click();
    await tab.getByRole('heading', { name: 'Welcome to Hearth' }).waitFor();
    await tab.getByLabel("Operator's e-mail").fill('me@example.com');
    await tab.getByLabel('New password (at least 8 characters)').fill('my-long-password');
    await tab.getByLabel('New password, once more').fill('my-long-password-x');
    await tab.getByRole('button', { name: 'Set up and sign in' }).click();
    await tab.getByText('The two passwords differ.').waitFor();
    await tab.getByLabel('New password, once more').fill('my-long-password');
    await tab.screenshot({ path: `${SHOTS}setup.png` });
    await tab.getByRole('button', { name: 'Set up and sign in' }).click();
    await tab.getByRole('heading', { name: 'Overview' }).waitFor();
    await tab.getByTestId('account').getByText('me@example.com').waitFor();
    const login = await fetch(`${base}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'me@example.com', password: 'my-long-password' }),
    });
    assert.equal(login.status, 200, "the chosen password is the operator's");
  } finally {
    await ctx.close();
    await fresh.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('the device list: 10,000 devices, a page of 1000 scrolls with only the rows in view drawn; the dark theme', { skip: SKIP }, async () => {
  for (let i = 0; i < 10; i++) {
    const r = await p.api('POST', '/api/v1/devices/bulk', {
      items: Array.from({ length: 1000 }, (_, j) => ({ product: 'plug', name: `Plug ${i * 1000 + j}` })),
    });
    assert.equal(r.status, 201, JSON.stringify(r.body).slice(0, 300));
  }
  await page.goto(`${p.httpUrl}/devices?product=plug&size=1000`);
  // GET /devices with limit=1000 takes seconds on this store (see the report): wait longer than for a page.
  await page.locator('.ant-table-row').first().waitFor({ timeout: 60_000 });
  assert.equal(await page.locator('.ant-pagination-total-text').textContent(), '10,000 in all');
  // Virtualised: a page of 1000 draws only the rows in view, before and after scrolling to its end.
  const before = await page.locator('.ant-table-row').count();
  assert.ok(before > 0 && before < 100, `rows drawn: ${before}`);
  const firstBefore = await page.locator('.ant-table-row').first().textContent();
  const frames = await page.evaluate(async () => {
    const g = globalThis as any;
    const holder = g.document.querySelector('.ant-table-tbody-virtual-holder') as { scrollTop: number; scrollHeight: number };
    const gaps: number[] = [];
    let last = g.performance.now();
    for (let i = 0; i < 60; i++) {
      holder.scrollTop = (holder.scrollHeight * (i + 1)) / 60;
      await new Promise((r) => g.requestAnimationFrame(r));
      const now = g.performance.now();
      gaps.push(now - last);
      last = now;
    }
    return gaps;
  });
  const after = await page.locator('.ant-table-row').count();
  assert.ok(after > 0 && after < 100, `rows drawn after scrolling: ${after}`);
  assert.notEqual(await page.locator('.ant-table-row').first().textContent(), firstBefore, 'scrolling shows other rows');
  const sorted = [...frames].sort((x, y) => x - y);
  console.log(
    `# device list: 1000-row page of 10,000 devices, ${after} rows drawn; frames while scrolling: median ${sorted[30].toFixed(0)} ms, longest ${sorted[59].toFixed(0)} ms`,
  );

  await page.getByRole('button', { name: 'Dark theme' }).click();
  assert.equal(await page.evaluate(() => (globalThis as any).document.documentElement.dataset.theme), 'dark');
  await shot('devices-dark');
  await page.getByRole('button', { name: 'Light theme' }).click();
});
