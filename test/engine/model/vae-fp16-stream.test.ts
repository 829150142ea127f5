/**
 * The fp16 VAE's scaled residual stream (model/vae.ts FP16_STREAM_SCALE) and the engine's fp32 fallback, on the
 * sdxl_tiny fixture (ORT CPU; its EP stores fp16 activations between ops, so fp16 overflow happens here as on GPUs).
 * "Hot" VAEs are the fixture's VAE with its residual stream multiplied by 2^16 or 2^20 (the same reparametrisation
 * run the other way), standing in for the real SDXL VAE, whose activations exceed fp16's 65504.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import { writeSafetensors, type TensorEntry } from '../../../server/engine/io/safetensors-writer.js';
import { detectCheckpoint } from '../../../server/engine/model/detect.js';
import type { VaeConfig } from '../../../server/engine/model/config.js';
import {
  buildVaeDecoderGraph,
  buildVaeEncoderGraph,
  FP16_STREAM_SCALE,
  streamScaled,
  vaeStreamScale,
  type VaeGraphOptions,
} from '../../../server/engine/model/vae.js';
import { serializeModel } from '../../../server/engine/onnx/serialize.js';
import { createSession, runSession } from '../../../server/engine/onnx/session.js';
import { safetensorsWeights, type WeightSource } from '../../../server/engine/onnx/weights.js';
import { Engine } from '../../../server/engine/engine.js';
import type { Tensor } from '../../../server/engine/tensor.js';
import { fixturePath, fixtureSkip, maxAbsDiff } from '../../helpers/fixtures.js';

const skip = fixtureSkip();
const finite = (a: Float32Array) => a.every(Number.isFinite);

let cfg: VaeConfig, base: WeightSource, latent: Tensor, image: Tensor, reference: Float32Array;
let dir = '';

before(() => {
  if (skip) return;
  const ckpt = SafetensorsFile.open(fixturePath('sdxl_tiny.safetensors'));
  const cases = SafetensorsFile.open(fixturePath('sdxl_tiny_cases.safetensors'));
  cfg = detectCheckpoint(ckpt).vae;
  base = safetensorsWeights(ckpt);
  latent = cases.readTensor('vae/z');
  image = cases.readTensor('vae/image');
  reference = cases.readFloat32('vae/decoded');
  dir = mkdtempSync(join(tmpdir(), 'tcd-vae16-'));
});
after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function decode(w: WeightSource, opts: VaeGraphOptions): Promise<Float32Array> {
  const s = await createSession(serializeModel(buildVaeDecoderGraph(cfg, w, opts)));
  return (await runSession(s, { latent })).image.data;
}

test(
  'the scaled stream is exact: fp32 decoder and encoder graphs at 2^-5 give the unscaled outputs',
  { skip },
  async () => {
    assert.equal(FP16_STREAM_SCALE, 2 ** -5);
    const plain = await decode(base, {});
    assert.ok(maxAbsDiff(plain, reference) < 1e-4, 'the unscaled fp32 decode matches diffusers');
    assert.ok(maxAbsDiff(await decode(base, { streamScale: FP16_STREAM_SCALE }), plain) < 1e-6);
    const encode = async (opts: VaeGraphOptions) =>
      (await runSession(await createSession(serializeModel(buildVaeEncoderGraph(cfg, base, opts))), { image })).mean
        .data;
    assert.ok(maxAbsDiff(await encode({ streamScale: FP16_STREAM_SCALE }), await encode({})) < 1e-6);
  },
);

test('which tensors the stream scale multiplies: the residual branches and what feeds the stream', { skip }, () => {
  const s = FP16_STREAM_SCALE;
  const scaled = streamScaled(base, cfg, 'decoder', s);
  const d = cfg.decoderPrefix;
  const both = ['conv_in', 'mid.block_1.conv1', 'mid.block_2.conv2', 'mid.attn_1.proj_out', 'up.0.block.2.conv2'];
  const biasOnly = ['up.1.upsample.conv', 'up.1.block.0.nin_shortcut'];
  const kept = [
    'conv_out',
    'norm_out',
    'mid.attn_1.q',
    'mid.attn_1.norm',
    'up.0.block.0.norm2',
    'up.1.upsample.conv',
    'up.1.block.0.nin_shortcut',
  ];
  const ratio = (name: string) => {
    const a = scaled.read(name),
      b = base.read(name);
    const i = b.findIndex((v) => v !== 0);
    return a[i] / b[i];
  };
  for (const m of both)
    for (const leaf of ['weight', 'bias']) assert.equal(ratio(`${d}${m}.${leaf}`), s, `${m}.${leaf}`);
  for (const m of biasOnly) assert.equal(ratio(`${d}${m}.bias`), s, `${m}.bias`);
  for (const m of kept) assert.equal(ratio(`${d}${m}.weight`), 1, `${m}.weight`);
  assert.equal(ratio(`${cfg.prefix}post_quant_conv.weight`), 1);
  assert.equal(ratio(`${cfg.encoderPrefix}conv_in.weight`), 1, 'the decoder scale leaves the encoder alone');
});

test(
  'SDXL fp16 VAE graphs carry the scaled stream and match diffusers as closely as the unscaled form',
  { skip },
  async () => {
    assert.equal(vaeStreamScale('sdxl', 'float16'), FP16_STREAM_SCALE);
    assert.equal(vaeStreamScale('sdxl', 'float32'), 1);
    assert.equal(vaeStreamScale('sd1', 'float16'), 1, 'SD1 VAEs keep the plain fp16 form measured on GPUs');
    const scaled = await decode(base, { dtype: 'float16', streamScale: vaeStreamScale('sdxl', 'float16') });
    const unscaled = await decode(base, { dtype: 'float16' });
    assert.notDeepEqual(scaled, unscaled); // a different graph, rounded differently
    for (const d of [maxAbsDiff(scaled, reference), maxAbsDiff(unscaled, reference)])
      assert.ok(d > 0 && d < 0.01, `${d}`);
  },
);

test(
  'a VAE whose activations exceed fp16 (stream x 2^16) decodes in fp16 only with the scaled stream',
  { skip },
  async () => {
    const hot = streamScaled(base, cfg, 'decoder', 2 ** 16);
    const hotReference = await decode(hot, {}); // fp32: its own reference
    assert.ok(maxAbsDiff(hotReference, reference) < 1e-3, 'the hot VAE is nearly the same VAE');
    assert.equal(finite(await decode(hot, { dtype: 'float16' })), false, 'unscaled fp16 overflows');
    const scaled = await decode(hot, { dtype: 'float16', streamScale: FP16_STREAM_SCALE });
    assert.ok(finite(scaled));
    assert.ok(maxAbsDiff(scaled, hotReference) < 0.01, `${maxAbsDiff(scaled, hotReference)}`);
  },
);

/** The fixture checkpoint with its decoder's stream multiplied by `factor`, as a file the engine loads. */
async function hotCheckpoint(factor: number): Promise<string> {
  const file = SafetensorsFile.open(fixturePath('sdxl_tiny.safetensors'));
  const hot = streamScaled(safetensorsWeights(file), cfg, 'decoder', factor);
  const entries: TensorEntry[] = file.keys().map((name) => {
    const { dtype, shape } = file.info(name);
    return dtype === 'F32' || dtype === 'F16' || dtype === 'BF16'
      ? { name, dtype: 'F32', shape: [...shape], data: () => hot.read(name) }
      : { name, dtype, shape: [...shape], raw: () => file.readBytes(name) };
  });
  const path = join(dir, `hot-${Math.log2(factor)}.safetensors`);
  await writeSafetensors(path, entries);
  return path;
}

test(
  'the engine decodes in fp32 again when the fp16 VAE overflows even scaled, and stays fp32 for it',
  { skip },
  async () => {
    const lines: string[] = [];
    const engine = new Engine({
      cacheDir: join(dir, 'cache'),
      log: (l) => lines.push(l),
      tuning: { vaePrecision: 'fp16' },
    });
    const exact = new Engine({ cacheDir: join(dir, 'cache32'), log: () => {}, tuning: { vaePrecision: 'fp32' } });
    try {
      const overflowing = await hotCheckpoint(2 ** 20); // past the scaled stream's ceiling too
      const warm = await hotCheckpoint(2 ** 16); // within it
      const fp32Of = async (checkpoint: string) => (await exact.vaeDecode({ checkpoint }, latent)).data;

      const first = await engine.vaeDecode({ checkpoint: overflowing }, latent);
      assert.ok(finite(first.data));
      assert.ok(maxAbsDiff(first.data, await fp32Of(overflowing)) < 1e-5, 'the fallback is the fp32 decode');
      const said = lines.filter((l) => l.includes('overflowed'));
      assert.equal(said.length, 1);
      assert.match(said[0], /fp16 vae decoder of .*hot-20\.safetensors overflowed .* in fp32 from now on/);
      const again = await engine.vaeDecode({ checkpoint: overflowing }, latent);
      assert.deepEqual(again.data, first.data);
      assert.equal(lines.filter((l) => l.includes('overflowed')).length, 1, 'the second decode goes to fp32 directly');

      const fp16 = await engine.vaeDecode({ checkpoint: warm }, latent);
      assert.ok(finite(fp16.data));
      const d = maxAbsDiff(fp16.data, await fp32Of(warm));
      assert.ok(d > 0 && d < 0.01, `fp16 decode of the 2^16 VAE: ${d} from fp32`);
      assert.equal(lines.filter((l) => l.includes('overflowed')).length, 1, 'no fallback for it');
    } finally {
      await engine.close();
      await exact.close();
    }
  },
);
