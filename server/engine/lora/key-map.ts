/**
 * Which checkpoint tensor a LoRA module patches. Every patchable weight of the checkpoint (UNet linear/conv weights,
 * text-encoder attention and MLP weights) gets all the names LoRA trainers give it:
 * - UNet, LDM names:       `lora_unet_input_blocks_4_1_proj_in`, `diffusion_model.input_blocks.4.1.proj_in`
 * - UNet, diffusers names: `lora_unet_down_blocks_1_attentions_0_proj_in`, `unet.down_blocks.1.attentions.0.proj_in`,
 *                          `down_blocks.1.attentions.0.proj_in` (PEFT without the `unet.` prefix)
 * - text encoders (HF names): `lora_te_text_model_encoder_layers_0_mlp_fc1` (SD1), `lora_te1_…`/`lora_te2_…` (SDXL),
 *                          `text_encoder.text_model.…`, `text_encoder_2.text_model.…`; OpenCLIP-G's fused
 *                          in_proj_weight takes q/k/v as row slices.
 * The diffusers <-> LDM UNet correspondence is derived from the UNetConfig (levels, res blocks, attention levels),
 * the block index arithmetic of diffusers' LDM conversion.
 * Example:
 *   const map = loraKeyMap(config, (k) => file.has(k));
 *   map.get('lora_unet_input_blocks_4_1_proj_in'); // { component: 'unet', key: 'model.diffusion_model.input_blocks.4.1.proj_in.weight' }
 */
import type { ModelConfig, TextEncoderConfig, UNetConfig } from '../model/config.js';
import type { Component } from '../types.js';

export interface LoraTarget {
  component: Component;
  /** checkpoint key of the patched weight */
  key: string;
  /** only rows [start, end) of the weight (q/k/v inside a fused in_proj_weight) */
  rows?: [number, number];
}

/** LDM block prefix -> diffusers block prefix, with how names inside the block translate. */
export interface BlockPair {
  ldm: string;
  diffusers: string;
  kind: 'resnet' | 'attention' | 'plain';
}

const RESNET_PARTS: Record<string, string> = {
  'in_layers.0': 'norm1',
  'in_layers.2': 'conv1',
  'emb_layers.1': 'time_emb_proj',
  'out_layers.0': 'norm2',
  'out_layers.3': 'conv2',
  skip_connection: 'conv_shortcut',
};

/** The UNet's block correspondence (diffusers' convert_ldm_unet_checkpoint index arithmetic, both directions). */
export function unetBlockPairs(
  u: Pick<UNetConfig, 'channelMult' | 'numResBlocks' | 'transformerDepth' | 'transformerDepthMiddle'>,
): BlockPair[] {
  const levels = u.channelMult.length,
    nres = u.numResBlocks;
  const attn = (level: number) => u.transformerDepth[level] > 0;
  const pairs: BlockPair[] = [
    { ldm: 'input_blocks.0.0', diffusers: 'conv_in', kind: 'plain' },
    { ldm: 'time_embed.0', diffusers: 'time_embedding.linear_1', kind: 'plain' },
    { ldm: 'time_embed.2', diffusers: 'time_embedding.linear_2', kind: 'plain' },
    { ldm: 'label_emb.0.0', diffusers: 'add_embedding.linear_1', kind: 'plain' },
    { ldm: 'label_emb.0.2', diffusers: 'add_embedding.linear_2', kind: 'plain' },
    { ldm: 'out.0', diffusers: 'conv_norm_out', kind: 'plain' },
    { ldm: 'out.2', diffusers: 'conv_out', kind: 'plain' },
  ];
  for (let level = 0; level < levels; level++) {
    for (let j = 0; j < nres; j++) {
      const ib = 1 + level * (nres + 1) + j;
      pairs.push({ ldm: `input_blocks.${ib}.0`, diffusers: `down_blocks.${level}.resnets.${j}`, kind: 'resnet' });
      if (attn(level))
        pairs.push({
          ldm: `input_blocks.${ib}.1`,
          diffusers: `down_blocks.${level}.attentions.${j}`,
          kind: 'attention',
        });
    }
    if (level < levels - 1) {
      pairs.push({
        ldm: `input_blocks.${(level + 1) * (nres + 1)}.0.op`,
        diffusers: `down_blocks.${level}.downsamplers.0.conv`,
        kind: 'plain',
      });
    }
  }
  const midAttn = u.transformerDepthMiddle > 0;
  pairs.push({ ldm: 'middle_block.0', diffusers: 'mid_block.resnets.0', kind: 'resnet' });
  if (midAttn) pairs.push({ ldm: 'middle_block.1', diffusers: 'mid_block.attentions.0', kind: 'attention' });
  pairs.push({ ldm: `middle_block.${midAttn ? 2 : 1}`, diffusers: 'mid_block.resnets.1', kind: 'resnet' });
  for (let i = 0; i < levels; i++) {
    const level = levels - 1 - i; // up block i runs at level L-1-i
    for (let j = 0; j <= nres; j++) {
      const ob = i * (nres + 1) + j;
      pairs.push({ ldm: `output_blocks.${ob}.0`, diffusers: `up_blocks.${i}.resnets.${j}`, kind: 'resnet' });
      if (attn(level))
        pairs.push({ ldm: `output_blocks.${ob}.1`, diffusers: `up_blocks.${i}.attentions.${j}`, kind: 'attention' });
    }
    if (i < levels - 1) {
      const ob = i * (nres + 1) + nres;
      pairs.push({
        ldm: `output_blocks.${ob}.${attn(level) ? 2 : 1}.conv`,
        diffusers: `up_blocks.${i}.upsamplers.0.conv`,
        kind: 'plain',
      });
    }
  }
  return pairs;
}

/** LDM module path (without prefix) -> diffusers module path, or null when it lies in no known block. */
export function ldmToDiffusers(module: string, pairs: BlockPair[]): string | null {
  for (const p of pairs) {
    if (module === p.ldm) return p.diffusers;
    if (!module.startsWith(`${p.ldm}.`)) continue;
    const rest = module.slice(p.ldm.length + 1);
    if (p.kind === 'attention' || p.kind === 'plain') return `${p.diffusers}.${rest}`;
    const part = RESNET_PARTS[rest];
    return part ? `${p.diffusers}.${part}` : null;
  }
  return null;
}

/** diffusers module path -> LDM module path (the inverse of ldmToDiffusers), or null when it lies in no known block. */
export function diffusersToLdm(module: string, pairs: BlockPair[]): string | null {
  for (const p of pairs) {
    if (module === p.diffusers) return p.ldm;
    if (!module.startsWith(`${p.diffusers}.`)) continue;
    const rest = module.slice(p.diffusers.length + 1);
    if (p.kind === 'attention' || p.kind === 'plain') return `${p.ldm}.${rest}`;
    const part = Object.entries(RESNET_PARTS).find(([, d]) => d === rest);
    return part ? `${p.ldm}.${part[0]}` : null;
  }
  return null;
}

const under = (s: string) => s.replace(/\./g, '_');

/** Patchable = a matrix or conv kernel (norm scales, biases and embeddings are not LoRA targets). */
function patchable(shape: readonly number[] | undefined): boolean {
  return !!shape && (shape.length === 2 || shape.length === 4);
}

/**
 * Alias -> target for every patchable weight of the checkpoint. `shapeOf` returns a key's shape, undefined when absent.
 */
export function loraKeyMap(
  config: ModelConfig,
  shapeOf: (key: string) => readonly number[] | undefined,
  keys: Iterable<string>,
): Map<string, LoraTarget> {
  const map = new Map<string, LoraTarget>();
  const add = (alias: string, t: LoraTarget) => {
    if (!map.has(alias)) map.set(alias, t);
  };
  const u = config.unet;
  const pairs = unetBlockPairs(u);
  for (const key of keys) {
    if (!key.startsWith(u.prefix) || !key.endsWith('.weight') || !patchable(shapeOf(key))) continue;
    const module = key.slice(u.prefix.length, -'.weight'.length);
    const t: LoraTarget = { component: 'unet', key };
    add(`lora_unet_${under(module)}`, t);
    add(`diffusion_model.${module}`, t);
    const d = ldmToDiffusers(module, pairs);
    if (d) {
      add(`lora_unet_${under(d)}`, t);
      add(`unet.${d}`, t);
      add(d, t);
    }
  }
  config.textEncoders.forEach((enc, i) => addTextEncoder(add, config, enc, i, shapeOf));
  return map;
}

function addTextEncoder(
  add: (a: string, t: LoraTarget) => void,
  config: ModelConfig,
  enc: TextEncoderConfig,
  index: number,
  shapeOf: (key: string) => readonly number[] | undefined,
): void {
  const component: Component = `text_encoder_${index}`;
  const kohya = config.textEncoders.length === 1 ? ['lora_te_'] : [`lora_te${index + 1}_`];
  const diffusers = index === 0 ? 'text_encoder.' : `text_encoder_${index + 1}.`;
  /** hf: module path inside text_model, e.g. 'encoder.layers.0.self_attn.q_proj' */
  const addAll = (hf: string, t: LoraTarget) => {
    for (const k of kohya) {
      add(`${k}${under(`text_model.${hf}`)}`, t);
      add(`${k}${under(hf)}`, t);
    }
    add(`${diffusers}text_model.${hf}`, t);
    add(`${diffusers}${hf}`, t);
  };
  for (let layer = 0; layer < enc.layers; layer++) {
    const hfLayer = `encoder.layers.${layer}`;
    if (enc.naming === 'hf') {
      for (const m of [
        'self_attn.q_proj',
        'self_attn.k_proj',
        'self_attn.v_proj',
        'self_attn.out_proj',
        'mlp.fc1',
        'mlp.fc2',
      ]) {
        const key = `${enc.prefix}${hfLayer}.${m}.weight`;
        if (patchable(shapeOf(key))) addAll(`${hfLayer}.${m}`, { component, key });
      }
      continue;
    }
    const block = `${enc.prefix}transformer.resblocks.${layer}.`;
    const inProj = `${block}attn.in_proj_weight`;
    if (patchable(shapeOf(inProj))) {
      ['q_proj', 'k_proj', 'v_proj'].forEach((m, j) =>
        addAll(`${hfLayer}.self_attn.${m}`, { component, key: inProj, rows: [j * enc.width, (j + 1) * enc.width] }),
      );
    }
    const named: [string, string][] = [
      ['self_attn.out_proj', 'attn.out_proj.weight'],
      ['mlp.fc1', 'mlp.c_fc.weight'],
      ['mlp.fc2', 'mlp.c_proj.weight'],
    ];
    for (const [hf, oc] of named)
      if (patchable(shapeOf(`${block}${oc}`))) addAll(`${hfLayer}.${hf}`, { component, key: `${block}${oc}` });
  }
}

/** The checkpoint keys any LoRA could patch in one component (what a LoRA-ready graph exposes as inputs). */
export function patchableKeys(map: Map<string, LoraTarget>, component: Component): string[] {
  const out = new Set<string>();
  for (const t of map.values()) if (t.component === component) out.add(t.key);
  return [...out];
}
