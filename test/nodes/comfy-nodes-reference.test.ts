/**
 * The model-free nodes against ComfyUI's own code run with torch (CPU, float32): test/data/comfy-nodes/reference.*,
 * made by make_reference.py there (see its meta). Every upscale method of LatentUpscale(By) and ImageScale(By) at
 * up/down/crop sizes, LatentComposite with feathers, LatentBlend (incl. the bicubic resize), ImageBatch,
 * EmptyImage, ImagePadForOutpaint, ConditioningAverage: within float rounding (lanczos, 8-bit, exactly).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile } from '../../server/engine/io/safetensors.js';
import type { Tensor } from '../../server/engine/tensor.js';
import type { CondEntry, LatentValue } from '../../nodes/types.js';
import { assertTensor, runNode } from './model-free-helpers.js';

const DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'data', 'comfy-nodes');
const present = existsSync(join(DIR, 'reference.json'));

/**
 * Index-only and integer methods are exact; interpolating ones differ by float32 rounding where PyTorch's compiled
 * kernels fuse multiply-adds (a few ulps of the values, up to ~1e-6 relative after bicubic's cancellations).
 */
function tolerance(c: Case): number {
  const m = c.args.upscale_method;
  if (m === 'bilinear') return 3e-7;
  if (m === 'bicubic' || m === 'bislerp' || c.node === 'LatentBlend' || c.node === 'ImageBatch') return 3e-6;
  return c.node === 'ConditioningAverage' || c.node === 'LatentComposite' ? 1e-7 : 0;
}

interface Case {
  name: string;
  node: string;
  args: Record<string, unknown>;
  inputs: Record<string, string>;
  outputs: string[];
}

test(
  "model-free nodes equal ComfyUI's code run with torch",
  { skip: present ? false : 'skipped: test/data/comfy-nodes/reference.json not made yet' },
  async () => {
    const { cases } = JSON.parse(readFileSync(join(DIR, 'reference.json'), 'utf8')) as { cases: Case[] };
    const file = SafetensorsFile.open(join(DIR, 'reference.safetensors'));
    const tensor = (key: string): Tensor => file.readTensor(key);
    const latent = (key: string): LatentValue => ({ samples: tensor(key) });
    let checked = 0;
    try {
      for (const c of cases) {
        const inputs = Object.fromEntries(Object.entries(c.inputs).map(([k, key]) => [k, key]));
        let args: Record<string, unknown> = { ...c.args };
        let pick = (outs: unknown[]): Tensor[] => outs as Tensor[];
        switch (c.node) {
          case 'LatentUpscale':
          case 'LatentUpscaleBy':
            args.samples = latent(inputs.samples);
            pick = (o) => [(o[0] as LatentValue).samples];
            break;
          case 'LatentComposite':
            args = { ...args, samples_to: latent(inputs.samples_to), samples_from: latent(inputs.samples_from) };
            pick = (o) => [(o[0] as LatentValue).samples];
            break;
          case 'LatentBlend':
            args = { ...args, samples1: latent(inputs.samples1), samples2: latent(inputs.samples2) };
            pick = (o) => [(o[0] as LatentValue).samples];
            break;
          case 'ImageScale':
          case 'ImageScaleBy':
          case 'ImagePadForOutpaint':
            args.image = tensor(inputs.image);
            break;
          case 'ImageBatch':
            args = { image1: tensor(inputs.image1), image2: tensor(inputs.image2) };
            break;
          case 'EmptyImage':
            break;
          case 'ConditioningAverage': {
            const to: CondEntry = {
              context: tensor(inputs.to),
              pooled: c.args.pooled_to ? tensor(inputs.pooled_to) : null,
            };
            args = {
              conditioning_to: [to],
              conditioning_from: [{ context: tensor(inputs.from), pooled: tensor(inputs.pooled_from) }],
              conditioning_to_strength: c.args.conditioning_to_strength,
            };
            pick = (o) => {
              const e = (o[0] as CondEntry[])[0];
              return [e.context, e.pooled!];
            };
            break;
          }
          default:
            throw new Error(`reference case for an unknown node ${c.node}`);
        }
        const outs = pick(await runNode(c.node, args));
        c.outputs.forEach((key, i) => {
          const ref = tensor(key);
          // ComfyUI's outpaint mask is [H, W]; ours carries the batch axis [1, H, W]
          const ours =
            ref.shape.length === outs[i].shape.length - 1 && outs[i].shape[0] === 1
              ? { shape: ref.shape, data: outs[i].data }
              : outs[i];
          assertTensor(ours, ref, `${c.name} output ${i}`, tolerance(c));
          checked++;
        });
      }
    } finally {
      file.close();
    }
    assert.ok(checked >= 90, `only ${checked} outputs checked`);
  },
);
