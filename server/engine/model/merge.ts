/**
 * Weight merges (ComfyUI's ModelMergeSimple / Add / Subtract for the UNet, CLIPMergeSimple for text encoders): a
 * WeightSource over the base checkpoint whose component tensors are combined, key by key and in order, with the same
 * tensors of other checkpoints of the same family and shapes (ComfyUI's add_patches: w * strength_model +
 * strength_patch * other). LoRAs and merges on one model apply in the order the nodes added them, as ComfyUI's
 * patch list does: a LoRA before a merge is scaled by the merge ratio, a LoRA after it is not.
 * Example:
 *   const merges = [{ file: other, ref: { path, kind: 'simple', ratio: 0.5 } }];
 *   const w = patchedWeights(base, config, 'unet', loras, merges);
 */
import type { SafetensorsFile } from '../io/safetensors.js';
import { safetensorsWeights, type WeightSource } from '../onnx/weights.js';
import { applyTerms, planLoras, type PatchTerm } from '../lora/patch.js';
import type { Component, LoraRef, MergeRef } from '../types.js';
import type { ModelConfig } from './config.js';
import { componentPrefixes } from '../runtime/estimate.js';

const f = Math.fround;

export interface MergeInput {
  file: SafetensorsFile;
  ref: MergeRef;
}

/** strength_model and strength_patch of one merge kind */
function strengths(m: MergeRef): [number, number] {
  if (m.kind === 'simple') return [m.ratio, 1 - m.ratio];
  if (m.kind === 'add') return [1, 1];
  return [m.ratio, -m.ratio];
}

/** w merged in place with one other checkpoint's tensor (keys only the base has are left alone, as ComfyUI). */
function mergeInto(w: Float32Array, name: string, { file, ref }: MergeInput): void {
  if (!file.has(name)) return;
  const other = file.readFloat32(name);
  if (other.length !== w.length)
    throw new Error(`merging ${ref.path}: ${name} has ${other.length} values, the model ${w.length}`);
  const [sm, sp] = strengths(ref);
  for (let i = 0; i < w.length; i++) w[i] = f(f(w[i] * sm) + f(other[i] * sp));
}

/** position ids and CLIP's logit scale are never merged (CLIPMergeSimple skips them) */
const mergeable = (prefixes: readonly string[], name: string) =>
  prefixes.some((p) => name.startsWith(p)) && !name.endsWith('.position_ids') && !name.endsWith('.logit_scale');

type Step = { lora: Map<string, PatchTerm[]> } | { merge: MergeInput };

/**
 * One component's weights with LoRAs and merges applied in the order they were added: LoRAs [0, afterLoras) of the
 * first merge, then that merge, and so on; LoRAs after the last merge come last.
 */
export function patchedWeights(
  base: SafetensorsFile,
  config: ModelConfig,
  component: Component,
  loras: readonly LoraRef[],
  merges: readonly MergeInput[],
): WeightSource {
  const src = safetensorsWeights(base);
  const steps: Step[] = [];
  let done = 0;
  const loraStep = (upto: number) => {
    const group = loras.slice(done, upto).filter((l) => l.strength !== 0);
    done = Math.max(done, upto);
    if (group.length) steps.push({ lora: planLoras(base, config, group, component).plan });
  };
  for (const m of merges) {
    loraStep(Math.min(m.ref.afterLoras ?? 0, loras.length));
    steps.push({ merge: m });
  }
  loraStep(loras.length);
  const prefixes = componentPrefixes(config, component);
  return {
    ...src,
    read: (name) => {
      let w = src.read(name);
      for (const s of steps) {
        if ('merge' in s) {
          if (mergeable(prefixes, name)) mergeInto(w, name, s.merge);
        } else {
          const terms = s.lora.get(name);
          if (terms) w = applyTerms(terms, w, src.shape(name));
        }
      }
      return w;
    },
  };
}
