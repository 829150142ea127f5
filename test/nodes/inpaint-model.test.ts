/**
 * 9-channel inpainting checkpoints are detected from their first conv (SD1.5 and SDXL inpainting layouts, and the
 * tiny test model); on a plain 4-channel model InpaintModelConditioning's concat is ignored, as ComfyUI does: it
 * samples exactly like VAEEncode with the mask as the latent's noise mask. (The 9-channel numbers against ComfyUI:
 * inpaint-model-reference.test.ts.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { detectCheckpoint, keySourceOf } from '../../server/engine/model/detect.js';
import { checkpointKeys } from '../../server/engine/model/checkpoint-layout.js';
import { concatChannels } from '../../server/engine/model/config.js';
import { ensureDemoCheckpoint, DEMO_CHECKPOINT_NAME, presetConfig } from '../../server/tools/make-checkpoint.js';
import type { LatentValue } from '../../nodes/types.js';
import { makeHarness } from '../helpers/run-prompt.js';

test('9-channel checkpoints: detected from the first conv, the UNet graph takes x and c_concat apart', () => {
  for (const name of ['sd15-inpaint', 'sdxl-inpaint', 'tiny-sd1-inpaint'] as const) {
    const cfg = presetConfig(name);
    const detected = detectCheckpoint(keySourceOf(checkpointKeys(cfg)));
    assert.deepEqual(detected, cfg, name);
    assert.equal(detected.unet.inChannels, 9, name);
    assert.equal(concatChannels(detected.unet), 5, name);
  }
  assert.equal(concatChannels(presetConfig('sd15').unet), 0);
});

test('on a plain 4-channel model the concat is ignored: same as VAEEncode with the mask as noise mask', async () => {
  const hd = makeHarness();
  try {
    await ensureDemoCheckpoint(hd.dirs.models);
    const sampler = (latent: [string, number], pos: [string, number], neg: [string, number]) => ({
      class_type: 'KSampler',
      inputs: {
        model: ['ckpt', 0],
        seed: 5,
        steps: 2,
        cfg: 2,
        sampler_name: 'euler',
        scheduler: 'normal',
        positive: pos,
        negative: neg,
        latent_image: latent,
        denoise: 1,
      },
    });
    await hd.run({
      ckpt: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: DEMO_CHECKPOINT_NAME } },
      pos: { class_type: 'CLIPTextEncode', inputs: { text: 'a red fox', clip: ['ckpt', 1] } },
      neg: { class_type: 'CLIPTextEncode', inputs: { text: 'blurry', clip: ['ckpt', 1] } },
      img: { class_type: 'EmptyImage', inputs: { width: 64, height: 64, batch_size: 1, color: 0x4080c0 } },
      pad: {
        class_type: 'ImagePadForOutpaint',
        inputs: { image: ['img', 0], left: 0, top: 0, right: 64, bottom: 0, feathering: 24 },
      },
      imc: {
        class_type: 'InpaintModelConditioning',
        inputs: {
          positive: ['pos', 0],
          negative: ['neg', 0],
          vae: ['ckpt', 2],
          pixels: ['pad', 0],
          mask: ['pad', 1],
          noise_mask: true,
        },
      },
      enc: { class_type: 'VAEEncode', inputs: { pixels: ['pad', 0], vae: ['ckpt', 2] } },
      setm: { class_type: 'SetLatentNoiseMask', inputs: { samples: ['enc', 0], mask: ['pad', 1] } },
      a: sampler(['imc', 2], ['imc', 0], ['imc', 1]),
      b: sampler(['setm', 0], ['pos', 0], ['neg', 0]),
      outA: { class_type: 'CaptureLATENT', inputs: { value: ['a', 0] } },
      outB: { class_type: 'CaptureLATENT', inputs: { value: ['b', 0] } },
    });
    const a = (hd.captured.get('outA') as LatentValue).samples,
      b = (hd.captured.get('outB') as LatentValue).samples;
    assert.deepEqual(a.shape, [1, 4, 8, 16]);
    assert.deepEqual(a.data, b.data);
  } finally {
    await hd.close();
  }
});
