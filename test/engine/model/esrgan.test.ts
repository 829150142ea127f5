/**
 * issue 16 (upscale models), model side: RRDBNet configuration read from the three published key layouts, the
 * refusals (unknown architecture, missing or misshapen tensors, ESRGAN+), spandrel's padding rule, and ComfyUI's
 * tiled_scale geometry and blending (exact on inputs where the answer is known in closed form).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import {
  detectEsrgan,
  esrganPadding,
  esrganTensorShapes,
  padForEsrgan,
  UpscaleModelError,
  type EsrganConfig,
} from '../../../server/engine/model/esrgan.js';
import { memoryWeights, safetensorsWeights } from '../../../server/engine/onnx/weights.js';
import { tiledScale, tiledScaleSteps, tileOrigins, pyRound } from '../../../server/engine/ops/tiled-scale.js';
import type { Tensor } from '../../../server/engine/tensor.js';

const DATA = 'test/data/upscale';

function detectFile(name: string): EsrganConfig {
  const f = SafetensorsFile.open(join(DATA, `${name}.safetensors`));
  try {
    return detectEsrgan(safetensorsWeights(f), f.keys());
  } finally {
    f.close();
  }
}

/** A zero-filled WeightSource holding `tensors`, and its key list. */
function fake(tensors: { name: string; shape: number[] }[]) {
  const rec = Object.fromEntries(
    tensors.map((t) => [t.name, { shape: t.shape, data: new Float32Array(t.shape.reduce((a, b) => a * b, 1)) }]),
  );
  return { w: memoryWeights(rec), keys: tensors.map((t) => t.name) };
}
const spec = (o: Partial<EsrganConfig> = {}): Omit<EsrganConfig, 'scale'> => ({
  layout: 'basicsr',
  prefix: '',
  inChannels: 3,
  outChannels: 3,
  features: 8,
  blocks: 2,
  growth: 4,
  upsamples: 2,
  unshuffle: 1,
  ...o,
});

test('the three key layouts: blocks, features, growth, x2 stages, unshuffle and scale come from the weights', () => {
  assert.deepEqual(detectFile('esrgan-old-x4'), {
    layout: 'esrgan',
    prefix: '',
    inChannels: 3,
    outChannels: 3,
    features: 8,
    blocks: 2,
    growth: 4,
    upsamples: 2,
    unshuffle: 1,
    scale: 4,
  });
  const real = detectFile('realesrgan-x2-unshuffle');
  assert.deepEqual(
    [real.layout, real.prefix, real.unshuffle, real.upsamples, real.scale],
    ['basicsr', 'params_ema.', 2, 2, 2],
  );
  const bsr = detectFile('bsrgan-x2');
  assert.deepEqual([bsr.layout, bsr.blocks, bsr.upsamples, bsr.scale], ['bsrgan', 1, 1, 2]);
  // a flattened BasicSR file with both weight sets: the EMA ones are used
  const both = fake([
    ...esrganTensorShapes(spec({ prefix: 'params.' })),
    ...esrganTensorShapes(spec({ prefix: 'params_ema.' })),
  ]);
  assert.equal(detectEsrgan(both.w, both.keys).prefix, 'params_ema.');
  const plain = fake(esrganTensorShapes(spec({ prefix: 'params.' })));
  assert.equal(detectEsrgan(plain.w, plain.keys).prefix, 'params.');
  // Real-ESRGAN's x1 models unshuffle by 4 and keep two x2 stages; an old-layout x1 has none (HR conv at model.2)
  for (const s of [spec({ unshuffle: 4 }), spec({ layout: 'esrgan', upsamples: 0 }), spec({ upsamples: 3 })]) {
    const { w, keys } = fake(esrganTensorShapes(s));
    const c = detectEsrgan(w, keys);
    assert.deepEqual(c, { ...s, scale: 2 ** s.upsamples / s.unshuffle });
  }
});

test('files that are not RRDBNet models are refused with what was expected', () => {
  const sd = fake([{ name: 'model.diffusion_model.input_blocks.0.0.weight', shape: [4, 4, 3, 3] }]);
  assert.throws(
    () => detectEsrgan(sd.w, sd.keys),
    (e: Error) => e instanceof UpscaleModelError && /unknown upscale model architecture/.test(e.message),
  );
  // a SwinIR-like file (another architecture ComfyUI loads through spandrel)
  const swin = fake([
    { name: 'layers.0.residual_group.blocks.0.norm1.weight', shape: [60] },
    { name: 'conv_first.weight', shape: [60, 3, 3, 3] },
  ]);
  assert.throws(() => detectEsrgan(swin.w, swin.keys), /unknown upscale model architecture/);
  // a missing dense conv, a misshapen one
  const full = esrganTensorShapes(spec());
  const missing = fake(full.filter((t) => t.name !== 'body.1.rdb2.conv3.weight'));
  assert.throws(() => detectEsrgan(missing.w, missing.keys), /body\.1\.rdb2\.conv3\.weight is missing/);
  const bad = fake(full.map((t) => (t.name === 'conv_up2.weight' ? { ...t, shape: [8, 8, 1, 1] } : t)));
  assert.throws(() => detectEsrgan(bad.w, bad.keys), /conv_up2\.weight has shape \[8,8,1,1\], expected \[8, 8, 3, 3\]/);
  const plus = fake([
    ...esrganTensorShapes(spec({ layout: 'esrgan' })).filter((t) => !t.name.startsWith('model.1.sub.0.RDB1.conv1.')),
    { name: 'model.1.sub.0.RDB1.conv1x1.weight', shape: [4, 8, 1, 1] },
  ]);
  assert.throws(() => detectEsrgan(plus.w, plus.keys), /ESRGAN\+/);
});

test("spandrel's size rule: at least 2 pixels, a multiple of 4 for unshuffle models; reflect, then replicate", () => {
  const plain = { ...spec(), scale: 4 } as EsrganConfig;
  const shuffled = { ...spec({ unshuffle: 2, upsamples: 2 }), scale: 2 } as EsrganConfig;
  assert.deepEqual(esrganPadding(plain, 5, 7), [0, 0]);
  assert.deepEqual(esrganPadding(plain, 1, 1), [1, 1]);
  assert.deepEqual(esrganPadding(shuffled, 18, 23), [2, 1]);
  assert.deepEqual(esrganPadding(shuffled, 1, 4), [3, 0]);
  // one row [a, b, c] padded to 4 (reflect: c | b), 1 row padded to 4 (nothing to reflect: replicate)
  const x: Tensor = { shape: [1, 1, 1, 3], data: Float32Array.of(1, 2, 3) };
  const p = padForEsrgan(shuffled, x);
  assert.deepEqual(p.shape, [1, 1, 4, 4]);
  assert.deepEqual([...p.data], [1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3, 2]);
  // 2 columns -> 4: reflect one (a b | a), then replicate the padded edge (a)
  const two = padForEsrgan(shuffled, { shape: [1, 1, 4, 2], data: Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8) });
  assert.deepEqual([...two.data.subarray(0, 8)], [1, 2, 1, 1, 3, 4, 3, 3]);
});

test("tiled_scale geometry: ComfyUI's tile origins and step counts", () => {
  assert.deepEqual(tileOrigins(512, 512, 32), [0]);
  assert.deepEqual(tileOrigins(600, 512, 32), [0, 480]);
  assert.deepEqual(tileOrigins(1000, 512, 32), [0, 480, 960]);
  assert.deepEqual(tileOrigins(992, 512, 32), [0, 480]); // the second tile ends at the image's end
  assert.deepEqual(tileOrigins(993, 512, 32), [0, 480, 960]); // a 33-pixel third tile, as in ComfyUI
  for (const [w, h] of [
    [512, 512],
    [600, 8],
    [1000, 1000],
    [992, 993],
    [2048, 1536],
  ])
    assert.equal(
      tiledScaleSteps(w, h, 512, 32),
      tileOrigins(w, 512, 32).length * tileOrigins(h, 512, 32).length,
      `${w}x${h}`,
    );
  assert.deepEqual([pyRound(2.5), pyRound(3.5), pyRound(-0.5), pyRound(1.4)], [2, 4, -0, 1]);
});

test('tiled_scale blending: a per-pixel function comes back unchanged across tile seams, progress per tile', async () => {
  const H = 37,
    W = 53;
  const data = Float32Array.from({ length: 2 * 3 * H * W }, (_, i) => Math.sin(i * 0.37));
  const img: Tensor = { shape: [2, 3, H, W], data };
  // nearest x2 is per-pixel, so every blend of overlapping tiles must give the whole image's nearest x2
  const nearest2 = async (t: Tensor): Promise<Tensor> => {
    const [, c, h, w] = t.shape;
    const out = new Float32Array(c * 4 * h * w);
    for (let k = 0; k < c; k++)
      for (let y = 0; y < 2 * h; y++)
        for (let x = 0; x < 2 * w; x++) out[(k * 2 * h + y) * 2 * w + x] = t.data[(k * h + (y >> 1)) * w + (x >> 1)];
    return { shape: [1, c, 2 * h, 2 * w], data: out };
  };
  const seen: [number, number][] = [];
  const out = await tiledScale(img, nearest2, { tile: 16, overlap: 4, scale: 2, onTile: (d, t) => seen.push([d, t]) });
  const whole = await nearest2({ shape: [1, 3, H, W], data: data.subarray(3 * H * W) });
  assert.deepEqual(out.shape, [2, 3, 74, 106]);
  const second = out.data.subarray(3 * 74 * 106);
  let worst = 0;
  for (let i = 0; i < whole.data.length; i++) worst = Math.max(worst, Math.abs(second[i] - whole.data[i]));
  assert.ok(worst < 1e-6, `blend changed values by ${worst}`);
  const perImage = tiledScaleSteps(W, H, 16, 4);
  assert.equal(perImage, tileOrigins(H, 16, 4).length * tileOrigins(W, 16, 4).length);
  assert.deepEqual(seen.at(-1), [2 * perImage, 2 * perImage]);
  assert.equal(seen.length, 2 * perImage);
});
