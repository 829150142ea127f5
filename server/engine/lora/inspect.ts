/**
 * What a LoRA will do to a checkpoint, from the two file headers only (no tensor data read): how many modules patch
 * the UNet and the text encoders, and which file keys patch nothing (ComfyUI's "lora key not loaded"). A LoRA of
 * another family throws LoraMismatchError. Text-encoder modules whose weight the encoding at `clipSkip` never reads
 * (an SDXL CLIP-L last layer, an SD1 last layer behind clip skip -2) count as unmatched. Used by the LoRA loader nodes
 * for their log and UI output.
 * Example:
 *   const r = inspectLora('/models/sdxl.safetensors', config, '/models/loras/tcd.safetensors');
 *   r.unet; r.textEncoders; r.unmatched; // 722, 0, []
 */
import { basename } from 'node:path';
import type { ModelConfig } from '../model/config.js';
import { SafetensorsFile } from '../io/safetensors.js';
import { fileIdentity } from '../runtime/graph-cache.js';
import { groupLoraKeys } from './format.js';
import { type LoraTarget, loraKeyMap } from './key-map.js';
import { encoderGraphOptions, textEncoderReadsKey } from '../model/clip.js';
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

export function inspectLora(
  checkpointPath: string,
  config: ModelConfig,
  loraPath: string,
  clipSkip = config.defaultClipSkip,
): LoraReport {
  const id = JSON.stringify([fileIdentity(checkpointPath), fileIdentity(loraPath), clipSkip]);
  const hit = memo.get(id);
  if (hit) return hit;
  const ckpt = SafetensorsFile.open(checkpointPath);
  const lora = SafetensorsFile.open(loraPath);
  try {
    const { groups, loose } = groupLoraKeys(lora.keys());
    const modules: ModuleHeader[] = [];
    const unparsed = [...loose];
    for (const [name, g] of groups) {
      if (!g.down || !g.up) {
        unparsed.push(...[g.down, g.up, g.alpha].filter((k): k is string => !!k));
        continue;
      }
      modules.push({
        name,
        keys: [g.down, g.up, ...(g.alpha ? [g.alpha] : [])],
        down: lora.info(g.down).shape,
        up: lora.info(g.up).shape,
      });
    }
    const shapeOf = (k: string) => (ckpt.has(k) ? ckpt.info(k).shape : undefined);
    const map = loraKeyMap(config, shapeOf, ckpt.keys());
    const m = matchLora(basename(loraPath), modules, unparsed, config, map, shapeOf);
    // text-encoder weights the encoding at this clip skip never reads (ComfyUI skips those patches silently)
    const reads = config.textEncoders.map(
      (enc, i) => (key: string) => textEncoderReadsKey(enc, encoderGraphOptions(config, i, clipSkip), key),
    );
    const unread = (t: LoraTarget) =>
      t.component !== 'unet' && !reads[Number(t.component.slice('text_encoder_'.length))](t.key);
    const unmatched = [...m.unmatched];
    for (const x of m.matched) if (unread(x.target)) unmatched.push(...modules.find((h) => h.name === x.module)!.keys);
    const used = m.matched.filter((x) => !unread(x.target));
    const unet = used.filter((x) => x.target.component === 'unet').length;
    const report = { lora: basename(loraPath), unet, textEncoders: used.length - unet, unmatched };
    memo.set(id, report);
    return report;
  } finally {
    ckpt.close();
    lora.close();
  }
}
