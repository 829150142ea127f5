/**
 * Deterministic random ControlNets for a model's UNet config, in the published file layouts: ldm with the
 * `control_model.` prefix (lllyasviel's conversions), diffusers (most SDXL ControlNets), or a diff ControlNet
 * (`control_model.*` differences plus the `difference` marker, for DiffControlNetLoader). Weights follow
 * make-checkpoint's rule (N(0,1)/sqrt(fan_in), norms 1, biases 0); the zero convs are random too, so tests see real
 * residuals. input_hint_block has the real channel sizes (16, 16, 32, 32, 96, 96, 256, model channels).
 * Example: await makeControlNet({ unet: cfg.unet, out: 'cn.safetensors', seed: 7, layout: 'diffusers' });
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { UNetConfig } from '../engine/model/config.js';
import { unetKeyShapes, type KeyShape } from '../engine/model/checkpoint-layout.js';
import { ldmToDiffusers, unetBlockPairs } from '../engine/lora/key-map.js';
import { unetSkipChannels } from '../engine/model/unet.js';
import { writeSafetensors, type WritableDtype } from '../engine/io/safetensors-writer.js';
import { fillNormal, initRule, presetConfig } from './make-checkpoint.js';

/** ldm-prefixed: control_model.*; ldm: unprefixed; diffusers; diff: control_model.* differences + `difference` */
export type ControlNetLayout = 'ldm-prefixed' | 'ldm' | 'diffusers' | 'diff';

const HINT_CHANNELS = [16, 16, 32, 32, 96, 96, 256];

/** The ControlNet's tensors under ldm names without prefix, in module order. */
export function controlNetKeys(unet: UNetConfig, hintChannels = 3): KeyShape[] {
  const encoder = unetKeyShapes({ ...unet, prefix: '' }).filter((k) =>
    /^(time_embed|label_emb|input_blocks|middle_block)\./.test(k.name),
  );
  const keys: KeyShape[] = [...encoder];
  const conv = (name: string, out: number, inp: number, k: number) => {
    keys.push({ name: `${name}.weight`, shape: [out, inp, k, k] }, { name: `${name}.bias`, shape: [out] });
  };
  const widths = [...HINT_CHANNELS, unet.modelChannels];
  widths.forEach((w, j) => conv(`input_hint_block.${2 * j}`, w, j === 0 ? hintChannels : widths[j - 1], 3));
  const ch = unetSkipChannels(unet);
  ch.skips.forEach((c, i) => conv(`zero_convs.${i}.0`, c, c, 1));
  conv('middle_block_out.0', ch.middle, ch.middle, 1);
  return keys;
}

/** ldm name -> diffusers ControlNetModel name. */
function diffusersName(unet: UNetConfig, ldm: string): string {
  const m = /^(.*)\.(weight|bias)$/.exec(ldm)!;
  const [, module, leaf] = m;
  const hint = /^input_hint_block\.(\d+)$/.exec(module);
  let d: string | null;
  if (hint) {
    const j = Number(hint[1]) / 2;
    d =
      j === 0
        ? 'controlnet_cond_embedding.conv_in'
        : j === HINT_CHANNELS.length
          ? 'controlnet_cond_embedding.conv_out'
          : `controlnet_cond_embedding.blocks.${j - 1}`;
  } else if (module.startsWith('zero_convs.')) d = `controlnet_down_blocks.${module.split('.')[1]}`;
  else if (module === 'middle_block_out.0') d = 'controlnet_mid_block';
  else d = ldmToDiffusers(module, unetBlockPairs(unet));
  if (!d) throw new Error(`no diffusers name for ${ldm}`);
  return `${d}.${leaf}`;
}

export interface MakeControlNetOptions {
  /** the UNet config of the model it is made for (its family and sizes) */
  unet: UNetConfig;
  out: string;
  seed: number;
  layout: ControlNetLayout;
  dtype?: WritableDtype;
}

/** Writes the ControlNet; resolves to its path. */
export async function makeControlNet(o: MakeControlNetOptions): Promise<string> {
  const keys = controlNetKeys(o.unet);
  const dtype = o.dtype ?? 'F16';
  const numel = (s: number[]) => s.reduce((x, y) => x * y, 1);
  const name = (k: string) =>
    o.layout === 'diffusers' ? diffusersName(o.unet, k) : o.layout === 'ldm' ? k : `control_model.${k}`;
  const entries = keys.map((k) => ({
    name: name(k.name),
    dtype,
    shape: k.shape,
    data: () => {
      const v = new Float32Array(numel(k.shape));
      const rule = initRule(k);
      // a diff ControlNet stores small differences to the model's weights (none for biases and norms)
      if (o.layout === 'diff' && /^(time_embed|label_emb|input_blocks|middle_block)\./.test(k.name)) {
        if (rule.kind === 'normal') fillNormal(v, rule.std * 0.1, o.seed, k.name);
      } else if (rule.kind === 'ones') v.fill(1);
      else if (rule.kind === 'normal') fillNormal(v, rule.std, o.seed, k.name);
      return v;
    },
  }));
  if (o.layout === 'diff') entries.push({ name: 'difference', dtype, shape: [0], data: () => new Float32Array(0) });
  await writeSafetensors(o.out, entries, { format: 'pt', 'tcd_studio.generator': 'make-controlnet' });
  return o.out;
}

export const DEMO_CONTROLNET_NAME = 'tcd-studio-demo-controlnet-sdxl.safetensors';

/** models/controlnet/<demo ControlNet> for the demo checkpoint (diffusers layout, as SDXL ControlNets ship). */
export async function ensureDemoControlNet(modelsDir: string): Promise<string> {
  const dir = join(modelsDir, 'controlnet');
  const path = join(dir, DEMO_CONTROLNET_NAME);
  if (existsSync(path)) return path;
  mkdirSync(dir, { recursive: true });
  return makeControlNet({ unet: presetConfig('demo').unet, out: path, seed: 424242, layout: 'diffusers' });
}
