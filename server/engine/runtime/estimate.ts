/**
 * Size of a component before anything is loaded: the parameter count read from the checkpoint header (shapes only,
 * no tensor data) times the bytes of the dtype it will run in. Activations are not counted; the budget is for
 * resident weights, which is what stays in memory between calls.
 * Example: componentBytes(file, config, 'unet', 'float16') // 2 x UNet parameter count
 */
import type { SafetensorsFile } from '../io/safetensors.js';
import type { ModelConfig, UNetConfig, VaeConfig } from '../model/config.js';
import type { Component, ComputeDtype } from '../types.js';

/** Checkpoint key prefixes whose tensors make up a component. */
export function componentPrefixes(config: ModelConfig, component: Component): string[] {
  // a ControlNet is about the UNet's encoder half: the UNet's count is a safe upper bound
  if (component === 'unet' || component === 'controlnet') return [config.unet.prefix];
  if (component === 'vae_decoder') return [config.vae.decoderPrefix, `${config.vae.prefix}post_quant_conv.`];
  if (component === 'vae_encoder') return [config.vae.encoderPrefix, `${config.vae.prefix}quant_conv.`];
  const index = Number(component.slice('text_encoder_'.length));
  const enc = config.textEncoders[index];
  if (!enc) throw new Error(`${config.family} checkpoint has no text encoder ${index}`);
  return [enc.prefix];
}

export function parameterCount(file: SafetensorsFile, prefixes: readonly string[]): number {
  let n = 0;
  for (const info of file.tensors.values()) {
    if (prefixes.some((p) => info.name.startsWith(p))) n += info.shape.reduce((a, b) => a * b, 1);
  }
  return n;
}

function dtypeBytes(dtype: ComputeDtype): number {
  return dtype === 'float16' ? 2 : 4;
}

export function componentBytes(
  file: SafetensorsFile,
  config: ModelConfig,
  component: Component,
  dtype: ComputeDtype,
): number {
  const n = parameterCount(file, componentPrefixes(config, component));
  if (n === 0)
    throw new Error(
      `${file.path} has no weights for the ${component} (looked under ${componentPrefixes(config, component).join(', ')})`,
    );
  return n * dtypeBytes(dtype);
}

/**
 * Memory admission: the peak working memory (activations, not weights) of one UNet evaluation or one VAE decode /
 * encode, from the architecture, the latent size, the batch and the compute dtype. The graphs compute attention as
 * plain matmul + softmax, so the score matrix (heads x tokens^2) dominates at large sizes: a 2048x2048 image is
 * 65,536 latent tokens, and the VAE's single-head mid-block attention alone is 16 GiB in fp32. The model is
 * deliberately simple (each term documented below) and errs on the large side; it exists to refuse what cannot
 * fit with a useful message, before anything is allocated.
 */
export type AdmissionOp = 'unet' | 'vae_decode' | 'vae_encode';

export interface AdmissionRequest {
  op: AdmissionOp;
  /** latent height and width (image size / 8) */
  latentH: number;
  latentW: number;
  /** images evaluated together (UNet: batch x 2 with a negative prompt; VAE: images decode one at a time, so 1) */
  batch: number;
  dtypeBytes: number;
}

/** A score matrix and its softmax live together: 2 x heads x tokens^2 elements. */
const attentionBytes = (tokens: number, heads: number, d: number) => 2 * heads * tokens * tokens * d;
/** A conv block holds its input, the normalised copy, the activation and its output: 4 feature maps. */
const convBytes = (channels: number, pixels: number, d: number) => 4 * channels * pixels * d;

function unetPeak(u: UNetConfig, h: number, w: number, batch: number, d: number): number {
  let peak = 0,
    skips = 0;
  const levels = u.channelMult.length;
  for (let i = 0; i < levels; i++) {
    const ch = u.modelChannels * u.channelMult[i];
    const px = Math.ceil(h / 2 ** i) * Math.ceil(w / 2 ** i);
    const heads = u.numHeads ?? Math.max(1, Math.floor(ch / (u.headChannels ?? 64)));
    const depth = u.transformerDepth[i] ?? 0;
    const attn = depth > 0 ? attentionBytes(px, heads, d) : 0;
    // the deepest level also runs the middle block's transformer
    const mid = i === levels - 1 && u.transformerDepthMiddle > 0 ? attentionBytes(px, heads, d) : 0;
    peak = Math.max(peak, convBytes(ch, px, d) + Math.max(attn, mid));
    skips += (u.numResBlocks + 1) * ch * px * d; // skip connections kept for the up path
  }
  return batch * (peak + skips);
}

function vaePeak(v: VaeConfig, h: number, w: number, batch: number, d: number): number {
  const deepest = v.baseChannels * v.channelMult[v.channelMult.length - 1];
  // mid block: one attention head over every latent position
  let peak = convBytes(deepest, h * w, d) + attentionBytes(h * w, 1, d);
  for (let i = 0; i < v.channelMult.length; i++) {
    const scale = 2 ** (v.channelMult.length - 1 - i); // level i runs at latent size x scale (level 0: full image)
    peak = Math.max(peak, convBytes(v.baseChannels * v.channelMult[i], h * scale * w * scale, d));
  }
  return batch * peak;
}

export function activationBytes(config: ModelConfig, r: AdmissionRequest): number {
  if (r.op === 'unet') return unetPeak(config.unet, r.latentH, r.latentW, r.batch, r.dtypeBytes);
  return vaePeak(config.vae, r.latentH, r.latentW, r.batch, r.dtypeBytes);
}

export class MemoryAdmissionError extends Error {
  constructor(
    message: string,
    readonly needBytes: number,
    readonly budgetBytes: number,
    readonly largest: { width: number; height: number } | null,
  ) {
    super(message);
    this.name = 'MemoryAdmissionError';
  }
}

const GiB = 1024 ** 3;
const WHAT: Record<AdmissionOp, string> = {
  unet: 'the UNet',
  vae_decode: 'the VAE decode',
  vae_encode: 'the VAE encode',
};

/**
 * The largest image (multiple of 64 px) of the same aspect ratio whose activations fit `budget`, or null when even
 * 64 px does not; found by bisection on the scale.
 */
export function largestFitting(
  config: ModelConfig,
  r: AdmissionRequest,
  budget: number,
): { width: number; height: number } | null {
  const side = (latent: number, s: number) => Math.max(8, Math.floor((latent * s) / 8) * 8);
  const size = (s: number) => ({ lh: side(r.latentH, s), lw: side(r.latentW, s) });
  const fits = (s: number) => {
    const { lh, lw } = size(s);
    return activationBytes(config, { ...r, latentH: lh, latentW: lw }) <= budget;
  };
  if (!fits(8 / Math.max(r.latentH, r.latentW))) return null;
  let lo = 0,
    hi = 1;
  for (let i = 0; i < 40; i++) {
    const mid = (lo + hi) / 2;
    if (fits(mid)) lo = mid;
    else hi = mid;
  }
  const { lh, lw } = size(lo);
  return { width: lw * 8, height: lh * 8 };
}

/** Throws MemoryAdmissionError when `r` cannot fit `budget` bytes, naming the need, the budget and what would fit. */
export function admit(config: ModelConfig, r: AdmissionRequest, budget: number, where: string): void {
  if (!Number.isFinite(budget)) return;
  const need = activationBytes(config, r);
  if (need <= budget) return;
  const largest = largestFitting(config, r, budget);
  const size = `${r.latentW * 8}x${r.latentH * 8}`;
  const batch = r.batch > 1 ? ` (batch ${r.batch})` : '';
  const fit = largest
    ? `the largest size that fits is ${largest.width}x${largest.height}${batch}`
    : 'nothing of this shape fits';
  const tiled = r.op === 'vae_decode' ? ' (VAEDecodeTiled decodes large images in tiles)' : '';
  throw new MemoryAdmissionError(
    `${size} needs about ${(need / GiB).toFixed(1)} GiB of working memory in ${WHAT[r.op]} but ${where} allows ` +
      `${(budget / GiB).toFixed(1)} GiB; ${fit}${tiled}`,
    need,
    budget,
    largest,
  );
}
