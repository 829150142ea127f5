import { test } from 'node:test';
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import {
  DEFAULT_GPU_TUNING,
  chooseProvider,
  computeDtypeFor,
  describeChoice,
  latentsOnHost,
  sessionOptionsFor,
} from '../../../server/engine/runtime/providers.js';

const ALL = [
  { name: 'cpu', bundled: true },
  { name: 'webgpu', bundled: true },
  { name: 'cuda', bundled: false },
];

test('chooseProvider: default and explicit cpu use cpu with no reason', () => {
  assert.deepEqual(chooseProvider(undefined, ALL), { ep: 'cpu', requested: 'cpu', reason: null });
  assert.deepEqual(chooseProvider('', ALL), { ep: 'cpu', requested: 'cpu', reason: null });
  assert.deepEqual(chooseProvider(' CPU ', ALL), { ep: 'cpu', requested: 'cpu', reason: null });
});

test('chooseProvider: a listed GPU provider is kept (session creation decides later)', () => {
  assert.deepEqual(chooseProvider('webgpu', ALL), { ep: 'webgpu', requested: 'webgpu', reason: null });
  assert.deepEqual(chooseProvider('cuda', ALL), { ep: 'cuda', requested: 'cuda', reason: null });
});

test('chooseProvider: unlisted or unknown providers fall back to cpu with a reason', () => {
  const c = chooseProvider('cuda', [{ name: 'cpu', bundled: true }]);
  assert.equal(c.ep, 'cpu');
  assert.equal(c.requested, 'cuda');
  assert.match(c.reason!, /cuda is not in this onnxruntime-node build's backends \(cpu\)/);
  assert.equal(describeChoice(c), `engine: asked for execution provider cuda, using cpu: ${c.reason}`);
  const u = chooseProvider('metal', ALL);
  assert.equal(u.ep, 'cpu');
  assert.match(u.reason!, /unknown execution provider "metal" \(expected cpu \| webgpu \| cuda \| auto\)/);
});

test('chooseProvider on the installed onnxruntime-node keeps what it lists', () => {
  const listed = ort.listSupportedBackends();
  assert.ok(listed.some((b) => b.name === 'cpu'));
  for (const ep of ['cpu', 'webgpu', 'cuda'] as const) {
    assert.equal(chooseProvider(ep, listed).ep, listed.some((b) => b.name === ep) ? ep : 'cpu');
  }
});

test('computeDtypeFor: fp32 on cpu, fp16 on GPUs (the SDXL VAE too, scaled); --vae-precision forces the VAE', () => {
  const components = ['unet', 'vae_decoder', 'vae_encoder', 'text_encoder_0', 'text_encoder_1'] as const;
  for (const c of components) assert.equal(computeDtypeFor('cpu', c), 'float32');
  for (const ep of ['webgpu', 'cuda'] as const)
    for (const c of components) assert.equal(computeDtypeFor(ep, c), 'float16');
  for (const ep of ['cpu', 'webgpu', 'cuda'] as const) {
    for (const c of ['vae_decoder', 'vae_encoder'] as const) {
      assert.equal(computeDtypeFor(ep, c, 'fp16'), 'float16');
      assert.equal(computeDtypeFor(ep, c, 'fp32'), 'float32');
    }
    assert.equal(computeDtypeFor(ep, 'unet', 'fp16'), ep === 'cpu' ? 'float32' : 'float16');
    assert.equal(computeDtypeFor(ep, 'unet', 'fp32'), ep === 'cpu' ? 'float32' : 'float16');
  }
});

test('sessionOptionsFor: cpu', () => {
  assert.deepEqual(sessionOptionsFor('cpu', 'unet', 'sd1'), {
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    logSeverityLevel: 3,
    logId: 'sd1:unet',
    executionProviders: [{ name: 'cpu', useArena: true }],
    enableCpuMemArena: true,
    enableMemPattern: true,
  });
});

test('sessionOptionsFor: webgpu lays out convs NHWC, text encoders NCHW, keeps UNet eps in a GPU buffer, cpu as fallback EP', () => {
  assert.deepEqual(sessionOptionsFor('webgpu', 'unet', 'sdxl'), {
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    logSeverityLevel: 3,
    logId: 'sdxl:unet',
    executionProviders: [
      { name: 'webgpu', preferredLayout: 'NHWC', storageBufferCacheMode: 'bucket', validationMode: 'basic' },
      'cpu',
    ],
    enableMemPattern: false,
    preferredOutputLocation: 'gpu-buffer',
  });
  const te = sessionOptionsFor('webgpu', 'text_encoder_1', 'sdxl');
  assert.equal(te.preferredOutputLocation, 'cpu');
  assert.equal(sessionOptionsFor('webgpu', 'vae_decoder', 'sdxl').preferredOutputLocation, 'cpu');
  assert.deepEqual(te.executionProviders, [
    { name: 'webgpu', preferredLayout: 'NCHW', storageBufferCacheMode: 'bucket', validationMode: 'basic' },
    'cpu',
  ]);
  assert.equal(
    (sessionOptionsFor('webgpu', 'vae_decoder', 'sd1').executionProviders![0] as { preferredLayout: string })
      .preferredLayout,
    'NHWC',
  );
});

test('sessionOptionsFor: cuda takes only deviceId, cpu as fallback EP, and never a gpu-buffer output location', () => {
  assert.deepEqual(sessionOptionsFor('cuda', 'vae_encoder', 'sd1'), {
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    logSeverityLevel: 3,
    logId: 'sd1:vae_encoder',
    executionProviders: [{ name: 'cuda', deviceId: 0 }, 'cpu'],
    enableMemPattern: false,
  });
  // onnxruntime-node binds GPU outputs only for WebGPU: 'gpu-buffer' fails every CUDA run ("Failed to find allocator")
  for (const c of ['unet', 'vae_decoder', 'vae_encoder', 'text_encoder_0'] as const) {
    const o = sessionOptionsFor('cuda', c, 'sdxl', { ...DEFAULT_GPU_TUNING, deviceId: 2 });
    assert.equal(o.preferredOutputLocation, undefined, c);
    assert.deepEqual(o.executionProviders, [{ name: 'cuda', deviceId: 2 }, 'cpu'], c);
  }
  assert.equal(latentsOnHost('cuda'), true);
  assert.equal(latentsOnHost('cpu'), true);
  assert.equal(latentsOnHost('webgpu'), false);
});
