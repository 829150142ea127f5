/**
 * 9-channel inpainting checkpoints are detected from their first conv (SD1.5 and SDXL inpainting layouts, and the
 * tiny test model); on a plain 4-channel model InpaintModelConditioning's concat is ignored, as ComfyUI does: it
 * samples exactly like VAEEncode with the mask as the latent's noise mask. (The 9-channel numbers against ComfyUI:
 * inpaint-model-reference.test.ts.) An SDXL-family inpainting model (the demo model with a 9-channel first conv)
 * samples with its pooled embeds and time ids beside the concat, and reads the concat.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { detectCheckpoint, keySourceOf } from '../../server/engine/model/detect.js';
import { checkpointKeys } from '../../server/engine/model/checkpoint-layout.js';
import { concatChannels } from '../../server/engine/model/config.js';
import {
  ensureDemoCheckpoint,
  DEMO_CHECKPOINT_NAME,
  makeCheckpoint,
  presetConfig,
} from '../../server/tools/make-checkpoint.js';
import type { LatentValue } from '../../nodes/types.js';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
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

test('an SDXL-family inpainting model samples through InpaintModelConditioning and reads its concat', async () => {
  const hx = makeHarness();
  try {
    const demo = presetConfig('demo');
    mkdirSync(join(hx.dirs.models, 'checkpoints'), { recursive: true });
    await makeCheckpoint({
      config: { ...demo, unet: { ...demo.unet, inChannels: 9 } },
      out: join(hx.dirs.models, 'checkpoints', 'demo-inpaint.safetensors'),
      seed: 3,
    });
    const front = {
      ckpt: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'demo-inpaint.safetensors' } },
      pos: { class_type: 'CLIPTextEncode', inputs: { text: 'a red fox', clip: ['ckpt', 1] } },
      neg: { class_type: 'CLIPTextEncode', inputs: { text: 'blurry', clip: ['ckpt', 1] } },
      img: { class_type: 'EmptyImage', inputs: { width: 64, height: 64, batch_size: 1, color: 0x4080c0 } },
      pad: {
        class_type: 'ImagePadForOutpaint',
        inputs: { image: ['img', 0], left: 0, top: 0, right: 64, bottom: 0, feathering: 0 },
      },
      // the picture to inpaint: colour everywhere (the padded image is grey where masked, as the greyed one is)
      full: { class_type: 'EmptyImage', inputs: { width: 128, height: 64, batch_size: 1, color: 0xc04020 } },
    };
    const ks = (latent: [string, number], pos: [string, number], neg: [string, number]) => ({
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
    const imcInputs = { positive: ['pos', 0], negative: ['neg', 0], vae: ['ckpt', 2], pixels: ['full', 0] };
    await hx.run({
      ...front,
      imc: { class_type: 'InpaintModelConditioning', inputs: { ...imcInputs, mask: ['pad', 1], noise_mask: true } },
      enc: { class_type: 'VAEEncode', inputs: { pixels: ['full', 0], vae: ['ckpt', 2] } },
      setm: { class_type: 'SetLatentNoiseMask', inputs: { samples: ['enc', 0], mask: ['pad', 1] } },
      a: ks(['imc', 2], ['imc', 0], ['imc', 1]),
      b: ks(['setm', 0], ['pos', 0], ['neg', 0]),
      outA: { class_type: 'CaptureLATENT', inputs: { value: ['a', 0] } },
      outB: { class_type: 'CaptureLATENT', inputs: { value: ['b', 0] } },
      lat: { class_type: 'CaptureLATENT', inputs: { value: ['enc', 0] } },
    });
    const a = (hx.captured.get('outA') as LatentValue).samples.data,
      b = (hx.captured.get('outB') as LatentValue).samples.data,
      orig = (hx.captured.get('lat') as LatentValue).samples.data;
    assert.ok(a.every(Number.isFinite));
    // the left half (unmasked) keeps the image's latent; the right half is repainted
    let kept = 0,
      moved = 0,
      apart = 0;
    for (let c = 0; c < 4; c++)
      for (let y = 0; y < 8; y++)
        for (let x = 0; x < 16; x++) {
          const i = (c * 8 + y) * 16 + x;
          if (x < 8) kept = Math.max(kept, Math.abs(a[i] - orig[i]));
          else moved = Math.max(moved, Math.abs(a[i] - orig[i]));
          apart = Math.max(apart, Math.abs(a[i] - b[i]));
        }
    assert.ok(kept < 1e-5, `kept ${kept}`);
    assert.ok(moved > 1e-2, `moved ${moved}`);
    // same latent and noise mask; only the concat's masked image differs (greyed vs the whole image's latent)
    assert.ok(apart > 1e-3, `the UNet reads the concat (${apart})`);
  } finally {
    await hx.close();
  }
});
