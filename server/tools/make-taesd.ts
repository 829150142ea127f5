/**
 * Random TAESD encoder/decoder files in the published layout (test fixtures: TAESD is small enough to test at its
 * real size). Conv weights ~ N(0,1) * sqrt(2 / fan_in) (ReLU gain, so activations keep their scale through the
 * blocks), biases ~ N(0, 0.05), from make-checkpoint's seeded per-tensor streams.
 * Example: await makeTaesdFile('decoder', 'models/vae_approx/taesd_decoder.safetensors', 1);
 */
import { taesdTensorShapes } from '../engine/model/taesd.js';
import { writeSafetensors } from '../engine/io/safetensors-writer.js';
import { fillNormal } from './make-checkpoint.js';

export async function makeTaesdFile(part: 'encoder' | 'decoder', out: string, seed: number): Promise<string> {
  const entries = taesdTensorShapes(part, 4).map(({ name, shape }) => ({
    name,
    dtype: 'F32' as const,
    shape,
    data: () => {
      const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
      const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
      fillNormal(v, shape.length === 1 ? 0.05 : Math.sqrt(2 / fanIn), seed, name);
      return v;
    },
  }));
  await writeSafetensors(out, entries, { format: 'pt', 'tcd_studio.generator': 'make-taesd' });
  return out;
}
