/**
 * issue 7 point 2: a workflow saved by ComfyUI's frontend with core nodes only (Reroute, a PrimitiveNode driving the
 * seed, a bypassed LoRA, a muted Save Image, a Note, groups, extra.ds) converts to the prompt ComfyUI would send and
 * runs unchanged through the CLI; the API-format file and the PNG it wrote run too and give the same pixels;
 * unknown node types are named with their node id (CLI exit 1 with one line, HTTP 400), not a crash.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRegistry } from '../../nodes/index.js';
import { serve } from '../../server/host.js';
import { uiToApi, type UiWorkflow } from '../../server/workflow/convert.js';
import { ensureDemoCheckpoint } from '../../server/tools/make-checkpoint.js';
import { decodePng, readPngText } from '../../server/storage/png.js';
import { convertCommand, loadWorkflowFile } from '../../server/run-command.js';
import { PROJECT, runCli, runFlags, tempDirs } from './run-cli.js';

const SAVED = join(PROJECT, 'test', 'cli', 'data', 'comfyui-saved-core.json');
const saved = (): UiWorkflow => JSON.parse(readFileSync(SAVED, 'utf8'));

/** What ComfyUI's frontend queues for the saved workflow (graphToPrompt), class and inputs per node. */
const EXPECTED = {
  3: {
    class_type: 'KSampler',
    inputs: {
      seed: 1234,
      steps: 4,
      cfg: 1,
      sampler_name: 'euler',
      scheduler: 'normal',
      denoise: 1,
      model: ['4', 0],
      positive: ['6', 0],
      negative: ['7', 0],
      latent_image: ['5', 0],
    },
  },
  4: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'tcd-studio-demo-sdxl.safetensors' } },
  5: { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
  6: {
    class_type: 'CLIPTextEncode',
    inputs: { text: 'beautiful scenery nature glass bottle landscape, , purple galaxy bottle,', clip: ['4', 1] },
  },
  7: { class_type: 'CLIPTextEncode', inputs: { text: 'text, watermark', clip: ['4', 1] } },
  8: { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } },
  9: { class_type: 'SaveImage', inputs: { images: ['8', 0], filename_prefix: 'ComfyUI' } },
};
const strip = (p: Record<string, { class_type: string; inputs: unknown }>) =>
  Object.fromEntries(Object.entries(p).map(([k, v]) => [k, { class_type: v.class_type, inputs: v.inputs }]));

let d: ReturnType<typeof tempDirs>;
before(async () => {
  d = tempDirs('tcd-formats-');
  await ensureDemoCheckpoint(d.models);
});
after(() => rmSync(d.root, { recursive: true, force: true }));

test('the saved workflow converts to what ComfyUI queues: reroute followed, primitive seed, bypass passes through, muted and Note dropped', async () => {
  assert.deepEqual(strip(uiToApi(saved(), createRegistry())), EXPECTED);
  const out = join(d.root, 'converted.json');
  assert.equal(await convertCommand({ convertOut: out }, [SAVED]), 0);
  assert.deepEqual(strip(JSON.parse(readFileSync(out, 'utf8'))), EXPECTED);
  // the PrimitiveNode, not the KSampler's own (hidden) widget value, decides the seed
  const wf = saved();
  (wf.nodes.find((n) => n.type === 'PrimitiveNode')!.widgets_values as unknown[])[0] = 77;
  assert.equal(uiToApi(wf, createRegistry())['3'].inputs.seed, 77);
});

test('it runs unchanged through the CLI; the PNG it wrote is a workflow that runs to the same pixels', async () => {
  const first = await runCli(['run', SAVED, ...runFlags(d)]);
  assert.equal(first.code, 0, first.stderr);
  assert.deepEqual(readdirSync(d.output), ['ComfyUI_00001_.png'], 'one image: the muted Save Image wrote nothing');
  const pngPath = join(d.output, 'ComfyUI_00001_.png');
  const text = readPngText(readFileSync(pngPath));
  assert.deepEqual(strip(JSON.parse(text.prompt)), EXPECTED);
  assert.deepEqual(JSON.parse(text.workflow), saved());
  // the PNG, the UI file and the API file all load as the same prompt
  const registry = createRegistry();
  const apiFile = join(d.root, 'api.json');
  writeFileSync(apiFile, JSON.stringify(JSON.parse(text.prompt)));
  assert.deepEqual(loadWorkflowFile(pngPath, registry).prompt, loadWorkflowFile(SAVED, registry).prompt);
  assert.deepEqual(strip(loadWorkflowFile(apiFile, registry).prompt), EXPECTED);

  const again = await runCli(['run', pngPath, ...runFlags(d)]);
  assert.equal(again.code, 0, again.stderr);
  const files = readdirSync(d.output).sort();
  assert.deepEqual(files, ['ComfyUI_00001_.png', 'ComfyUI_00002_.png']);
  const [a, b] = files.map((f) => decodePng(readFileSync(join(d.output, f))));
  assert.deepEqual([a.width, a.height], [64, 64]);
  assert.ok(Buffer.from(a.rgba).equals(Buffer.from(b.rgba)), 'the PNG as a workflow gives the same image');
});

function withUnknownNode(mode: number): UiWorkflow {
  const wf = saved();
  wf.nodes.push({ id: 15, type: 'ImpactWildcardEncode', mode, inputs: [], outputs: [], widgets_values: ['{a|b}'] });
  return wf;
}

test('an unknown node type is reported by name and node id: CLI exit 1 with one line, for UI and API files', async () => {
  const ui = join(d.root, 'unknown-ui.json');
  writeFileSync(ui, JSON.stringify(withUnknownNode(0)));
  const r = await runCli(['run', ui, ...runFlags(d), '--no-demo']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /ImpactWildcardEncode/);
  assert.match(r.stderr, /node id 15/);

  const api = join(d.root, 'unknown-api.json');
  writeFileSync(api, JSON.stringify({ ...EXPECTED, 15: { class_type: 'ImpactWildcardEncode', inputs: {} } }));
  const a = await runCli(['run', api, ...runFlags(d), '--no-demo']);
  assert.equal(a.code, 1);
  assert.equal(a.stderr.trim().split('\n').length, 1, a.stderr);
  assert.match(a.stderr, /ImpactWildcardEncode/);
  assert.match(a.stderr, /#15/);

  // muted, the unknown node is simply left out, as in ComfyUI
  assert.deepEqual(strip(uiToApi(withUnknownNode(2), createRegistry())), EXPECTED);
});

test('POST /prompt answers 400 naming the unknown node type and id, for UI and API format', async () => {
  const server = await serve({
    port: 0,
    listen: '127.0.0.1',
    models: d.models,
    data: join(d.root, 'data-http'),
    output: d.output,
    input: d.input,
    temp: d.temp,
    demo: false,
    log: () => {},
  });
  try {
    const post = (prompt: unknown) =>
      fetch(`${server.url}/prompt`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt }),
      });
    const ui = await post(withUnknownNode(0));
    assert.equal(ui.status, 400);
    const uiBody = await ui.json();
    assert.match(uiBody.error.message, /ImpactWildcardEncode.*15/);
    assert.equal(uiBody.error.extra_info.node_id, '15');
    const api = await post({ ...EXPECTED, 15: { class_type: 'ImpactWildcardEncode', inputs: {} } });
    assert.equal(api.status, 400);
    const apiBody = await api.json();
    assert.match(apiBody.error.message, /ImpactWildcardEncode/);
    assert.equal(apiBody.error.extra_info.node_id, '15');
  } finally {
    await server.close();
  }
});
