/**
 * The engine's shared vocabulary: names every layer (onnx builder, model code, LoRA, runtime) speaks. It imports
 * nothing, so any engine file may import it.
 */

/** One network the engine builds from a checkpoint. Text encoders are numbered in concatenation order. */
export type Component = 'unet' | 'vae_decoder' | 'vae_encoder' | `text_encoder_${number}`;

/** The float type a graph computes in. */
export type ComputeDtype = 'float32' | 'float16';

export interface LoraRef { path: string; strength: number }

/** A diffusion model: a checkpoint (absolute path) plus the LoRAs patched into its UNet. */
export interface ModelRef { checkpoint: string; loras: LoraRef[] }
