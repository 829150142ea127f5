/**
 * Inputs for the inpainting references (make_reference.py): the tiny 9-channel SD1 checkpoint (make-checkpoint's
 * 'tiny-sd1-inpaint', seed 16) and inputs.safetensors: an image whose size is not a multiple of 8, a soft mask at
 * another size, the prompts' contexts from tcd-studio's own text encoder (checked against transformers elsewhere),
 * and a latent + sigma for the single UNet evaluation.
 * Run: npx tsx test/data/inpaint/make-inputs.ts OUT_DIR   (writes OUT_DIR/tiny-sd1-inpaint.safetensors and
 * OUT_DIR/inputs.safetensors; the test regenerates the checkpoint the same way and checks its hash)
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../../../server/engine/engine.js';
import { writeSafetensors } from '../../../server/engine/io/safetensors-writer.js';
import { TorchGenerator } from '../../../server/engine/rng.js';
import { makeCheckpoint, presetConfig } from '../../../server/tools/make-checkpoint.js';

export const INPAINT_SEED = 16;
export const PROMPTS = { positive: 'a red fox in the snow', negative: 'blurry' };
export const IMAGE = { height: 69, width: 133 };
export const MASK = { height: 35, width: 67 };

/** Writes the test checkpoint; resolves to its path. */
export async function makeInpaintCheckpoint(dir: string): Promise<string> {
  const out = join(dir, 'tiny-sd1-inpaint.safetensors');
  await makeCheckpoint({ config: presetConfig('tiny-sd1-inpaint'), out, seed: INPAINT_SEED, dtype: 'F16' });
  return out;
}

/** A smooth picture in [0, 1], [1, H, W, 3]. */
export function testImage(): Float32Array {
  const { height: H, width: W } = IMAGE;
  const out = new Float32Array(H * W * 3);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++)
      for (let c = 0; c < 3; c++)
        out[(y * W + x) * 3 + c] = 0.5 + 0.45 * Math.sin(0.11 * x * (c + 1) + 0.07 * y - c);
  return out;
}

/** A disc with a soft edge, [1, h, w]: 1 inside, 0 outside, a ramp between (values off 0.5 except on the ramp). */
export function testMask(): Float32Array {
  const { height: H, width: W } = MASK;
  const out = new Float32Array(H * W);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      const d = Math.hypot((x - 40) / 1.0, (y - 17) / 1.0);
      out[y * W + x] = Math.min(1, Math.max(0, (13 - d) / 3));
    }
  return out;
}

async function main(outDir: string): Promise<void> {
  mkdirSync(outDir, { recursive: true });
  const ckpt = await makeInpaintCheckpoint(outDir);
  const cache = mkdtempSync(join(tmpdir(), 'inpaint-inputs-'));
  const engine = new Engine({ cacheDir: cache, log: () => {} });
  try {
    const clip = { checkpoint: ckpt, loras: [] };
    const pos = await engine.encodeText(clip, PROMPTS.positive);
    const neg = await engine.encodeText(clip, PROMPTS.negative);
    const x = new TorchGenerator(5n).randn([1, 4, 8, 16]);
    const f32 = (name: string, shape: number[], data: Float32Array) => ({
      name,
      dtype: 'F32' as const,
      shape,
      data: () => data,
    });
    await writeSafetensors(join(outDir, 'inputs.safetensors'), [
      f32('pixels', [1, IMAGE.height, IMAGE.width, 3], testImage()),
      f32('mask', [1, MASK.height, MASK.width], testMask()),
      f32('context_pos', pos.context.shape, pos.context.data),
      f32('context_neg', neg.context.shape, neg.context.data),
      f32('unet_x', [1, 4, 8, 16], x),
    ]);
  } finally {
    await engine.close();
    rmSync(cache, { recursive: true, force: true });
  }
}

if (process.argv[1]?.endsWith('make-inputs.ts')) {
  const out = process.argv[2];
  if (!out) throw new Error('usage: npx tsx test/data/inpaint/make-inputs.ts OUT_DIR');
  await main(out);
}
