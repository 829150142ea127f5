/**
 * A checkpoint or LoRA file replaced under the same name (a re-download, the next epoch of a LoRA being trained) is
 * used from then on. Before, the checkpoint loader re-ran (its fingerprint) but the engine kept the sessions it had
 * loaded from the old file, keyed by path only: the sampler drew with the old weights, silently. A replaced LoRA did
 * not even re-run its loader. Real nodes and engine on copies of the SD1 tiny fixtures.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '../../server/engine/io/safetensors.js';
import { writeSafetensors } from '../../server/engine/io/safetensors-writer.js';
import { makeHarness, type Harness } from '../helpers/run-prompt.js';
import { fixturePath, fixtureSkip, maxAbsDiff } from '../helpers/fixtures.js';
import type { LatentValue } from '../../nodes/types.js';

const skip = fixtureSkip();
let h: Harness;
let dir: string;

/** `src` rewritten with the tensors `change` picks multiplied by `k` (another model / LoRA of the same layout). */
async function variant(src: string, out: string, change: (name: string) => boolean, k: number) {
  const f = SafetensorsFile.open(src);
  try {
    await writeSafetensors(
      out,
      f.keys().map((name) => ({
        name,
        dtype: 'F32' as const,
        shape: f.shape(name),
        data: () => f.readFloat32(name).map((v) => (change(name) ? v * k : v)),
      })),
    );
  } finally {
    f.close();
  }
}

before(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'tcd-replaced-'));
  copyFileSync(fixturePath('sd1_tiny.safetensors'), join(dir, 'ck.safetensors'));
  await variant(fixturePath('sd1_tiny.safetensors'), join(dir, 'ck2.safetensors'), (n) => n.includes('.out.2.'), 0.5);
  copyFileSync(fixturePath('sd1_tiny_lora_kohya.safetensors'), join(dir, 'lo.safetensors'));
  await variant(
    fixturePath('sd1_tiny_lora_kohya.safetensors'),
    join(dir, 'lo2.safetensors'),
    (n) => n.includes('up'),
    3,
  );
  h = makeHarness(dir); // dir is both models/checkpoints and models/loras
});
after(async () => {
  await h?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function prompt(ckpt: string, lora: string) {
  return {
    '1': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: ckpt } },
    '2': { class_type: 'LoraLoaderModelOnly', inputs: { model: ['1', 0], lora_name: lora, strength_model: 1 } },
    '3': { class_type: 'CLIPTextEncode', inputs: { text: 'a cat', clip: ['1', 1] } },
    '4': { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
    '5': {
      class_type: 'KSampler',
      inputs: {
        model: ['2', 0],
        positive: ['3', 0],
        negative: ['3', 0],
        latent_image: ['4', 0],
        seed: 3,
        steps: 1,
        cfg: 1,
        sampler_name: 'euler',
        scheduler: 'normal',
        denoise: 1,
      },
    },
    '6': { class_type: 'CaptureLATENT', inputs: { value: ['5', 0] } },
  };
}

async function latent(p: ReturnType<typeof prompt>): Promise<Float32Array> {
  await h.run(p);
  return (h.captured.get('6') as LatentValue).samples.data;
}

test('a checkpoint or LoRA replaced under the same name is what the next run uses', { skip }, async () => {
  const before = await latent(prompt('ck.safetensors', 'lo.safetensors'));
  const truthCk2 = await latent(prompt('ck2.safetensors', 'lo.safetensors'));
  const truthBoth = await latent(prompt('ck2.safetensors', 'lo2.safetensors'));
  assert.ok(maxAbsDiff(before, truthCk2) > 1e-3, 'the two checkpoints draw differently');
  assert.ok(maxAbsDiff(truthCk2, truthBoth) > 1e-3, 'the two LoRAs draw differently');

  // the same prompt again after replacing the checkpoint in place
  copyFileSync(join(dir, 'ck2.safetensors'), join(dir, 'ck.safetensors'));
  const afterCk = await latent(prompt('ck.safetensors', 'lo.safetensors'));
  assert.deepEqual([...afterCk], [...truthCk2], 'the replaced checkpoint is used');

  // and after replacing the LoRA in place
  copyFileSync(join(dir, 'lo2.safetensors'), join(dir, 'lo.safetensors'));
  const afterLora = await latent(prompt('ck.safetensors', 'lo.safetensors'));
  assert.deepEqual([...afterLora], [...truthBoth], 'the replaced LoRA is used');
});
