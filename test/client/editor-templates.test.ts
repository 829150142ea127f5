// Templates that run (issue 17, point 4): the Templates dialog lists workflows/ with titles and descriptions, says
// which models a template needs that are not installed, and pulls them through POST /models/pull (the server's
// `models pull`). The "internet" is a local HTTP server named by a catalog file (TCD_MODEL_CATALOG).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { browserSkip, openTemplate, shot, startHarness, WAIT, type Harness } from './harness.js';

const skip = browserSkip();
if (skip) console.log(`# browser tests skipped: ${skip}`);
let h: Harness;
let files: Server;
const ev = <T>(fn: string): Promise<T> => h.page.evaluate(fn) as Promise<T>;
const DEMO = 'tcd-studio-demo-sdxl.safetensors';

before(async () => {
  if (skip) return;
  // Serves the demo checkpoint as "sdxl.safetensors"; everything else is 404.
  files = createServer((req, res) => {
    if (req.url === '/sdxl.safetensors') res.end(readFileSync(join(h.dirs.models, 'checkpoints', DEMO)));
    else {
      res.statusCode = 404;
      res.end('not here');
    }
  });
  await new Promise<void>((r) => files.listen(0, '127.0.0.1', r));
  const port = (files.address() as { port: number }).port;
  const catalog = join(mkdtempSync(join(tmpdir(), 'tcd-catalog-')), 'catalog.json');
  writeFileSync(
    catalog,
    JSON.stringify([
      {
        name: 'sdxl-base',
        folder: 'checkpoints',
        filename: 'sd_xl_base_1.0.safetensors',
        url: `http://127.0.0.1:${port}/sdxl.safetensors`,
        size: null,
        sha256: null,
        description: 'test copy',
      },
      {
        name: 'tcd-sdxl-lora',
        folder: 'loras',
        filename: 'TCD-SDXL-LoRA.safetensors',
        url: `http://127.0.0.1:${port}/gone.safetensors`,
        size: null,
        sha256: null,
        description: 'absent',
      },
    ]),
  );
  h = await startHarness({ env: { TCD_MODEL_CATALOG: catalog } });
});
after(async () => {
  await h?.close();
  files?.close();
});

const card = (file: string) => h.page.locator(`[data-testid=templates-dialog] li.template[data-template="${file}"]`);

test('the dialog shows titles, descriptions and the missing models of each template', { skip }, async () => {
  await h.page.click('[data-testid=templates]');
  await card('tcd-sdxl-txt2img.json').waitFor();
  const title = await card('tcd-sdxl-txt2img.json').locator('strong').textContent();
  assert.equal(title, 'tcd sdxl txt2img');
  assert.ok(
    ((await card('tcd-sdxl-txt2img.json').locator('.muted').first().textContent()) ?? '').length > 0,
    'a description',
  );
  const missing = await card('tcd-sdxl-txt2img.json')
    .locator('li.missing-model')
    .evaluateAll((ls) => ls.map((l) => (l as HTMLElement).dataset.file));
  assert.deepEqual(missing, ['sd_xl_base_1.0.safetensors', 'TCD-SDXL-LoRA.safetensors']);
  assert.match((await card('tcd-sdxl-txt2img.json').textContent()) ?? '', /tcd-studio models pull sdxl-base/);
  assert.equal(await card('demo.json').locator('.ready').textContent(), 'all models installed');
  await shot(h.page, 'p4-templates-missing');
});

test('Pull downloads a missing model on the server; the template and the combos see it at once', { skip }, async () => {
  const row = card('tcd-sdxl-txt2img.json').locator('li.missing-model[data-file="sd_xl_base_1.0.safetensors"]');
  await row.getByRole('button', { name: 'Pull' }).click();
  await row.waitFor({ state: 'detached', timeout: WAIT });
  const pulled = join(h.dirs.models, 'checkpoints', 'sd_xl_base_1.0.safetensors');
  assert.ok(existsSync(pulled));
  assert.equal(statSync(pulled).size, statSync(join(h.dirs.models, 'checkpoints', DEMO)).size);
  const ckpts = await ev<string[]>(`window.__tcd.editor.objectInfo.CheckpointLoaderSimple.input.required.ckpt_name[0]`);
  assert.ok(ckpts.includes('sd_xl_base_1.0.safetensors'));
  // a download that fails says why, and the model stays listed as missing
  const lora = card('tcd-sdxl-txt2img.json').locator('li.missing-model[data-file="TCD-SDXL-LoRA.safetensors"]');
  await lora.getByRole('button', { name: 'Pull' }).click();
  await lora.locator('.error').waitFor({ timeout: WAIT });
  assert.match((await lora.locator('.error').textContent()) ?? '', /failed: tcd-sdxl-lora: .*404/);
  await shot(h.page, 'p4-pulled');
});

test('opening the template loads it with the pulled checkpoint selectable', { skip }, async () => {
  await h.page.keyboard.press('Escape');
  await openTemplate(h.page, 'tcd-sdxl-txt2img.json');
  await h.page.waitForFunction(
    () => (window as any).__tcd.editor.nodeById(1)?.widgets[0].value === 'sd_xl_base_1.0.safetensors',
  );
  const options = await ev<string[]>(`window.__tcd.editor.nodeById(1).widgets[0].options.values`);
  assert.ok(options.includes('sd_xl_base_1.0.safetensors'));
  assert.equal(await ev<string>(`window.__tcd.session.workflowName`), 'tcd-sdxl-txt2img');
});

test('POST /models/pull refuses unknown names and bad bodies', { skip }, async () => {
  assert.equal((await h.api('/models/pull', { method: 'POST', body: JSON.stringify({ name: 'nope' }) })).status, 404);
  assert.equal((await h.api('/models/pull', { method: 'POST', body: JSON.stringify({}) })).status, 400);
  const cat = (await (await h.api('/model_catalog')).json()) as { name: string; installed: boolean }[];
  assert.deepEqual(
    cat.filter((c) => c.installed).map((c) => c.name),
    ['sdxl-base'],
  );
});
