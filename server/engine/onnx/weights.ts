/**
 * Where graph initializers come from. The engine backs it by a SafetensorsFile (and later wraps it to apply LoRA
 * patches); the serialiser calls read() once per initializer, one tensor at a time, while it writes the model.
 * Example: const w = safetensorsWeights(SafetensorsFile.open(path)); w.shape('first_stage_model.decoder.conv_in.weight')
 */
import type { SafetensorsFile } from '../io/safetensors.js';

export interface WeightSource {
  /** shape of a stored tensor; throws when absent */
  shape(name: string): number[];
  /** the tensor as float32, row-major */
  read(name: string): Float32Array;
  /** optional: whether the tensor exists (lets model code handle optional keys) */
  has?(name: string): boolean;
  /**
   * optional: a low-rank addition to the stored tensor `name`, W + up @ down, that the graph applies as a side
   * branch on the activations (x @ down^T @ up^T) instead of folding it into W. Lets a LoRA set reuse the base
   * weights unchanged (lora/session.ts, 'branch' mode).
   */
  lowRank?(name: string): LowRankDelta | undefined;
  /**
   * optional: the bytes of initializer `name` (a checkpoint key or a derived name such as `key:T`) already in the
   * graph's compute dtype, when the source computed them that way (a LoRA baked on the GPU); skips read + convert.
   */
  encoded?(name: string): Uint8Array | undefined;
  /** optional: initializer names whose values differ from those of a shared base weight file (WriteOptions.reuse) */
  changed?: ReadonlySet<string>;
}

/**
 * W + up @ down in the layouts of the stored weight: up [out, rank] (any scale already applied; rows a LoRA does not
 * touch are zero), down [rank, in] for a linear or [rank, in, kh, kw] for a conv.
 */
export interface LowRankDelta {
  up: Float32Array;
  down: Float32Array;
  rank: number;
}

/** A WeightSource that reads a safetensors file lazily. */
export function safetensorsWeights(file: SafetensorsFile): WeightSource {
  return {
    shape: (name) => [...file.info(name).shape],
    read: (name) => file.readFloat32(name),
    has: (name) => file.has(name),
  };
}

/** An in-memory WeightSource, for tests and hand-built graphs. */
export function memoryWeights(tensors: Record<string, { shape: number[]; data: Float32Array }>): WeightSource {
  const get = (name: string) => {
    const t = tensors[name];
    if (!t) throw new Error(`weight "${name}" not found`);
    return t;
  };
  return { shape: (n) => [...get(n).shape], read: (n) => get(n).data, has: (n) => n in tensors };
}
