/**
 * The values that flow between diffusion nodes. MODEL/CLIP/VAE are serializable descriptors (checkpoint path,
 * LoRA list, clip skip) plus the detected config: nodes never hold weights, the engine does.
 */
import type { ModelConfig, ModelFamily } from '../server/engine/model/config.js';
import type { ClipRef, ModelRef, UpscaleModelRef, VaeRef } from '../server/engine/engine.js';
import type { Tensor } from '../server/engine/tensor.js';
import type { SamplingSpec } from '../server/engine/sampling/model-sampling-variants.js';

/**
 * sampling: ModelSamplingDiscrete / TCDModelSamplingDiscrete's patch (prediction type, zsnr, distilled 50-step
 * table); absent = the checkpoint's own (eps or v_prediction, plain table). rescaleCfg: RescaleCFG's multiplier.
 */
export interface ModelValue {
  ref: ModelRef;
  config: ModelConfig;
  sampling?: SamplingSpec;
  rescaleCfg?: number;
}
export interface ClipValue {
  ref: ClipRef;
  config: ModelConfig;
}
/** config: the checkpoint's (or VAE file's) detected config; absent for TAESD (VAELoader's taesd / taesdxl). */
export interface VaeValue {
  ref: VaeRef;
  config?: ModelConfig;
}
/** UPSCALE_MODEL: an ESRGAN-family file (the engine loads it) and its scale. */
export interface UpscaleModelValue {
  ref: UpscaleModelRef;
  scale: number;
}

/** One conditioning entry: context [1, S, C], pooled [1, P] (SDXL) and optional SDXL size hints in pixels. */
export interface CondEntry {
  context: Tensor;
  pooled: Tensor | null;
  width?: number;
  height?: number;
  cropW?: number;
  cropH?: number;
  targetWidth?: number;
  targetHeight?: number;
  /**
   * ConditioningSetArea(Percentage): where this entry applies, in latent cells (height, width, y, x) or as fractions
   * of the latent; strength scales its prediction (default 1).
   */
  area?: { unit: 'cells' | 'fraction'; h: number; w: number; y: number; x: number };
  strength?: number;
  /** ConditioningSetMask: a mask [B, H, W] (any size; resized to the latent) weighting where this entry applies */
  mask?: Tensor;
  maskStrength?: number;
  /** set_cond_area "mask bounds": the area becomes the mask's bounding box */
  setAreaToBounds?: boolean;
  /** ControlNets applied to this entry, earliest first (ComfyUI's previous_controlnet chain) */
  control?: ControlApplied[];
  /** ControlNetApply (the old node): the negative side takes this entry's ControlNets when it has none */
  controlApplyToUncond?: boolean;
  /**
   * InpaintModelConditioning: what an inpainting UNet gets beside the latent (ComfyUI's concat_latent_image and
   * concat_mask): the masked image's latent (VAE space, [B, 4, h, w]) and the mask in pixels ([B, 1, H, W]).
   */
  concatLatent?: Tensor;
  concatMask?: Tensor;
}
export type Conditioning = CondEntry[];

/**
 * CONTROL_NET: a ControlNet file (headers read, family known) and, from DiffControlNetLoader, the checkpoint whose
 * UNet weights its differences are added to.
 */
export interface ControlNetValue {
  path: string;
  name: string;
  family: ModelFamily;
  hintChannels: number;
  diffBase?: ModelRef;
}

/** One ControlNetApply(Advanced) on a conditioning entry: what the sampler's worker loop runs per step. */
export interface ControlApplied {
  net: ControlNetValue;
  /** IMAGE [B, H, W, C] */
  hint: Tensor;
  strength: number;
  startPercent: number;
  endPercent: number;
}

/**
 * LATENT: samples in VAE space (the decoder's input), [B, 4, H/8, W/8]; noise_mask [B or 1, 1, h, w] (any size) says
 * where a sampler may change the latent (1) and where it keeps it (0); batch_index: which seeds' noise each item
 * takes (LatentFromBatch and friends).
 */
export interface LatentValue {
  samples: Tensor;
  noise_mask?: Tensor;
  batch_index?: number[];
}

/** SIGMAS for SamplerCustom: a plain schedule. SAMPLER: a name plus options. */
export interface SamplerValue {
  name: string;
  eta?: number;
}
export type SigmasValue = number[];
