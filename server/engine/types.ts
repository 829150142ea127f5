/**
 * The engine's shared vocabulary: names every layer (onnx builder, model code, LoRA, runtime) speaks. It imports
 * nothing, so any engine file may import it.
 */

/** One network the engine builds from a checkpoint. Text encoders are numbered in concatenation order. */
/** 'controlnet': a ControlNet file's graph, keyed under the checkpoint it controls (runtime/controlnet-session.ts) */
export type Component = 'unet' | 'controlnet' | 'vae_decoder' | 'vae_encoder' | `text_encoder_${number}`;

/** The float type a graph computes in. */
export type ComputeDtype = 'float32' | 'float16';

export interface LoraRef {
  path: string;
  strength: number;
}

/**
 * A UNet weight merge with another checkpoint (ComfyUI's ModelMerge* nodes), applied in order:
 * simple: w * ratio + other * (1 - ratio); add: w + other; subtract: (w - other) * ratio.
 */
export interface MergeRef {
  path: string;
  kind: 'simple' | 'add' | 'subtract';
  ratio: number;
  /** how many of the model's LoRAs were applied before this merge (ComfyUI applies patches in the order added) */
  afterLoras?: number;
}

/** A diffusion model: a checkpoint (absolute path) plus the LoRAs patched into its UNet (or weight merges). */
export interface ModelRef {
  checkpoint: string;
  loras: LoraRef[];
  merges?: MergeRef[];
  /** HypernetworkLoader: .safetensors hypernetworks on the attentions, applied in order */
  hypernetworks?: HypernetworkRef[];
}

export interface HypernetworkRef {
  path: string;
  strength: number;
}
