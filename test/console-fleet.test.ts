import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Locator, Page } from 'playwright-core';
import { startPlatform, ADMIN, eventually, type Platform } from './helpers/platform.ts';
import { buildConsole } from '../scripts/build-console.ts';
import { startOtaDevice, type OtaDevice } from '../src/simulator/ota-device.ts';
import { TestPki } from './helpers/pki.ts';

/**
 * The console's operator pages for a fleet, in a real browser (Debian's chromium through
 * playwright-core) against a started Hearth: firmware uploaded and rolled out by a campaign to
 * simulated devices that really update, the fleet search with the API's 400 shown inline, groups
 * and a bulk job, a device's lifecycle and secret rotation, a product's CAs and retention.
 */
const CHROMIUM = process.env.HEARTH_CHROMIUM ?? '/usr/bin/chromium';
const SKIP = existsSync(CHROMIUM) ? false : `needs Chromium at ${CHROMIUM} (Debian: apt-get install -y chromium; or set HEARTH_CHROMIUM)`;
const SHOTS =
  process.env.HEARTH_UPDATE_SCREENSHOTS === '1' ? fileURLToPath(new URL('../docs/console/', import.meta.url)) : join(tmpdir(), 'hearth-console-shots/');

let p: Platform;
let browser: Browser;
let page: Page;
const sims: OtaDevice[] = [];

before(async () => {
  if (SKIP) return;
  await buildConsole({ quiet: true });
  p = await startPlatform({ env: { HEARTH_OTA_TICK_MS: '100' } });
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: process.getuid?.() === 0 ? ['--no-sandbox'] : [] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US', timezoneId: 'Europe/Berlin' });
  page = await context.newPage();
  page.setDefaultTimeout(10_000);
  mkdirSync(SHOTS, { recursive: true });
  await signIn();
});

async function signIn(): Promise<void> {
  await page.goto(`${p.httpUrl}/sign-in`);
  await page.getByLabel('E-mail').fill(ADMIN.email);
  await page.getByLabel('Password').fill(ADMIN.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
}
const pki = new TestPki();
after(async () => {
  rmSync(pki.dir, { recursive: true, force: true });
  await Promise.all(sims.map((s) => s.stop()));
  await browser?.close();
  await p?.stop();
});

/**
 * Clicks `trigger`, then Yes in the confirmation it opens, and waits until `done()` holds. CI runs
 * under load saw that Yes lost (the row stayed, the API never heard of it): then, once, the test
 * asks again (the same confirmation when it is still open, else a new one).
 */
async function confirmed(trigger: Locator, done: () => Promise<boolean>, what: string): Promise<void> {
  const open = page.locator('.ant-popconfirm').filter({ visible: true });
  for (let attempt = 1; ; attempt++) {
    if (attempt === 1 || (await open.count()) === 0) await trigger.click();
    await open.getByRole('button', { name: 'Yes' }).click();
    if (
      await eventually(async () => (await done()) || undefined, 5000, what).then(
        () => true,
        () => false,
      )
    )
      return;
    assert.ok(attempt < 2, `${what}: twice the confirmation's Yes did not reach the API`);
  }
}

const shot = (name: string) => page.screenshot({ path: `${SHOTS}${name}.png` });
/** Picks `option` in the antd select labelled `label`. */
async function pick(label: string, option: string | RegExp, scope: Pick<Page, 'getByLabel'> = page) {
  await scope.getByLabel(label, { exact: true }).click();
  await page.locator('.ant-select-dropdown:visible .ant-select-item-option').filter({ hasText: option }).first().click();
}

test('OTA: upload a package, start a campaign in two waves, watch the devices update, see it completed', { skip: SKIP }, async () => {
  const product = await p.api('POST', '/api/v1/products', {
    key: 'lamp',
    name: 'Lamp',
    category: 'light',
    model: { properties: [{ id: 'on', type: 'boolean', access: 'rw' }], events: [], actions: [] },
  });
  assert.equal(product.status, 201, JSON.stringify(product.body));
  for (let i = 0; i < 4; i++) {
    const d = await p.provision('lamp', `Lamp ${i}`);
    sims.push(startOtaDevice({ mqttUrl: p.mqttUrl, id: d.id, secret: d.secret, product: 'lamp', version: '1.0.0' }));
  }
  await Promise.all(sims.map((s) => s.ready));

  await page.goto(`${p.httpUrl}/ota?tab=packages`);
  await page.getByText('Pick a product to see its firmware packages.').waitFor();
  await pick('Product', '(lamp)');
  await page.getByText('No firmware packages for this product yet.').waitFor();
  await page.getByRole('button', { name: 'Upload firmware', exact: true }).click();
  const dialog = page.getByRole('dialog');
  await dialog.locator('input[type=file]').setInputFiles({ name: 'lamp-1.1.0.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(64 * 1024, 7) });
  await dialog.getByLabel('Version', { exact: true }).fill('1.1.0');
  await dialog.getByLabel('Release notes').fill('Smoother dimming');
  await dialog.getByRole('button', { name: 'Upload firmware', exact: true }).click();
  await page.locator('.ant-table-row').filter({ hasText: 'Smoother dimming' }).waitFor();
  const fw = (await p.api('GET', '/api/v1/products/lamp/firmware')).body.items[0];
  assert.equal(fw.version, '1.1.0');
  assert.equal(fw.size, 64 * 1024, 'the whole image was sent as the body');
  // The same version again: the API's 409 is shown in the dialog.
  await page.getByRole('button', { name: 'Upload firmware', exact: true }).click();
  await dialog.locator('input[type=file]').setInputFiles({ name: 'again.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(10, 1) });
  await dialog.getByLabel('Version', { exact: true }).fill('1.1.0');
  await dialog.getByRole('button', { name: 'Upload firmware', exact: true }).click();
  await dialog.getByTestId('upload-error').waitFor();
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await shot('ota-packages');

  await page.getByRole('tab', { name: 'Campaigns' }).click();
  await page.getByText('No update campaigns yet.').waitFor();
  await page.getByRole('button', { name: 'New campaign' }).click();
  await dialog.getByLabel('Name', { exact: true }).fill('Lamp 1.1.0');
  await pick('Product', '(lamp)', dialog);
  await pick('Package', '1.1.0', dialog);
  await dialog.getByLabel('Version below').fill('1.1.0');
  await dialog.getByLabel('Wave 1 share').fill('50');
  await dialog.getByRole('button', { name: 'Add a wave' }).click();
  await dialog.getByRole('button', { name: 'Start' }).click();
  // The campaign opens: its waves, then every job succeeded.
  const drawer = page.locator('.ant-drawer');
  await drawer.getByText('Wave 2').waitFor();
  await drawer.locator('[data-testid="campaign-state"][data-state="completed"]').waitFor({ timeout: 20_000 });
  assert.equal(await drawer.locator('[data-count="succeeded"]').textContent(), '4');
  await drawer.locator('.ant-table-row').filter({ hasText: 'Succeeded' }).first().waitFor();
  await shot('ota-campaign');
  await page.keyboard.press('Escape');
  await page.locator('.ant-table-row').filter({ hasText: 'Lamp 1.1.0' }).filter({ hasText: 'Completed' }).waitFor();
  await eventually(() => sims.every((s) => s.version === '1.1.0'), 5000, 'every lamp runs 1.1.0');
  // A lamp's page shows the version it reported and its last job.
  await page.goto(`${p.httpUrl}/devices/${sims[0].id}`);
  await page.getByTestId('firmware').filter({ hasText: '1.1.0' }).filter({ hasText: 'Succeeded' }).waitFor();

  // Roll back: the previous package, for the devices on 1.1.0, older versions allowed.
  const old = await fetch(`${p.httpUrl}/api/v1/products/lamp/firmware?version=1.0.0`, {
    method: 'POST',
    body: Buffer.alloc(1024, 3),
    headers: { 'content-type': 'application/octet-stream', authorization: `Bearer ${p.token}` },
  });
  assert.equal(old.status, 201);
  await page.goto(`${p.httpUrl}/ota`);
  await page.locator('.ant-table-row').filter({ hasText: 'Lamp 1.1.0' }).getByRole('button', { name: 'Roll back' }).click();
  const rollback = page.getByRole('dialog', { name: 'Roll back' });
  assert.equal(await rollback.getByLabel('Version at least').inputValue(), '1.1.0');
  assert.ok(await rollback.getByLabel('Allow older versions (rollback)').isChecked());
  await pick('Package', '1.0.0', rollback);
  await rollback.getByRole('button', { name: 'Start' }).click();
  await drawer.locator('[data-testid="campaign-state"][data-state="completed"]').waitFor({ timeout: 20_000 });
  assert.equal(await drawer.locator('[data-count="succeeded"]').textContent(), '4');
  await eventually(() => sims.every((s) => s.version === '1.0.0'), 5000, 'every lamp is back on 1.0.0');
  await page.keyboard.press('Escape');
});

test('fleet search: a wrong query shows the API 400 inline, a right one pages by cursor and counts; a dynamic group and a bulk job over it', {
  skip: SKIP,
}, async () => {
  const plugs: string[] = [];
  for (let i = 0; i < 3; i++) plugs.push((await p.provision('plug', `Fleet plug ${i}`)).id);
  for (const [i, id] of plugs.entries()) {
    const r = await p.api('PATCH', `/api/v1/devices/${id}`, { tags: { site: i < 2 ? 'berlin' : 'paris' } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }
  await page.goto(`${p.httpUrl}/devices`);
  const box = page.getByLabel('Fleet search');
  await box.fill('product:plug AND colour:red');
  await box.press('Enter');
  await page.getByTestId('query-error').filter({ hasText: 'unknown field "colour"' }).waitFor();
  await shot('fleet-search-error');
  await box.fill('product:plug AND tag.site:*');
  await box.press('Enter');
  await page.getByTestId('search-total').filter({ hasText: '3 matching' }).waitFor();
  assert.equal(await page.getByTestId('query-error').count(), 0, 'the error went with the wrong query');
  await pick('Count by…', 'Count by tag.site');
  await page.getByTestId('counts').getByText('berlin').waitFor();
  // A count narrows the search.
  await page.getByTestId('counts').locator('.ant-tag').filter({ hasText: 'paris' }).click();
  await page.getByTestId('search-total').filter({ hasText: '1 matching' }).waitFor();
  assert.equal(new URL(page.url()).searchParams.get('q'), 'product:plug AND tag.site:* AND tag.site:paris');
  // Pages by cursor: one a page.
  await box.fill('product:plug AND tag.site:berlin');
  await box.press('Enter');
  await page.getByTestId('search-total').filter({ hasText: '2 matching' }).waitFor();
  await shot('fleet-search');
  // Pages by cursor: 25 matches are a page of 20, then one of 5.
  const bulk = await p.api('POST', '/api/v1/devices/bulk', { items: Array.from({ length: 25 }, (_, i) => ({ product: 'plug', name: `Bulk plug ${i}` })) });
  assert.equal(bulk.status, 201, JSON.stringify(bulk.body).slice(0, 300));
  await box.fill('name:Bulk*');
  await box.press('Enter');
  await page.getByTestId('search-total').filter({ hasText: '25 matching' }).waitFor();
  assert.ok(await page.getByRole('button', { name: 'Previous' }).isDisabled());
  await page.getByRole('button', { name: 'Next' }).click();
  await eventually(async () => (await page.locator('.ant-table-row').count()) === 5, 5000, 'the second page holds the last 5');
  assert.ok(await page.getByRole('button', { name: 'Next' }).isDisabled(), 'no page after the last');
  await page.getByRole('button', { name: 'Previous' }).click();
  await eventually(async () => (await page.locator('.ant-table-row').count()) > 5, 5000, 'back on the first page');
  // The console counts up to 1000 matches (totalLimit; the counts above were under it, so exact): past that it says 1,000+.
  for (const n of [1000, 1]) {
    const many = await p.api('POST', '/api/v1/devices/bulk', {
      items: Array.from({ length: n }, (_, i) => ({ product: 'plug', name: `Many plug ${n}-${i}` })),
    });
    assert.equal(many.status, 201, JSON.stringify(many.body).slice(0, 300));
  }
  await box.fill('name:Many*');
  await box.press('Enter');
  await page.locator('[data-testid="search-total"][data-capped="true"]').filter({ hasText: '1,000+ matching' }).waitFor();

  await page.goto(`${p.httpUrl}/fleet`);
  await page.getByText('No fleet groups yet.', { exact: false }).waitFor();
  await page.getByRole('button', { name: 'New group' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel('Name', { exact: true }).fill('Berlin plugs');
  await dialog.getByText('Dynamic', { exact: true }).click();
  await dialog.getByLabel('Query', { exact: true }).fill('product:plug AND tag.site:berlin');
  await dialog.getByRole('button', { name: 'Create' }).click();
  await page.locator('.ant-table-row').filter({ hasText: 'Berlin plugs' }).click();
  const drawer = page.locator('.ant-drawer');
  await drawer.getByText('Fleet plug 0').waitFor();
  await drawer.getByText('Fleet plug 1').waitFor();
  await drawer.locator('h5 .ant-typography-edit').click();
  await drawer.locator('.ant-typography-edit-content textarea').fill('Berlin plugs (all)');
  await drawer.locator('.ant-typography-edit-content textarea').press('Enter');
  await page.locator('.ant-table-row').filter({ hasText: 'Berlin plugs (all)' }).waitFor();
  await drawer.getByRole('button', { name: 'Bulk job on this group' }).click();
  await dialog.getByLabel('Set tags').fill('rollout=wave-1');
  await dialog.getByRole('button', { name: 'Start' }).click();
  await drawer.locator('[data-testid="job-status"][data-status="done"]').waitFor();
  await drawer.locator('.ant-table-row').filter({ hasText: 'OK' }).nth(1).waitFor();
  await shot('fleet-job');
  for (const id of plugs.slice(0, 2)) assert.equal((await p.device(id)).tags.rollout, 'wave-1', 'the job tagged the group');
  assert.equal((await p.device(plugs[2])).tags.rollout, undefined, 'and only the group');
  // A group of more devices than the console counts: 1,000+.
  assert.equal((await p.api('POST', '/api/v1/fleet/groups', { name: 'Many plugs', query: 'name:Many*' })).status, 201);
  await page.goto(`${p.httpUrl}/fleet`);
  await page.locator('.ant-table-row').filter({ hasText: 'Many plugs' }).click();
  await page.locator('[data-testid="group-total"][data-capped="true"]').filter({ hasText: '1,000+ matching' }).waitFor();
});

test('a device page: tags edited, secret rotated and shown once (the old one refused), disabled, enabled, deleted', { skip: SKIP }, async () => {
  const d = await p.provision('plug', 'Desk plug');
  await page.goto(`${p.httpUrl}/devices/${d.id}`);
  await page.getByRole('heading', { name: 'Desk plug' }).waitFor();
  await page.getByRole('tab', { name: 'Tags and attributes' }).click();
  await page.getByRole('button', { name: 'Add a tag' }).click();
  await page.getByLabel('Tag 1 key').fill('site');
  await page.getByLabel('Tag 1 value').fill('lisbon');
  await page.getByLabel('Attributes (JSON)').fill('{"installer": "ACME"}');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText('Tags and attributes saved').waitFor();
  const labelled = await p.device(d.id);
  assert.deepEqual([labelled.tags, labelled.attributes], [{ site: 'lisbon' }, { installer: 'ACME' }]);

  await page.getByRole('tab', { name: 'Credentials' }).click();
  await page.getByRole('button', { name: 'Rotate the secret' }).click();
  const secret = (await page.getByTestId('new-secret').textContent())!.trim();
  assert.ok(secret.length > 10 && secret !== d.secret);
  await shot('device-credentials');
  const c = await p.connect(d.id, secret);
  await page.getByRole('tab', { name: 'Presence' }).click();
  await page
    .getByTestId('presence-timeline')
    .getByText(/Online · connected/)
    .waitFor();
  await assert.rejects(p.connect(d.id, d.secret, { reconnectPeriod: 0 }), 'the old secret is refused');

  await page.getByRole('button', { name: 'Disable' }).click();
  await page.getByTestId('disabled').waitFor();
  await page
    .getByTestId('presence-timeline')
    .getByText(/Offline · disabled by the operator/)
    .waitFor();
  await eventually(() => !c.connected, 3000, 'the connection was closed');
  await page.getByRole('button', { name: 'Enable' }).click();
  await page.getByTestId('disabled').waitFor({ state: 'detached' });

  await page.getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  await page.waitForURL(`${p.httpUrl}/devices`);
  assert.equal((await p.api('GET', `/api/v1/devices/${d.id}`)).status, 404);
});

test("a product's retention, CAs and provisioning; the overview counts devices online and offline per product", { skip: SKIP }, async () => {
  await page.goto(`${p.httpUrl}/products?key=lamp`);
  await page.getByRole('tab', { name: 'Retention' }).click();
  await page.getByLabel('Raw points', { exact: true }).fill('3 weeks');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText('A duration like 30d or 12h, or forever').waitFor();
  await page.getByLabel('Raw points', { exact: true }).fill('14d');
  await page.getByLabel('Events', { exact: true }).fill('forever');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText('Retention saved').waitFor();
  const retention = (await p.api('GET', '/api/v1/products/lamp/retention')).body;
  assert.equal(retention.raw, '14d');
  assert.equal(retention.events, null);
  assert.deepEqual(retention.custom.sort(), ['events', 'raw']);
  await page.getByTestId('retention-now').getByText('14d').waitFor();
  await shot('product-retention');

  await page.getByRole('tab', { name: 'Certificate authorities' }).click();
  await page.getByText('No CA yet', { exact: false }).waitFor();
  await page.getByLabel('CA certificate (PEM)').fill('not a certificate');
  await page.getByRole('button', { name: 'Add a CA' }).click();
  await page.getByTestId('ca-error').waitFor();
  const ca = pki.ca('Lamp factory CA');
  await page.getByLabel('CA certificate (PEM)').fill(ca.cert);
  await page.getByRole('button', { name: 'Add a CA' }).click();
  await page.locator('.ant-table-row').filter({ hasText: 'CN=Lamp factory CA' }).filter({ hasText: 'Valid' }).waitFor();
  const caRow = page.locator('.ant-table-row').filter({ hasText: 'CN=Lamp factory CA' });
  const revokedInApi = async () => (await p.api('GET', '/api/v1/products/lamp/cas')).body.items.some((c: any) => c.revokedAt);
  await confirmed(caRow.getByRole('button', { name: 'Revoke' }), revokedInApi, 'the CA revoked');
  await caRow.filter({ hasText: 'Revoked' }).waitFor();

  await page.getByRole('tab', { name: 'Zero-touch provisioning' }).click();
  await page.getByText('Zero-touch provisioning is off for this product.').waitFor();
  await page.getByRole('button', { name: 'Turn on' }).click();
  const secret = (await page.getByTestId('provisioning-secret').textContent())!.trim();
  assert.ok(secret.length > 10, 'the provisioning secret is shown once');

  await page.getByRole('tab', { name: 'Factory records' }).click();
  await page.getByText('No factory records', { exact: false }).waitFor();
  const csv = page.getByLabel('Factory records, CSV');
  await csv.fill('hwid,serial\nAB-0001,SN-1\nAB-0001,SN-2');
  await page.getByRole('button', { name: 'Import' }).click();
  await page.getByTestId('records-error').filter({ hasText: 'line 3' }).waitFor();
  await csv.fill('hwid,serial\nAB-0001,SN-1\nAB-0002,SN-2');
  await page.getByLabel('Also make a device for each new hardware ID', { exact: false }).check();
  await page.getByRole('button', { name: 'Import' }).click();
  await page.getByTestId('records-imported').getByText('2 devices made').waitFor();
  await page.locator('.ant-table-row').filter({ hasText: 'AB-0002' }).filter({ hasText: 'SN-2' }).filter({ hasText: 'd_' }).waitFor();

  // The overview: the four lamps of the campaign are online, the plugs offline.
  await page.locator('.ant-menu').getByText('Overview', { exact: true }).click();
  await page.locator('[data-online="lamp"]').filter({ hasText: '4' }).waitFor();
  await page.locator('.ant-table-row').filter({ hasText: 'Lamp' }).filter({ hasText: '4' }).waitFor();
  await shot('overview-fleet');
});

test("a customer's home: a scene made in JSON (the API's problems listed), edited and deleted; a notification channel added and removed", {
  skip: SKIP,
}, async () => {
  const home = await p.api('POST', '/api/v1/homes', { name: 'Support flat', timezone: 'Europe/Berlin' });
  assert.equal(home.status, 201, JSON.stringify(home.body));
  const plug = await p.provision('plug', 'Kitchen plug');
  assert.equal((await p.api('POST', `/api/v1/homes/${home.body.id}/devices`, { pairingCode: plug.pairingCode })).status, 201);
  await page.goto(`${p.httpUrl}/homes`);
  await page.locator('.ant-table-row').filter({ hasText: 'Support flat' }).click();
  const drawer = page.locator('.ant-drawer');
  await drawer.getByRole('tab', { name: 'Scenes' }).click();
  await drawer.getByRole('button', { name: 'New scene' }).click();
  const dialog = page.getByRole('dialog', { name: 'New scene' });
  await dialog.getByLabel('Name', { exact: true }).fill('Breakfast');
  const json = dialog.getByLabel('States and actions (JSON): each checked against the thing models');
  await json.fill(JSON.stringify({ states: [{ device: plug.id, properties: { warp: 9 } }] }));
  await dialog.getByRole('button', { name: 'Save' }).click();
  await dialog.getByTestId('home-admin-error').filter({ hasText: 'warp' }).waitFor();
  await json.fill(JSON.stringify({ states: [{ device: plug.id, properties: { on: true } }] }));
  await dialog.getByRole('button', { name: 'Save' }).click();
  const row = drawer.locator('.ant-table-row').filter({ hasText: 'Breakfast' });
  await row.waitFor();
  await row.getByRole('button', { name: 'Edit' }).click();
  const edit = page.getByRole('dialog', { name: 'Edit the scene' });
  await edit.getByLabel('Name', { exact: true }).fill('Late breakfast');
  await edit.getByRole('button', { name: 'Save' }).click();
  const renamed = drawer.locator('.ant-table-row').filter({ hasText: 'Late breakfast' });
  await renamed.waitFor();
  const scenes = async () => (await p.api('GET', `/api/v1/homes/${home.body.id}/scenes`)).body.items as unknown[];
  await confirmed(renamed.getByRole('button', { name: 'Delete' }), async () => (await scenes()).length === 0, 'the scene deleted');
  await renamed.waitFor({ state: 'detached' });
  assert.equal((await p.api('GET', `/api/v1/homes/${home.body.id}/scenes`)).body.items.length, 0);

  await drawer.getByRole('tab', { name: 'Notification channels' }).click();
  await drawer.getByRole('button', { name: 'Add a channel' }).click();
  const ch = page.getByRole('dialog', { name: 'Add a channel' });
  await ch.getByLabel('Name', { exact: true }).fill('Support hook');
  await ch.getByLabel('URL (webhook or bot)').fill('https://example.invalid/hook');
  await ch.getByRole('button', { name: 'Create' }).click();
  const chRow = drawer.locator('.ant-table-row').filter({ hasText: 'Support hook' });
  await chRow.waitFor();
  await shot('homes-channels');
  const channels = async () => (await p.api('GET', `/api/v1/homes/${home.body.id}/notification-channels`)).body.items as Array<{ name: string }>;
  await confirmed(chRow.getByRole('button', { name: 'Delete' }), async () => !(await channels()).some((c) => c.name === 'Support hook'), 'the channel deleted');
  await chRow.waitFor({ state: 'detached' });
});

test('the operator edits a product of its own as JSON (the API problem shown, then saved) and finds an account in the users list', { skip: SKIP }, async () => {
  const model = { properties: [{ id: 'power', type: 'number', access: 'r' }], events: [], actions: [] };
  assert.equal((await p.api('POST', '/api/v1/products', { key: 'console-meter', name: 'Console meter', category: 'sensor', model })).status, 201);
  await page.goto(`${p.httpUrl}/products?key=console-meter`);
  await page.getByRole('button', { name: 'Edit', exact: true }).click();
  const dialog = page.getByRole('dialog', { name: 'Edit product console-meter' });
  const json = dialog.getByLabel('Thing model (JSON)');
  // an enum without values: the API's problem is listed, nothing is saved
  await json.fill(JSON.stringify({ properties: [{ id: 'mode', type: 'enum', access: 'r' }], events: [], actions: [] }));
  await dialog.getByRole('button', { name: 'Save' }).click();
  await dialog.locator('.ant-alert-error').filter({ hasText: 'values' }).waitFor();
  assert.equal((await p.api('GET', '/api/v1/products/console-meter')).body.model.properties.length, 1);
  await dialog.getByLabel('Name', { exact: true }).fill('Console meter v2');
  await json.fill(JSON.stringify({ ...model, properties: [...model.properties, { id: 'humidity', type: 'number', unit: '%', access: 'r' }] }));
  await dialog.getByRole('button', { name: 'Save' }).click();
  await dialog.waitFor({ state: 'detached' });
  await page.getByText('Console meter v2 (console-meter)').waitFor();
  await page.locator('.ant-table-row').filter({ hasText: 'humidity' }).waitFor();
  const saved = (await p.api('GET', '/api/v1/products/console-meter')).body;
  assert.equal(saved.name, 'Console meter v2');
  assert.deepEqual(
    saved.model.properties.map((x: { id: string }) => x.id),
    ['power', 'humidity'],
  );
  // the built-in products have no edit button
  await page.goto(`${p.httpUrl}/products?key=light`);
  await page.getByText('(light)').first().waitFor();
  assert.equal(await page.getByRole('button', { name: 'Edit', exact: true }).count(), 0);

  await page.goto(`${p.httpUrl}/users`);
  await page.getByRole('heading', { name: 'Users' }).waitFor();
  await page.locator('.ant-table-row').filter({ hasText: ADMIN.email }).filter({ hasText: 'Operator' }).waitFor();
  await page.getByLabel('Find by e-mail').fill('no-such-person');
  await page.getByLabel('Find by e-mail').press('Enter');
  await page.locator('.ant-table-row').filter({ hasText: ADMIN.email }).waitFor({ state: 'detached' });
  await page.getByLabel('Find by e-mail').fill('operator@');
  await page.getByLabel('Find by e-mail').press('Enter');
  await page.locator('.ant-table-row').filter({ hasText: ADMIN.email }).waitFor();
  await shot('users');
});

test('token refresh: an access token about to expire, or refused, is renewed with the refresh token and the page loads', { skip: SKIP }, async () => {
  // (run in the page: the browser's localStorage)
  type Storage = { localStorage: { getItem(k: string): string | null; setItem(k: string, v: string): void } };
  const stored = async () =>
    JSON.parse((await page.evaluate(() => (globalThis as unknown as Storage).localStorage.getItem('hearth.session'))) ?? 'null') as {
      token: string;
      refreshToken: string;
      expiresAt: number;
    };
  // 1. about to expire: renewed before the request
  await page.goto(`${p.httpUrl}/audit`);
  await page.getByRole('heading', { name: 'Audit log' }).waitFor();
  const first = await stored();
  await page.evaluate(() => {
    const g = globalThis as unknown as Storage;
    const s = JSON.parse(g.localStorage.getItem('hearth.session')!);
    g.localStorage.setItem('hearth.session', JSON.stringify({ ...s, expiresAt: Date.now() + 1000 }));
  });
  await page.goto(`${p.httpUrl}/users`);
  await page.locator('.ant-table-row').filter({ hasText: ADMIN.email }).waitFor();
  const second = await stored();
  assert.notEqual(second.refreshToken, first.refreshToken, 'the refresh token was rotated');
  assert.ok(second.expiresAt > Date.now() + 60_000, 'a fresh access token');
  // 2. refused by the server (a token it does not know) although not expired: one refresh, then the retry
  const me = await stored();
  await page.evaluate(() => {
    const g = globalThis as unknown as Storage;
    const s = JSON.parse(g.localStorage.getItem('hearth.session')!);
    g.localStorage.setItem('hearth.session', JSON.stringify({ ...s, token: `${s.token}x` }));
  });
  await page.goto(`${p.httpUrl}/users`);
  await page.locator('.ant-table-row').filter({ hasText: ADMIN.email }).waitFor();
  const third = await stored();
  assert.notEqual(third.refreshToken, me.refreshToken);
  assert.equal((await p.api('GET', '/api/v1/auth/me', undefined, third.token)).status, 200, 'the renewed token works');
  // The first refresh token was spent by the first renewal: used again, it is refused (and, as a
  // sign of theft, ends that session: so this check comes last).
  assert.equal((await p.api('POST', '/api/v1/auth/refresh', { refreshToken: first.refreshToken }, null)).status, 401, 'the old refresh token is spent');
  // that ended the browser's session: the next request finds it out and shows the sign-in page
  await page.goto(`${p.httpUrl}/users`);
  await page.getByRole('button', { name: 'Sign in' }).waitFor();
  await signIn();
});

test('the new pages in 中文', { skip: SKIP }, async () => {
  await page.goto(`${p.httpUrl}/ota`);
  await page.getByRole('heading', { name: 'Firmware updates' }).waitFor();
  await page.getByText('中文').first().click();
  await page.getByRole('heading', { name: '固件升级' }).waitFor();
  await page.locator('.ant-table-row').filter({ hasText: 'Lamp 1.1.0' }).filter({ hasText: '已完成' }).first().waitFor();
  // A search of more devices than the console counts (the fleet search test made them).
  await page.goto(`${p.httpUrl}/devices?q=${encodeURIComponent('name:Many*')}`);
  await page.locator('[data-testid="search-total"][data-capped="true"]').filter({ hasText: '匹配 1,000+ 台' }).waitFor();
  await page.locator('.ant-menu').getByText('设备群', { exact: true }).click();
  await page.getByRole('heading', { name: '设备群' }).waitFor();
  await page.getByRole('tab', { name: '批量任务' }).click();
  await page.locator('.ant-table-row').filter({ hasText: '设置标签' }).filter({ hasText: '已完成' }).waitFor();
  await shot('fleet-zh');
  await page.getByText('English').first().click();
  await page.getByRole('heading', { name: 'Fleet' }).waitFor();
});
