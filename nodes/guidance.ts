/**
 * From node values to a sampling loop's conditioning: batches the conditioning to the latent batch, adds SDXL's
 * pooled embedding and time ids [H, W, crop_top, crop_left, target_H, target_W] (pixels; from the latent size
 * unless the conditioning sets them), and resolves regional entries (areas, masks, strengths) to latent regions.
 * Guidance itself runs in the engine worker's loops (runtime/ksampler-loop.ts, tcd-loop.ts).
 */
import type { CondBranch } from '../server/engine/engine.js';
import type { ControlRef, LoopCond } from '../server/engine/runtime/protocol.js';
import type { Region } from '../server/engine/sampling/regional.js';
import type { Tensor } from '../server/engine/tensor.js';
import type { CondEntry, Conditioning, ControlApplied, ModelValue } from './types.js';
import { controlFamilyProblem } from './controlnet.js';
import { interpolate, roundHalfEven } from '../server/engine/ops/resize.js';
import { concatChannels } from '../server/engine/model/config.js';
import { concatWidth, cropConcat, inpaintConcat, type ConcatSource } from './inpaint-concat.js';

function repeatBatch(t: Tensor, batch: number): Tensor {
  const per = t.data.length / t.shape[0];
  const data = new Float32Array(per * batch);
  for (let b = 0; b < batch; b++)
    data.set(t.data.subarray((b % t.shape[0]) * per, ((b % t.shape[0]) + 1) * per), b * per);
  return { shape: [batch, ...t.shape.slice(1)], data };
}

function firstEntry(cond: Conditioning, what: string): CondEntry {
  if (!Array.isArray(cond) || cond.length === 0) throw new Error(`${what} conditioning is empty`);
  return cond[0];
}

/**
 * The UNet inputs of one conditioning branch at a latent shape [B, 4, h, w]: context (and SDXL's pooled + time ids;
 * for an inpainting UNet the concat channels, from the entry and the sampler's latent and mask: inpaint-concat.ts).
 * `region` cuts the concat (computed at the full latent `src` describes) to a regional entry's area.
 */
export function condBranch(
  model: ModelValue,
  cond: Conditioning,
  shape: number[],
  what: string,
  src?: ConcatSource & { shape: number[]; region?: Region },
): CondBranch {
  const e = firstEntry(cond, what);
  const concat = inpaintConcatFor(model, e, shape, what, src);
  const [batch, , h, w] = shape;
  // text encoders of another checkpoint (two loaders in one workflow): said here, not as an ONNX input-shape error
  const unet = model.config.unet;
  const mismatch = (part: string, got: number, need: number) =>
    new Error(
      `${what} conditioning: its ${part} is ${got} wide, but this ${model.config.family} model takes ${need} ` +
        `(was it encoded with the CLIP of another checkpoint?)`,
    );
  const width = e.context.shape[e.context.shape.length - 1];
  if (width !== unet.contextDim) throw mismatch('text embedding', width, unet.contextDim);
  const context = repeatBatch(e.context, batch);
  let extra: { textEmbeds: Tensor; timeIds: Tensor } | undefined;
  if (unet.adm) {
    if (!e.pooled)
      throw new Error(
        `${what} conditioning has no pooled output, which this SDXL-family model needs (was it encoded with this checkpoint's CLIP?)`,
      );
    const pooled = e.pooled.shape[e.pooled.shape.length - 1];
    if (pooled !== unet.adm.pooledChannels) throw mismatch('pooled output', pooled, unet.adm.pooledChannels);
    const H = e.height ?? h * 8,
      W = e.width ?? w * 8;
    const ids = [H, W, e.cropH ?? 0, e.cropW ?? 0, e.targetHeight ?? h * 8, e.targetWidth ?? w * 8];
    const timeIds = new Float32Array(batch * 6);
    for (let b = 0; b < batch; b++) timeIds.set(ids, b * 6);
    extra = { textEmbeds: repeatBatch(e.pooled, batch), timeIds: { shape: [batch, 6], data: timeIds } };
  }
  const control = e.control?.length ? e.control.map((c) => controlRef(model, c, what)) : undefined;
  return { context, ...(extra ? { extra } : {}), ...(control ? { control } : {}), ...(concat ? { concat } : {}) };
}

/** An applied ControlNet as the worker loop takes it (hint channels first); another family is refused here. */
function controlRef(model: ModelValue, c: ControlApplied, what: string): ControlRef {
  const problem = controlFamilyProblem(model.config, c.net);
  if (problem) throw new Error(`${what} conditioning: ${problem}`);
  const [b, h, w, ch] = c.hint.shape;
  const hint = new Float32Array(c.hint.data.length);
  for (let n = 0; n < b; n++)
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        for (let k = 0; k < ch; k++) hint[((n * ch + k) * h + y) * w + x] = c.hint.data[((n * h + y) * w + x) * ch + k];
  return {
    path: c.net.path,
    ...(c.net.diffBase ? { diffBase: c.net.diffBase } : {}),
    hint: { shape: [b, ch, h, w], data: hint },
    strength: c.strength,
    startPercent: c.startPercent,
    endPercent: c.endPercent,
  };
}

function inpaintConcatFor(
  model: ModelValue,
  e: CondEntry,
  shape: number[],
  what: string,
  src?: ConcatSource & { shape: number[]; region?: Region },
): Tensor | undefined {
  const n = concatChannels(model.config.unet);
  if (n === 0) return undefined;
  const latentChannels = model.config.vae.latentChannels;
  if (n !== concatWidth(latentChannels))
    throw new Error(
      `the model's UNet reads ${model.config.unet.inChannels} channels; inpainting models read ` +
        `${model.config.unet.outChannels + concatWidth(latentChannels)} (latent, mask, masked image latent)`,
    );
  const full = src?.shape ?? shape;
  const c = inpaintConcat(e, full, model.config.vae.scalingFactor, src ?? { latent: new Float32Array(size(full)) });
  if (c.shape.slice(2).join() !== full.slice(2).join()) throw new Error(`${what}: inpainting concat size mismatch`);
  return src?.region ? cropConcat(c, src.region) : c;
}

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Whether a conditioning needs per-entry regions (several entries, areas or masks): calc_cond_batch's work. */
export function isRegional(cond: Conditioning | undefined): boolean {
  return !!cond && (cond.length > 1 || cond.some((e) => e.area || e.mask));
}

/** mask [B, H, W] -> [B, h, w] at the latent size (bilinear, as ComfyUI resizes conditioning masks) */
function maskAt(mask: Tensor, h: number, w: number): Tensor {
  const [mh, mw] = mask.shape.slice(-2),
    b = mask.data.length / (mh * mw);
  if (mh === h && mw === w) return { shape: [b, h, w], data: mask.data };
  return { shape: [b, h, w], data: interpolate({ shape: [b, 1, mh, mw], data: mask.data }, h, w, 'bilinear').data };
}

/**
 * get_area_and_mult + resolve_areas_and_cond_masks: the entry's area (percentages resolved with Python rounding,
 * "mask bounds" = the mask's bounding box, at least 8 cells), cut to the latent, and its weight: mask x mask
 * strength, or strength with the area's inner edges faded over min(8, size / 4) cells.
 */
export function regionOf(e: CondEntry, shape: number[], what: string): Region {
  const [B, C, H, W] = shape;
  let area: { h: number; w: number; y: number; x: number } | null = null;
  if (e.area) {
    area =
      e.area.unit === 'fraction'
        ? {
            h: Math.max(1, roundHalfEven(e.area.h * H)),
            w: Math.max(1, roundHalfEven(e.area.w * W)),
            y: roundHalfEven(e.area.y * H),
            x: roundHalfEven(e.area.x * W),
          }
        : { ...e.area };
  }
  const mask = e.mask ? maskAt(e.mask, H, W) : null;
  // ComfyUI repeats the mask batch (B // mask batch) times to the latent's: any other batch cannot line up
  if (mask && B % mask.shape[0] !== 0)
    throw new Error(
      `${what} conditioning mask has a batch of ${mask.shape[0]}, which does not divide the latent batch of ${B}`,
    );
  if (mask && e.setAreaToBounds) {
    let y0 = H,
      y1 = -1,
      x0 = W,
      x1 = -1;
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        let v = 0;
        for (let b = 0; b < mask.shape[0]; b++) v = Math.max(v, Math.abs(mask.data[(b * H + y) * W + x]));
        if (v > 0) {
          y0 = Math.min(y0, y);
          y1 = Math.max(y1, y);
          x0 = Math.min(x0, x);
          x1 = Math.max(x1, x);
        }
      }
    area =
      y1 < 0 ? { h: 8, w: 8, y: 0, x: 0 } : { h: Math.max(8, y1 - y0 + 1), w: Math.max(8, x1 - x0 + 1), y: y0, x: x0 };
  }
  const r = area ?? { h: H, w: W, y: 0, x: 0 };
  if (r.y >= H || r.x >= W) {
    throw new Error(
      `${what} conditioning area at (${r.x * 8}, ${r.y * 8}) px lies outside the ${W * 8}x${H * 8} latent`,
    );
  }
  const h = Math.min(H - r.y, r.h),
    w = Math.min(W - r.x, r.w);
  const strength = e.strength ?? 1,
    mult = new Float32Array(B * C * h * w);
  for (let b = 0; b < B; b++)
    for (let c = 0; c < C; c++)
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++) {
          const m = mask ? mask.data[((b % mask.shape[0]) * H + y + r.y) * W + x + r.x] * (e.maskStrength ?? 1) : 1;
          mult[((b * C + c) * h + y) * w + x] = m * strength;
        }
  if (!mask && area) {
    // soft inner edges so overlapping areas blend (ComfyUI's fuzz)
    const fade = (n: number, at: (t: number) => number[], size: number) => {
      const rr = Math.min(8, Math.floor(size / 4));
      for (let t = 0; t < rr; t++) for (const i of at(t)) mult[i] *= (1 / rr) * (t + 1);
    };
    const rows = (y: number) => {
      const out: number[] = [];
      for (let p = 0; p < B * C; p++) for (let x = 0; x < w; x++) out.push((p * h + y) * w + x);
      return out;
    };
    const cols = (x: number) => {
      const out: number[] = [];
      for (let p = 0; p < B * C; p++) for (let y = 0; y < h; y++) out.push((p * h + y) * w + x);
      return out;
    };
    if (r.y !== 0) fade(h, (t) => rows(t), h);
    if (h + r.y < H) fade(h, (t) => rows(h - 1 - t), h);
    if (r.x !== 0) fade(w, (t) => cols(t), w);
    if (w + r.x < W) fade(w, (t) => cols(w - 1 - t), w);
  }
  return { h, w, y: r.y, x: r.x, mult };
}

/**
 * One side of guidance as the worker's k-sampler loop takes it: one entry at the latent's shape, or, for regional
 * conditioning (several entries, areas or masks), every entry at its region's shape with the region and its weights.
 */
export function loopConds(
  model: ModelValue,
  cond: Conditioning,
  shape: number[],
  what: string,
  src?: ConcatSource,
): LoopCond[] {
  const full = src ? { ...src, shape } : undefined;
  if (!isRegional(cond)) return [condBranch(model, cond, shape, what, full)];
  const [B, C] = shape;
  return cond.map((e) => {
    const region = regionOf(e, shape, what);
    return { ...condBranch(model, [e], [B, C, region.h, region.w], what, full && { ...full, region }), region };
  });
}
