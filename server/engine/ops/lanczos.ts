/**
 * ComfyUI's "lanczos" image resize, which goes through 8-bit PIL: values are truncated to uint8 (clip(255 x)),
 * resized with Pillow's two-pass Lanczos-3 resampler (double-precision kernels normalised per output pixel, then
 * 22-bit fixed point, horizontal pass first over the rows the vertical pass needs, each pass rounding to 8 bits),
 * and read back as uint8 / 255. Works on [N, C, H, W] with any channel count, channel by channel (as Pillow does for
 * RGB; 4-channel images would be premultiplied by Pillow, which ComfyUI's images never are).
 */
import type { Tensor } from '../tensor.js';

const PRECISION_BITS = 32 - 8 - 2;
const SUPPORT = 3;

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}
const lanczosKernel = (x: number) => (x >= -SUPPORT && x < SUPPORT ? sinc(x) * sinc(x / 3) : 0);

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc: per output index, first input index and integer weights. */
function coefficients(inSize: number, outSize: number): { bounds: Int32Array; kk: Int32Array; ksize: number } {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = SUPPORT * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2),
    kk = new Int32Array(outSize * ksize);
  const pre = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale,
      ss = 1 / filterscale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = lanczosKernel((x + xmin - center + 0.5) * ss);
      pre[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0 ? pre[x] / ww : pre[x];
      kk[xx * ksize + x] =
        v < 0 ? Math.trunc(-0.5 + v * (1 << PRECISION_BITS)) : Math.trunc(0.5 + v * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { bounds, kk, ksize };
}

const clip8 = (ss: number) => {
  const v = Math.floor(ss / 2 ** PRECISION_BITS);
  return v < 0 ? 0 : v > 255 ? 255 : v;
};

/** One 8-bit plane [h][w] resized to [oh][ow]. */
function resizePlane(src: Uint8Array, w: number, h: number, ow: number, oh: number): Uint8Array {
  const needH = ow !== w,
    needV = oh !== h;
  const hc = coefficients(w, ow),
    vc = coefficients(h, oh);
  let plane = src,
    pw = w,
    ph = h;
  let vBounds = vc.bounds;
  if (needH) {
    // only the rows the vertical pass reads, as Pillow does (the bounds shift by the first row)
    const first = needV ? vc.bounds[0] : 0;
    const last = needV ? vc.bounds[oh * 2 - 2] + vc.bounds[oh * 2 - 1] : h;
    const rows = last - first,
      tmp = new Uint8Array(ow * rows);
    for (let y = 0; y < rows; y++)
      for (let xx = 0; xx < ow; xx++) {
        const xmin = hc.bounds[xx * 2],
          xmax = hc.bounds[xx * 2 + 1];
        let ss = 1 << (PRECISION_BITS - 1);
        for (let x = 0; x < xmax; x++) ss += src[(y + first) * w + x + xmin] * hc.kk[xx * hc.ksize + x];
        tmp[y * ow + xx] = clip8(ss);
      }
    if (needV) {
      vBounds = vc.bounds.slice();
      for (let i = 0; i < oh; i++) vBounds[i * 2] -= first;
    }
    plane = tmp;
    pw = ow;
    ph = rows;
  }
  if (!needV) return plane;
  const out = new Uint8Array(ow * oh);
  for (let yy = 0; yy < oh; yy++) {
    const ymin = vBounds[yy * 2],
      ymax = vBounds[yy * 2 + 1];
    for (let xx = 0; xx < pw; xx++) {
      let ss = 1 << (PRECISION_BITS - 1);
      for (let y = 0; y < ymax; y++) ss += plane[(y + ymin) * pw + xx] * vc.kk[yy * vc.ksize + y];
      out[yy * pw + xx] = clip8(ss);
    }
  }
  void ph;
  return out;
}

export function lanczos(x: Tensor, width: number, height: number): Tensor {
  const [n, c, h, w] = x.shape,
    out = new Float32Array(n * c * height * width);
  const plane = new Uint8Array(h * w);
  for (let p = 0; p < n * c; p++) {
    for (let i = 0; i < h * w; i++) {
      const v = Math.fround(255 * x.data[p * h * w + i]);
      plane[i] = v <= 0 ? 0 : v >= 255 ? 255 : Math.trunc(v);
    }
    const r = w === width && h === height ? plane : resizePlane(plane, w, h, width, height);
    for (let i = 0; i < width * height; i++) out[p * width * height + i] = Math.fround(r[i] / 255);
  }
  return { shape: [n, c, height, width], data: out };
}
