/**
 * The weights a graph builder reads for one component of a checkpoint, with the LoRAs of its reference applied.
 * This is the seam where LoRA patching plugs in: builders only ever see a WeightSource, so patched weights need no
 * change in model code. Patched tensors are fresh arrays computed from the checkpoint's tensors (never written back),
 * so the same file serves LoRA-free graphs unchanged.
 * A LoRA made for another family throws LoraMismatchError; keys that match nothing are counted in `report`.
 * The engine's sessions do not rebuild graphs per LoRA set (lora/session.ts feeds patched weights instead); this
 * merged source is the reference those feeds are tested against, and what a one-off export would use.
 * Example:
 *   const w = weightSourceFor(SafetensorsFile.open(ckpt), 'unet', [{ path: lora, strength: 0.8 }]);
 *   w.read('model.diffusion_model.input_blocks.1.1.proj_in.weight'); // W + 0.8 * (alpha/rank) * up @ down
 */
import type { ModelConfig } from './config.js';
import { detectCheckpoint } from './detect.js';
import type { SafetensorsFile } from '../io/safetensors.js';
import { applyTerms, planLoras } from '../lora/patch.js';
import { type WeightSource, safetensorsWeights } from '../onnx/weights.js';
import type { Component, LoraRef } from '../types.js';

export interface PatchedWeightSource extends WeightSource {
  /** checkpoint keys this source patches */
  patchedKeys: string[];
  /** per LoRA path: file keys that patch nothing in this checkpoint */
  unmatched: Map<string, string[]>;
}

const configs = new WeakMap<SafetensorsFile, ModelConfig>();
/** The checkpoint's detected config, memoised per open file. */
function configOf(file: SafetensorsFile): ModelConfig {
  let c = configs.get(file);
  if (!c) {
    c = detectCheckpoint(file);
    configs.set(file, c);
  }
  return c;
}

export function weightSourceFor(
  checkpoint: SafetensorsFile,
  component: Component,
  loras: readonly LoraRef[],
): PatchedWeightSource {
  const base = safetensorsWeights(checkpoint);
  const active = loras.filter((l) => l.strength !== 0);
  if (active.length === 0) return { ...base, patchedKeys: [], unmatched: new Map() };
  const { plan, unmatched } = planLoras(checkpoint, configOf(checkpoint), active, component);
  return {
    ...base,
    read: (name) => {
      const terms = plan.get(name);
      return terms ? applyTerms(terms, base.read(name), base.shape(name)) : base.read(name);
    },
    patchedKeys: [...plan.keys()],
    unmatched,
  };
}
