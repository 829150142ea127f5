/**
 * A real-size preset's checkpoint layout (make-checkpoint's presets) as a WeightSource for graph-structure tests:
 * shapes and keys of the real model, without the gigabytes. `read` throws (the graph is inspected, not serialised)
 * or, with `zeros`, gives zeros (for builders that read a few tensors, e.g. GroupNorm's gamma and beta).
 * Example: const { config, weights } = presetWeights('sd15'); buildUNetGraph(config.unet, weights, opts).nodes
 */
import { checkpointKeys } from '../../server/engine/model/checkpoint-layout.js';
import type { WeightSource } from '../../server/engine/onnx/weights.js';
import { presetConfig, type PresetName } from '../../server/tools/make-checkpoint.js';

export function presetWeights(preset: PresetName, read: 'throw' | 'zeros' = 'throw') {
  const config = presetConfig(preset);
  const shapes = new Map(checkpointKeys(config).map((k) => [k.name, k.shape]));
  const shape = (n: string) => {
    const s = shapes.get(n);
    if (!s) throw new Error(`${preset}: no tensor ${n}`);
    return [...s];
  };
  const weights: WeightSource = {
    shape,
    has: (n) => shapes.has(n),
    read: (n) => {
      if (read === 'throw') throw new Error('structure only');
      return new Float32Array(shape(n).reduce((a, b) => a * b, 1));
    },
  };
  return { config, weights };
}
