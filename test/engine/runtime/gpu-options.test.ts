/**
 * GPU-specific session options and graph choices, checked without a GPU: what sessionOptionsFor produces for each
 * tuning knob, how the TCD_GPU_* settings reach the engine's tuning, and which graph shape each provider gets.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_GPU_TUNING,
  graphTuningFor,
  loopSessionOptions,
  sessionOptionsFor,
  type GpuTuning,
} from '../../../server/engine/runtime/providers.js';
import { resolveEngineOptions } from '../../../server/engine/engine.js';
import { gpuTuningOf, settingsFromEnv } from '../../../server/settings.js';

/** The engine's tuning for an environment, through the one path the command line uses (settings -> options). */
const gpuTuningFromEnv = (env: Record<string, string>): GpuTuning => ({
  ...DEFAULT_GPU_TUNING,
  ...resolveEngineOptions({ tuning: gpuTuningOf(settingsFromEnv(env)) }).tuning,
});

const layoutOf = (o: ReturnType<typeof sessionOptionsFor>) =>
  (o.executionProviders![0] as { preferredLayout?: string }).preferredLayout;

test('defaults: the measured winners (NHWC, fused attention, MatMul linears, baked LoRAs, fused CUDA blocks, GroupNorm and GEGLU), no graph capture, no profiling', () => {
  assert.deepEqual(DEFAULT_GPU_TUNING, {
    layout: 'NHWC',
    fusedAttention: true,
    graphCapture: false,
    bufferCache: 'bucket',
    profileDir: null,
    linear: 'matmul',
    lora: 'bake',
    vaeAttention: 'fused',
    fusedBlocks: true,
    fusedGroupNorm: true,
    fusedGeglu: true,
    nhwcConv: false,
    packedAttention: false,
    cudaGraph: false,
    sharedArena: false,
  });
  assert.deepEqual(gpuTuningFromEnv({}), DEFAULT_GPU_TUNING);
  const o = sessionOptionsFor('webgpu', 'unet', 'sd1');
  assert.equal(o.enableGraphCapture, undefined);
  assert.equal(o.enableProfiling, undefined);
  assert.equal(o.preferredOutputLocation, 'gpu-buffer');
});

test('loop graphs: upload and the step leave results in GPU buffers, download brings them to the CPU', () => {
  assert.equal(loopSessionOptions('webgpu', 'upload').preferredOutputLocation, 'gpu-buffer');
  assert.equal(loopSessionOptions('webgpu', 'download').preferredOutputLocation, 'cpu');
  assert.equal(loopSessionOptions('webgpu', 'step').preferredOutputLocation, 'gpu-buffer');
  assert.deepEqual(loopSessionOptions('webgpu', 'step').executionProviders, [
    { name: 'webgpu', preferredLayout: 'NCHW', storageBufferCacheMode: 'bucket', validationMode: 'basic' },
    'cpu',
  ]);
  assert.equal(loopSessionOptions('webgpu', 'upload').graphOptimizationLevel, 'disabled'); // the Identity must stay a copy
  // on cuda the loop keeps latents on the host: its small graphs run on the CPU, outputs in CPU memory
  assert.deepEqual(
    loopSessionOptions('cuda', 'step', { ...DEFAULT_GPU_TUNING, deviceId: 1 }),
    loopSessionOptions('cpu', 'step'),
  );
  const cpu = loopSessionOptions('cpu', 'step');
  assert.deepEqual(cpu.executionProviders, ['cpu']);
  assert.equal(cpu.preferredOutputLocation, undefined);
});

test("TCD_GPU_* settings are parsed, validated and reach the engine's tuning", () => {
  assert.deepEqual(
    gpuTuningFromEnv({
      TCD_GPU_LAYOUT: 'nchw',
      TCD_GPU_ATTENTION: 'plain',
      TCD_GPU_GRAPH_CAPTURE: '1',
      TCD_GPU_BUFFER_CACHE: 'simple',
      TCD_ORT_PROFILE_DIR: '/tmp/p',
      TCD_CUDA_GRAPH: '1',
      TCD_CUDA_OPTIONS: 'use_tf32=false',
      TCD_SHARED_ARENA: '1',
    }),
    {
      ...DEFAULT_GPU_TUNING,
      layout: 'NCHW',
      fusedAttention: false,
      graphCapture: true,
      bufferCache: 'simple',
      profileDir: '/tmp/p',
      cudaGraph: true,
      cudaOptions: 'use_tf32=0',
      sharedArena: true,
    },
  );
  assert.equal(
    (
      sessionOptionsFor('webgpu', 'unet', 'sd1', gpuTuningFromEnv({ TCD_GPU_BUFFER_CACHE: 'simple' }))
        .executionProviders![0] as { storageBufferCacheMode: string }
    ).storageBufferCacheMode,
    'simple',
  );
  assert.throws(() => gpuTuningFromEnv({ TCD_GPU_LAYOUT: 'NWHC' }), /TCD_GPU_LAYOUT must be NHWC or NCHW/);
  assert.throws(() => gpuTuningFromEnv({ TCD_GPU_ATTENTION: 'flash' }), /TCD_GPU_ATTENTION must be fused or plain/);
  const t = gpuTuningFromEnv({
    TCD_GPU_LINEAR: 'Gemm-TransB',
    TCD_GPU_LORA: 'inputs',
    TCD_GPU_VAE_ATTENTION: 'plain-fp16',
  });
  assert.deepEqual([t.linear, t.lora, t.vaeAttention], ['gemm-transb', 'inputs', 'plain-fp16']);
  assert.throws(
    () => gpuTuningFromEnv({ TCD_GPU_LINEAR: 'conv' }),
    /TCD_GPU_LINEAR must be gemm-transb or matmul or gemm/,
  );
  assert.throws(() => gpuTuningFromEnv({ TCD_GPU_LORA: 'merge' }), /TCD_GPU_LORA must be bake or inputs/);
  assert.throws(() => gpuTuningFromEnv({ TCD_GPU_VAE_ATTENTION: 'flash' }), /TCD_GPU_VAE_ATTENTION must be/);
});

test('layout knob applies to conv-heavy components only; text encoders stay NCHW', () => {
  const nchw = { ...DEFAULT_GPU_TUNING, layout: 'NCHW' as const };
  assert.equal(layoutOf(sessionOptionsFor('webgpu', 'unet', 'sdxl', nchw)), 'NCHW');
  assert.equal(layoutOf(sessionOptionsFor('webgpu', 'vae_decoder', 'sdxl', nchw)), 'NCHW');
  assert.equal(layoutOf(sessionOptionsFor('webgpu', 'unet', 'sdxl')), 'NHWC');
  assert.equal(layoutOf(sessionOptionsFor('webgpu', 'vae_encoder', 'sd1')), 'NHWC');
  assert.equal(layoutOf(sessionOptionsFor('webgpu', 'text_encoder_1', 'sdxl')), 'NCHW');
});

test('graph capture is asked for on the UNet of GPU providers only', () => {
  const cap = { ...DEFAULT_GPU_TUNING, graphCapture: true };
  assert.equal(sessionOptionsFor('webgpu', 'unet', 'sdxl', cap).enableGraphCapture, true);
  assert.equal(sessionOptionsFor('cuda', 'unet', 'sdxl', cap).enableGraphCapture, true);
  assert.equal(sessionOptionsFor('webgpu', 'vae_decoder', 'sdxl', cap).enableGraphCapture, undefined);
  assert.equal(sessionOptionsFor('cpu', 'unet', 'sdxl', cap).enableGraphCapture, undefined);
});

test('profiling writes one file per provider, family and component under the profile dir', () => {
  const o = sessionOptionsFor('webgpu', 'vae_decoder', 'sdxl', { ...DEFAULT_GPU_TUNING, profileDir: '/tmp/prof' });
  assert.equal(o.enableProfiling, true);
  assert.equal(o.profileFilePrefix, '/tmp/prof/webgpu-sdxl-vae_decoder');
  assert.equal(
    sessionOptionsFor('cpu', 'unet', 'sd1', { ...DEFAULT_GPU_TUNING, profileDir: '/tmp/prof' }).profileFilePrefix,
    '/tmp/prof/cpu-sd1-unet',
  );
});

test('fused attention, MatMul linears and VAE attention forms go to GPU providers only; the CPU keeps the reference graph', () => {
  const gpu = { fusedAttention: true, linear: 'matmul', midAttention: 'fused' };
  assert.deepEqual(graphTuningFor('webgpu'), gpu);
  assert.deepEqual(graphTuningFor('cuda'), { ...gpu, fusedBlocks: true, fusedGroupNorm: true, fusedGeglu: true });
  // CUDA-only operators stay off webgpu even when asked for
  assert.deepEqual(graphTuningFor('webgpu', { ...DEFAULT_GPU_TUNING, fusedGroupNorm: true }), gpu);
  assert.deepEqual(graphTuningFor('cuda', { ...DEFAULT_GPU_TUNING, fusedGroupNorm: false, fusedGeglu: false }), {
    ...gpu,
    fusedBlocks: true,
  });
  assert.deepEqual(graphTuningFor('cpu'), { fusedAttention: false, linear: 'gemm-transb' });
  assert.deepEqual(graphTuningFor('cpu', { ...DEFAULT_GPU_TUNING, linear: 'gemm', vaeAttention: 'plain-fp16' }), {
    fusedAttention: false,
    linear: 'gemm-transb',
  });
  assert.deepEqual(
    graphTuningFor('webgpu', {
      ...DEFAULT_GPU_TUNING,
      fusedAttention: false,
      linear: 'gemm-transb',
      vaeAttention: 'plain',
    }),
    { fusedAttention: false, linear: 'gemm-transb', midAttention: 'plain' },
  );
});

test('cuda: device 0, cpu fallback, memory patterns off', () => {
  const o = sessionOptionsFor('cuda', 'unet', 'sdxl');
  assert.deepEqual(o.executionProviders, [{ name: 'cuda', deviceId: 0 }, 'cpu']);
  assert.equal(o.enableMemPattern, false);
});

test('one engine per GPU: the engine device (option; TCD_DEVICE through the settings) becomes the CUDA deviceId', () => {
  const o = sessionOptionsFor('cuda', 'unet', 'sdxl', { ...DEFAULT_GPU_TUNING, deviceId: 1 });
  assert.deepEqual(o.executionProviders, [{ name: 'cuda', deviceId: 1 }, 'cpu']);
  assert.equal(resolveEngineOptions({ device: 3 }).device, 3);
  assert.equal(resolveEngineOptions({ device: settingsFromEnv({ TCD_DEVICE: '2' }).device }).device, 2);
  assert.throws(() => settingsFromEnv({ TCD_DEVICE: 'gpu0' }), /TCD_DEVICE must be an integer >= 0, got "gpu0"/);
});

test('cuda UNet graphs get fused blocks by default (TCD_GPU_FUSED_BLOCKS=0 turns them off); other providers never', () => {
  const on = gpuTuningFromEnv({});
  assert.equal(on.fusedBlocks, true);
  assert.equal(graphTuningFor('cuda', on).fusedBlocks, true);
  assert.equal(graphTuningFor('webgpu', on).fusedBlocks, undefined);
  assert.equal(graphTuningFor('cpu', on).fusedBlocks, undefined);
  // off, the graph tuning (and so the graph cache key) is what it was before the option existed
  const off = gpuTuningFromEnv({ TCD_GPU_FUSED_BLOCKS: '0', TCD_GPU_FUSED_GROUPNORM: '0', TCD_GPU_FUSED_GEGLU: '0' });
  assert.deepEqual(Object.keys(graphTuningFor('cuda', off)), ['fusedAttention', 'linear', 'midAttention']);
  assert.deepEqual(Object.keys(graphTuningFor('cuda', gpuTuningFromEnv({ TCD_GPU_FUSED_BLOCKS: '0' }))), [
    'fusedAttention',
    'linear',
    'midAttention',
    'fusedGroupNorm',
    'fusedGeglu',
  ]);
});

test('TCD_GPU_NHWC_CONV=1 puts NhwcConv into cuda graphs and their cache key; off (the default) the key is unchanged', () => {
  const on = gpuTuningFromEnv({ TCD_GPU_NHWC_CONV: '1' });
  assert.equal(on.nhwcConv, true);
  assert.equal(graphTuningFor('cuda', on).nhwcConv, true);
  assert.equal(graphTuningFor('webgpu', on).nhwcConv, undefined);
  assert.equal(graphTuningFor('cpu', on).nhwcConv, undefined);
  assert.equal(gpuTuningFromEnv({}).nhwcConv, false);
  assert.ok(!('nhwcConv' in graphTuningFor('cuda', gpuTuningFromEnv({ TCD_GPU_NHWC_CONV: '0' }))));
  assert.notDeepEqual(graphTuningFor('cuda', on), graphTuningFor('cuda'));
});

test('TCD_GPU_PACKED_ATTENTION=1 puts packed attention into cuda graphs and their cache key; off the key is unchanged', () => {
  const on = gpuTuningFromEnv({ TCD_GPU_PACKED_ATTENTION: '1' });
  assert.equal(on.packedAttention, true);
  assert.equal(graphTuningFor('cuda', on).packedAttention, true);
  assert.equal(graphTuningFor('webgpu', on).packedAttention, undefined);
  assert.equal(graphTuningFor('cpu', on).packedAttention, undefined);
  assert.equal(gpuTuningFromEnv({}).packedAttention, false);
  assert.ok(!('packedAttention' in graphTuningFor('cuda', gpuTuningFromEnv({ TCD_GPU_PACKED_ATTENTION: '0' }))));
  assert.deepEqual(graphTuningFor('cuda', gpuTuningFromEnv({ TCD_GPU_PACKED_ATTENTION: '0' })), graphTuningFor('cuda'));
  assert.notDeepEqual(graphTuningFor('cuda', on), graphTuningFor('cuda'));
});

test("--shared-arena: cpu and cuda sessions (and the loops' cpu graphs) take the environment's arena, webgpu ones do not", () => {
  const shared = { ...DEFAULT_GPU_TUNING, sharedArena: true };
  const entry = { session: { use_env_allocators: '1' } };
  for (const ep of ['cpu', 'cuda'] as const) {
    assert.deepEqual(sessionOptionsFor(ep, 'unet', 'sdxl', shared).extra, entry, ep);
    assert.equal(sessionOptionsFor(ep, 'unet', 'sdxl').extra, undefined, ep);
  }
  assert.equal(sessionOptionsFor('webgpu', 'unet', 'sdxl', shared).extra, undefined);
  assert.deepEqual(loopSessionOptions('cpu', 'step', shared).extra, entry);
  assert.equal(loopSessionOptions('webgpu', 'step', shared).extra, undefined);
});
