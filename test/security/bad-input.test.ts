/**
 * Issue 10 point 1: bad input gets a clear 4xx in ComfyUI's error shape and the server keeps serving. Runs the
 * real node registry (nodes/) with validation only: nothing here reaches the model engine.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, type RunningServer } from '../../server/app/server.js';
import { createRegistry } from '../../nodes/index.js';
import { makeServices } from '../../server/host.js';
import type { NodeServices } from '../../nodes/services.js';
import { api, assertErrorShape } from '../server/protocol-client.js';

let s: RunningServer<NodeServices>;
let root: string;
const LIMIT = 256 * 1024;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'tcd-bad-'));
  s = await startServer<NodeServices>({
    host: '127.0.0.1',
    port: 0,
    dataDir: join(root, 'data'),
    modelsDir: join(root, 'models'),
    outputDir: join(root, 'out'),
    inputDir: join(root, 'in'),
    tempDir: join(root, 'tmp'),
    workflowsDir: join(root, 'wf'),
    registry: createRegistry(),
    log: () => {},
    maxBodyBytes: LIMIT,
    execute: false,
    makeServices: ({ models, dirs }) => makeServices(models, dirs, { dataDir: join(root, 'data'), log: () => {} }),
  });
});
after(async () => {
  await s.close();
  rmSync(root, { recursive: true, force: true });
});

/** POST raw text as JSON; expects a 4xx with the error shape, then checks the server still answers. */
async function refused(body: string | unknown, status = 400): Promise<any> {
  const r = await api(s.url, 'POST', '/prompt', body);
  assert.equal(r.status, status, `${r.status} ${r.text.slice(0, 300)}`);
  assertErrorShape(r.json);
  assert.equal((await api(s.url, 'GET', '/prompt')).status, 200, 'still serving');
  return r.json;
}

const latent = (inputs: Record<string, unknown>) => ({
  prompt: {
    '5': { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1, ...inputs } },
    '9': { class_type: 'SaveImage', inputs: { images: ['8', 0], filename_prefix: 'x' } },
    '8': { class_type: 'VAEDecode', inputs: { samples: ['5', 0], vae: ['4', 2] } },
    '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'none.safetensors' } },
  },
});
const latentError = async (inputs: Record<string, unknown>) =>
  (await refused(latent(inputs))).node_errors['5']?.errors.map((e: any) => e.type) ?? [];

test('malformed JSON: 400 invalid_json', async () => {
  for (const body of [
    '{',
    '{"prompt": {"1": }',
    '{"prompt": NaN}',
    '{"prompt": Infinity}',
    '\u0000\u0001',
    '{"a":1}}',
  ]) {
    const b = await refused(body);
    assert.equal(b.error.type, 'invalid_json', body);
  }
});

test('a body over the size limit: 413 request_too_large', async () => {
  const b = await refused(
    { prompt: { '1': { class_type: 'CLIPTextEncode', inputs: { text: 'x'.repeat(LIMIT) } } } },
    413,
  );
  assert.equal(b.error.type, 'request_too_large');
});

test('a non-JSON content type is not parsed as a prompt', async () => {
  const r = await api(s.url, 'POST', '/prompt', 'prompt=1', { 'content-type': 'application/x-www-form-urlencoded' });
  assert.equal(r.status, 400);
  assertErrorShape(r.json);
});

test('unknown node classes, cycles, links to missing nodes or outputs', async () => {
  assert.equal(
    (await refused({ prompt: { '1': { class_type: 'rm -rf /', inputs: {} } } })).error.type,
    'invalid_prompt',
  );
  assert.equal(
    (await refused({ prompt: { '1': { class_type: '__proto__', inputs: {} } } })).error.type,
    'invalid_prompt',
  );
  assert.equal(
    (await refused({ prompt: { '1': { class_type: 'constructor', inputs: {} } } })).error.type,
    'invalid_prompt',
  );
  const cyc = await refused({
    prompt: {
      '8': { class_type: 'VAEDecode', inputs: { samples: ['5', 0], vae: ['8', 0] } },
      '5': { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
      '9': { class_type: 'SaveImage', inputs: { images: ['8', 0], filename_prefix: 'x' } },
    },
  });
  assert.equal(cyc.error.type, 'prompt_outputs_failed_validation');
  const miss = await refused({
    prompt: { '9': { class_type: 'SaveImage', inputs: { images: ['404', 0], filename_prefix: 'x' } } },
  });
  assert.equal(miss.node_errors['9'].errors[0].type, 'bad_linked_input');
  const out = await refused({
    prompt: {
      '5': { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
      '9': { class_type: 'SaveImage', inputs: { images: ['5', 3], filename_prefix: 'x' } },
    },
  });
  assert.equal(out.node_errors['9'].errors[0].type, 'bad_linked_input');
  const typ = await refused({
    prompt: {
      '5': { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
      '9': { class_type: 'SaveImage', inputs: { images: ['5', 0], filename_prefix: 'x' } },
    },
  });
  assert.equal(typ.node_errors['9'].errors[0].type, 'return_type_mismatch');
});

test('wrong types, NaN/Infinity, strings where numbers belong', async () => {
  assert.ok((await latentError({ width: 'wide' })).includes('invalid_input_type'));
  assert.ok((await latentError({ width: 'NaN' })).includes('invalid_input_type'));
  assert.ok((await latentError({ width: '-Infinity' })).includes('invalid_input_type'));
  assert.ok((await latentError({ height: { $gt: 1 } })).includes('invalid_input_type'));
  assert.ok((await latentError({ batch_size: true, width: null })).includes('required_input_missing'));
  // 1e999 is valid JSON that parses to Infinity
  const r = await refused(
    '{"prompt":{"5":{"class_type":"EmptyLatentImage","inputs":{"width":1e999,"height":64,"batch_size":1}},"9":{"class_type":"SaveImage","inputs":{"images":["8",0],"filename_prefix":"x"}},"8":{"class_type":"VAEDecode","inputs":{"samples":["5",0],"vae":["4",2]}},"4":{"class_type":"CheckpointLoaderSimple","inputs":{"ckpt_name":"n"}}}}',
  );
  assert.ok(r.node_errors['5'].errors.some((e: any) => e.type === 'invalid_input_type'));
});

test('negative and absurd sizes are refused; 16384x16384 batch 4096 by a memory estimate, before any allocation', async () => {
  assert.ok((await latentError({ width: -64 })).includes('value_smaller_than_min'));
  assert.ok((await latentError({ batch_size: 0 })).includes('value_smaller_than_min'));
  assert.ok((await latentError({ height: 16392 })).includes('value_bigger_than_max'));
  assert.ok((await latentError({ batch_size: 1e12 })).includes('value_bigger_than_max'));
  const rss0 = process.memoryUsage().rss;
  const b = await refused(latent({ width: 16384, height: 16384, batch_size: 4096 }));
  const e = b.node_errors['5'].errors[0];
  assert.equal(e.type, 'custom_validation_failed');
  assert.match(e.details, /GiB/);
  assert.ok(process.memoryUsage().rss - rss0 < 256 * 1024 * 1024, 'nothing big was allocated');
  assert.equal(s.store.pending().length, 0, 'nothing queued');
});

/** A second server with the default 10 MB body limit, so large prompts reach the validator. */
async function withDefaultLimit(fn: (url: string) => Promise<void>): Promise<void> {
  const big = await startServer<NodeServices>({
    host: '127.0.0.1',
    port: 0,
    dataDir: join(root, 'data2'),
    modelsDir: join(root, 'models'),
    outputDir: join(root, 'out'),
    inputDir: join(root, 'in'),
    tempDir: join(root, 'tmp'),
    workflowsDir: join(root, 'wf'),
    registry: createRegistry(),
    log: () => {},
    execute: false,
    makeServices: ({ models, dirs }) => makeServices(models, dirs, { dataDir: join(root, 'data2'), log: () => {} }),
  });
  try {
    await fn(big.url);
  } finally {
    await big.close();
  }
}

test('huge prompt text: over the body limit 413, under it but over the text limit a clear invalid_input_type', async () => {
  const big = await api(s.url, 'POST', '/prompt', {
    prompt: { '1': { class_type: 'CLIPTextEncode', inputs: { text: 'a '.repeat(LIMIT), clip: ['2', 1] } } },
  });
  assert.equal(big.status, 413);
  assertErrorShape(big.json);
  await withDefaultLimit(async (url) => {
    const p = latent({}).prompt as Record<string, unknown>;
    p['6'] = { class_type: 'CLIPTextEncode', inputs: { text: 'a cat, '.repeat(300000), clip: ['4', 1] } };
    p['9'] = { class_type: 'SaveImage', inputs: { images: ['8', 0], filename_prefix: 'x' } };
    p['3'] = {
      class_type: 'KSampler',
      inputs: {
        model: ['4', 0],
        seed: 1,
        steps: 1,
        cfg: 1,
        sampler_name: 'euler',
        scheduler: 'normal',
        positive: ['6', 0],
        negative: ['6', 0],
        latent_image: ['5', 0],
        denoise: 1,
      },
    };
    (p['8'] as { inputs: Record<string, unknown> }).inputs.samples = ['3', 0];
    const r = await api(url, 'POST', '/prompt', { prompt: p });
    assert.equal(r.status, 400);
    assertErrorShape(r.json);
    const e = r.json.node_errors['6'].errors[0];
    assert.equal(e.type, 'invalid_input_type');
    assert.match(e.message, /too long/);
    assert.ok(r.text.length < 200000, `the error does not echo the whole text back (${r.text.length} bytes)`);
  });
});

test('deeply nested JSON anywhere in the body is refused with 400 and does not crash the server', async () => {
  for (const depth of [2000, 60000]) {
    const deep = '['.repeat(depth) + ']'.repeat(depth);
    const deepObj = '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
    const wrap = (inner: string) =>
      `{"prompt":{"5":{"class_type":"EmptyLatentImage","inputs":{"width":64,"height":64,"batch_size":1}},"1":{"class_type":"CLIPTextEncode","inputs":{"text":{"__value__":${inner}},"clip":["4",1]}},"4":{"class_type":"CheckpointLoaderSimple","inputs":{"ckpt_name":"n"}},"9":{"class_type":"SaveImage","inputs":{"images":["8",0],"filename_prefix":"x"}},"8":{"class_type":"VAEDecode","inputs":{"samples":["5",0],"vae":["4",2]}}}}`;
    for (const body of [
      wrap(deep),
      wrap(deepObj),
      `{"prompt":${deep}}`,
      `{"prompt":{"1":{"class_type":"SaveImage","inputs":{}}},"extra_data":${deepObj}}`,
      deepObj,
    ]) {
      const r = await api(s.url, 'POST', '/prompt', body);
      assert.ok(r.status >= 400 && r.status < 500, `depth ${depth}: ${r.status} ${r.text.slice(0, 200)}`);
      assertErrorShape(r.json);
    }
  }
  assert.equal((await api(s.url, 'GET', '/prompt')).status, 200);
});

test('a very long chain of nodes is answered (validated or refused), never a crash', async () => {
  mkdirSync(join(root, 'models', 'checkpoints'), { recursive: true });
  writeFileSync(join(root, 'models', 'checkpoints', 'listed.safetensors'), '');
  // the default body limit (10 MB) so that long prompts reach the validator
  const big = await startServer<NodeServices>({
    host: '127.0.0.1',
    port: 0,
    dataDir: join(root, 'data2'),
    modelsDir: join(root, 'models'),
    outputDir: join(root, 'out'),
    inputDir: join(root, 'in'),
    tempDir: join(root, 'tmp'),
    workflowsDir: join(root, 'wf'),
    registry: createRegistry(),
    log: () => {},
    execute: false,
    makeServices: ({ models, dirs }) => makeServices(models, dirs, { dataDir: join(root, 'data2'), log: () => {} }),
  });
  try {
    for (const [n, ckpt] of [
      [3000, 'listed.safetensors'],
      [30000, 'listed.safetensors'],
      [30000, 'missing.safetensors'],
    ] as const) {
      // IMAGE -> VAEEncode -> VAEDecode -> IMAGE ... n times, all sharing one VAE
      const prompt: Record<string, unknown> = {
        c: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: ckpt } },
        l: { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
        d0: { class_type: 'VAEDecode', inputs: { samples: ['l', 0], vae: ['c', 2] } },
      };
      for (let i = 1; i <= n; i++) {
        prompt[`e${i}`] = { class_type: 'VAEEncode', inputs: { pixels: [`d${i - 1}`, 0], vae: ['c', 2] } };
        prompt[`d${i}`] = { class_type: 'VAEDecode', inputs: { samples: [`e${i}`, 0], vae: ['c', 2] } };
      }
      prompt['9'] = { class_type: 'SaveImage', inputs: { images: [`d${n}`, 0], filename_prefix: 'x' } };
      const r = await api(big.url, 'POST', '/prompt', { prompt });
      assert.ok(r.status === 200 || r.status === 400, `${n}: ${r.status} ${r.text.slice(0, 300)}`);
      if (r.status === 400) assertErrorShape(r.json);
      if (ckpt === 'missing.safetensors') assert.equal(r.status, 400);
      assert.equal((await api(big.url, 'GET', '/prompt')).status, 200);
    }
  } finally {
    await big.close();
  }
});

test('bad bodies on other routes are answered with 4xx', async () => {
  for (const [p, body] of [
    ['/queue', '{x'],
    ['/history', '[1,2'],
    ['/interrupt', 'nope'],
    ['/workflow/convert', '{"nodes":5}'],
    ['/workflow/convert', '{"nodes":[{"id":1}],"links":[]}'],
    ['/free', '"'],
  ] as const) {
    const r = await api(s.url, 'POST', p, body);
    assert.ok(r.status >= 400 && r.status < 500, `${p} ${body}: ${r.status}`);
    assertErrorShape(r.json);
  }
  assert.equal((await api(s.url, 'POST', '/queue', { delete: 'not-a-list', clear: 'yes' })).status, 200);
  assert.equal((await api(s.url, 'GET', '/history?max_items=abc&offset=-5')).status, 200);
  assert.equal((await api(s.url, 'GET', '/history?max_items=99999999999999999999')).status, 200);
});
