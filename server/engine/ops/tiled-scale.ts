/**
 * ComfyUI's tiled_scale (comfy/utils.py), as ImageUpscaleWithModel uses it: the image is cut into tiles of `tile`
 * pixels overlapping by `overlap`, each tile goes through `fn` (which scales it by `scale`), and the results are
 * blended with a feathered mask (a linear ramp of round(overlap * scale) pixels inside every tile edge, including
 * the image's own borders, so the division by the summed mask is what restores them). An image that fits in one
 * tile is passed whole. Tile origins: 0, tile - overlap, 2 (tile - overlap), ... while < size - overlap, each
 * clamped to size - overlap; a tile is cut short at the image's end.
 * Example: const out = await tiledScale(img, (t) => engine.upscaleTile(ref, t), { tile: 512, overlap: 32, scale: 4 });
 */
import type { Tensor } from '../tensor.js';

export interface TiledScaleOptions {
  tile: number;
  overlap: number;
  /** output pixels per input pixel */
  scale: number;
  /** channels `fn` returns (3 for images) */
  outChannels?: number;
  /** called after each tile (all batch items counted) */
  onTile?: (done: number, total: number) => void;
}

/** Python's round(): halves go to the even neighbour (tile positions times a fractional scale). */
export function pyRound(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Tile origins along one axis of `size` pixels. */
export function tileOrigins(size: number, tile: number, overlap: number): number[] {
  if (size <= tile) return [0];
  const out: number[] = [];
  for (let p = 0; p < size - overlap; p += tile - overlap) out.push(Math.max(0, Math.min(size - overlap, p)));
  return out;
}

/** ComfyUI's get_tiled_scale_steps: tiles per image (the progress bar's total per batch item). */
export function tiledScaleSteps(width: number, height: number, tile: number, overlap: number): number {
  const rows = height <= tile ? 1 : Math.ceil((height - overlap) / (tile - overlap));
  const cols = width <= tile ? 1 : Math.ceil((width - overlap) / (tile - overlap));
  return rows * cols;
}

/** Per-position feather weights of a tile `len` long: float32 products of (t + 1) / feather from both ends. */
function feather1d(len: number, feather: number): Float32Array {
  const m = new Float32Array(len).fill(1);
  if (feather >= len) return m; // ComfyUI leaves an axis unfeathered when the ramp would not fit
  for (let t = 0; t < feather; t++) {
    const a = (t + 1) / feather;
    m[t] = Math.fround(m[t] * a);
    m[len - 1 - t] = Math.fround(m[len - 1 - t] * a);
  }
  return m;
}

/** `image` [B, C, H, W] -> [B, outChannels, round(H * scale), round(W * scale)], one `fn` call per tile. */
export async function tiledScale(
  image: Tensor,
  fn: (tile: Tensor) => Promise<Tensor>,
  opts: TiledScaleOptions,
): Promise<Tensor> {
  const [B, , H, W] = image.shape;
  const { tile, overlap, scale } = opts;
  if (tile <= overlap) throw new Error(`tiledScale: tile ${tile} must exceed overlap ${overlap}`);
  const oc = opts.outChannels ?? 3;
  const OH = pyRound(H * scale),
    OW = pyRound(W * scale);
  const out = new Float32Array(B * oc * OH * OW);
  const total = B * tiledScaleSteps(W, H, tile, overlap);
  let done = 0;
  const ys = tileOrigins(H, tile, overlap),
    xs = tileOrigins(W, tile, overlap);
  for (let b = 0; b < B; b++) {
    const item = out.subarray(b * oc * OH * OW, (b + 1) * oc * OH * OW);
    if (H <= tile && W <= tile) {
      const r = await fn(crop(image, b, 0, 0, H, W));
      checkShape(r, oc, OH, OW);
      item.set(r.data);
      opts.onTile?.(++done, total);
      continue;
    }
    const acc = new Float32Array(oc * OH * OW);
    const div = new Float32Array(OH * OW); // the mask is the same on every channel
    const feather = pyRound(overlap * scale);
    for (const y0 of ys)
      for (const x0 of xs) {
        const th = Math.min(tile, H - y0),
          tw = Math.min(tile, W - x0);
        const r = await fn(crop(image, b, y0, x0, th, tw));
        const [, rc, ph, pw] = r.shape;
        if (rc !== oc) throw new Error(`tiledScale: a tile came back with ${rc} channels, expected ${oc}`);
        const oy = pyRound(y0 * scale),
          ox = pyRound(x0 * scale);
        if (oy + ph > OH || ox + pw > OW)
          throw new Error(`tiledScale: a ${ph}x${pw} tile at (${oy}, ${ox}) overruns the ${OH}x${OW} output`);
        const my = feather1d(ph, feather),
          mx = feather1d(pw, feather);
        for (let y = 0; y < ph; y++)
          for (let x = 0; x < pw; x++) {
            const m = Math.fround(my[y] * mx[x]);
            const p = (oy + y) * OW + ox + x;
            div[p] += m;
            for (let c = 0; c < oc; c++) acc[c * OH * OW + p] += r.data[(c * ph + y) * pw + x] * m;
          }
        opts.onTile?.(++done, total);
      }
    for (let c = 0; c < oc; c++)
      for (let p = 0; p < OH * OW; p++) item[c * OH * OW + p] = acc[c * OH * OW + p] / div[p];
  }
  return { shape: [B, oc, OH, OW], data: out };
}

function checkShape(r: Tensor, c: number, h: number, w: number): void {
  const [, rc, rh, rw] = r.shape;
  if (rc !== c || rh !== h || rw !== w)
    throw new Error(`tiledScale: the image came back [${r.shape}], expected [1, ${c}, ${h}, ${w}]`);
}

/** [1, C, h, w] copy of batch item b of x [B, C, H, W] from (y0, x0). */
function crop(x: Tensor, b: number, y0: number, x0: number, h: number, w: number): Tensor {
  const [, C, H, W] = x.shape;
  const data = new Float32Array(C * h * w);
  for (let c = 0; c < C; c++)
    for (let y = 0; y < h; y++) {
      const src = ((b * C + c) * H + y0 + y) * W + x0;
      data.set(x.data.subarray(src, src + w), (c * h + y) * w);
    }
  return { shape: [1, C, h, w], data };
}
