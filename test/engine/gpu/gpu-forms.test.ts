/**
 * The GPU-only graph forms, run on the CPU EP against the diffusers fixtures: linears as MatMul / Gemm by weights
 * transposed at build time (TCD_GPU_LINEAR), the VAE mid-block attention forms (TCD_GPU_VAE_ATTENTION), LoRA-ready
 * graphs whose weights are read transposed, and LoRA sets baked into the graph (TCD_GPU_LORA=bake, forced on the
 * CPU here): same numbers as the reference, a strength change builds a new graph and reads no checkpoint tensor.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import { detectCheckpoint } from '../../../server/engine/model/detect.js';
import { exposeWeights, loraStats } from '../../../server/engine/lora/session.js';
import { patchableKeys } from '../../../server/engine/lora/key-map.js';
import { keyMapFor } from '../../../server/engine/lora/patch.js';
import { transpose2d } from '../../../server/engine/onnx/graph.js';
import { onnxProto } from '../../../server/engine/onnx/schema.js';
import { serializeModel } from '../../../server/engine/onnx/serialize.js';
import { createSession, runSession } from '../../../server/engine/onnx/session.js';
import { safetensorsWeights } from '../../../server/engine/onnx/weights.js';
import { runComponentCall } from '../../../server/engine/runtime/components.js';
import { SessionStore } from '../../../server/engine/runtime/session-store.js';
import type { Tensor } from '../../../server/engine/tensor.js';
import { buildUNetGraph } from '../../../server/engine/model/unet.js';
import { buildVaeDecoderGraph } from '../../../server/engine/model/vae.js';
import { assertComponentClose, fixturePath, fixtureSkip, unetFixtureCase } from '../../helpers/fixtures.js';

const skip = fixtureSkip();

function ops(bytes: Uint8Array): string[] {
  const m = onnxProto.ModelProto.toObject(onnxProto.ModelProto.decode(bytes), { longs: Number }) as {
    graph: { node: { opType: string }[] };
  };
  return m.graph.node.map((n) => n.opType);
}
function initNames(bytes: Uint8Array): string[] {
  const m = onnxProto.ModelProto.toObject(onnxProto.ModelProto.decode(bytes), { longs: Number }) as {
    graph: { initializer: { name: string }[] };
  };
  return m.graph.initializer.map((i) => i.name);
}
test('transpose2d', () => {
  assert.deepEqual([...transpose2d(Float32Array.of(1, 2, 3, 4, 5, 6), 2, 3)], [1, 4, 2, 5, 3, 6]);
  assert.throws(() => transpose2d(new Float32Array(5), 2, 3), /5 values/);
});

for (const family of ['sd1', 'sdxl'] as const) {
  test(
    `${family} UNet with linears as MatMul / Gemm by pre-transposed weights matches diffusers`,
    { skip },
    async () => {
      const { ckpt, cases, cfg, feeds } = unetFixtureCase(family);
      for (const linear of ['matmul', 'gemm'] as const) {
        const bytes = serializeModel(buildUNetGraph(cfg, safetensorsWeights(ckpt), { fusedAttention: true, linear }));
        const o = ops(bytes),
          inits = initNames(bytes);
        if (linear === 'matmul') assert.ok(!o.includes('Gemm'), 'no Gemm left');
        else assert.ok(o.includes('Gemm'));
        assert.ok(
          inits.some((n) => n.endsWith('.to_q.weight:T')),
          'attention weights stored transposed',
        );
        assert.ok(!inits.some((n) => n.endsWith('.to_q.weight')), 'and not as stored');
        const { eps } = await runSession(await createSession(bytes), feeds);
        assertComponentClose(eps, cases.readTensor('unet/out'), `${family} ${linear}`, 0.2);
      }
      ckpt.close();
      cases.close();
    },
  );
}

test(
  'sd1 VAE decoder: every mid-block attention form matches diffusers (fp16 forms within fp16 error)',
  { skip },
  async () => {
    const ckpt = SafetensorsFile.open(fixturePath('sd1_tiny.safetensors'));
    const cases = SafetensorsFile.open(fixturePath('sd1_tiny_cases.safetensors'));
    const ref = cases.readTensor('vae/decoded');
    for (const midAttention of ['fused', 'plain', 'fused-fp16', 'plain-fp16'] as const) {
      const bytes = serializeModel(
        buildVaeDecoderGraph(detectCheckpoint(ckpt).vae, safetensorsWeights(ckpt), {
          fusedAttention: true,
          midAttention,
          linear: 'matmul',
        }),
      );
      const o = ops(bytes);
      assert.equal(o.includes('MultiHeadAttention'), midAttention.startsWith('fused'), midAttention);
      assert.equal(
        o.filter((n) => n === 'Cast').length -
          ops(serializeModel(buildVaeDecoderGraph(detectCheckpoint(ckpt).vae, safetensorsWeights(ckpt)))).filter(
            (n) => n === 'Cast',
          ).length,
        midAttention.endsWith('fp16') ? 4 : 0,
        `${midAttention}: q/k/v cast down, output cast back`,
      );
      const { image } = await runSession(await createSession(bytes), { latent: cases.readTensor('vae/z') });
      assertComponentClose(image, ref, `VAE ${midAttention}`, midAttention.endsWith('fp16') ? 4 : 1);
    }
    ckpt.close();
    cases.close();
  },
);

test(
  'LoRA-ready fp32 UNet with pre-transposed linears: fed the stored weights, it equals the plain graph',
  { skip },
  async () => {
    const file = SafetensorsFile.open(fixturePath('sd1_tiny.safetensors'));
    const cases = SafetensorsFile.open(fixturePath('sd1_tiny_cases.safetensors'));
    const config = detectCheckpoint(file);
    const patchable = new Set(patchableKeys(keyMapFor(file, config), 'unet'));
    const bytes = serializeModel(
      exposeWeights(buildUNetGraph(config.unet, safetensorsWeights(file), { linear: 'matmul' }), patchable),
    );
    const session = await createSession(bytes);
    assert.ok(!initNames(bytes).some((n) => n.endsWith(':T')), 'no transposed patchable weight left as an initializer');
    assert.equal(
      session.inputNames.filter((n) => patchable.has(n)).length,
      patchable.size,
      'each patchable weight is one input, stored layout',
    );
    const feeds: Record<string, Tensor> = {
      x: cases.readTensor('unet/x'),
      t: cases.readTensor('unet/t'),
      context: cases.readTensor('unet/context'),
    };
    for (const k of patchable) feeds[k] = { shape: file.shape(k), data: file.readFloat32(k) };
    assertComponentClose(
      (await runSession(session, feeds)).eps,
      cases.readTensor('unet/out'),
      'exposed matmul graph',
      0.2,
    );
    file.close();
    cases.close();
  },
);

describe('LoRA baked into the graph (the GPU mode), forced on the CPU EP', { skip }, () => {
  let store: SessionStore, cacheDir: string;
  before(async () => {
    cacheDir = mkdtempSync(join(tmpdir(), 'tcd-lora-bake-'));
    store = await SessionStore.start(
      { ep: 'cpu', ramBudget: 4 * 1024 ** 3, vramBudget: Infinity, cacheDir, externalDataMinBytes: 1024 ** 3 },
      () => {},
    );
    store.loraModeOverride = 'bake';
  });
  after(async () => {
    await store.free();
    rmSync(cacheDir, { recursive: true, force: true });
  });

  test('sdxl_tiny kohya at 1.0 and 0.5 match the references; a strength change builds a graph, reads no tensor twice', async () => {
    const ckpt = fixturePath('sdxl_tiny.safetensors');
    const cases = SafetensorsFile.open(fixturePath('sdxl_tiny_cases.safetensors'));
    const x = cases.readTensor('unet/x'),
      t = cases.readFloat32('unet/t'),
      context = cases.readTensor('unet/context');
    const extra = { textEmbeds: cases.readTensor('unet/text_embeds'), timeIds: cases.readTensor('unet/time_ids') };
    const lora = fixturePath('sdxl_tiny_lora_kohya.safetensors');
    const unet = (strength: number) =>
      runComponentCall(store, {
        op: 'unet',
        model: { checkpoint: ckpt, loras: strength ? [{ path: lora, strength }] : [] },
        x,
        t,
        context,
        extra,
      }) as Promise<Tensor>;
    assertComponentClose(await unet(1), cases.readTensor('lora/unet_out@1.0'), 'baked 1.0');
    const built = store.stats().graphsBuilt,
      reads = loraStats.baseReads;
    assert.ok(reads > 0);
    assertComponentClose(await unet(0.5), cases.readTensor('lora/unet_out@0.5'), 'baked 0.5');
    assert.equal(store.stats().graphsBuilt, built + 1, 'a strength change is a new baked graph');
    assert.equal(loraStats.baseReads, reads, 'original tensors came from the worker cache');
    assertComponentClose(await unet(1), cases.readTensor('lora/unet_out@1.0'), 'back to 1.0: the cached session');
    assert.equal(store.stats().graphsBuilt, built + 1);
    assertComponentClose(await unet(0), cases.readTensor('unet/out'), 'no LoRA: the plain model');
    assert.ok(store.stats().loaded.some((k) => k.includes('+lora-baked')));
    cases.close();
  });
});
