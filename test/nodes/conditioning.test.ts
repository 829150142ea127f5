/** CLIPTextEncodeSDXL: same text + latent-sized hints equals CLIPTextEncode; its size hints reach the UNet's time ids. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { makeHarness, type Harness } from '../helpers/run-prompt.js';
import { ensureDemoCheckpoint, DEMO_CHECKPOINT_NAME, presetConfig } from '../../server/tools/make-checkpoint.js';
import type { Prompt } from '../../server/executor/prompt.js';
import type { Tensor } from '../../server/engine/tensor.js';
import { maxAbsDiff } from '../helpers/fixtures.js';

let h: Harness;
before(async () => {
  h = makeHarness();
  await ensureDemoCheckpoint(h.dirs.models);
});
after(async () => {
  await h.close();
});

function prompt(condNode: Prompt[string]): Prompt {
  return {
    ckpt: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: DEMO_CHECKPOINT_NAME } },
    cond: condNode,
    empty: { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
    tcd: {
      class_type: 'TCDSampler',
      inputs: {
        model: ['ckpt', 0],
        positive: ['cond', 0],
        negative: ['cond', 0],
        latent_image: ['empty', 0],
        seed: 9,
        steps: 2,
        cfg: 1,
        eta: 0,
        denoise: 1,
        original_inference_steps: 50,
      },
    },
    out: { class_type: 'CaptureLATENT', inputs: { value: ['tcd', 0] } },
    condOut: { class_type: 'CaptureCONDITIONING', inputs: { value: ['cond', 0] } },
  };
}
const sdxl = (o: Record<string, unknown>) => ({
  class_type: 'CLIPTextEncodeSDXL',
  inputs: {
    clip: ['ckpt', 1],
    width: 64,
    height: 64,
    crop_w: 0,
    crop_h: 0,
    target_width: 64,
    target_height: 64,
    text_g: 'a red fox',
    text_l: 'a red fox',
    ...o,
  },
});

test('CLIPTextEncodeSDXL with one text and latent-sized hints equals CLIPTextEncode', async () => {
  await h.run(prompt({ class_type: 'CLIPTextEncode', inputs: { text: 'a red fox', clip: ['ckpt', 1] } }));
  const plain = (h.captured.get('out') as { samples: Tensor }).samples.data;
  await h.run(prompt(sdxl({})));
  const viaSdxl = (h.captured.get('out') as { samples: Tensor }).samples.data;
  assert.ok(maxAbsDiff(plain, viaSdxl) < 1e-6);
});

test('size hints change the time ids, and text_l only changes the CLIP-L channels', async () => {
  await h.run(prompt(sdxl({})));
  const base = (h.captured.get('out') as { samples: Tensor }).samples.data;
  const baseCond = (h.captured.get('condOut') as { context: Tensor }[])[0].context;
  await h.run(prompt(sdxl({ width: 1024, height: 1024 })));
  const sized = (h.captured.get('out') as { samples: Tensor }).samples.data;
  assert.ok(maxAbsDiff(base, sized) > 1e-4, 'original size reaches the UNet');
  await h.run(prompt(sdxl({ text_l: 'a blue whale in deep water' })));
  const mixed = (h.captured.get('condOut') as { context: Tensor; pooled: Tensor }[])[0];
  const [, s, c] = mixed.context.shape;
  assert.equal(s, baseCond.shape[1]);
  let lDiff = 0,
    gDiff = 0;
  const wl = presetConfig('demo').textEncoders[0].width;
  for (let i = 0; i < s; i++)
    for (let k = 0; k < c; k++) {
      const d = Math.abs(mixed.context.data[i * c + k] - baseCond.data[i * c + k]);
      if (k < wl) lDiff = Math.max(lDiff, d);
      else gDiff = Math.max(gDiff, d);
    }
  assert.ok(lDiff > 1e-4, 'CLIP-L channels follow text_l');
  assert.equal(gDiff, 0, 'OpenCLIP-G channels follow text_g only');
});
