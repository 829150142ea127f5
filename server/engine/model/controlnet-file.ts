/**
 * ControlNet files in their published single-file layouts, served under the ldm names controlnet.ts reads:
 * - ldm with the `control_model.` prefix (lllyasviel's .pth conversions; diff ControlNets carry a `difference` key)
 *   or unprefixed (`input_blocks.*`, `input_hint_block.*`, `zero_convs.*`, `middle_block_out.*`);
 * - diffusers (`controlnet_cond_embedding.*`, `down_blocks.*`, `mid_block.*`, `controlnet_down_blocks.*`,
 *   `controlnet_mid_block.*`), the layout most SDXL ControlNets ship in: names map by the UNet block arithmetic
 *   (lora/key-map.ts) plus the ControlNet's own parts.
 * Family: SDXL ControlNets have the ADM input (label_emb), SD1 ones do not; the context width must match too.
 * Example:
 *   const info = inspectControlNet(SafetensorsFile.open(path));
 *   const cfg = controlNetConfigFor(info, modelConfig);          // throws ControlNetMismatchError on another family
 *   const g = buildControlNetGraph(cfg, controlNetWeights(file, info, diffBase));
 */
import { concatChannels, type ModelConfig, type ModelFamily, type UNetConfig } from './config.js';
import type { ControlNetConfig } from './controlnet.js';
import { detectUNetConfig, keySourceOf, type KeySource } from './detect.js';
import { diffusersToLdm, unetBlockPairs } from '../lora/key-map.js';
import type { WeightSource } from '../onnx/weights.js';
import { floatToHalf } from '../onnx/half.js';
import { halfToFloat } from '../io/safetensors.js';

export class ControlNetFileError extends Error {
  constructor(what: string) {
    super(what);
    this.name = 'ControlNetFileError';
  }
}

export interface ControlNetFileInfo {
  layout: 'ldm' | 'ldm-prefixed' | 'diffusers';
  family: ModelFamily;
  /** the encoder's config (prefix ''); adm carries only inChannels until matched with a model */
  config: ControlNetConfig;
  /** ldm name (no prefix) -> key in the file */
  keys: Map<string, string>;
  /** a diff ControlNet (`difference` key): its weights are differences to add to the model's UNet */
  diff: boolean;
}

const ZERO_CONV = 'zero_convs.0.0.weight';
const PREFIX = 'control_model.';

/** The file's layout, family and key map; throws ControlNetFileError when it is not a ControlNet this can run. */
export function inspectControlNet(src: KeySource): ControlNetFileInfo {
  const label = src.path ? src.path.split(/[\\/]/).pop()! : 'controlnet';
  const all = new Set(src.keys());
  if ([...all].some((k) => /(^|\.)(control_add_embedding|task_embedding|transformer_layes)\b/.test(k)))
    throw new ControlNetFileError(`${label} is a ControlNet++ union model, which tcd-studio does not run yet`);
  let layout: ControlNetFileInfo['layout'];
  const keys = new Map<string, string>();
  if (all.has('controlnet_cond_embedding.conv_in.weight')) {
    layout = 'diffusers';
    for (const [ldm, file] of diffusersKeyMap(all)) keys.set(ldm, file);
  } else if (all.has(PREFIX + ZERO_CONV) || all.has(ZERO_CONV)) {
    layout = all.has(PREFIX + ZERO_CONV) ? 'ldm-prefixed' : 'ldm';
    const p = layout === 'ldm-prefixed' ? PREFIX : '';
    for (const k of all) if (k.startsWith(p)) keys.set(k.slice(p.length), k);
  } else if (all.has('lora_controlnet')) {
    throw new ControlNetFileError(`${label} is a Control-LoRA, which tcd-studio does not run`);
  } else {
    throw new ControlNetFileError(
      `${label} is not a ControlNet in a known layout (ldm control_model.* / zero_convs.*, or diffusers ` +
        'controlnet_cond_embedding.*); T2I-adapters and other control models are not supported',
    );
  }
  const mapped = keySourceOf([...keys].map(([ldm, file]) => ({ name: ldm, shape: src.shape(file) })));
  const family: ModelFamily = keys.has('label_emb.0.0.weight') ? 'sdxl' : 'sd1';
  let unet: UNetConfig;
  try {
    unet = detectUNetConfig(mapped, '', family, null, label);
  } catch (e) {
    throw new ControlNetFileError(`${label}: ${(e as Error).message.split('. Supported')[0]}`);
  }
  const hint = keys.get('input_hint_block.0.weight');
  if (!hint) throw new ControlNetFileError(`${label} has no input_hint_block`);
  let hintConvs = 0;
  while (keys.has(`input_hint_block.${2 * hintConvs}.weight`)) hintConvs++;
  // the hint enters at 8x the latent size: three stride-2 convs (every even conv but the first and the last)
  const strided = Math.max(0, Math.floor((hintConvs - 2) / 2));
  if (strided !== 3)
    throw new ControlNetFileError(`${label}: input_hint_block has ${hintConvs} convs; published ControlNets have 8`);
  const skips = countPrefix(keys, 'zero_convs.');
  const expected = 1 + unet.channelMult.length * (unet.numResBlocks + 1) - 1;
  if (skips !== expected || !keys.has('middle_block_out.0.weight'))
    throw new ControlNetFileError(`${label} has ${skips} zero convs, its encoder ${expected} blocks`);
  return {
    layout,
    family,
    config: { unet, hintChannels: src.shape(hint)[1], hintConvs },
    keys,
    diff: all.has('difference'),
  };
}

function countPrefix(keys: Map<string, string>, prefix: string): number {
  const seen = new Set<string>();
  for (const k of keys.keys()) if (k.startsWith(prefix)) seen.add(k.slice(prefix.length).split('.')[0]);
  return seen.size;
}

/** diffusers ControlNetModel key -> ldm name (without prefix), for every key it can place. */
function diffusersKeyMap(all: Set<string>): Map<string, string> {
  const count = (prefix: string) => {
    const seen = new Set<string>();
    for (const k of all) if (k.startsWith(prefix)) seen.add(k.slice(prefix.length).split('.')[0]);
    return seen.size;
  };
  const levels = count('down_blocks.');
  const shape = {
    channelMult: new Array<number>(levels).fill(1),
    numResBlocks: count('down_blocks.0.resnets.'),
    transformerDepth: Array.from({ length: levels }, (_, l) => (count(`down_blocks.${l}.attentions.`) > 0 ? 1 : 0)),
    transformerDepthMiddle: count('mid_block.attentions.') > 0 ? 1 : 0,
  };
  const pairs = unetBlockPairs(shape);
  const hintBlocks = count('controlnet_cond_embedding.blocks.');
  const out = new Map<string, string>();
  for (const key of all) {
    const m = /^(.*)\.(weight|bias)$/.exec(key);
    if (!m) continue;
    const [, module, leaf] = m;
    let ldm: string | null = null;
    if (module === 'controlnet_cond_embedding.conv_in') ldm = 'input_hint_block.0';
    else if (module === 'controlnet_cond_embedding.conv_out') ldm = `input_hint_block.${2 * (hintBlocks + 1)}`;
    else if (module.startsWith('controlnet_cond_embedding.blocks.'))
      ldm = `input_hint_block.${2 * (Number(module.split('.')[2]) + 1)}`;
    else if (module.startsWith('controlnet_down_blocks.')) ldm = `zero_convs.${module.split('.')[1]}.0`;
    else if (module === 'controlnet_mid_block') ldm = 'middle_block_out.0';
    else ldm = diffusersToLdm(module, pairs);
    if (ldm) out.set(`${ldm}.${leaf}`, key);
  }
  return out;
}

export class ControlNetMismatchError extends Error {
  constructor(what: string) {
    super(what);
    this.name = 'ControlNetMismatchError';
  }
}

/**
 * The ControlNet's config for use with a model: same family, context width, latent channels and ADM width; the ADM
 * split (pooled + time ids) and head rule come from the model. Throws ControlNetMismatchError otherwise.
 */
export function controlNetConfigFor(info: ControlNetFileInfo, model: ModelConfig): ControlNetConfig {
  const u = info.config.unet,
    m = model.unet;
  const fam = (f: ModelFamily) => f.toUpperCase();
  if (info.family !== model.family)
    throw new ControlNetMismatchError(
      `a ${fam(info.family)} ControlNet cannot control an ${fam(model.family)} model (use a ControlNet made for ${fam(model.family)})`,
    );
  // the ControlNet sees the noisy latent only: an inpainting UNet's extra concat channels are not its business
  const latent = m.inChannels - concatChannels(m);
  if (u.contextDim !== m.contextDim || u.inChannels !== latent || u.adm?.inChannels !== m.adm?.inChannels)
    throw new ControlNetMismatchError(
      `the ControlNet (context ${u.contextDim}, ${u.inChannels} latent channels) does not fit the model ` +
        `(context ${m.contextDim}, ${latent} latent channels): another model family`,
    );
  return { ...info.config, unet: { ...u, adm: m.adm } };
}

/**
 * The ControlNet's weights under ldm names. A diff ControlNet adds the model's UNet tensor of the same name
 * (`diffBase`: ldm name -> tensor or undefined), as ComfyUI's DiffControlNetLoader: in the file's dtype, so a
 * float16 file's sums are rounded to float16 (`halfKeys`: file keys stored as F16).
 */
export function controlNetWeights(
  file: WeightSource,
  info: ControlNetFileInfo,
  diffBase?: (ldmName: string) => Float32Array | undefined,
  halfKeys?: (fileKey: string) => boolean,
): WeightSource {
  const fileKey = (name: string) => {
    const k = info.keys.get(name);
    if (!k) throw new Error(`the ControlNet has no weight "${name}"`);
    return k;
  };
  return {
    shape: (name) => file.shape(fileKey(name)),
    has: (name) => info.keys.has(name),
    read: (name) => {
      const w = file.read(fileKey(name));
      const base = info.diff && diffBase ? diffBase(name) : undefined;
      if (!base) return w;
      if (base.length !== w.length) throw new Error(`diff ControlNet weight "${name}" does not match the model's`);
      const half = halfKeys?.(fileKey(name)) ?? false;
      const h = (v: number) => halfToFloat(floatToHalf(v));
      const out = new Float32Array(w.length);
      // float16 files: the model's weight is cast to float16, the sum rounded to float16 (torch half arithmetic)
      for (let i = 0; i < w.length; i++) out[i] = half ? h(w[i] + h(base[i])) : w[i] + base[i];
      return out;
    },
  };
}
