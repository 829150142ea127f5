/**
 * Weight merges (ComfyUI's ModelMergeSimple / Add / Subtract for the UNet, CLIPMergeSimple for text encoders): a
 * WeightSource over the base checkpoint whose component tensors are combined, key by key and in order, with the same tensors of other checkpoints of the same
 * family and shapes (ComfyUI's add_patches: w * strength_model + strength_patch * other).
 * Example:
 *   const w = mergedWeights(base, [config.unet.prefix], [{ file: other, ref: { path, kind: 'simple', ratio: 0.5 } }]);
 */
import type { SafetensorsFile } from '../io/safetensors.js';
import { safetensorsWeights, type WeightSource } from '../onnx/weights.js';
import type { MergeRef } from '../types.js';

const f = Math.fround;

/** strength_model and strength_patch of one merge kind */
function strengths(m: MergeRef): [number, number] {
  if (m.kind === 'simple') return [m.ratio, 1 - m.ratio];
  if (m.kind === 'add') return [1, 1];
  return [m.ratio, -m.ratio];
}

/**
 * The base checkpoint's weights with every tensor under `prefixes` merged (CLIPMergeSimple skips position_ids and
 * logit_scale, as ComfyUI).
 */
export function mergedWeights(
  base: SafetensorsFile,
  prefixes: readonly string[],
  merges: readonly { file: SafetensorsFile; ref: MergeRef }[],
): WeightSource {
  const src = safetensorsWeights(base);
  return {
    ...src,
    read: (name) => {
      const w = src.read(name);
      if (!prefixes.some((p) => name.startsWith(p)) || name.endsWith('.position_ids') || name.endsWith('.logit_scale'))
        return w;
      for (const { file, ref } of merges) {
        if (!file.has(name)) continue; // ComfyUI patches only the keys both models have
        const other = file.readFloat32(name);
        if (other.length !== w.length)
          throw new Error(`merging ${ref.path}: ${name} has ${other.length} values, the model ${w.length}`);
        const [sm, sp] = strengths(ref);
        for (let i = 0; i < w.length; i++) w[i] = f(f(w[i] * sm) + f(other[i] * sp));
      }
      return w;
    },
  };
}
