/**
 * The tiny ControlNets the ControlNet tests use, made by server/tools/make-controlnet.ts for the fixtures' sd1_tiny
 * and sdxl_tiny UNets (test/data/controlnet/make_reference.py was run on exactly these seeds and layouts).
 * Example: const { sd1, sdxl } = await makeTestControlNets(dir, fixtures);
 */
import { join } from 'node:path';
import { SafetensorsFile } from '../../server/engine/io/safetensors.js';
import { detectCheckpoint } from '../../server/engine/model/detect.js';
import { makeControlNet, type ControlNetLayout } from '../../server/tools/make-controlnet.js';

export const CN_SEEDS = { sd1: 1601, sdxl: 1602 } as const;

export async function makeTestControlNet(
  checkpoint: string,
  out: string,
  seed: number,
  layout: ControlNetLayout,
): Promise<string> {
  const f = SafetensorsFile.open(checkpoint);
  try {
    return await makeControlNet({ unet: detectCheckpoint(f).unet, out, seed, layout });
  } finally {
    f.close();
  }
}

/** sd1_cn (ldm, control_model.*) and sdxl_cn (ldm, unprefixed), as the reference was made from. */
export async function makeTestControlNets(dir: string, fixtures: string): Promise<{ sd1: string; sdxl: string }> {
  return {
    sd1: await makeTestControlNet(
      join(fixtures, 'sd1_tiny.safetensors'),
      join(dir, 'sd1_cn.safetensors'),
      CN_SEEDS.sd1,
      'ldm-prefixed',
    ),
    sdxl: await makeTestControlNet(
      join(fixtures, 'sdxl_tiny.safetensors'),
      join(dir, 'sdxl_cn.safetensors'),
      CN_SEEDS.sdxl,
      'ldm',
    ),
  };
}
