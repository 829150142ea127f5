/**
 * issue 7 point 1: every ready workflow in workflows/ is UI format 0.4, converts with uiToApi and validates against
 * the current object_info when the model folders hold files of the names it uses; GET /workflows lists them; the
 * demo workflow runs unchanged through the CLI on a fresh install to a PNG that carries the workflow.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRegistry } from '../../nodes/index.js';
import { makeServices, serve } from '../../server/host.js';
import { ModelFolders } from '../../server/storage/model-folders.js';
import { uiToApi, type UiWorkflow } from '../../server/workflow/convert.js';
import { validatePrompt } from '../../server/executor/validate.js';
import { decodePng, encodePng, readPngText } from '../../server/storage/png.js';
import { PROJECT, runCli, runFlags, tempDirs } from '../cli/run-cli.js';
import { ensureDemoControlNet } from '../../server/tools/make-controlnet.js';
import { ensureDemoUpscaleModel } from '../../server/tools/make-upscale-model.js';

const NAMES = ['area-composition', 'comfyui-tcd', 'controlnet', 'demo', 'esrgan-upscale', 'hires-fix', 'inpaint-model', 'inpaint', 'model-merge', 'outpaint', 'tcd-img2img', 'tcd-lora-stack', 'tcd-sd15-txt2img', 'tcd-sdxl-txt2img'];
const load = (name: string) => JSON.parse(readFileSync(join(PROJECT, 'workflows', `${name}.json`), 'utf8')) as UiWorkflow;

let dirs: ReturnType<typeof tempDirs>;
before(async () => {
  dirs = tempDirs('tcd-templates-');
  // a real ControlNet: ControlNetLoader validates the file's layout
  await ensureDemoControlNet(dirs.models);
  await ensureDemoUpscaleModel(dirs.models); // UpscaleModelLoader reads the header at validation: a real (tiny) file
  // placeholders: validation only needs the names in the combo lists
  mkdirSync(join(dirs.models, 'checkpoints'), { recursive: true });
  mkdirSync(join(dirs.models, 'loras'), { recursive: true });
  for (const f of ['sd_xl_base_1.0.safetensors', 'v1-5-pruned-emaonly.safetensors', 'tcd-studio-demo-sdxl.safetensors']) writeFileSync(join(dirs.models, 'checkpoints', f), '');
  for (const f of ['TCD-SDXL-LoRA.safetensors', 'TCD-SD15-LoRA.safetensors', 'style_lora_sdxl.safetensors']) writeFileSync(join(dirs.models, 'loras', f), '');
  writeFileSync(join(dirs.input, 'example.png'), encodePng(new Uint8Array(8 * 8 * 3), 8, 8, 3));
});
after(() => rmSync(dirs.root, { recursive: true, force: true }));

function apiOf(name: string) {
  const registry = createRegistry();
  const services = makeServices(new ModelFolders(dirs.models), { output: dirs.output, input: dirs.input, temp: dirs.temp }, { dataDir: dirs.data, log: () => {} }, false);
  const prompt = uiToApi(load(name), registry);
  return { prompt, v: validatePrompt(prompt, registry, services) };
}
const byClass = (p: Record<string, { class_type: string; inputs: Record<string, unknown> }>, cls: string) => Object.entries(p).filter(([, n]) => n.class_type === cls);

test('workflows/ holds exactly the ready workflows, each UI format version 0.4', () => {
  assert.deepEqual(readdirSync(join(PROJECT, 'workflows')).filter((f) => f.endsWith('.json')).sort(), NAMES.map((n) => `${n}.json`));
  for (const n of NAMES) {
    const wf = load(n) as UiWorkflow & { version: number; last_link_id: number };
    assert.equal(wf.version, 0.4, n);
    assert.equal(wf.last_link_id, wf.links.length, n);
  }
});

for (const name of NAMES) {
  test(`${name} converts and validates against object_info`, () => {
    const { v } = apiOf(name);
    assert.ok(v.ok, `${name}: ${JSON.stringify(!v.ok && v.body)}`);
    assert.equal(v.outputs.length, 1);
  });
}

test('the TCD settings of each template are the ones the issue names', () => {
  const sdxl = apiOf('tcd-sdxl-txt2img').prompt;
  const [[, s]] = byClass(sdxl, 'TCDSampler');
  assert.deepEqual([s.inputs.steps, s.inputs.eta, s.inputs.cfg, s.inputs.denoise], [4, 0.3, 1, 1]);
  assert.equal(byClass(sdxl, 'CheckpointLoaderSimple')[0][1].inputs.ckpt_name, 'sd_xl_base_1.0.safetensors');
  assert.equal(byClass(sdxl, 'LoraLoaderModelOnly')[0][1].inputs.lora_name, 'TCD-SDXL-LoRA.safetensors');
  // the sampler's model comes through the TCD LoRA
  assert.deepEqual(s.inputs.model, [byClass(sdxl, 'LoraLoaderModelOnly')[0][0], 0]);

  const sd15 = apiOf('tcd-sd15-txt2img').prompt;
  assert.equal(byClass(sd15, 'CheckpointLoaderSimple')[0][1].inputs.ckpt_name, 'v1-5-pruned-emaonly.safetensors');
  assert.equal(byClass(sd15, 'LoraLoaderModelOnly')[0][1].inputs.lora_name, 'TCD-SD15-LoRA.safetensors');
  assert.equal(byClass(sd15, 'EmptyLatentImage')[0][1].inputs.width, 512);

  const i2i = apiOf('tcd-img2img').prompt;
  const [[loadId]] = byClass(i2i, 'LoadImage');
  const [[encId, enc]] = byClass(i2i, 'VAEEncode');
  const [[, samp]] = byClass(i2i, 'TCDSampler');
  assert.deepEqual(enc.inputs.pixels, [loadId, 0]);
  assert.deepEqual(samp.inputs.latent_image, [encId, 0]);
  assert.equal(samp.inputs.denoise, 0.6);

  const stack = apiOf('tcd-lora-stack').prompt;
  const loras = [...byClass(stack, 'LoraLoaderModelOnly'), ...byClass(stack, 'LoraLoader')].map(([, n]) => n.inputs.lora_name).sort();
  assert.deepEqual(loras, ['TCD-SDXL-LoRA.safetensors', 'style_lora_sdxl.safetensors']);

  const demo = apiOf('demo').prompt;
  assert.equal(byClass(demo, 'CheckpointLoaderSimple')[0][1].inputs.ckpt_name, 'tcd-studio-demo-sdxl.safetensors');
});

test('GET /workflows lists the templates and GET /workflows/NAME returns each unchanged', async () => {
  const d = tempDirs('tcd-templates-http-');
  const server = await serve({ port: 0, listen: '127.0.0.1', models: d.models, data: d.data, output: d.output, input: d.input, temp: d.temp, demo: false, log: () => {} });
  try {
    const list = await (await fetch(`${server.url}/workflows`)).json();
    assert.deepEqual(list, NAMES.map((n) => `${n}.json`));
    for (const n of NAMES) assert.deepEqual(await (await fetch(`${server.url}/api/workflows/${n}`)).json(), load(n));
  } finally {
    await server.close();
    rmSync(d.root, { recursive: true, force: true });
  }
});

test('the demo workflow runs unchanged through the CLI on a fresh install', async () => {
  const d = tempDirs('tcd-demo-run-');
  try {
    const r = await runCli(['run', join(PROJECT, 'workflows', 'demo.json'), ...runFlags(d)]);
    assert.equal(r.code, 0, r.stderr);
    const files = readdirSync(d.output);
    assert.deepEqual(files, ['tcd-demo_00001_.png']);
    assert.equal(r.stdout.trim(), join(d.output, files[0]));
    const png = readFileSync(join(d.output, files[0]));
    const { width, height } = decodePng(png);
    assert.deepEqual([width, height], [512, 512]);
    const text = readPngText(png);
    assert.deepEqual(JSON.parse(text.workflow), load('demo'), 'the PNG carries the workflow as it was');
    assert.equal(JSON.parse(text.prompt)['5'].class_type, 'TCDSampler');
  } finally { rmSync(d.root, { recursive: true, force: true }); }
});
