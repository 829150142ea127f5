/**
 * k-diffusion samplers with ComfyUI's names and semantics (comfy/k_diffusion/sampling.py), as pure async
 * functions of a denoiser D(x, sigma) -> x0, a sigma schedule and a noise source. This file: the Euler/Heun/
 * DPM-2/LMS/iPNDM family; k-samplers-dpmpp.ts holds DPM-Solver++, DDPM, LCM and TCD.
 * Noise is drawn from `noise` in exactly the order ComfyUI's noise_sampler is called.
 *
 * Example:
 *   const out = await sampleEulerAncestral({ denoiser, x, sigmas: calculateSigmas(ms, 'normal', 20), noise: gen, shape });
 */
import type { Denoiser, NoiseSource, OnStep } from './noise.js';
import type { DiscreteModelSampling } from './model-sampling.js';
import { lincomb, toD } from './vec.js';

export interface KSamplerArgs {
  denoiser: Denoiser;
  /** the starting sample (already scaled noise, plus the latent for img2img) */
  x: Float32Array;
  sigmas: ArrayLike<number>;
  /** required by samplers that add noise */
  noise?: NoiseSource;
  /** latent shape for noise draws (defaults to [x.length]) */
  shape?: number[];
  onStep?: OnStep;
  /** ancestral / SDE strength (default 1; for tcd: gamma, default 0.3) */
  eta?: number;
  /** noise multiplier (default 1) */
  sNoise?: number;
  /** dpmpp_2m_sde: 'midpoint' (default) or 'heun' */
  solverType?: 'midpoint' | 'heun';
  /** tcd needs the discrete schedule to find timesteps */
  modelSampling?: DiscreteModelSampling;
}
export type KSamplerFn = (a: KSamplerArgs) => Promise<Float32Array>;

/** Everything a sampler loop needs, resolved once. */
export function prepare(a: KSamplerArgs) {
  const sigmas = Array.from(a.sigmas);
  const shape = a.shape ?? [a.x.length];
  const draw = (): Float32Array => {
    if (!a.noise) throw new Error('this sampler adds noise: pass a noise source');
    return a.noise.randn(shape);
  };
  const report = async (i: number, x: Float32Array, denoised: Float32Array) => {
    if (a.onStep) await a.onStep({ i, total: sigmas.length - 1, x, denoised, sigma: sigmas[i] });
  };
  return { sigmas, draw, report, D: a.denoiser, sNoise: a.sNoise ?? 1 };
}

/** k-diffusion get_ancestral_step: the sigma to step down to and the noise to add back. */
export function ancestralStep(sigmaFrom: number, sigmaTo: number, eta = 1): { down: number; up: number } {
  if (!eta) return { down: sigmaTo, up: 0 };
  const up = Math.min(sigmaTo, eta * Math.sqrt((sigmaTo ** 2 * (sigmaFrom ** 2 - sigmaTo ** 2)) / sigmaFrom ** 2));
  return { down: Math.sqrt(sigmaTo ** 2 - up ** 2), up };
}

/** euler (also ComfyUI's "ddim"): x += d * (sigma_next - sigma). */
export const sampleEuler: KSamplerFn = async (a) => {
  const { sigmas, report, D } = prepare(a);
  let x = a.x;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const den = await D(x, sigmas[i]);
    await report(i, x, den);
    x = lincomb([
      [x, 1],
      [toD(x, den, sigmas[i]), sigmas[i + 1] - sigmas[i]],
    ]);
  }
  return x;
};

/** euler_ancestral: Euler step down to sigma_down, then noise * sigma_up (the last step returns denoised). */
export const sampleEulerAncestral: KSamplerFn = async (a) => {
  const { sigmas, report, D, draw, sNoise } = prepare(a);
  const eta = a.eta ?? 1;
  let x = a.x;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const den = await D(x, sigmas[i]);
    const { down, up } = ancestralStep(sigmas[i], sigmas[i + 1], eta);
    await report(i, x, den);
    if (down === 0) {
      x = den;
      continue;
    }
    x = lincomb([
      [x, 1],
      [toD(x, den, sigmas[i]), down - sigmas[i]],
      [draw(), sNoise * up],
    ]);
  }
  return x;
};

/** heun: trapezoid correction with a second model call, Euler on the final step to 0. */
export const sampleHeun: KSamplerFn = async (a) => {
  const { sigmas, report, D } = prepare(a);
  let x = a.x;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const s = sigmas[i],
      sn = sigmas[i + 1];
    const den = await D(x, s);
    const d = toD(x, den, s);
    await report(i, x, den);
    const dt = sn - s;
    if (sn === 0) {
      x = lincomb([
        [x, 1],
        [d, dt],
      ]);
      continue;
    }
    const x2 = lincomb([
      [x, 1],
      [d, dt],
    ]);
    const d2 = toD(x2, await D(x2, sn), sn);
    x = lincomb([
      [x, 1],
      [d, dt / 2],
      [d2, dt / 2],
    ]);
  }
  return x;
};

function logMid(a: number, b: number): number {
  return Math.exp(Math.log(a) + 0.5 * (Math.log(b) - Math.log(a)));
}

/** dpm_2: midpoint in log sigma (DPM-Solver-2 flavour), Euler on the final step. */
export const sampleDpm2: KSamplerFn = async (a) => {
  const { sigmas, report, D } = prepare(a);
  let x = a.x;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const s = sigmas[i],
      sn = sigmas[i + 1];
    const den = await D(x, s);
    const d = toD(x, den, s);
    await report(i, x, den);
    if (sn === 0) {
      x = lincomb([
        [x, 1],
        [d, sn - s],
      ]);
      continue;
    }
    const mid = logMid(s, sn);
    const x2 = lincomb([
      [x, 1],
      [d, mid - s],
    ]);
    const d2 = toD(x2, await D(x2, mid), mid);
    x = lincomb([
      [x, 1],
      [d2, sn - s],
    ]);
  }
  return x;
};

/** dpm_2_ancestral: dpm_2 down to sigma_down, then noise * sigma_up. */
export const sampleDpm2Ancestral: KSamplerFn = async (a) => {
  const { sigmas, report, D, draw, sNoise } = prepare(a);
  const eta = a.eta ?? 1;
  let x = a.x;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const s = sigmas[i];
    const den = await D(x, s);
    const { down, up } = ancestralStep(s, sigmas[i + 1], eta);
    await report(i, x, den);
    const d = toD(x, den, s);
    if (down === 0) {
      x = lincomb([
        [x, 1],
        [d, down - s],
      ]);
      continue;
    }
    const mid = logMid(s, down);
    const x2 = lincomb([
      [x, 1],
      [d, mid - s],
    ]);
    const d2 = toD(x2, await D(x2, mid), mid);
    x = lincomb([
      [x, 1],
      [d2, down - s],
      [draw(), sNoise * up],
    ]);
  }
  return x;
};

/** Integral over [t_i, t_{i+1}] of the Lagrange basis polynomial j of points t_i, t_{i-1}, ... (exact: Gauss-Legendre). */
function lmsCoeff(order: number, t: number[], i: number, j: number): number {
  const nodes = [-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526];
  const weights = [0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538];
  const a = t[i],
    b = t[i + 1];
  let sum = 0;
  for (let q = 0; q < 4; q++) {
    const tau = 0.5 * (b - a) * nodes[q] + 0.5 * (a + b);
    let prod = 1;
    for (let k = 0; k < order; k++) if (k !== j) prod *= (tau - t[i - k]) / (t[i - j] - t[i - k]);
    sum += weights[q] * prod;
  }
  return 0.5 * (b - a) * sum;
}

/** lms (order 4): linear multistep on the sigma axis; the final step to 0 returns denoised. */
export const sampleLms: KSamplerFn = async (a) => {
  const { sigmas, report, D } = prepare(a);
  const order = 4;
  const ds: Float32Array[] = [];
  let x = a.x;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const den = await D(x, sigmas[i]);
    ds.push(toD(x, den, sigmas[i]));
    if (ds.length > order) ds.shift();
    await report(i, x, den);
    if (sigmas[i + 1] === 0) {
      x = den;
      continue;
    }
    const cur = Math.min(i + 1, order);
    const terms: [Float32Array, number][] = [[x, 1]];
    for (let j = 0; j < cur; j++) terms.push([ds[ds.length - 1 - j], lmsCoeff(cur, sigmas, i, j)]);
    x = lincomb(terms);
  }
  return x;
};

/** ipndm (max order 4): Adams-Bashforth on the sigma axis with fixed coefficients. */
export const sampleIpndm: KSamplerFn = async (a) => {
  const { sigmas, report, D } = prepare(a);
  const buf: Float32Array[] = [];
  let x = a.x;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const t = sigmas[i],
      tn = sigmas[i + 1];
    const den = await D(x, t);
    await report(i, x, den);
    const d = toD(x, den, t);
    const order = Math.min(4, i + 1);
    const h = tn - t;
    const b = (k: number) => buf[buf.length - k];
    const xIn = x;
    if (tn === 0) x = den;
    else if (order === 1)
      x = lincomb([
        [xIn, 1],
        [d, h],
      ]);
    else if (order === 2)
      x = lincomb([
        [xIn, 1],
        [d, (h * 3) / 2],
        [b(1), -h / 2],
      ]);
    else if (order === 3)
      x = lincomb([
        [xIn, 1],
        [d, (h * 23) / 12],
        [b(1), (-h * 16) / 12],
        [b(2), (h * 5) / 12],
      ]);
    else
      x = lincomb([
        [xIn, 1],
        [d, (h * 55) / 24],
        [b(1), (-h * 59) / 24],
        [b(2), (h * 37) / 24],
        [b(3), (-h * 9) / 24],
      ]);
    buf.push(d);
    if (buf.length > 3) buf.shift();
  }
  return x;
};

/** heunpp2: Heun with a third evaluation and sigma-weighted slopes (s_churn = 0, so no noise is drawn). */
export const sampleHeunpp2: KSamplerFn = async (a) => {
  const { sigmas, report, D } = prepare(a);
  const sEnd = sigmas[sigmas.length - 1];
  let x = a.x;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const s = sigmas[i],
      sn = sigmas[i + 1];
    const den = await D(x, s);
    const d = toD(x, den, s);
    await report(i, x, den);
    const dt = sn - s;
    if (sn === sEnd) {
      x = lincomb([
        [x, 1],
        [d, dt],
      ]);
      continue;
    }
    const x2 = lincomb([
      [x, 1],
      [d, dt],
    ]);
    const d2 = toD(x2, await D(x2, sn), sn);
    if (sigmas[i + 2] === sEnd) {
      const w2 = sn / (2 * sigmas[0]),
        w1 = 1 - w2;
      x = lincomb([
        [x, 1],
        [d, dt * w1],
        [d2, dt * w2],
      ]);
      continue;
    }
    const sn2 = sigmas[i + 2];
    const x3 = lincomb([
      [x2, 1],
      [d2, sn2 - sn],
    ]);
    const d3 = toD(x3, await D(x3, sn2), sn2);
    const w = 3 * sigmas[0],
      w2 = sn / w,
      w3 = sn2 / w,
      w1 = 1 - w2 - w3;
    x = lincomb([
      [x, 1],
      [d, dt * w1],
      [d2, dt * w2],
      [d3, dt * w3],
    ]);
  }
  return x;
};
