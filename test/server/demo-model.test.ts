/**
 * The full server (real diffusion nodes, demo checkpoint, 64x64 TCD) through the protocol: caching across seeds,
 * a UI-format workflow with a muted and a bypassed node, previews, a dying engine worker failing only its prompt,
 * and corrupt model/image files reported by name.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  mkdtempSync,
  rmSync,
  copyFileSync,
  openSync,
  ftruncateSync,
  closeSync,
  statSync,
  writeFileSync,
  mkdirSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { serve } from '../../server/host.js';
import type { RunningServer } from '../../server/app/server.js';
import type { NodeServices } from '../../nodes/services.js';
import { readPngText } from '../../server/storage/png.js';
import { api, WsClient, waitHistory } from './protocol-client.js';
import { demoPrompt, DEMO_CKPT } from './demo-prompt.js';
import { debugWorker } from '../../server/engine/testing.js';

let s: RunningServer<NodeServices>;
let root: string;
let ws: WsClient;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'tcd-demo-'));
  s = await serve({
    port: 0,
    models: join(root, 'models'),
    data: join(root, 'data'),
    output: join(root, 'output'),
    input: join(root, 'input'),
    temp: join(root, 'temp'),
    log: () => {},
  });
  ws = await WsClient.connect(s.url, 'demo');
  ws.ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }));
});
after(async () => {
  ws.close();
  await s.close();
  rmSync(root, { recursive: true, force: true });
});

async function run(prompt: unknown, extra: Record<string, unknown> = {}) {
  const r = await api(s.url, 'POST', '/prompt', { prompt, client_id: 'demo', ...extra });
  assert.equal(r.status, 200, r.text);
  return { id: r.json.prompt_id as string, events: await ws.untilDone(r.json.prompt_id, 120000) };
}
const executedNodes = (evs: { type: string; data: any }[]) =>
  evs.filter((e) => e.type === 'executing' && e.data.node).map((e) => e.data.node);

test('a new seed re-runs the sampler, decoder and saver only; loaders and text encoders come from the cache', async () => {
  const first = await run(demoPrompt({ seed: 1, prefix: 'cache' }));
  assert.ok(
    first.events.some((e) => e.type === 'execution_success'),
    JSON.stringify(first.events.find((e) => e.type === 'execution_error')?.data),
  );
  assert.deepEqual(executedNodes(first.events).sort(), ['3', '4', '5', '6', '7', '8', '9']);
  assert.deepEqual(
    first.events.filter((e) => e.type === 'progress' && e.data.node === '3').map((e) => e.data.value),
    [1, 2],
  );
  const metaPreviews = ws.binary.filter((b) => b.readUInt32BE(0) === 4);
  assert.ok(metaPreviews.length >= 2, 'one preview with metadata per step');
  const json = JSON.parse(metaPreviews[0].subarray(8, 8 + metaPreviews[0].readUInt32BE(4)).toString());
  assert.equal(json.node_id, '3');
  assert.equal(json.prompt_id, first.id);

  const second = await run(demoPrompt({ seed: 2, prefix: 'cache' }));
  const cached = second.events.find((e) => e.type === 'execution_cached')!.data.nodes;
  assert.deepEqual([...cached].sort(), ['4', '5', '6', '7']);
  assert.deepEqual(executedNodes(second.events), ['3', '8', '9']);
  const h = await waitHistory(s.url, second.id);
  const img = h.outputs['9'].images[0];
  const v = await api(s.url, 'GET', `/view?filename=${img.filename}&type=output&subfolder=${img.subfolder}`);
  assert.equal(v.status, 200);
  const png = PNG.sync.read(v.bytes);
  assert.equal(png.width, 64);
  assert.equal(png.height, 64);
  assert.deepEqual(JSON.parse(readPngText(v.bytes).prompt)['3'].inputs.seed, 2);
  const firstImg = (await waitHistory(s.url, first.id)).outputs['9'].images[0];
  assert.notEqual(firstImg.filename, img.filename);
  const a = (await api(s.url, 'GET', `/view?filename=${firstImg.filename}`)).bytes;
  assert.ok(!PNG.sync.read(a).data.equals(png.data), 'a different seed draws a different image');
});

/** The demo graph in UI format, with a bypassed LoRA loader between checkpoint and sampler and a muted SaveImage. */
function uiWorkflow() {
  const n = (
    id: number,
    type: string,
    mode: number,
    inputs: [string, string, number | null][],
    outputs: [string, string][],
    widgets: unknown[],
  ) => ({
    id,
    type,
    mode,
    pos: [0, 0],
    size: [200, 100],
    flags: {},
    order: id,
    properties: {},
    inputs: inputs.map(([name, type, link]) => ({ name, type, link })),
    outputs: outputs.map(([name, type], i) => ({ name, type, links: [], slot_index: i })),
    widgets_values: widgets,
  });
  return {
    last_node_id: 10,
    last_link_id: 12,
    version: 0.4,
    groups: [],
    config: {},
    extra: { ds: { scale: 1, offset: [0, 0] } },
    nodes: [
      n(
        1,
        'CheckpointLoaderSimple',
        0,
        [],
        [
          ['MODEL', 'MODEL'],
          ['CLIP', 'CLIP'],
          ['VAE', 'VAE'],
        ],
        [DEMO_CKPT],
      ),
      n(2, 'CLIPTextEncode', 0, [['clip', 'CLIP', 2]], [['CONDITIONING', 'CONDITIONING']], ['a red boat']),
      n(3, 'CLIPTextEncode', 0, [['clip', 'CLIP', 3]], [['CONDITIONING', 'CONDITIONING']], ['']),
      n(4, 'EmptyLatentImage', 0, [], [['LATENT', 'LATENT']], [64, 64, 1]),
      n(10, 'LoraLoaderModelOnly', 4, [['model', 'MODEL', 1]], [['MODEL', 'MODEL']], ['no-such-lora.safetensors', 1]),
      n(
        5,
        'TCDSampler',
        0,
        [
          ['model', 'MODEL', 10],
          ['positive', 'CONDITIONING', 4],
          ['negative', 'CONDITIONING', 5],
          ['latent_image', 'LATENT', 6],
        ],
        [['LATENT', 'LATENT']],
        [7, 'fixed', 1, 1, 0.3, 1, 50],
      ),
      n(
        6,
        'VAEDecode',
        0,
        [
          ['samples', 'LATENT', 7],
          ['vae', 'VAE', 8],
        ],
        [['IMAGE', 'IMAGE']],
        [],
      ),
      n(7, 'SaveImage', 0, [['images', 'IMAGE', 9]], [], ['ui']),
      n(8, 'SaveImage', 2, [['images', 'IMAGE', 11]], [], ['muted']),
    ],
    links: [
      [1, 1, 0, 10, 0, 'MODEL'],
      [10, 10, 0, 5, 0, 'MODEL'],
      [2, 1, 1, 2, 0, 'CLIP'],
      [3, 1, 1, 3, 0, 'CLIP'],
      [4, 2, 0, 5, 1, 'CONDITIONING'],
      [5, 3, 0, 5, 2, 'CONDITIONING'],
      [6, 4, 0, 5, 3, 'LATENT'],
      [7, 5, 0, 6, 0, 'LATENT'],
      [8, 1, 2, 6, 1, 'VAE'],
      [9, 6, 0, 7, 0, 'IMAGE'],
      [11, 6, 0, 8, 0, 'IMAGE'],
    ],
  };
}

test('POST /prompt accepts a UI-format workflow: muted node dropped, bypassed node passed through; /workflow/convert agrees', async () => {
  const wf = uiWorkflow();
  const conv = await api(s.url, 'POST', '/workflow/convert', { workflow: wf });
  assert.equal(conv.status, 200, conv.text);
  const p = conv.json.prompt;
  assert.deepEqual(Object.keys(p).sort(), ['1', '2', '3', '4', '5', '6', '7']);
  assert.deepEqual(p['5'].inputs.model, ['1', 0], 'bypassed LoRA loader passes MODEL through');
  assert.equal(p['5'].inputs.seed, 7);
  assert.equal(p['5'].inputs.steps, 1, 'control_after_generate slot skipped');
  assert.equal(p['7'].inputs.filename_prefix, 'ui');
  assert.equal(
    (await api(s.url, 'POST', '/api/workflow/convert', wf)).status,
    200,
    'the bare workflow as body works too',
  );

  const { id, events } = await run(wf);
  assert.ok(
    events.some((e) => e.type === 'execution_success'),
    JSON.stringify(events.find((e) => e.type === 'execution_error')?.data),
  );
  const h = await waitHistory(s.url, id);
  assert.deepEqual(Object.keys(h.outputs), ['7']);
  assert.deepEqual(h.prompt[2], p, 'history holds the converted API prompt');
  const img = h.outputs['7'].images[0];
  assert.match(img.filename, /^ui_\d{5}_\.png$/);
  const text = readPngText((await api(s.url, 'GET', `/view?filename=${img.filename}`)).bytes);
  assert.equal(JSON.parse(text.workflow).nodes.length, 9, 'the UI workflow is embedded as tEXt');
  assert.deepEqual(JSON.parse(text.prompt), p);
});

test('the engine worker dying mid-run fails only that prompt; the next one runs on a fresh worker', async () => {
  const r = await api(s.url, 'POST', '/prompt', {
    prompt: demoPrompt({ seed: 30, steps: 50, size: 384, prefix: 'crash' }),
    client_id: 'demo',
  });
  const next = await api(s.url, 'POST', '/prompt', {
    prompt: demoPrompt({ seed: 31, steps: 1, prefix: 'after-crash' }),
    client_id: 'demo',
  });
  await ws.waitFor((m) => m.type === 'progress' && m.data.prompt_id === r.json.prompt_id, 60000);
  await debugWorker(s.services.engine(), 'exit').catch(() => {});
  const evs = await ws.untilDone(r.json.prompt_id, 60000);
  const err = evs.find((e) => e.type === 'execution_error');
  assert.ok(err, `execution_error expected, got ${evs.map((e) => e.type)}`);
  assert.equal(err!.data.node_id, '3');
  assert.match(err!.data.exception_message, /worker/);
  const after = await ws.untilDone(next.json.prompt_id, 120000);
  assert.ok(
    after.some((e) => e.type === 'execution_success'),
    JSON.stringify(after.find((e) => e.type === 'execution_error')?.data),
  );
});

test('a truncated checkpoint, a corrupt LoRA and a corrupt input image give errors that name the file', async () => {
  const ck = join(root, 'models', 'checkpoints');
  copyFileSync(join(ck, DEMO_CKPT), join(ck, 'broken.safetensors'));
  const fd = openSync(join(ck, 'broken.safetensors'), 'r+');
  ftruncateSync(fd, Math.floor(statSync(join(ck, DEMO_CKPT)).size / 3));
  closeSync(fd);
  const broken = await run(demoPrompt({ ckpt: 'broken.safetensors', prefix: 'broken' }));
  const e1 = broken.events.find((e) => e.type === 'execution_error');
  assert.ok(e1, 'execution_error for a truncated checkpoint');
  assert.match(e1!.data.exception_message, /broken\.safetensors/);

  mkdirSync(join(root, 'models', 'loras'), { recursive: true });
  writeFileSync(
    join(root, 'models', 'loras', 'garbage.safetensors'),
    Buffer.from('\x10\x00\x00\x00\x00\x00\x00\x00{"a":'),
  );
  const lp = demoPrompt({ prefix: 'lora', seed: 40, steps: 1 }) as Record<string, any>;
  lp['10'] = {
    class_type: 'LoraLoaderModelOnly',
    inputs: { model: ['4', 0], lora_name: 'garbage.safetensors', strength_model: 1 },
  };
  lp['3'].inputs.model = ['10', 0];
  const lora = await run(lp);
  const e2 = lora.events.find((e) => e.type === 'execution_error');
  assert.ok(e2, 'execution_error for a corrupt LoRA');
  assert.match(e2!.data.exception_message, /garbage\.safetensors/);

  writeFileSync(
    join(root, 'input', 'bad.png'),
    Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from('not really a png')]),
  );
  const img = await run({
    '1': { class_type: 'LoadImage', inputs: { image: 'bad.png' } },
    '2': { class_type: 'SaveImage', inputs: { images: ['1', 0], filename_prefix: 'bad' } },
  });
  const e3 = img.events.find((e) => e.type === 'execution_error');
  assert.ok(e3);
  assert.match(e3!.data.exception_message, /bad\.png/);
  // and the server still works
  assert.ok(
    (await run(demoPrompt({ seed: 41, steps: 1, prefix: 'still' }))).events.some((e) => e.type === 'execution_success'),
  );
});

test('sizes ComfyUI accepts that do not halve evenly down the UNet (72x40, 63x64) give images of the size asked', async () => {
  // before: "Non concat axis dimensions must match" from ONNX Runtime at the sampler
  for (const [w, h] of [
    [72, 40],
    [63, 64],
  ]) {
    const p = demoPrompt({ seed: 50, steps: 1, prefix: `odd${w}x${h}` }) as Record<string, any>;
    p['5'].inputs.width = w;
    p['5'].inputs.height = h;
    const r = await run(p);
    assert.ok(
      r.events.some((e) => e.type === 'execution_success'),
      JSON.stringify(r.events.find((e) => e.type === 'execution_error')?.data.exception_message),
    );
    const saved = r.events.find((e) => e.type === 'executed' && e.data.node === '9')!.data.output.images[0];
    const png = PNG.sync.read(
      (await api(s.url, 'GET', `/view?filename=${encodeURIComponent(saved.filename)}&type=output`)).bytes,
    );
    // EmptyLatentImage floors to whole latent cells, as ComfyUI
    assert.deepEqual([png.width, png.height], [Math.floor(w / 8) * 8, Math.floor(h / 8) * 8]);
  }
});

test("TCDSampler: a denoise too low for its steps is a 400 in the node's own terms, before anything runs", async () => {
  // before: 200, then diffusers' text at the sampler ("`original_steps x strength` ... reduce `num_inference_steps` to
  // a value smaller than 0")
  for (const [steps, denoise, details] of [
    [
      8,
      0.15,
      'denoise 0.15 x original_inference_steps 50 leaves 7 timesteps, fewer than steps 8: lower steps to at most 7, or raise denoise to at least 0.16',
    ],
    [
      1,
      0,
      'denoise 0 x original_inference_steps 50 leaves 0 timesteps, fewer than steps 1: raise denoise to at least 0.02',
    ],
  ] as const) {
    const p = demoPrompt({ steps }) as Record<string, any>;
    p['3'].inputs.denoise = denoise;
    const r = await api(s.url, 'POST', '/prompt', { prompt: p, client_id: 'demo' });
    assert.equal(r.status, 400, r.text);
    const e = r.json.node_errors['3'];
    assert.equal(e.class_type, 'TCDSampler');
    assert.deepEqual(
      e.errors.map((x: { type: string; details: string }) => [x.type, x.details]),
      [['custom_validation_failed', details]],
    );
  }
});

test('SaveImage: a filename_prefix that leaves the output folder is a 400 before anything runs', async () => {
  // before: 200, the whole prompt sampled and decoded, then a PathError at the save
  for (const prefix of ['../../escape', '/tmp/abs', 'a/../../b']) {
    const r = await api(s.url, 'POST', '/prompt', { prompt: demoPrompt({ prefix }), client_id: 'demo' });
    assert.equal(r.status, 400, r.text);
    const e = r.json.node_errors['9'];
    assert.equal(e.class_type, 'SaveImage');
    assert.equal(e.errors[0].type, 'custom_validation_failed');
    assert.match(e.errors[0].details, /^filename_prefix ".*": its folder must (be relative|not contain '\.\.')/);
  }
  // a subfolder is fine (ComfyUI's "folder/name" prefixes)
  const ok = await run(demoPrompt({ prefix: 'sub/dir/name', seed: 71, steps: 1 }));
  const saved = ok.events.find((e) => e.type === 'executed' && e.data.node === '9')!.data.output.images[0];
  assert.deepEqual([saved.subfolder, saved.filename], ['sub/dir', 'name_00001_.png']);
});
