/**
 * The graphs the GPU providers get (fused com.microsoft MultiHeadAttention, fp16 weights) run on the CPU EP here and
 * match the diffusers fixtures, so CI checks the GPU graph shapes without a GPU.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import { detectCheckpoint } from '../../../server/engine/model/detect.js';
import { safetensorsWeights } from '../../../server/engine/onnx/weights.js';
import { serializeModel } from '../../../server/engine/onnx/serialize.js';
import { onnxProto } from '../../../server/engine/onnx/schema.js';
import { createSession, runSession } from '../../../server/engine/onnx/session.js';
import { buildUNetGraph } from '../../../server/engine/model/unet.js';
import { buildVaeDecoderGraph } from '../../../server/engine/model/vae.js';
import {
  componentTolerance,
  fixturePath,
  fixtureSkip,
  maxAbs,
  maxAbsDiff,
  unetFixtureCase,
} from '../../helpers/fixtures.js';

const skip = fixtureSkip();

function opsOf(bytes: Uint8Array): { ops: string[]; domains: Record<string, number> } {
  const m = onnxProto.ModelProto.toObject(onnxProto.ModelProto.decode(bytes), { longs: Number }) as any;
  const domains: Record<string, number> = {};
  for (const o of m.opsetImport as { domain?: string; version: number }[]) domains[o.domain ?? ''] = o.version;
  return {
    ops: (m.graph.node as { opType: string; domain?: string }[]).map(
      (n) => `${n.domain ? `${n.domain}:` : ''}${n.opType}`,
    ),
    domains,
  };
}

for (const family of ['sd1', 'sdxl'] as const) {
  test(
    `${family} UNet with fused attention (the webgpu/cuda graph) matches diffusers on the CPU EP`,
    { skip },
    async () => {
      const { ckpt, cases, cfg, feeds, ref } = unetFixtureCase(family);

      const bytes = serializeModel(buildUNetGraph(cfg, safetensorsWeights(ckpt), { fusedAttention: true }));
      const { ops, domains } = opsOf(bytes);
      assert.equal(domains['com.microsoft'], 1);
      assert.ok(ops.includes('com.microsoft:MultiHeadAttention'));
      assert.ok(!ops.includes('Softmax'), 'no unfused attention left in the UNet');
      const { eps } = await runSession(await createSession(bytes), feeds);
      const diff = maxAbsDiff(eps.data, ref.data),
        tol = componentTolerance(ref.data);
      assert.ok(diff <= tol / 5, `fused fp32: max |ours - ref| = ${diff} > ${tol / 5}`);

      // fp16 weights + fused attention: what runs on the GPU, near the reference
      const half = serializeModel(
        buildUNetGraph(cfg, safetensorsWeights(ckpt), { fusedAttention: true, dtype: 'float16' }),
      );
      const out16 = (await runSession(await createSession(half), feeds)).eps;
      const diff16 = maxAbsDiff(out16.data, ref.data);
      assert.ok(diff16 < 1e-2 * Math.max(1, maxAbs(ref.data)), `fused fp16 max diff ${diff16}`);
      ckpt.close();
      cases.close();
    },
  );
}

test('sd1 VAE decoder with fused mid-block attention matches diffusers on the CPU EP', { skip }, async () => {
  const ckpt = SafetensorsFile.open(fixturePath('sd1_tiny.safetensors'));
  const cases = SafetensorsFile.open(fixturePath('sd1_tiny_cases.safetensors'));
  const bytes = serializeModel(
    buildVaeDecoderGraph(detectCheckpoint(ckpt).vae, safetensorsWeights(ckpt), { fusedAttention: true }),
  );
  assert.ok(opsOf(bytes).ops.includes('com.microsoft:MultiHeadAttention'));
  const { image } = await runSession(await createSession(bytes), { latent: cases.readTensor('vae/z') });
  const ref = cases.readFloat32('vae/decoded');
  const diff = maxAbsDiff(image.data, ref),
    tol = componentTolerance(ref);
  assert.ok(diff <= tol, `fused VAE: max |ours - ref| = ${diff} > ${tol}`);
  ckpt.close();
  cases.close();
});

test('plain builds (the CPU graphs) import only ai.onnx and use no contrib op', { skip }, () => {
  const ckpt = SafetensorsFile.open(fixturePath('sd1_tiny.safetensors'));
  const { ops, domains } = opsOf(serializeModel(buildUNetGraph(detectCheckpoint(ckpt).unet, safetensorsWeights(ckpt))));
  assert.deepEqual(Object.keys(domains), ['']);
  assert.ok(!ops.some((o) => o.includes(':')));
  assert.ok(ops.includes('Softmax'));
  ckpt.close();
});

for (const family of ['sd1', 'sdxl'] as const) {
  test(
    `${family} UNet with fused blocks (SkipLayerNormalization, Gelu: the CUDA experiment) matches diffusers on the CPU EP`,
    { skip },
    async () => {
      const { ckpt, cases, cfg, feeds, ref } = unetFixtureCase(family);
      const plain = opsOf(serializeModel(buildUNetGraph(cfg, safetensorsWeights(ckpt), { fusedAttention: true }))).ops;
      const bytes = serializeModel(
        buildUNetGraph(cfg, safetensorsWeights(ckpt), { fusedAttention: true, fusedBlocks: true }),
      );
      const { ops } = opsOf(bytes);
      const blocks = ops.filter((o) => o === 'com.microsoft:Gelu').length;
      assert.ok(blocks > 0);
      assert.equal(ops.filter((o) => o === 'com.microsoft:SkipLayerNormalization').length, 2 * blocks);
      assert.ok(!ops.includes('Erf'), 'no unfused GELU left');
      assert.equal(plain.length - ops.length, 6 * blocks, 'six nodes fewer per transformer block');
      const { eps } = await runSession(await createSession(bytes), feeds);
      const diff = maxAbsDiff(eps.data, ref.data),
        tol = componentTolerance(ref.data);
      assert.ok(diff <= tol, `fused blocks fp32: max |ours - ref| = ${diff} > ${tol}`);
      ckpt.close();
      cases.close();
    },
  );
}
