/**
 * ComfyUI's uni_pc / uni_pc_bh2 samplers (comfy/extra_samplers/uni_pc.py, sample_unipc): UniPC multistep with data
 * prediction (predict_x0), B(h) = h (bh1) or e^h - 1 (bh2), order min(3, len(sigmas) - 2), lower order on the
 * first and last steps, a corrector on every step but the last, each corrector's model value reused by the next step.
 * What ComfyUI does, and this file reproduces:
 *  - "time" is sigma itself (SigmaConvert): alpha = 1 / sqrt(1 + sigma^2), std = sigma * alpha, lambda = -log sigma,
 *    computed through log/exp in float32 like torch; x is kept in VP scale x_vp = x / sqrt(1 + sigma^2);
 *  - a schedule ending in 0 ends at sigma 0.001 instead: the last step (predictor only, order 1) goes to 0.001 and
 *    the result is x at sigma 0.001 (no final denoise); a schedule not ending in 0 ends at its last sigma;
 *  - two sigmas (1 step) give order 0: one model call, and the input comes back rescaled, not denoised.
 * Scalars are emulated in float32 (Math.fround) because that is where ComfyUI's result differs from exact math by
 * up to ~6e-5 (1 - exp(2 log alpha) cancels at small sigma); the b vector is float64 then float32 as in ComfyUI.
 *
 * Example:
 *   const sigmas = ksamplerSigmas(ms, 'uni_pc', 'karras', 20);
 *   const out = await sampleUniPc({ denoiser, x: initialSample(ms, sigmas[0], noise, latent), sigmas });
 */
import type { KSamplerArgs, KSamplerFn } from './k-samplers.js';

const f = Math.fround;

/** ComfyUI's SigmaConvert (alpha, std, lambda at a sigma), op by op in float32. */
function vpAt(sigma: number): { alpha: number; std: number; lambda: number } {
  const logAlpha = f(0.5 * f(Math.log(f(1 / f(f(sigma * sigma) + 1)))));
  const oneMinus = f(1 - f(Math.exp(f(2 * logAlpha))));
  return {
    alpha: f(Math.exp(logAlpha)),
    std: f(Math.sqrt(oneMinus)),
    lambda: f(logAlpha - f(0.5 * f(Math.log(oneMinus)))),
  };
}

/** Solves A y = b (n <= 3) by Gaussian elimination with partial pivoting, in float64. */
function solve(A: number[][], b: number[]): number[] {
  const n = b.length;
  const M = A.map((row, i) => [...row.slice(0, n), b[i]]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r][c]) > Math.abs(M[p][c])) p = r;
    [M[c], M[p]] = [M[p], M[c]];
    for (let r = c + 1; r < n; r++) {
      const l = M[r][c] / M[c][c];
      for (let k = c; k <= n; k++) M[r][k] -= l * M[c][k];
    }
  }
  const y = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = M[r][n];
    for (let k = r + 1; k < n; k++) s -= M[r][k] * y[k];
    y[r] = s / M[r][r];
  }
  return y;
}

/**
 * The B(h) coefficients of one update: hh = -h (data prediction), h*phi_1 = expm1(hh), B(h), the predictor's rhos
 * (order >= 2) and the corrector's (order >= 1). rks: (lambda_prev_i - lambda_prev_0) / h for i = 1..order-1.
 */
function bhCoefficients(rks: number[], hh: number, order: number, variant: 'bh1' | 'bh2') {
  const hPhi1 = f(Math.expm1(hh));
  const bH = variant === 'bh1' ? hh : f(Math.expm1(hh));
  // b_i = h phi_{i+1}(h) * i! / B(h), by the phi recurrence, in float64 (as ComfyUI does it), stored as float32
  const bH64 = variant === 'bh1' ? hh : Math.expm1(hh);
  let hPhiK = Math.expm1(hh) / hh - 1,
    fact = 1;
  const b: number[] = [];
  for (let i = 1; i <= order; i++) {
    b.push(f((hPhiK * fact) / bH64));
    fact *= i + 1;
    hPhiK = hPhiK / hh - 1 / fact;
  }
  const all = [...rks, 1];
  // R[i][k] = rks[k]^i (torch.pow in float32)
  const R = Array.from({ length: order }, (_, i) => all.map((r) => (i === 0 ? 1 : i === 1 ? r : f(r ** i))));
  const rhosP =
    order === 2
      ? [0.5]
      : order > 2
        ? solve(
            R.slice(0, -1).map((row) => row.slice(0, -1)),
            b.slice(0, -1),
          ).map(f)
        : [];
  const rhosC = order === 1 ? [0.5] : solve(R, b).map(f);
  return { hPhi1, bH, rhosP, rhosC };
}

/** sum_k w_k a_k elementwise (torch.tensordot over the history axis), rounded once to float32. */
function weighted(arrs: Float32Array[], w: number[], n: number): Float64Array {
  const out = new Float64Array(n);
  for (let k = 0; k < arrs.length; k++) for (let i = 0; i < n; i++) out[i] += arrs[k][i] * w[k];
  for (let i = 0; i < n; i++) out[i] = f(out[i]);
  return out;
}

/** sample_unipc with the given B(h) variant; needs no noise source and no modelSampling. */
export function uniPcSampler(variant: 'bh1' | 'bh2'): KSamplerFn {
  return async (a: KSamplerArgs) => {
    const ts = Array.from(a.sigmas, f);
    if (ts.length === 0) return a.x;
    if (ts[ts.length - 1] === 0) ts[ts.length - 1] = f(0.001);
    const n = a.x.length,
      steps = ts.length - 1;
    const order = Math.min(3, ts.length - 2);

    // data prediction in VP scale: the denoiser sees x_vp * sqrt(sigma^2 + 1), eps goes back through std/alpha
    const modelFn = async (xvp: Float32Array, sigma: number): Promise<Float32Array> => {
      const scale = f(Math.sqrt(f(f(sigma * sigma) + 1)));
      const input = Float32Array.from(xvp, (v) => f(v * scale));
      const den = await a.denoiser(input, sigma);
      const { alpha, std } = vpAt(sigma);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = f(f(xvp[i] - f(std * f(f(input[i] - den[i]) / sigma))) / alpha);
      return out;
    };

    /** One multistep_uni_pc_bh_update from tPrev[-1] to t; returns the new x and (with the corrector) model(x_pred, t). */
    const update = async (
      x: Float32Array,
      models: Float32Array[],
      tPrev: number[],
      t: number,
      ord: number,
      corrector: boolean,
    ) => {
      const last = models.length - 1;
      const p0 = vpAt(tPrev[last]),
        vt = vpAt(t),
        m0 = models[last];
      const h = f(vt.lambda - p0.lambda);
      const rks: number[] = [],
        d1s: Float32Array[] = [];
      for (let i = 1; i < ord; i++) {
        const rk = f(f(vpAt(tPrev[last - i]).lambda - p0.lambda) / h);
        rks.push(rk);
        const mi = models[last - i];
        d1s.push(Float32Array.from(mi, (v, j) => f(f(v - m0[j]) / rk)));
      }
      const { hPhi1, bH, rhosP, rhosC } = bhCoefficients(rks, -h, ord, variant);
      const cx = f(vt.std / p0.std),
        cm = f(vt.alpha * hPhi1),
        cb = f(vt.alpha * bH);
      const base = Float32Array.from(x, (v, i) => f(f(cx * v) - f(cm * m0[i])));
      const pred = d1s.length ? weighted(d1s, rhosP, n) : null;
      const xPred = pred ? Float32Array.from(base, (v, i) => f(v - f(cb * pred[i]))) : base;
      if (!corrector) return { x: xPred, model: null };
      const mt = await modelFn(xPred, t);
      const corr = d1s.length ? weighted(d1s, rhosC.slice(0, -1), n) : new Float64Array(n);
      const rc = rhosC[rhosC.length - 1];
      const xc = Float32Array.from(base, (v, i) => f(v - f(cb * f(corr[i] + f(rc * f(mt[i] - m0[i]))))));
      return { x: xc, model: mt };
    };

    const s0 = f(Math.sqrt(f(1 + f(ts[0] * ts[0]))));
    let x = Float32Array.from(a.x, (v) => f(v / s0));
    const models: Float32Array[] = [],
      tPrev: number[] = [];
    let tNow = ts[0];
    for (let stepIndex = 0; stepIndex < steps; stepIndex++) {
      if (stepIndex === 0) {
        models.push(await modelFn(x, ts[0]));
        tPrev.push(ts[0]);
      } else if (stepIndex < order) {
        // warm-up: order grows with the history
        const r = await update(x, models, tPrev, ts[stepIndex], stepIndex, true);
        x = r.x;
        models.push(r.model!);
        tPrev.push(ts[stepIndex]);
        tNow = ts[stepIndex];
      } else {
        // the step before last also takes the final step (to sigma_N, predictor only, order 1)
        const lastStep = stepIndex === steps - 1 ? steps : stepIndex;
        for (let step = stepIndex; step <= lastStep; step++) {
          const r = await update(x, models, tPrev, ts[step], Math.min(order, steps + 1 - step), step !== steps);
          x = r.x;
          for (let i = 0; i < order - 1; i++) {
            tPrev[i] = tPrev[i + 1];
            models[i] = models[i + 1];
          }
          tPrev[tPrev.length - 1] = ts[step];
          if (step < steps) models[models.length - 1] = r.model!;
          tNow = ts[step];
        }
      }
      if (a.onStep) {
        // report x in k-diffusion scale (x_vp / alpha) at the sigma it has reached
        const alpha = vpAt(tNow).alpha;
        await a.onStep({
          i: stepIndex,
          total: steps,
          x: Float32Array.from(x, (v) => v / alpha),
          denoised: models[models.length - 1],
          sigma: tNow,
        });
      }
    }
    const alphaEnd = vpAt(ts[ts.length - 1]).alpha;
    return Float32Array.from(x, (v) => f(v / alphaEnd));
  };
}

/** uni_pc (B(h) = h) */
export const sampleUniPc: KSamplerFn = uniPcSampler('bh1');
/** uni_pc_bh2 (B(h) = e^h - 1) */
export const sampleUniPcBh2: KSamplerFn = uniPcSampler('bh2');
