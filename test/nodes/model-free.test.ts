/**
 * Model-free nodes (latent, image and conditioning operations) against hand-computed values: torch's interpolate
 * modes on small ramps, ComfyUI's bislerp/lanczos/composite/pad/average rules, object_info shapes. The comparison
 * with ComfyUI's own code run with torch is in comfy-nodes-reference.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { commonUpscale, interpolate } from '../../server/engine/ops/resize.js';
import { objectInfoFor } from '../../server/executor/object-info.js';
import type { Tensor } from '../../server/engine/tensor.js';
import type { CondEntry, LatentValue } from '../../nodes/types.js';
import { T, registry, runNode } from './model-free-helpers.js';

const row = (values: number[]) => T([1, 1, 1, values.length], values);

test("interpolate: nearest-exact, bilinear, area and bicubic on 1-D ramps give torch's values", () => {
  assert.deepEqual([...interpolate(row([0, 1, 2]), 1, 5, 'nearest-exact').data], [0, 0, 1, 2, 2]);
  assert.deepEqual([...interpolate(row([0, 10]), 1, 4, 'bilinear').data], [0, 2.5, 7.5, 10]);
  assert.deepEqual([...interpolate(row([1, 2, 3, 4]), 1, 2, 'area').data], [1.5, 3.5]);
  // 4 -> 3: overlapping windows [0,2), [1,3), [2,4)
  assert.deepEqual([...interpolate(row([1, 2, 3, 4]), 1, 3, 'area').data], [1.5, 2.5, 3.5]);
  // bicubic A=-0.75, 5 -> 10: outputs 3, 4, 5 see the impulse at 2 with weights conv1(.75), conv1(.25), conv1(.25)
  const cubic = interpolate(row([0, 0, 1, 0, 0]), 1, 10, 'bicubic').data;
  assert.deepEqual([cubic[3], cubic[4], cubic[5]], [0.26171875, 0.87890625, 0.87890625]);
  // constants stay constant whatever the mode
  for (const m of ['nearest-exact', 'bilinear', 'area', 'bicubic'] as const) {
    const out = interpolate(T([1, 2, 3, 5], new Float32Array(30).fill(0.7)), 7, 4, m);
    assert.ok(
      out.data.every((v) => Math.abs(v - Math.fround(0.7)) < 1e-6),
      m,
    );
  }
});

test('bislerp: slerps channel vectors (orthogonal: sin weights), keeps b1 for parallel ones', () => {
  // [1, 2, 1, 2]: two cells (1,0) and (0,1) -> width 4; ramps give ratios [0, .25, .75, 0] between cells 0 and 1
  const x = T([1, 2, 1, 2], [1, 0, 0, 1]);
  const out = commonUpscale(x, 4, 1, 'bislerp', 'disabled');
  const at = (i: number) => [out.data[i], out.data[4 + i]];
  assert.deepEqual(at(0), [1, 0]);
  const s = (r: number) => [Math.sin(((1 - r) * Math.PI) / 2), Math.sin((r * Math.PI) / 2)];
  for (const [i, r] of [
    [1, 0.25],
    [2, 0.75],
  ])
    at(i).forEach((v, k) => assert.ok(Math.abs(v - s(r)[k]) < 1e-6, `cell ${i}`));
  // parallel vectors of different norms: ComfyUI keeps b1 unchanged (its dot > 1 - 1e-5 case)
  const par = commonUpscale(T([1, 2, 1, 2], [1, 2, 0, 0]), 4, 1, 'bislerp', 'disabled');
  assert.deepEqual([...par.data.subarray(0, 4)], [1, 1, 1, 2]);
});

test('lanczos: 8-bit truncation, identity size, constants stay constant', () => {
  const x = T([1, 1, 2, 2], [0.5, 0.2, 1.5, -0.1]);
  assert.deepEqual(
    [...commonUpscale(x, 2, 2, 'lanczos', 'disabled').data],
    [127, 51, 255, 0].map((v) => Math.fround(v / 255)),
  );
  const c = commonUpscale(T([1, 3, 4, 5], new Float32Array(60).fill(0.5)), 9, 7, 'lanczos', 'disabled');
  assert.ok(c.data.every((v) => v === Math.fround(127 / 255)));
});

test('LatentUpscale sizes: 0 keeps the aspect ratio, at least 64 px; crop center cuts to the new aspect', async () => {
  const lat: LatentValue = {
    samples: T(
      [1, 4, 5, 7],
      new Float32Array(140).map((_, i) => i),
    ),
  };
  const [a] = (await runNode('LatentUpscale', {
    samples: lat,
    upscale_method: 'nearest-exact',
    width: 0,
    height: 80,
    crop: 'disabled',
  })) as LatentValue[];
  assert.deepEqual(a.samples.shape, [1, 4, 10, 14]);
  const [b] = (await runNode('LatentUpscale', {
    samples: lat,
    upscale_method: 'bilinear',
    width: 32,
    height: 24,
    crop: 'disabled',
  })) as LatentValue[];
  assert.deepEqual(b.samples.shape, [1, 4, 8, 8]);
  const [same] = (await runNode('LatentUpscale', {
    samples: lat,
    upscale_method: 'area',
    width: 0,
    height: 0,
    crop: 'disabled',
  })) as LatentValue[];
  assert.equal(same, lat);
  // 7x5 -> 5x5 cells with crop: round((7 - 7 * (1 / 1.4)) / 2) = 1 column off each side, then an identity resize
  const [c] = (await runNode('LatentUpscale', {
    samples: lat,
    upscale_method: 'nearest-exact',
    width: 40,
    height: 40,
    crop: 'center',
  })) as LatentValue[];
  assert.deepEqual(c.samples.shape, [1, 4, 8, 8]);
  const [by] = (await runNode('LatentUpscaleBy', {
    samples: lat,
    upscale_method: 'bislerp',
    scale_by: 1.5,
  })) as LatentValue[];
  assert.deepEqual(by.samples.shape, [1, 4, 8, 10]); // round(7.5) = 8 (half to even), round(10.5) = 10
});

test("LatentComposite pastes with ComfyUI's feather mask; latents out of bounds are cut", async () => {
  const to: LatentValue = { samples: T([1, 1, 4, 4], new Float32Array(16)) };
  const from: LatentValue = { samples: T([1, 1, 2, 2], [1, 1, 1, 1]) };
  const [o] = (await runNode('LatentComposite', {
    samples_to: to,
    samples_from: from,
    x: 8,
    y: 8,
    feather: 16,
  })) as LatentValue[];
  // feather 2 cells on a 2x2 block: every cell is an edge row and an edge column: 0.5 * 0.5
  assert.deepEqual([...o.samples.data], [0, 0, 0, 0, 0, 0.25, 0.25, 0, 0, 0.25, 0.25, 0, 0, 0, 0, 0]);
  const [cut] = (await runNode('LatentComposite', {
    samples_to: to,
    samples_from: from,
    x: 24,
    y: 24,
    feather: 0,
  })) as LatentValue[];
  assert.equal(cut.samples.data[15], 1);
  assert.equal(
    cut.samples.data.reduce((a, b) => a + b, 0),
    1,
  );
});

test('batch nodes: RepeatLatentBatch and LatentFromBatch keep batch_index and noise masks', async () => {
  const lat: LatentValue = { samples: T([3, 1, 1, 1], [10, 11, 12]), noise_mask: T([3, 1, 1, 1], [0, 0.5, 1]) };
  const [one] = (await runNode('LatentFromBatch', { samples: lat, batch_index: 1, length: 5 })) as LatentValue[];
  assert.deepEqual([...one.samples.data], [11, 12]);
  assert.deepEqual(one.batch_index, [1, 2]);
  assert.deepEqual([...one.noise_mask!.data], [0.5, 1]);
  const [rep] = (await runNode('RepeatLatentBatch', { samples: one, amount: 3 })) as LatentValue[];
  assert.deepEqual([...rep.samples.data], [11, 12, 11, 12, 11, 12]);
  assert.deepEqual(rep.batch_index, [1, 2, 3, 4, 5, 6]);
  assert.equal(rep.noise_mask!.shape[0], 6);
  const [masked] = (await runNode('SetLatentNoiseMask', {
    samples: { samples: lat.samples },
    mask: T([2, 3], [1, 0, 1, 0, 1, 0]),
  })) as LatentValue[];
  assert.deepEqual(masked.noise_mask!.shape, [1, 1, 2, 3]);
});

test('image nodes: invert, batch with resize, empty colour, outpaint padding and its feathered mask', async () => {
  const img = T([1, 2, 2, 3], [0, 0.25, 0.5, 1, 1, 1, 0.1, 0.2, 0.3, 0.9, 0.8, 0.7]);
  const [inv] = (await runNode('ImageInvert', { image: img })) as Tensor[];
  assert.deepEqual(
    [...inv.data],
    [...img.data].map((v) => Math.fround(1 - v)),
  );
  const [batch] = (await runNode('ImageBatch', {
    image1: img,
    image2: T([1, 4, 4, 3], new Float32Array(48).fill(0.5)),
  })) as Tensor[];
  assert.deepEqual(batch.shape, [2, 2, 2, 3]);
  assert.ok(batch.data.subarray(12).every((v) => v === 0.5));
  const [empty] = (await runNode('EmptyImage', { width: 2, height: 1, batch_size: 1, color: 0xff8000 })) as Tensor[];
  assert.deepEqual([...empty.data], [1, Math.fround(128 / 255), 0, 1, Math.fround(128 / 255), 0]);
  const src = T([1, 10, 10, 3], new Float32Array(300).fill(0.2));
  const [padded, mask] = (await runNode('ImagePadForOutpaint', {
    image: src,
    left: 8,
    top: 0,
    right: 0,
    bottom: 0,
    feathering: 2,
  })) as Tensor[];
  assert.deepEqual(padded.shape, [1, 10, 18, 3]);
  assert.equal(padded.data[0], 0.5);
  assert.equal(padded.data[8 * 3], Math.fround(0.2));
  assert.deepEqual(mask.shape, [1, 10, 18]);
  // columns 0..7 are new (1); the image's first column is at distance 0 (v = 1), its second at 1 (v = 0.25)
  assert.deepEqual([...mask.data.subarray(0, 11)], [1, 1, 1, 1, 1, 1, 1, 1, 1, 0.25, 0]);
});

test('conditioning nodes: combine, zero out, concat, average (zero-padded tokens, pooled), areas and masks', async () => {
  const e = (S: number, v: number, pooled: number | null): CondEntry => ({
    context: T([1, S, 2], new Float32Array(S * 2).fill(v)),
    pooled: pooled === null ? null : T([1, 2], [pooled, pooled]),
    width: 64,
  });
  const a = [e(3, 1, 5)],
    b = [e(2, 3, 7)];
  const [comb] = (await runNode('ConditioningCombine', { conditioning_1: a, conditioning_2: b })) as CondEntry[][];
  assert.equal(comb.length, 2);
  const [zero] = (await runNode('ConditioningZeroOut', { conditioning: a })) as CondEntry[][];
  assert.ok(zero[0].context.data.every((v) => v === 0) && zero[0].pooled!.data.every((v) => v === 0));
  assert.equal(zero[0].width, 64);
  const [cat] = (await runNode('ConditioningConcat', { conditioning_to: a, conditioning_from: b })) as CondEntry[][];
  assert.deepEqual(cat[0].context.shape, [1, 5, 2]);
  assert.deepEqual([...cat[0].context.data], [1, 1, 1, 1, 1, 1, 3, 3, 3, 3]);
  const [avg] = (await runNode('ConditioningAverage', {
    conditioning_to: a,
    conditioning_from: b,
    conditioning_to_strength: 0.25,
  })) as CondEntry[][];
  // tokens 0,1: 1*.25 + 3*.75; token 2: from is zero-padded: .25
  assert.deepEqual([...avg[0].context.data], [2.5, 2.5, 2.5, 2.5, 0.25, 0.25]);
  assert.deepEqual([...avg[0].pooled!.data], [6.5, 6.5]);
  const [area] = (await runNode('ConditioningSetArea', {
    conditioning: a,
    width: 64,
    height: 128,
    x: 8,
    y: 16,
    strength: 0.5,
  })) as CondEntry[][];
  assert.deepEqual(area[0].area, { unit: 'cells', h: 16, w: 8, y: 2, x: 1 });
  assert.equal(area[0].strength, 0.5);
  const [pct] = (await runNode('ConditioningSetAreaPercentage', {
    conditioning: a,
    width: 0.5,
    height: 1,
    x: 0.5,
    y: 0,
    strength: 1,
  })) as CondEntry[][];
  assert.deepEqual(pct[0].area, { unit: 'fraction', h: 1, w: 0.5, y: 0, x: 0.5 });
  const [masked] = (await runNode('ConditioningSetMask', {
    conditioning: a,
    mask: T([2, 2], [1, 0, 0, 0]),
    strength: 1,
    set_cond_area: 'mask bounds',
  })) as CondEntry[][];
  assert.deepEqual(masked[0].mask!.shape, [1, 2, 2]);
  assert.equal(masked[0].setAreaToBounds, true);
});

test("object_info: ComfyUI's inputs, defaults and outputs for the new nodes", () => {
  const info = (id: string) =>
    objectInfoFor(registry.get(id)!, { dirs: { input: '/nonexistent' } }) as {
      input: { required: Record<string, unknown[]> };
      output: string[];
      category: string;
      display_name: string;
    };
  const up = info('LatentUpscale');
  assert.deepEqual(up.input.required.upscale_method[0], ['nearest-exact', 'bilinear', 'area', 'bicubic', 'bislerp']);
  assert.deepEqual(up.input.required.width[1], { default: 512, min: 0, max: 16384, step: 8 });
  assert.deepEqual(info('ImageScale').input.required.upscale_method[0], [
    'nearest-exact',
    'bilinear',
    'area',
    'bicubic',
    'lanczos',
  ]);
  assert.deepEqual(info('ImagePadForOutpaint').output, ['IMAGE', 'MASK']);
  assert.deepEqual(info('ConditioningSetArea').input.required.width[1], { default: 64, min: 64, max: 16384, step: 8 });
  assert.deepEqual(Object.keys(info('ConditioningSetMask').input.required), [
    'conditioning',
    'mask',
    'strength',
    'set_cond_area',
  ]);
  assert.equal(info('LoadImageMask').category, 'mask');
  assert.equal(info('LatentUpscaleBy').display_name, 'Upscale Latent By');
  for (const id of [
    'LatentUpscale',
    'LatentUpscaleBy',
    'ImageScale',
    'ImageScaleBy',
    'LatentComposite',
    'LatentBlend',
    'RepeatLatentBatch',
    'LatentFromBatch',
    'ImageInvert',
    'ImageBatch',
    'EmptyImage',
    'PreviewImage',
    'SaveLatent',
    'LoadLatent',
    'ImagePadForOutpaint',
    'LoadImageMask',
    'SetLatentNoiseMask',
    'ConditioningCombine',
    'ConditioningZeroOut',
    'ConditioningAverage',
    'ConditioningConcat',
    'ConditioningSetArea',
    'ConditioningSetAreaPercentage',
    'ConditioningSetMask',
    'CLIPSetLastLayer',
  ])
    assert.ok(registry.has(id), id);
});
