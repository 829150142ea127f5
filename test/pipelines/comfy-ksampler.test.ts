/**
 * KSampler with ComfyUI's semantics on sd1_tiny (comfy_ksampler.safetensors): each run, built from the real nodes
 * and run through the executor, gives the pixels ComfyUI computes on a CPU.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { FIXTURES, fixtureJson, fixturePath, fixtureSkip } from '../helpers/fixtures.js';
import { makeHarness, comparePixels, type Harness } from '../helpers/run-prompt.js';
import { SafetensorsFile } from '../../server/engine/io/safetensors.js';
import type { Tensor } from '../../server/engine/tensor.js';

const skip = fixtureSkip();
let h: Harness | null = null;
const harness = () => (h ??= makeHarness(FIXTURES));
after(async () => {
  await h?.close();
});

interface Run {
  sampler_name: string;
  scheduler: string;
  steps: number;
  cfg: number;
  seed: number;
  denoise: number;
  checkpoint: string;
  prompt: string;
  negative: string;
  width: number;
  height: number;
  batch_size: number;
}
const runs: Record<string, Run> = skip ? {} : fixtureJson('comfy_ksampler.json').runs;

for (const [name, r] of Object.entries(skip ? { skipped: {} as Run } : runs)) {
  test(`KSampler ${name} reproduces ComfyUI's pixels`, { skip }, async () => {
    const ref = SafetensorsFile.open(fixturePath('comfy_ksampler.safetensors'));
    const refImage = ref.readTensor(`${name}/image`);
    ref.close();
    await harness().run({
      ckpt: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: r.checkpoint } },
      pos: { class_type: 'CLIPTextEncode', inputs: { text: r.prompt, clip: ['ckpt', 1] } },
      neg: { class_type: 'CLIPTextEncode', inputs: { text: r.negative, clip: ['ckpt', 1] } },
      empty: { class_type: 'EmptyLatentImage', inputs: { width: r.width, height: r.height, batch_size: r.batch_size } },
      ks: {
        class_type: 'KSampler',
        inputs: {
          model: ['ckpt', 0],
          seed: r.seed,
          steps: r.steps,
          cfg: r.cfg,
          sampler_name: r.sampler_name,
          scheduler: r.scheduler,
          positive: ['pos', 0],
          negative: ['neg', 0],
          latent_image: ['empty', 0],
          denoise: r.denoise,
        },
      },
      decode: { class_type: 'VAEDecode', inputs: { samples: ['ks', 0], vae: ['ckpt', 2] } },
      image_out: { class_type: 'CaptureIMAGE', inputs: { value: ['decode', 0] } },
    });
    const img = harness().captured.get('image_out') as Tensor;
    const { fractionOver2, maxDiff } = comparePixels(img.data, refImage.data, refImage.shape);
    assert.ok(
      fractionOver2 <= 0.001 && maxDiff <= 4,
      `${name}: ${(fractionOver2 * 100).toFixed(3)}% of pixels off by > 2 levels, max ${maxDiff.toFixed(2)}`,
    );
  });
}
