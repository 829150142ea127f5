/**
 * What a LoRA will do to a checkpoint, from the two file headers only (no tensor data read): how many modules patch
 * the UNet and the text encoders, and which file keys patch nothing (ComfyUI's "lora key not loaded"). A LoRA of
 * another family throws LoraMismatchError. Used by the LoRA loader nodes for their log and UI output.
 * Example:
 *   const r = inspectLora('/models/sdxl.safetensors', config, '/models/loras/tcd.safetensors');
 *   r.unet; r.textEncoders; r.unmatched; // 722, 0, []
 */
import { basename } from 'node:path';
import type { ModelConfig } from '../config.js';
import { SafetensorsFile } from '../io/safetensors.js';
import { fileIdentity } from '../runtime/graph-cache.js';
import { groupLoraKeys } from './format.js';
import { loraKeyMap } from './key-map.js';
import { type ModuleHeader, matchLora } from './match.js';

export interface LoraReport {
  lora: string;
  /** modules patching the UNet / any text encoder */
  unet: number;
  textEncoders: number;
  /** file keys that patch nothing in this checkpoint */
  unmatched: string[];
}

const memo = new Map<string, LoraReport>();

export function inspectLora(checkpointPath: string, config: ModelConfig, loraPath: string): LoraReport {
  const id = JSON.stringify([fileIdentity(checkpointPath), fileIdentity(loraPath)]);
  const hit = memo.get(id);
  if (hit) return hit;
  const ckpt = SafetensorsFile.open(checkpointPath);
  const lora = SafetensorsFile.open(loraPath);
  try {
    const { groups, loose } = groupLoraKeys(lora.keys());
    const modules: ModuleHeader[] = [];
    const unparsed = [...loose];
    for (const [name, g] of groups) {
      if (!g.down || !g.up) { unparsed.push(...[g.down, g.up, g.alpha].filter((k): k is string => !!k)); continue; }
      modules.push({ name, keys: [g.down, g.up, ...(g.alpha ? [g.alpha] : [])], down: lora.info(g.down).shape, up: lora.info(g.up).shape });
    }
    const shapeOf = (k: string) => (ckpt.has(k) ? ckpt.info(k).shape : undefined);
    const map = loraKeyMap(config, shapeOf, ckpt.keys());
    const m = matchLora(basename(loraPath), modules, unparsed, config, map, shapeOf);
    const unet = m.matched.filter((x) => x.target.component === 'unet').length;
    const report = { lora: basename(loraPath), unet, textEncoders: m.matched.length - unet, unmatched: m.unmatched };
    memo.set(id, report);
    return report;
  } finally {
    ckpt.close();
    lora.close();
  }
}
