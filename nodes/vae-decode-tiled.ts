/**
 * VAEDecodeTiled (ComfyUI's inputs and defaults): decodes a latent in overlapping tiles so a large image needs the
 * memory of one tile, not of the whole image (the VAE's mid-block attention grows with the square of the latent
 * area). Tiles are blended with linear ramps across each overlap. VAEDecode falls back to this when the engine's
 * memory admission says a plain decode will not fit. temporal_size / temporal_overlap only matter for video VAEs
 * and are accepted for compatibility.
 * Example: const img = await decodeTiled(engine, vae, latent, 512, 64); // [B, H, W, 3] in 0..1
 */
import { defineNode, t } from './define.js';
import type { Tensor } from '../server/engine/tensor.js';
import type { Engine } from '../server/engine/engine.js';
import type { VaeValue } from './types.js';

/** Tile start offsets covering `size` with tiles of `tile` overlapping by `overlap` (the last one ends at `size`). */
export function tileStarts(size: number, tile: number, overlap: number): number[] {
  if (tile >= size) return [0];
  const step = Math.max(1, tile - overlap);
  const starts: number[] = [];
  for (let s = 0; s + tile < size; s += step) starts.push(s);
  starts.push(size - tile);
  return starts;
}

/** Blend weight of pixel `i` of a tile spanning [start, start + len) of an axis of `size`: ramps inside overlaps. */
function ramp(i: number, len: number, start: number, size: number, overlap: number): number {
  if (overlap <= 0) return 1;
  const fromStart = start === 0 ? Infinity : i + 1;
  const fromEnd = start + len >= size ? Infinity : len - i;
  return Math.min(1, fromStart / (overlap + 1), fromEnd / (overlap + 1));
}

/**
 * Decode `latent` [B, 4, h, w] tile by tile. `tilePx` and `overlapPx` are in image pixels (multiples of 8 are used);
 * `onTile` reports progress. Returns IMAGE [B, 8h, 8w, 3] in 0..1.
 */
export async function decodeTiled(
  engine: Engine,
  vae: VaeValue,
  latent: Tensor,
  tilePx: number,
  overlapPx: number,
  onTile?: (done: number, total: number) => void,
  checkInterrupted?: () => void,
): Promise<Tensor> {
  const [b, c, h, w] = latent.shape;
  let overlap = overlapPx;
  if (tilePx < overlap * 4) overlap = Math.floor(tilePx / 4);
  const T = Math.max(8, Math.floor(tilePx / 8)),
    O = Math.floor(overlap / 8);
  const th = Math.min(T, h),
    tw = Math.min(T, w);
  const ys = tileStarts(h, th, O),
    xs = tileStarts(w, tw, O);
  const H = h * 8,
    W = w * 8;
  const out = new Float32Array(b * H * W * 3);
  const weight = new Float32Array(H * W);
  const total = b * ys.length * xs.length;
  let done = 0;
  for (let n = 0; n < b; n++) {
    const acc = new Float32Array(H * W * 3);
    weight.fill(0);
    for (const y0 of ys)
      for (const x0 of xs) {
        checkInterrupted?.();
        const crop = new Float32Array(c * th * tw);
        for (let ch = 0; ch < c; ch++)
          for (let y = 0; y < th; y++) {
            const src = ((n * c + ch) * h + y0 + y) * w + x0;
            crop.set(latent.data.subarray(src, src + tw), (ch * th + y) * tw);
          }
        const img = await engine.vaeDecode(vae.ref, { shape: [1, c, th, tw], data: crop });
        const [, , ph, pw] = img.shape;
        for (let y = 0; y < ph; y++) {
          const wy = ramp(y, ph, y0 * 8, H, O * 8);
          for (let x = 0; x < pw; x++) {
            const wt = wy * ramp(x, pw, x0 * 8, W, O * 8);
            const p = (y0 * 8 + y) * W + x0 * 8 + x;
            weight[p] += wt;
            for (let ch = 0; ch < 3; ch++) acc[p * 3 + ch] += wt * img.data[ch * ph * pw + y * pw + x];
          }
        }
        onTile?.(++done, total);
      }
    // [-1, 1] -> [0, 1], clamped, like VAEDecode
    const base = n * H * W * 3;
    for (let p = 0; p < H * W; p++)
      for (let ch = 0; ch < 3; ch++) {
        const v = (acc[p * 3 + ch] / weight[p] + 1) / 2;
        out[base + p * 3 + ch] = v < 0 ? 0 : v > 1 ? 1 : v;
      }
  }
  return { shape: [b, H, W, 3], data: out };
}

/** The largest square tile (pixels, multiple of 64, at most `preferred`) whose plain decode the engine admits. */
export function admittedTile(engine: Engine, vae: VaeValue, preferred: number): number {
  for (let tile = preferred; tile >= 64; tile -= 64) {
    if (engine.fitsVae(vae.ref, 'vae_decode', tile / 8, tile / 8, 1)) return tile;
  }
  return 64;
}

const VIDEO_ONLY = (what: string) => `Only used for video VAEs: Amount of frames to ${what}.`;

export const VAEDecodeTiled = defineNode({
  id: 'VAEDecodeTiled',
  displayName: 'VAE Decode (Tiled)',
  category: '_for_testing',
  description: 'Decodes latents in overlapping tiles, so large images fit in memory.',
  inputs: [
    t.socket('LATENT', 'samples'),
    t.socket('VAE', 'vae'),
    t.int('tile_size', { default: 512, min: 64, max: 4096, step: 32 }),
    t.int('overlap', { default: 64, min: 0, max: 4096, step: 32 }),
    // ComfyUI's own tooltips, so the editor shows the same text
    t.int('temporal_size', { default: 64, min: 8, max: 4096, step: 4, tooltip: VIDEO_ONLY('decode at a time') }),
    t.int('temporal_overlap', { default: 8, min: 4, max: 4096, step: 4, tooltip: VIDEO_ONLY('overlap') }),
  ],
  outputs: [t.out('IMAGE')],
  execute: async ({ samples, vae, tile_size, overlap }, ctx) => {
    const engine = ctx.services.engine();
    // a tile the engine would refuse is shrunk to one it admits
    const tile = Math.min(tile_size, admittedTile(engine, vae, tile_size));
    const progress = (d: number, n: number) => ctx.progress(d, n);
    const image = await decodeTiled(engine, vae, samples.samples, tile, overlap, progress, ctx.checkInterrupted);
    return { outputs: [image] };
  },
});
