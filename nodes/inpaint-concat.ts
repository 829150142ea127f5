/**
 * The extra UNet input of 9-channel inpainting models (ComfyUI's BaseModel.concat_cond with the concat keys "mask"
 * and "masked_image"), computed once per conditioning entry before sampling:
 *  - mask: the entry's concat_mask (InpaintModelConditioning), else the latent's denoise mask (first channel), each
 *    resized to the latent (bilinear, centre crop to the latent's aspect) and rounded;
 *  - masked image: the entry's concat_latent_image times the VAE scale, else the latent being sampled (model space),
 *    resized the same way; both taken to the latent's batch as ComfyUI's resize_to_batch_size does;
 *  - with no mask at all: a mask of ones and the latent of a black image (ComfyUI's fixed per-channel values).
 * Plain 4-channel models get nothing: ComfyUI ignores the concat for them.
 * Example: const c = inpaintConcat(entry, [1, 4, 64, 64], 0.18215, { latent, denoiseMask }); // [1, 5, 64, 64]
 */
import { interpolate, roundHalfEven } from '../server/engine/ops/resize.js';
import type { Tensor } from '../server/engine/tensor.js';
import type { CondEntry } from './types.js';

/** What the sampler supplies: its latent (model space) and its prepared denoise mask [B, C, h, w], if any. */
export interface ConcatSource {
  latent: Float32Array;
  denoiseMask?: Float32Array;
}

/** ComfyUI's latent of an all-black picture, per channel (blank_inpaint_image_like) */
const BLANK_LATENT = [0.8223, -0.6876, 0.6364, 0.138];

/** The channels an inpainting UNet expects beyond the latent: mask (1) + masked image latent (latent channels). */
export const concatWidth = (latentChannels: number) => 1 + latentChannels;

/** resize_to_batch_size: item i of the result is item round(i * s) (shrinking) or floor((i + 0.5) * s) (growing). */
export function resizeToBatch(t: Tensor, batch: number): Tensor {
  const n = t.shape[0];
  if (n === batch) return t;
  const per = t.data.length / n;
  const out = new Float32Array(per * batch);
  for (let i = 0; i < batch; i++) {
    const src =
      batch <= 1
        ? 0
        : batch < n
          ? Math.min(roundHalfEven((i * (n - 1)) / (batch - 1)), n - 1)
          : Math.min(Math.floor((i + 0.5) * (n / batch)), n - 1);
    out.set(t.data.subarray(src * per, (src + 1) * per), i * per);
  }
  return { shape: [batch, ...t.shape.slice(1)], data: out };
}

/** common_upscale(..., 'bilinear', 'center'): crop to the target's aspect ratio (centred), then bilinear. */
export function upscaleCentre(t: Tensor, h: number, w: number): Tensor {
  const [n, c, oh, ow] = t.shape;
  const oldAspect = ow / oh,
    newAspect = w / h;
  let x = 0,
    y = 0;
  if (oldAspect > newAspect) x = roundHalfEven((ow - ow * (newAspect / oldAspect)) / 2);
  else if (oldAspect < newAspect) y = roundHalfEven((oh - oh * (oldAspect / newAspect)) / 2);
  let src = t;
  if (x || y) {
    const ch = oh - 2 * y,
      cw = ow - 2 * x;
    const data = new Float32Array(n * c * ch * cw);
    for (let p = 0; p < n * c; p++)
      for (let yy = 0; yy < ch; yy++)
        data.set(t.data.subarray((p * oh + yy + y) * ow + x, (p * oh + yy + y) * ow + x + cw), (p * ch + yy) * cw);
    src = { shape: [n, c, ch, cw], data };
  }
  return interpolate(src, h, w, 'bilinear');
}

/** The entry's mask as [n, 1, mh, mw]: a [n, C, ...] mask of the latent's rank gives its first channel. */
function firstChannel(m: Tensor): Tensor {
  const [mh, mw] = m.shape.slice(-2);
  if (m.shape.length === 4 && m.shape[1] > 1) {
    const [n, c] = m.shape;
    const data = new Float32Array(n * mh * mw);
    for (let i = 0; i < n; i++) data.set(m.data.subarray(i * c * mh * mw, (i * c + 1) * mh * mw), i * mh * mw);
    return { shape: [n, 1, mh, mw], data };
  }
  return { shape: [m.data.length / (mh * mw), 1, mh, mw], data: m.data };
}

/** concat_cond for one entry at the latent shape [B, C, h, w] -> [B, 1 + C, h, w]. */
export function inpaintConcat(e: CondEntry, shape: number[], scale: number, src: ConcatSource): Tensor {
  const [B, C, h, w] = shape;
  const maskIn: Tensor | null = e.concatMask ? e.concatMask : src.denoiseMask ? { shape, data: src.denoiseMask } : null;
  const out = new Float32Array(B * (C + 1) * h * w);
  const plane = h * w;
  if (!maskIn) {
    // no mask: everything may change, over a black picture
    for (let b = 0; b < B; b++) {
      out.fill(1, b * (C + 1) * plane, (b * (C + 1) + 1) * plane);
      for (let k = 0; k < C; k++)
        out.fill(BLANK_LATENT[k] ?? 0, (b * (C + 1) + 1 + k) * plane, (b * (C + 1) + 2 + k) * plane);
    }
    return { shape: [B, C + 1, h, w], data: out };
  }
  let mask = firstChannel(maskIn);
  if (mask.shape[2] !== h || mask.shape[3] !== w) mask = upscaleCentre(mask, h, w);
  mask = resizeToBatch({ shape: mask.shape, data: mask.data.map(roundHalfEven) }, B);
  let image: Tensor = e.concatLatent
    ? { shape: e.concatLatent.shape, data: e.concatLatent.data.map((v) => v * scale) }
    : { shape, data: src.latent };
  if (image.shape[1] !== C || image.shape[2] !== h || image.shape[3] !== w) {
    if (image.shape[1] !== C)
      throw new Error(`the inpainting image latent has ${image.shape[1]} channels, the model's latent ${C}`);
    image = upscaleCentre(image, h, w);
  }
  image = resizeToBatch(image, B);
  for (let b = 0; b < B; b++) {
    out.set(mask.data.subarray(b * plane, (b + 1) * plane), b * (C + 1) * plane);
    out.set(image.data.subarray(b * C * plane, (b + 1) * C * plane), (b * (C + 1) + 1) * plane);
  }
  return { shape: [B, C + 1, h, w], data: out };
}

/** A concat [B, C', H, W] cut to a region (ComfyUI's CONDNoiseShape narrows c_concat to the entry's area). */
export function cropConcat(t: Tensor, r: { h: number; w: number; y: number; x: number }): Tensor {
  const [B, C, H, W] = t.shape;
  if (r.h === H && r.w === W) return t;
  const data = new Float32Array(B * C * r.h * r.w);
  for (let p = 0; p < B * C; p++)
    for (let y = 0; y < r.h; y++)
      data.set(t.data.subarray((p * H + y + r.y) * W + r.x, (p * H + y + r.y) * W + r.x + r.w), (p * r.h + y) * r.w);
  return { shape: [B, C, r.h, r.w], data };
}
