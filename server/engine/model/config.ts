/**
 * Typed model configuration, derived from a checkpoint's keys and shapes by detect.ts (never hard-coded per size).
 * Model code (clip.ts, unet.ts, vae.ts) reads only these fields: blocks never ask "is this SDXL?".
 * Upstream references: ldm/sgm `UNetModel`, HF `CLIPTextConfig`, open_clip `TextTransformer`, ldm `AutoencoderKL`.
 */

export type ModelFamily = 'sd1' | 'sdxl';

export interface TextEncoderConfig {
  /** key prefix inside the checkpoint, e.g. 'cond_stage_model.transformer.text_model.' */
  prefix: string;
  /** 'hf' = transformers CLIPTextModel names (q_proj/k_proj/...); 'openclip' = fused in_proj, mlp.c_fc, ln_final */
  naming: 'hf' | 'openclip';
  width: number;
  layers: number;
  heads: number; // width / 64 (CLIP rule: 64 channels per head)
  intermediate: number;
  vocab: number;
  maxPositions: number; // 77
  activation: 'quick_gelu' | 'gelu';
  /** output width of text_projection (OpenCLIP-G pooled output); null when the encoder has no projection used */
  projectionDim: number | null;
  /** token used to pad the 77-token window: EOS (49407) for CLIP-L, 0 for OpenCLIP-G */
  padToken: number;
  layerNormEps: number; // 1e-5
}

export interface UNetConfig {
  prefix: string; // 'model.diffusion_model.'
  inChannels: number;
  outChannels: number;
  modelChannels: number;
  /** channels of each level = modelChannels * channelMult[level] */
  channelMult: number[];
  numResBlocks: number;
  /** transformer blocks per attention layer at each level (0 = no attention at that level) */
  transformerDepth: number[];
  transformerDepthMiddle: number;
  contextDim: number;
  /** SD1 rule: fixed head count (8). SDXL rule: fixed channels per head (64). Exactly one is set. */
  numHeads: number | null;
  headChannels: number | null;
  /** SDXL uses Linear proj_in/proj_out; SD1 uses 1x1 Conv */
  linearProjection: boolean;
  timeEmbedDim: number; // modelChannels * 4
  /** SDXL ADM conditioning: label_emb input width = pooled + 6 * timeIdChannels; null for SD1 */
  adm: { inChannels: number; pooledChannels: number; timeIdChannels: number } | null;
  normGroups: number; // 32
}

/**
 * Channels the UNet reads beyond the latent: an inpainting UNet (sd-v1-5-inpainting, SDXL inpainting; 9 input
 * channels) takes the denoise mask (1) and the masked image's latent (4) after the noisy latent. 0 for plain models.
 * ComfyUI treats any in_channels above 4 this way (concat keys "mask", "masked_image").
 */
export function concatChannels(unet: Pick<UNetConfig, 'inChannels' | 'outChannels'>): number {
  return Math.max(0, unet.inChannels - unet.outChannels);
}

export interface VaeConfig {
  encoderPrefix: string; // 'first_stage_model.encoder.'
  decoderPrefix: string; // 'first_stage_model.decoder.'
  /** quant_conv / post_quant_conv prefix, 'first_stage_model.' */
  prefix: string;
  latentChannels: number; // 4
  baseChannels: number;
  channelMult: number[];
  numResBlocks: number;
  scalingFactor: number; // SD1 0.18215, SDXL 0.13025
  normGroups: number;
}

export interface ModelConfig {
  family: ModelFamily;
  /** text encoders in the order their hidden states are concatenated (SDXL: [CLIP-L, OpenCLIP-G]) */
  textEncoders: TextEncoderConfig[];
  unet: UNetConfig;
  vae: VaeConfig;
  /** SD1: context = last hidden state (final norm); SDXL: penultimate of each encoder, no final norm */
  defaultClipSkip: number; // layers from the end: SD1 -1 (last), SDXL -2
  predictionType: 'epsilon' | 'v_prediction';
}
