/**
 * Writes the inputs of the upscale-model and TAESD references: three tiny random RRDBNet models (one per key
 * layout: old ESRGAN x4, Real-ESRGAN x2 with pixel-unshuffle under params_ema, BSRGAN x2) and input images to
 * test/data/upscale/, and random TAESD encoder/decoder files at real size plus their inputs to `taesdDir` (the
 * tests regenerate those from the same seeds; they are too big to keep). make_reference.py then runs torch on them.
 * Run: npx tsx test/data/upscale/make-inputs.ts .exp/w16up/taesd
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { makeEsrganModel, type EsrganSpec } from '../../../server/tools/make-upscale-model.js';
import { fillNormal } from '../../../server/tools/make-checkpoint.js';
import { writeSafetensors } from '../../../server/engine/io/safetensors-writer.js';
import { makeTaesdFile } from '../../../server/tools/make-taesd.js';

const HERE = 'test/data/upscale';
const base = { inChannels: 3, outChannels: 3, features: 8, growth: 4, prefix: '', unshuffle: 1 } as const;
export const MODELS: Record<string, EsrganSpec> = {
  'esrgan-old-x4': { ...base, layout: 'esrgan', blocks: 2, upsamples: 2 },
  'realesrgan-x2-unshuffle': {
    ...base,
    layout: 'basicsr',
    prefix: 'params_ema.',
    blocks: 1,
    upsamples: 2,
    unshuffle: 2,
  },
  'bsrgan-x2': { ...base, layout: 'bsrgan', blocks: 1, upsamples: 1 },
};
export const IMAGES: Record<string, number[]> = {
  img_a: [1, 3, 20, 24],
  img_b: [1, 3, 18, 23],
  img_c: [1, 3, 6, 600],
  img_d: [2, 3, 30, 37],
};
export const TAESD_SEED = 77;

/** An image in [0, 1]: 0.5 + 0.25 N(0, 1), clamped. */
export function testImage(name: string, shape: number[]): Float32Array {
  const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
  fillNormal(v, 0.25, 11, name);
  for (let i = 0; i < v.length; i++) v[i] = Math.min(1, Math.max(0, v[i] + 0.5));
  return v;
}

export function taesdInputs(): { latent: Float32Array; image: Float32Array } {
  const latent = new Float32Array(1 * 4 * 8 * 8);
  fillNormal(latent, 5, 12, 'latent');
  const image = new Float32Array(1 * 3 * 32 * 32);
  fillNormal(image, 0.5, 13, 'image');
  for (let i = 0; i < image.length; i++) image[i] = Math.min(1, Math.max(-1, image[i]));
  return { latent, image };
}

async function main(taesdDir: string) {
  mkdirSync(HERE, { recursive: true });
  for (const [name, spec] of Object.entries(MODELS))
    await makeEsrganModel({ spec, out: join(HERE, `${name}.safetensors`), seed: 5 });
  await writeSafetensors(
    join(HERE, 'inputs.safetensors'),
    Object.entries(IMAGES).map(([name, shape]) => ({ name, dtype: 'F32', shape, data: () => testImage(name, shape) })),
  );
  mkdirSync(taesdDir, { recursive: true });
  for (const part of ['encoder', 'decoder'] as const)
    await makeTaesdFile(part, join(taesdDir, `taesd_${part}.safetensors`), TAESD_SEED);
  const t = taesdInputs();
  await writeSafetensors(join(taesdDir, 'taesd_inputs.safetensors'), [
    { name: 'latent', dtype: 'F32', shape: [1, 4, 8, 8], data: () => t.latent },
    { name: 'image', dtype: 'F32', shape: [1, 3, 32, 32], data: () => t.image },
  ]);
}

if (process.argv[1]?.endsWith('make-inputs.ts')) await main(process.argv[2] ?? '.exp/w16up/taesd');
