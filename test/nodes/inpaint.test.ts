/**
 * Inpainting on the demo model: VAEEncodeForInpaint's grown noise mask (ComfyUI's box grow), and KSampler with a
 * noise mask changes the latent only inside it (KSamplerX0Inpaint); TCDSampler refuses a masked latent by name.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ensureDemoCheckpoint, DEMO_CHECKPOINT_NAME } from '../../server/tools/make-checkpoint.js';
import type { LatentValue } from '../../nodes/types.js';
import { makeHarness, type Harness } from '../helpers/run-prompt.js';

let h: Harness;
before(async () => {
  h = makeHarness();
  await ensureDemoCheckpoint(h.dirs.models);
});
after(async () => {
  await h.close();
});

const graph = (sampler: Record<string, unknown>) => ({
  ckpt: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: DEMO_CHECKPOINT_NAME } },
  pos: { class_type: 'CLIPTextEncode', inputs: { text: 'a red fox', clip: ['ckpt', 1] } },
  img: { class_type: 'EmptyImage', inputs: { width: 64, height: 64, batch_size: 1, color: 0x4080c0 } },
  pad: {
    class_type: 'ImagePadForOutpaint',
    inputs: { image: ['img', 0], left: 0, top: 0, right: 64, bottom: 0, feathering: 0 },
  },
  enc: {
    class_type: 'VAEEncodeForInpaint',
    inputs: { pixels: ['pad', 0], vae: ['ckpt', 2], mask: ['pad', 1], grow_mask_by: 6 },
  },
  plain: { class_type: 'VAEEncode', inputs: { pixels: ['pad', 0], vae: ['ckpt', 2] } },
  ...sampler,
  encOut: { class_type: 'CaptureLATENT', inputs: { value: ['enc', 0] } },
});

test('VAEEncodeForInpaint grows the mask by its box and KSampler keeps the latent outside it', async () => {
  await h.run({
    ...graph({
      ks: {
        class_type: 'KSampler',
        inputs: {
          model: ['ckpt', 0],
          seed: 3,
          steps: 2,
          cfg: 1,
          sampler_name: 'euler',
          scheduler: 'normal',
          positive: ['pos', 0],
          negative: ['pos', 0],
          latent_image: ['enc', 0],
          denoise: 1,
        },
      },
    }),
    out: { class_type: 'CaptureLATENT', inputs: { value: ['ks', 0] } },
  });
  const enc = h.captured.get('encOut') as LatentValue,
    out = (h.captured.get('out') as LatentValue).samples;
  // the 64-px right border (x 64..127) is masked; grow 6 (pad 3) adds columns 62 and 63 (box covers x-3..x+2)
  const m = enc.noise_mask!;
  assert.deepEqual(m.shape, [1, 1, 64, 128]);
  assert.deepEqual(
    [61, 62, 63, 64, 127].map((x) => m.data[10 * 128 + x]),
    [0, 1, 1, 1, 1],
  );
  const [, c, hh, w] = out.shape;
  assert.deepEqual(out.shape, [1, 4, 8, 16]);
  // resized (bilinear) to the latent the mask is 0 in columns 0..7 and 1 in 8..15: those keep / change
  let kept = 0,
    changed = 0;
  for (let k = 0; k < c; k++)
    for (let y = 0; y < hh; y++) {
      for (let x = 0; x < 8; x++) {
        const i = (k * hh + y) * w + x;
        kept = Math.max(kept, Math.abs(out.data[i] - enc.samples.data[i]) / Math.max(1, Math.abs(enc.samples.data[i])));
      }
      for (let x = 8; x < 16; x++) {
        const i = (k * hh + y) * w + x;
        changed = Math.max(changed, Math.abs(out.data[i] - enc.samples.data[i]));
      }
    }
  assert.ok(kept < 1e-6, `outside the mask the latent is kept (${kept})`);
  assert.ok(changed > 1e-2, 'inside the mask it is repainted');
});

test('TCDSampler refuses a masked latent, naming KSampler as the way', async () => {
  const r = await h.run(
    {
      ...graph({
        tcd: {
          class_type: 'TCDSampler',
          inputs: {
            model: ['ckpt', 0],
            positive: ['pos', 0],
            negative: ['pos', 0],
            latent_image: ['enc', 0],
            seed: 1,
            steps: 2,
            cfg: 1,
            eta: 0.3,
            denoise: 1,
            original_inference_steps: 50,
          },
        },
      }),
      out: { class_type: 'CaptureLATENT', inputs: { value: ['tcd', 0] } },
    },
    { allowErrors: true },
  );
  const err = r.events.find((e) => e.type === 'execution_error')?.data as {
    node_id: string;
    exception_message: string;
  };
  assert.equal(err.node_id, 'tcd');
  assert.match(err.exception_message, /noise mask.*KSampler/);
});
