/**
 * ComfyUI's "deis" sampler (comfy/k_diffusion/sampling.py sample_deis, max_order 3, deis_mode 'tab', with the
 * coefficients of comfy/k_diffusion/deis.py). DEIS is an Adams-Bashforth method on the sigma axis whose weights are
 * integrals of Lagrange polynomials against a VP-SDE kernel, in the VP time t of a schedule fitted to EDM's range:
 *  - t(sigma) inverts sigma(t)^2 = exp(beta_min t + beta_d t^2 / 2) - 1, with beta_d and beta_min fitted to
 *    EDM's sigma_min 0.002, sigma_max 80 at t = 1e-3 and t = 1 (fixed, whatever the model's own range);
 *  - the weight of the derivative k steps back is the sum over N = 10000 points of linspace(t_i, t_{i+1}, N) of
 *    kernel(tau) * L_k(tau), times (t_{i+1} - t_i) / N (ComfyUI's quadrature: N points including both ends but the
 *    step of N intervals; reproduced as is, since it shifts the weights by ~1e-4);
 *  - kernel(tau) = -0.5 d log alpha / d tau / sqrt(alpha (1 - alpha)), alpha(t) = exp(-t^2 (beta_1 - beta_0) / 2 - t beta_0);
 *  - order min(i + 1, 3); a step to sigma 0 (and the first step) is an Euler step.
 * The VP fit and t(sigma) are computed op by op in float32 like ComfyUI's torch code: float32 rounding of
 * sigma^2 + 1 and of beta_min (a difference of two ~8.76 values) moves the weights by up to 2.5e-4 relative, which
 * exact math would miss; the quadrature itself is float64 (within 1.3e-6 of ComfyUI's weights on the reference cases).
 *
 * Example:
 *   const sigmas = ksamplerSigmas(ms, 'deis', 'karras', 20);
 *   const out = await sampleDeis({ denoiser, x: initialSample(ms, sigmas[0], noise, latent), sigmas });
 */
import { prepare, type KSamplerFn } from './k-samplers.js';
import { lincomb, toD } from './vec.js';

const f = Math.fround;
const QUADRATURE_POINTS = 10000;
const MAX_ORDER = 3;

/** beta_d, beta_min of deis.py edm2t: the VP schedule through EDM's (sigma_min, sigma_max) = (0.002, 80). */
function vpFit(): { betaD: number; betaMin: number } {
  const epsS = f(1e-3),
    sMin = f(0.002),
    sMax = 80;
  const lMin = f(Math.log(f(f(sMin * sMin) + 1))),
    lMax = f(Math.log(f(sMax * sMax + 1)));
  const betaD = f(f(2 * f(f(lMin / epsS) - lMax)) / f(1e-3 - 1));
  return { betaD, betaMin: f(lMax - f(0.5 * betaD)) };
}

/** VP time of a sigma (edm2t's vp_sigma_inv). */
function vpTime(sigma: number, betaD: number, betaMin: number): number {
  const s = f(sigma),
    logTerm = f(f(2 * betaD) * f(Math.log(f(f(s * s) + 1))));
  return f(f(f(Math.sqrt(f(f(betaMin * betaMin) + logTerm))) - betaMin) / betaD);
}

/**
 * deis.py get_deis_coeff_list ('tab'): per step i, the weights of [d_i, d_{i-1}, ...] (empty for order-1 steps;
 * null for steps ending at t = 0, where the kernel is infinite and the sampler takes an Euler step instead).
 * Example: deisCoefficients([14.61, 4.8, 1.27, 0.25, 0])[2] // three weights for d_2, d_1, d_0
 */
export function deisCoefficients(sigmas: ArrayLike<number>, maxOrder = MAX_ORDER): (number[] | null)[] {
  const { betaD, betaMin } = vpFit();
  const beta0 = betaMin,
    beta1 = f(betaD + betaMin);
  const t = Array.from(sigmas, (s) => vpTime(s, betaD, betaMin));
  const out: (number[] | null)[] = [];
  for (let i = 0; i < t.length - 1; i++) {
    const order = Math.min(i + 1, maxOrder);
    if (order === 1) {
      out.push([]);
      continue;
    }
    if (!(sigmas[i + 1] > 0)) {
      out.push(null);
      continue;
    }
    const a = t[i],
      b = t[i + 1],
      N = QUADRATURE_POINTS;
    const prev = Array.from({ length: order }, (_, k) => t[i - k]);
    const sums = new Array<number>(order).fill(0);
    const step = (b - a) / (N - 1);
    for (let n = 0; n < N; n++) {
      // torch.linspace: from the start for the first half, from the end for the second
      const tau = n < N / 2 ? a + step * n : b - step * (N - 1 - n);
      const alpha = Math.exp(-0.5 * tau * tau * (beta1 - beta0) - tau * beta0);
      const dLogAlpha = -tau * (beta1 - beta0) - beta0;
      const kernel = (-0.5 * dLogAlpha) / Math.sqrt(alpha * (1 - alpha));
      for (let j = 0; j < order; j++) {
        let poly = 1;
        for (let k = 0; k < order; k++) if (k !== j) poly *= (tau - prev[k]) / (prev[j] - prev[k]);
        sums[j] += kernel * poly;
      }
    }
    const dtau = (b - a) / N;
    out.push(sums.map((s) => s * dtau));
  }
  return out;
}

/** deis (max order 3, tab): x_{i+1} = x_i + sum_k c_ik d_{i-k}, d = (x - denoised) / sigma. */
export const sampleDeis: KSamplerFn = async (a) => {
  const { sigmas, report, D } = prepare(a);
  const coeffs = deisCoefficients(sigmas);
  const history: Float32Array[] = [];
  let x = a.x;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const den = await D(x, sigmas[i]);
    await report(i, x, den);
    const d = toD(x, den, sigmas[i]);
    const c = coeffs[i];
    if (!c || c.length === 0)
      x = lincomb([
        [x, 1],
        [d, sigmas[i + 1] - sigmas[i]],
      ]);
    else {
      const terms: [Float32Array, number][] = [
        [x, 1],
        [d, c[0]],
      ];
      for (let k = 1; k < c.length; k++) terms.push([history[history.length - k], c[k]]);
      x = lincomb(terms);
    }
    history.push(d);
    if (history.length > MAX_ORDER - 1) history.shift();
  }
  return x;
};
