/**
 * The weights a graph builder reads for one component of a checkpoint, with the LoRAs of its reference applied.
 * This is the seam where LoRA patching plugs in: builders only ever see a WeightSource, so patched weights need no
 * change in model code. Today it returns plain checkpoint reads and refuses a non-empty LoRA list.
 * Example: const w = weightSourceFor(SafetensorsFile.open(ckpt), 'unet', []); w.read('model.diffusion_model.out.2.weight')
 */
import type { SafetensorsFile } from './io/safetensors.js';
import { type WeightSource, safetensorsWeights } from './onnx/weights.js';
import type { Component } from './runtime/providers.js';
import type { LoraRef } from './runtime/protocol.js';

export function weightSourceFor(checkpoint: SafetensorsFile, component: Component, loras: readonly LoraRef[]): WeightSource {
  if (loras.length > 0) {
    throw new Error(`LoRA support not wired yet (asked to apply ${loras.map((l) => l.path).join(', ')} to the ${component})`);
  }
  return safetensorsWeights(checkpoint);
}
