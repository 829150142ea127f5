/**
 * VAE decoder/encoder graphs against diffusers AutoencoderKL on the tiny fixture checkpoints (ORT CPU, float32),
 * plus the external-data and fp16 build paths on a real component graph.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import { detectCheckpoint } from '../../../server/engine/model/detect.js';
import { buildVaeDecoderGraph, buildVaeEncoderGraph } from '../../../server/engine/model/vae.js';
import { serializeModel, writeModel } from '../../../server/engine/onnx/serialize.js';
import { createSession, runSession } from '../../../server/engine/onnx/session.js';
import { safetensorsWeights } from '../../../server/engine/onnx/weights.js';
import { DataType, onnxProto } from '../../../server/engine/onnx/schema.js';
import { fixturePath, fixtureSkip, maxAbsDiff, componentTolerance } from '../../helpers/fixtures.js';

const skip = fixtureSkip();

function near(name: string, got: Float32Array, ref: Float32Array): number {
  const d = maxAbsDiff(got, ref),
    tol = componentTolerance(ref);
  assert.ok(d <= tol, `${name}: max |diff| ${d} > tolerance ${tol}`);
  return d;
}

for (const family of ['sd1', 'sdxl']) {
  test(`${family} VAE decode and encode mean`, { skip }, async () => {
    const ckpt = SafetensorsFile.open(fixturePath(`${family}_tiny.safetensors`));
    const cases = SafetensorsFile.open(fixturePath(`${family}_tiny_cases.safetensors`));
    const cfg = detectCheckpoint(ckpt).vae;
    const dec = await createSession(serializeModel(buildVaeDecoderGraph(cfg, safetensorsWeights(ckpt))));
    // vae/z is the decoder input itself (diffusers vae.decode(z)), i.e. a model-space latent already / scaling_factor
    const { image } = await runSession(dec, { latent: cases.readTensor('vae/z') });
    assert.deepEqual(image.shape, [1, 3, 64, 64]);
    near('vae/decoded', image.data, cases.readFloat32('vae/decoded'));
    const enc = await createSession(serializeModel(buildVaeEncoderGraph(cfg, safetensorsWeights(ckpt))));
    const { mean } = await runSession(enc, { image: cases.readTensor('vae/image') });
    assert.deepEqual(mean.shape, [1, 4, 8, 8]);
    near('vae/encoded_mean', mean.data, cases.readFloat32('vae/encoded_mean'));
  });
}

test(
  'VAE attention weights stored as 2-D linears (diffusers-converted checkpoints) give the same decode',
  { skip },
  async () => {
    const ckpt = SafetensorsFile.open(fixturePath('sd1_tiny.safetensors'));
    const cases = SafetensorsFile.open(fixturePath('sd1_tiny_cases.safetensors'));
    const cfg = detectCheckpoint(ckpt).vae;
    const base = safetensorsWeights(ckpt);
    const isAttn = (n: string) => /attn_1\.(q|k|v|proj_out)\.weight$/.test(n);
    const flat = { ...base, shape: (n: string) => (isAttn(n) ? base.shape(n).slice(0, 2) : base.shape(n)) };
    const dec = await createSession(serializeModel(buildVaeDecoderGraph(cfg, flat)));
    const { image } = await runSession(dec, { latent: cases.readTensor('vae/z') });
    near('vae/decoded (2-D attention weights)', image.data, cases.readFloat32('vae/decoded'));
  },
);

test(
  'VAE decoder: external-data model equals inline; fp16 build has fp16 weights and float32 I/O',
  { skip },
  async () => {
    const ckpt = SafetensorsFile.open(fixturePath('sd1_tiny.safetensors'));
    const cases = SafetensorsFile.open(fixturePath('sd1_tiny_cases.safetensors'));
    const cfg = detectCheckpoint(ckpt).vae;
    const latent = cases.readTensor('vae/z');
    const inline = await runSession(
      await createSession(serializeModel(buildVaeDecoderGraph(cfg, safetensorsWeights(ckpt)))),
      { latent },
    );
    const dir = mkdtempSync(join(tmpdir(), 'tcd-vae-'));
    try {
      const { modelPath } = writeModel(
        buildVaeDecoderGraph(cfg, safetensorsWeights(ckpt)),
        join(dir, 'vae_decoder.onnx'),
        { externalData: true },
      );
      const ext = await runSession(await createSession(modelPath), { latent });
      assert.equal(maxAbsDiff(ext.image.data, inline.image.data), 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }

    const g16 = buildVaeDecoderGraph(cfg, safetensorsWeights(ckpt), { dtype: 'float16' });
    const bytes = serializeModel(g16);
    const m = onnxProto.ModelProto.toObject(onnxProto.ModelProto.decode(bytes), { longs: Number }) as any;
    const weightInits = (m.graph.initializer as { name: string; dataType: number }[]).filter((i) =>
      g16.weightInits.has(i.name),
    );
    assert.equal(weightInits.length, g16.weightInits.size);
    assert.ok(weightInits.every((i) => i.dataType === DataType.FLOAT16));
    assert.equal(m.graph.input[0].type.tensorType.elemType, DataType.FLOAT);
    assert.equal(m.graph.output[0].type.tensorType.elemType, DataType.FLOAT);
    // ORT's CPU EP runs this graph in fp16 (falling back where it lacks fp16 kernels): close to fp32, not equal
    const o16 = await runSession(await createSession(bytes), { latent });
    const d = maxAbsDiff(o16.image.data, inline.image.data);
    assert.ok(d > 0 && d < 0.05, `fp16 vs fp32 decode max diff ${d}`);
  },
);
