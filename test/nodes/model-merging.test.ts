/**
 * ModelMergeSimple / Add / Subtract on the demo model: a model merged with itself at any ratio samples as the model
 * (w r + w (1 - r) = w up to rounding), Add doubles the weights and changes the result, Subtract with itself zeroes
 * the UNet; patches stack on a merged model; a merge of another family fails naming model2; CLIPMergeSimple of a
 * CLIP with itself encodes as the CLIP.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { symlinkSync, mkdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { ensureDemoCheckpoint, DEMO_CHECKPOINT_NAME } from '../../server/tools/make-checkpoint.js';
import type { LatentValue } from '../../nodes/types.js';
import { makeHarness, type Harness } from '../helpers/run-prompt.js';
import { FIXTURES, maxAbs, maxAbsDiff } from '../helpers/fixtures.js';
import { SafetensorsFile } from '../../server/engine/io/safetensors.js';
import { writeSafetensors } from '../../server/engine/io/safetensors-writer.js';

let h: Harness;
before(async () => {
  h = makeHarness();
  await ensureDemoCheckpoint(h.dirs.models);
  if (existsSync(join(FIXTURES, 'sd1_tiny.safetensors'))) {
    mkdirSync(join(h.dirs.models, 'checkpoints', 'fixtures'), { recursive: true });
    symlinkSync(
      join(FIXTURES, 'sd1_tiny.safetensors'),
      join(h.dirs.models, 'checkpoints', 'fixtures', 'sd1_tiny.safetensors'),
    );
  }
});
after(async () => {
  await h.close();
});

async function sample(merge: Record<string, unknown> | null, o: { allowErrors?: boolean } = {}) {
  const r = await h.run(
    {
      ckpt: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: DEMO_CHECKPOINT_NAME } },
      pos: { class_type: 'CLIPTextEncode', inputs: { text: 'a red fox', clip: ['ckpt', 1] } },
      empty: { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
      ...(merge ?? {}),
      ks: {
        class_type: 'KSampler',
        inputs: {
          model: merge ? ['m', 0] : ['ckpt', 0],
          seed: 2,
          steps: 2,
          cfg: 1,
          sampler_name: 'euler',
          scheduler: 'normal',
          positive: ['pos', 0],
          negative: ['pos', 0],
          latent_image: ['empty', 0],
          denoise: 1,
        },
      },
      out: { class_type: 'CaptureLATENT', inputs: { value: ['ks', 0] } },
    },
    o,
  );
  return { r, x: o.allowErrors ? null : (h.captured.get('out') as LatentValue).samples.data };
}

test('merging a model with itself: Simple keeps it, Add changes it, Subtract zeroes the UNet', async () => {
  const { x: plain } = await sample(null);
  const { x: simple } = await sample({
    m: { class_type: 'ModelMergeSimple', inputs: { model1: ['ckpt', 0], model2: ['ckpt', 0], ratio: 0.3 } },
  });
  assert.ok(maxAbsDiff(simple!, plain!) <= 1e-4 * Math.max(1, maxAbs(plain!)), `simple ${maxAbsDiff(simple!, plain!)}`);
  const { x: add } = await sample({
    m: { class_type: 'ModelMergeAdd', inputs: { model1: ['ckpt', 0], model2: ['ckpt', 0] } },
  });
  assert.ok(maxAbsDiff(add!, plain!) > 1e-3);
  const { x: zero } = await sample({
    m: { class_type: 'ModelMergeSubtract', inputs: { model1: ['ckpt', 0], model2: ['ckpt', 0], multiplier: 1 } },
  });
  // an all-zero UNet predicts eps = 0: euler keeps x, so the result is the initial noise (scaled) unchanged in sign
  assert.ok(maxAbsDiff(zero!, plain!) > 1e-3 && zero!.every(Number.isFinite));
});

test('a merged model takes further model patches (ModelSamplingDiscrete) and samples', async () => {
  const { r } = await sample({
    mm: { class_type: 'ModelMergeSimple', inputs: { model1: ['ckpt', 0], model2: ['ckpt', 0], ratio: 0.5 } },
    m: { class_type: 'ModelSamplingDiscrete', inputs: { model: ['mm', 0], sampling: 'eps', zsnr: false } },
  });
  assert.ok(r.events.some((e) => e.type === 'execution_success'));
});

test(
  'merging an SD1 checkpoint into the SDXL demo fails naming model2',
  { skip: existsSync(join(FIXTURES, 'sd1_tiny.safetensors')) ? false : 'fixtures not found' },
  async () => {
    const { r } = await sample(
      {
        other: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'fixtures/sd1_tiny.safetensors' } },
        m: { class_type: 'ModelMergeSimple', inputs: { model1: ['ckpt', 0], model2: ['other', 0], ratio: 0.5 } },
      },
      { allowErrors: true },
    );
    const err = r.events.find((e) => e.type === 'execution_error')?.data as {
      node_id: string;
      exception_message: string;
    };
    assert.equal(err.node_id, 'm');
    assert.match(err.exception_message, /model2 \(SD1\) does not have model1's \(SDXL\) UNet layout/);
  },
);

test('CLIPMergeSimple of a CLIP with itself encodes as the CLIP', async () => {
  const enc = async (clip: unknown[], extra: Record<string, unknown> = {}) => {
    await h.run({
      ckpt: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: DEMO_CHECKPOINT_NAME } },
      ...extra,
      pos: { class_type: 'CLIPTextEncode', inputs: { text: 'a red fox', clip } },
      out: { class_type: 'CaptureCONDITIONING', inputs: { value: ['pos', 0] } },
    });
    return (h.captured.get('out') as { context: { data: Float32Array } }[])[0].context.data;
  };
  const plain = await enc(['ckpt', 1]);
  const self = await enc(['m', 0], {
    m: { class_type: 'CLIPMergeSimple', inputs: { clip1: ['ckpt', 1], clip2: ['ckpt', 1], ratio: 0.4 } },
  });
  assert.ok(maxAbsDiff(self, plain) <= 1e-4 * Math.max(1, maxAbs(plain)), `clip merge ${maxAbsDiff(self, plain)}`);
});

test(
  "CLIPMergeSimple with another checkpoint's text encoder changes the encoding between the two",
  { skip: existsSync(join(FIXTURES, 'sd1_tiny.safetensors')) ? false : 'fixtures not found' },
  async () => {
    // a second SD1 checkpoint: sd1_tiny with its text-encoder linear weights scaled by 1.5
    const src = SafetensorsFile.open(join(FIXTURES, 'sd1_tiny.safetensors'));
    await writeSafetensors(
      join(h.dirs.models, 'checkpoints', 'fixtures', 'sd1_scaled.safetensors'),
      src.keys().map((k) => ({
        name: k,
        dtype: 'F32' as const,
        shape: src.shape(k),
        data: () => {
          const v = src.readFloat32(k);
          return k.startsWith('cond_stage_model.') && k.endsWith('proj.weight') ? v.map((x) => x * 1.5) : v;
        },
      })),
    );
    src.close();
    const enc = async (extra: Record<string, unknown>, clip: unknown[]) => {
      await h.run({
        a: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'fixtures/sd1_tiny.safetensors' } },
        b: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'fixtures/sd1_scaled.safetensors' } },
        ...extra,
        pos: { class_type: 'CLIPTextEncode', inputs: { text: 'a red fox', clip } },
        out: { class_type: 'CaptureCONDITIONING', inputs: { value: ['pos', 0] } },
      });
      return (h.captured.get('out') as { context: { data: Float32Array } }[])[0].context.data;
    };
    const a = await enc({}, ['a', 1]),
      b = await enc({}, ['b', 1]);
    const half = await enc(
      { m: { class_type: 'CLIPMergeSimple', inputs: { clip1: ['a', 1], clip2: ['b', 1], ratio: 0.5 } } },
      ['m', 0],
    );
    const one = await enc(
      { m: { class_type: 'CLIPMergeSimple', inputs: { clip1: ['a', 1], clip2: ['b', 1], ratio: 1 } } },
      ['m', 0],
    );
    assert.ok(maxAbsDiff(one, a) <= 1e-5 * Math.max(1, maxAbs(a)), 'ratio 1 keeps clip1');
    assert.ok(maxAbsDiff(half, a) > 1e-4 && maxAbsDiff(half, b) > 1e-4, 'ratio 0.5 is neither');
  },
);
