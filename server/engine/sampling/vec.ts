/**
 * Elementwise helpers for the samplers: linear combinations accumulated in float64 per element and rounded to
 * float32 once (torch rounds after every op; the difference is far below the 1e-5 the fixtures allow).
 * Example: lincomb([[x, 1], [d, dt]]) // x + d * dt
 */

/** sum_k coef_k * a_k, elementwise */
export function lincomb(terms: ReadonlyArray<readonly [Float32Array, number]>): Float32Array {
  const n = terms[0][0].length;
  const acc = new Float64Array(n);
  for (const [a, c] of terms) {
    if (a.length !== n) throw new Error(`lincomb: length ${a.length} vs ${n}`);
    if (c === 0) continue;
    for (let i = 0; i < n; i++) acc[i] += a[i] * c;
  }
  return Float32Array.from(acc);
}

/** k-diffusion to_d: (x - denoised) / sigma */
export function toD(x: Float32Array, denoised: Float32Array, sigma: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = (x[i] - denoised[i]) / sigma;
  return out;
}
