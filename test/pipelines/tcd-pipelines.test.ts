/**
 * issue 4.4: every run of pipelines.safetensors, built from the real nodes (CheckpointLoaderSimple, LoraLoader,
 * CLIPTextEncode, EmptyLatentImage, TCDSampler, VAEDecode) and run through the executor, gives diffusers' pixels.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { FIXTURES, fixtureJson, fixturePath, fixtureSkip, maxAbsDiff, maxAbs } from '../helpers/fixtures.js';
import { makeHarness, comparePixels, type Harness } from '../helpers/run-prompt.js';
import { SafetensorsFile } from '../../server/engine/io/safetensors.js';
import type { Tensor } from '../../server/engine/tensor.js';
import type { Prompt } from '../../server/executor/prompt.js';

const skip = fixtureSkip();
let h: Harness | null = null;
const harness = () => (h ??= makeHarness(FIXTURES));
after(async () => {
  await h?.close();
});

interface Run {
  checkpoint: string;
  prompt: string;
  negative: string;
  width: number;
  height: number;
  steps: number;
  eta: number;
  cfg: number;
  seed: number;
  batch_size: number;
  lora?: string;
  strength_model?: number;
}

export function tcdPrompt(r: Run): Prompt {
  const p: Prompt = {
    ckpt: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: r.checkpoint } },
    pos: { class_type: 'CLIPTextEncode', inputs: { text: r.prompt, clip: ['ckpt', 1] } },
    neg: { class_type: 'CLIPTextEncode', inputs: { text: r.negative, clip: ['ckpt', 1] } },
    empty: { class_type: 'EmptyLatentImage', inputs: { width: r.width, height: r.height, batch_size: r.batch_size } },
    tcd: {
      class_type: 'TCDSampler',
      inputs: {
        model: ['ckpt', 0],
        positive: ['pos', 0],
        negative: ['neg', 0],
        latent_image: ['empty', 0],
        seed: r.seed,
        steps: r.steps,
        cfg: r.cfg,
        eta: r.eta,
        denoise: 1,
        original_inference_steps: 50,
      },
    },
    decode: { class_type: 'VAEDecode', inputs: { samples: ['tcd', 0], vae: ['ckpt', 2] } },
    latent_out: { class_type: 'CaptureLATENT', inputs: { value: ['tcd', 0] } },
    image_out: { class_type: 'CaptureIMAGE', inputs: { value: ['decode', 0] } },
  };
  if (r.lora) {
    p.lora = {
      class_type: 'LoraLoaderModelOnly',
      inputs: { model: ['ckpt', 0], lora_name: r.lora, strength_model: r.strength_model ?? 1 },
    };
    p.tcd.inputs.model = ['lora', 0];
  }
  return p;
}

const runs: Record<string, Run> = skip ? {} : fixtureJson('manifest.json').cases.pipelines.runs;
for (const [name, run] of Object.entries(skip ? { skipped: {} as Run } : runs)) {
  test(`pipeline ${name} reproduces diffusers' pixels through the real nodes`, { skip }, async () => {
    const ref = SafetensorsFile.open(fixturePath('pipelines.safetensors'));
    const refImage = ref.readTensor(`${name}/image`),
      refLatent = ref.readTensor(`${name}/latent`);
    ref.close();
    const res = await harness().run(tcdPrompt(run));
    assert.equal(res.status, 'success');
    const img = harness().captured.get('image_out') as Tensor;
    const lat = harness().captured.get('latent_out') as { samples: Tensor };
    // our LATENT is in VAE space (latent / scaling factor); the fixture's latent is model space
    const scale = run.checkpoint.startsWith('sdxl') ? 0.13025 : 0.18215;
    const ourModelLatent = lat.samples.data.map((v) => v * scale);
    const latDiff = maxAbsDiff(ourModelLatent, refLatent.data);
    assert.ok(latDiff <= 1e-3 * Math.max(1, maxAbs(refLatent.data)), `${name}: final latent differs by ${latDiff}`);
    assert.deepEqual(img.shape, [refImage.shape[0], refImage.shape[2], refImage.shape[3], 3]);
    const { fractionOver2, maxDiff } = comparePixels(img.data, refImage.data, refImage.shape);
    assert.ok(
      fractionOver2 <= 0.001 && maxDiff <= 4,
      `${name}: ${(fractionOver2 * 100).toFixed(3)}% of pixels off by > 2 levels, max ${maxDiff.toFixed(2)}`,
    );
  });
}
