/**
 * ComfyUI's "bislerp" latent upscale: separable resizing (width, then height) where each output cell is a spherical
 * interpolation between its two source cells' channel vectors (directions slerped, norms lerped), with the
 * coordinates and ratios ComfyUI derives from a bilinear resize of the index ramp. float32 throughout.
 */
import type { Tensor } from '../tensor.js';
import { interpolate } from './resize.js';

const f = Math.fround;

/** Source cells (lo, hi) and ratio per output index, from bilinear resizes of [0..n-1] and [1..n-1, n-1]. */
function slerpTaps(oldLen: number, newLen: number): { lo: Int32Array; hi: Int32Array; r: Float32Array } {
  const ramp = (k: number) => {
    const d = new Float32Array(oldLen);
    for (let i = 0; i < oldLen; i++) d[i] = i + k;
    return d;
  };
  const up = ramp(0),
    down = ramp(1);
  down[oldLen - 1] -= 1;
  const a = interpolate({ shape: [1, 1, 1, oldLen], data: up }, 1, newLen, 'bilinear').data;
  const b = interpolate({ shape: [1, 1, 1, oldLen], data: down }, 1, newLen, 'bilinear').data;
  const lo = new Int32Array(newLen),
    hi = new Int32Array(newLen),
    r = new Float32Array(newLen);
  for (let i = 0; i < newLen; i++) {
    r[i] = f(a[i] - Math.floor(a[i]));
    lo[i] = Math.trunc(a[i]);
    hi[i] = Math.trunc(b[i]);
  }
  return { lo, hi, r };
}

/** slerp of two C-vectors with ratio r into out (ComfyUI's formula, including its edge cases) */
function slerp(v1: Float32Array, v2: Float32Array, r: number, out: Float32Array): void {
  const c = v1.length;
  let s1 = 0,
    s2 = 0;
  for (let k = 0; k < c; k++) {
    s1 = f(s1 + f(v1[k] * v1[k]));
    s2 = f(s2 + f(v2[k] * v2[k]));
  }
  const n1 = f(Math.sqrt(s1)),
    n2 = f(Math.sqrt(s2));
  const u1 = new Float32Array(c),
    u2 = new Float32Array(c);
  for (let k = 0; k < c; k++) {
    u1[k] = n1 === 0 ? 0 : f(v1[k] / n1);
    u2[k] = n2 === 0 ? 0 : f(v2[k] / n2);
  }
  let dot = 0;
  for (let k = 0; k < c; k++) dot = f(dot + f(u1[k] * u2[k]));
  if (dot > f(1 - 1e-5)) {
    out.set(v1);
    return;
  }
  if (dot < f(1e-5 - 1)) {
    for (let k = 0; k < c; k++) out[k] = f(f(v1[k] * f(1 - r)) + f(v2[k] * r));
    return;
  }
  const omega = f(Math.acos(dot)),
    so = f(Math.sin(omega));
  const w1 = f(f(Math.sin(f(f(1 - r) * omega))) / so),
    w2 = f(f(Math.sin(f(r * omega))) / so);
  const norm = f(f(n1 * f(1 - r)) + f(n2 * r));
  for (let k = 0; k < c; k++) out[k] = f(f(f(w1 * u1[k]) + f(w2 * u2[k])) * norm);
}

/** One pass along the last axis of [N, C, H, W] (axis 'w') or along H (axis 'h'). */
function pass(x: Tensor, newLen: number, axis: 'w' | 'h'): Tensor {
  const [n, c, h, w] = x.shape;
  const oldLen = axis === 'w' ? w : h;
  const { lo, hi, r } = slerpTaps(oldLen, newLen);
  const oh = axis === 'w' ? h : newLen,
    ow = axis === 'w' ? newLen : w;
  const out = new Float32Array(n * c * oh * ow);
  const v1 = new Float32Array(c),
    v2 = new Float32Array(c),
    res = new Float32Array(c);
  for (let b = 0; b < n; b++)
    for (let y = 0; y < oh; y++)
      for (let xx = 0; xx < ow; xx++) {
        const i = axis === 'w' ? xx : y;
        const at = (j: number, k: number) =>
          axis === 'w' ? ((b * c + k) * h + y) * w + j : ((b * c + k) * h + j) * w + xx;
        for (let k = 0; k < c; k++) {
          v1[k] = x.data[at(lo[i], k)];
          v2[k] = x.data[at(hi[i], k)];
        }
        slerp(v1, v2, r[i], res);
        for (let k = 0; k < c; k++) out[((b * c + k) * oh + y) * ow + xx] = res[k];
      }
  return { shape: [n, c, oh, ow], data: out };
}

export function bislerp(x: Tensor, width: number, height: number): Tensor {
  return pass(pass(x, width, 'w'), height, 'h');
}
