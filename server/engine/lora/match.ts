/**
 * Matches a LoRA's modules to checkpoint weights and says honestly what did not fit: keys that match nothing are
 * listed (ComfyUI's "lora key not loaded"), and a LoRA made for another model family (an SD1 LoRA on SDXL) or
 * with shapes that do not fit is an error naming both families.
 * Example:
 *   const m = matchLora(groupLoraKeys(keys), shapes, config, keyMap);
 *   m.matched.length; m.unmatched; // ['lora_unet_foo.lora_down.weight', ...]
 */
import type { ModelConfig, ModelFamily } from '../model/config.js';
import type { LoraTarget } from './key-map.js';

/** A LoRA module as seen from its header: name, file keys and tensor shapes. */
export interface ModuleHeader {
  name: string;
  keys: string[];
  down: readonly number[];
  up: readonly number[];
}

export interface LoraMatch {
  matched: { module: string; target: LoraTarget }[];
  /** file keys that patch nothing in this checkpoint */
  unmatched: string[];
}

export class LoraMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LoraMismatchError';
  }
}

/** Elements of the patched region: the whole weight, or its row slice. */
function targetNumel(t: LoraTarget, shape: readonly number[]): number {
  const perRow = shape.slice(1).reduce((a, b) => a * b, 1);
  return (t.rows ? t.rows[1] - t.rows[0] : shape[0]) * perRow;
}

/** What family a LoRA was trained for, from its names and cross-attention width; null when it cannot tell. */
function inferLoraFamily(modules: readonly ModuleHeader[]): {
  family: ModelFamily | null;
  contextWidth: number | null;
} {
  let family: ModelFamily | null = null,
    contextWidth: number | null = null;
  for (const m of modules) {
    if (/^lora_te[12]_|^text_encoder_2\.|label_emb|add_embedding/.test(m.name)) family = 'sdxl';
    else if (family === null && /^lora_te_/.test(m.name)) family = 'sd1';
    if (contextWidth === null && /attn2[._]to_[kv]$/.test(m.name)) contextWidth = m.down[1];
  }
  if (family === null && contextWidth === 768) family = 'sd1';
  if (family === null && contextWidth === 2048) family = 'sdxl';
  return { family, contextWidth };
}

/**
 * Pairs modules with targets. Throws LoraMismatchError when a matched module's shape does not fit its weight, or
 * when nothing matches at all, with the family the LoRA looks made for.
 */
export function matchLora(
  name: string,
  modules: readonly ModuleHeader[],
  unparsed: readonly string[],
  config: ModelConfig,
  keyMap: Map<string, LoraTarget>,
  shapeOf: (key: string) => readonly number[] | undefined,
): LoraMatch {
  const matched: LoraMatch['matched'] = [];
  const unmatched = [...unparsed];
  const misfits: string[] = [];
  for (const m of modules) {
    const target = keyMap.get(m.name);
    if (!target) {
      unmatched.push(...m.keys);
      continue;
    }
    const shape = shapeOf(target.key)!;
    const numel = m.up[0] * m.down.slice(1).reduce((a, b) => a * b, 1);
    const rowsWanted = target.rows ? target.rows[1] - target.rows[0] : shape[0];
    if (numel !== targetNumel(target, shape) || m.up[0] !== rowsWanted) {
      misfits.push(`${m.name}: up [${m.up}] x down [${m.down}] vs ${target.key} [${shape}]`);
      continue;
    }
    matched.push({ module: m.name, target });
  }
  if (misfits.length > 0 || (matched.length === 0 && modules.length > 0)) {
    const { family, contextWidth } = inferLoraFamily(modules);
    const ctx = config.unet.contextDim;
    const why =
      family && family !== config.family
        ? `it is a LoRA for ${family.toUpperCase()} models, not ${config.family.toUpperCase()}`
        : contextWidth !== null && contextWidth !== ctx
          ? `it was made for a model with cross-attention width ${contextWidth}, this ${config.family.toUpperCase()} checkpoint has ${ctx} (another model family)`
          : misfits.length > 0
            ? 'its layer shapes do not fit this checkpoint (another model family or size)'
            : 'none of its modules match this checkpoint';
    const detail = misfits.length > 0 ? ` First misfits: ${misfits.slice(0, 3).join('; ')}.` : '';
    throw new LoraMismatchError(
      `LoRA "${name}" does not fit this ${config.family.toUpperCase()} checkpoint: ${why}.${detail}`,
    );
  }
  return { matched, unmatched };
}
