/**
 * Deterministic random ESRGAN/RRDBNet upscale models in the published key layouts (old ESRGAN, BasicSR/Real-ESRGAN,
 * BSRGAN), for tests, torch references and the bundled demo upscale model. Conv weights ~ N(0,1)/sqrt(fan_in) and
 * biases ~ N(0, 0.05) from make-checkpoint's seeded per-tensor streams; the last conv is scaled down and biased to
 * 0.5 so the clamped output stays mostly inside (0, 1) and differences show.
 * Example: await makeEsrganModel({ spec: DEMO_UPSCALE_SPEC, out: 'x2.safetensors', seed: 1 });
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { esrganTensorShapes, esrganModules, type EsrganConfig } from '../engine/model/esrgan.js';
import { writeSafetensors, type WritableDtype } from '../engine/io/safetensors-writer.js';
import { SafetensorsFile } from '../engine/io/safetensors.js';
import { fillNormal } from './make-checkpoint.js';

export type EsrganSpec = Omit<EsrganConfig, 'scale'>;

/** The demo upscale model: a tiny x2 RRDBNet in the BasicSR layout (it sharpens noise; a real model replaces it). */
export const DEMO_UPSCALE_MODEL_NAME = 'tcd-studio-demo-esrgan-x2.safetensors';
export const DEMO_UPSCALE_SEED = 20240508;
export const DEMO_UPSCALE_SPEC: EsrganSpec = {
  layout: 'basicsr',
  prefix: '',
  inChannels: 3,
  outChannels: 3,
  features: 16,
  blocks: 1,
  growth: 8,
  upsamples: 1,
  unshuffle: 1,
};

export async function makeEsrganModel(o: {
  spec: EsrganSpec;
  out: string;
  seed: number;
  dtype?: WritableDtype;
}): Promise<string> {
  const last = esrganModules({ ...o.spec, scale: 1 }).last;
  const entries = esrganTensorShapes(o.spec).map(({ name, shape }) => ({
    name,
    dtype: o.dtype ?? 'F32',
    shape,
    data: () => {
      const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
      const isLast = name.startsWith(`${last}.`);
      if (shape.length === 1) {
        fillNormal(v, 0.05, o.seed, name);
        if (isLast) for (let i = 0; i < v.length; i++) v[i] += 0.5;
      } else {
        const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
        fillNormal(v, (isLast ? 0.25 : 1) / Math.sqrt(fanIn), o.seed, name);
      }
      return v;
    },
  }));
  await writeSafetensors(o.out, entries, {
    format: 'pt',
    'tcd_studio.generator': 'make-upscale-model',
    'tcd_studio.seed': String(o.seed),
  });
  return o.out;
}

/** models/upscale_models/<demo>, written when absent or not the demo model; resolves to its path. */
export async function ensureDemoUpscaleModel(modelsDir: string): Promise<string> {
  const dir = join(modelsDir, 'upscale_models');
  const path = join(dir, DEMO_UPSCALE_MODEL_NAME);
  if (isDemoUpscaleModel(path)) return path;
  mkdirSync(dir, { recursive: true });
  return makeEsrganModel({ spec: DEMO_UPSCALE_SPEC, out: path, seed: DEMO_UPSCALE_SEED });
}

function isDemoUpscaleModel(path: string): boolean {
  if (!existsSync(path)) return false;
  try {
    const f = SafetensorsFile.open(path);
    try {
      return f.metadata['tcd_studio.seed'] === String(DEMO_UPSCALE_SEED);
    } finally {
      f.close();
    }
  } catch {
    return false;
  }
}
