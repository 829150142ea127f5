/**
 * Deterministic multistep / exponential samplers that ComfyUI added after the k-diffusion set, with ComfyUI's names
 * and semantics (comfy/k_diffusion/sampling.py), for eps/"discrete" models (alpha = 1, lambda = -log sigma):
 *  ipndm_v (variable-step iPNDM), res_multistep (RES 2nd-order multistep, eta 0), gradient_estimation (ge_gamma 2),
 *  exp_heun_2_x0 (exponential Heun in data prediction: seeds_2 with r = 1, eta 0, phi_2).
 * None of them draws noise. deis lives in k-sampler-deis.ts.
 *
 * Example:
 *   const out = await sampleIpndmV({ denoiser, x, sigmas: ksamplerSigmas(ms, 'ipndm_v', 'karras', 20) });
 */
import { prepare, type KSamplerFn } from './k-samplers.js';
import { lincomb, toD } from './vec.js';

/** iPNDM-v weights of [d_i, d_{i-1}, d_{i-2}, d_{i-3}] for steps h_n = t_{i+1} - t_i, h_n1 = t_i - t_{i-1}, ... */
function ipndmVWeights(order: number, t: number[], i: number): number[] {
  const hn = t[i + 1] - t[i];
  const h1 = t[i] - t[i - 1];
  if (order === 2) return [(2 + hn / h1) / 2, -(hn / h1) / 2];
  const h2 = t[i - 1] - t[i - 2];
  const temp1 = (1 - ((hn / (3 * (hn + h1))) * (hn * (hn + h1))) / (h1 * (h1 + h2))) / 2;
  if (order === 3) {
    return [(2 + hn / h1) / 2 + temp1, -(hn / h1) / 2 - (1 + h1 / h2) * temp1, (temp1 * h1) / h2];
  }
  const h3 = t[i - 2] - t[i - 3];
  const temp2 =
    ((1 - hn / (3 * (hn + h1))) / 2 + ((1 - hn / (2 * (hn + h1))) * hn) / (6 * (hn + h1 + h2))) *
    ((hn * (hn + h1) * (hn + h1 + h2)) / (h1 * (h1 + h2) * (h1 + h2 + h3)));
  const r = (h1 * (h1 + h2)) / (h2 * (h2 + h3));
  return [
    (2 + hn / h1) / 2 + temp1 + temp2,
    -(hn / h1) / 2 - (1 + h1 / h2) * temp1 - (1 + h1 / h2 + r) * temp2,
    (temp1 * h1) / h2 + (h1 / h2 + r * (1 + h2 / h3)) * temp2,
    (-temp2 * r * h1) / h2,
  ];
}

/** ipndm_v (max order 4): Adams-Bashforth on the sigma axis with weights for the actual (uneven) step sizes. */
export const sampleIpndmV: KSamplerFn = async (a) => {
  const { sigmas, report, D } = prepare(a);
  const history: Float32Array[] = [];
  let x = a.x;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const den = await D(x, sigmas[i]);
    await report(i, x, den);
    const d = toD(x, den, sigmas[i]);
    const order = Math.min(4, i + 1);
    const h = sigmas[i + 1] - sigmas[i];
    if (sigmas[i + 1] === 0) x = den;
    else if (order === 1)
      x = lincomb([
        [x, 1],
        [d, h],
      ]);
    else {
      const w = ipndmVWeights(order, sigmas, i);
      const terms: [Float32Array, number][] = [
        [x, 1],
        [d, h * w[0]],
      ];
      for (let k = 1; k < order; k++) terms.push([history[history.length - k], h * w[k]]);
      x = lincomb(terms);
    }
    history.push(d);
    if (history.length > 3) history.shift();
  }
  return x;
};

/**
 * The RES 2nd-order multistep step from sigma to sigmaNext with the previous sigma (eta 0, so the previous
 * sigma_down is this step's sigma): h in lambda = -log sigma, and the weights b1 (this prediction) and b2 (the
 * previous one), NaN read as 0 as ComfyUI does. Shared by res_multistep and res_multistep_cfg_pp.
 */
export function resMultistepCoefficients(
  sigmaPrev: number,
  sigma: number,
  sigmaNext: number,
): { h: number; b1: number; b2: number } {
  const t = -Math.log(sigma),
    tNext = -Math.log(sigmaNext),
    tPrev = -Math.log(sigmaPrev);
  const h = tNext - t;
  const c2 = (tPrev - t) / h;
  const phi1 = Math.expm1(-h) / -h;
  const phi2 = (phi1 - 1) / -h;
  const nanToZero = (v: number) => (Number.isNaN(v) ? 0 : v);
  return { h, b1: nanToZero(phi1 - phi2 / c2), b2: nanToZero(phi2 / c2) };
}

/**
 * res_multistep (eta 0): the first step and the step to 0 are Euler; the others are the 2nd-order RES multistep
 * update in lambda = -log sigma, x = e^-h x + h (b1 D_i + b2 D_{i-1}), b1 = phi1 - phi2 / c2, b2 = phi2 / c2,
 * phi1(-h) = (e^-h - 1) / -h, phi2(-h) = (phi1 - 1) / -h, c2 = (lambda_{i-1} - lambda_i) / h (as ComfyUI has it).
 */
export const sampleResMultistep: KSamplerFn = async (a) => {
  const { sigmas, report, D } = prepare(a);
  let x = a.x;
  let old: Float32Array | null = null;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const s = sigmas[i],
      sn = sigmas[i + 1];
    const den = await D(x, s);
    await report(i, x, den);
    if (sn === 0 || !old)
      x = lincomb([
        [x, 1],
        [toD(x, den, s), sn - s],
      ]);
    else {
      const { h, b1, b2 } = resMultistepCoefficients(sigmas[i - 1], s, sn);
      x = lincomb([
        [x, Math.exp(-h)],
        [den, h * b1],
        [old, h * b2],
      ]);
    }
    old = den;
  }
  return x;
};

/** gradient_estimation (ge_gamma 2): Euler plus (gamma - 1) (d_i - d_{i-1}) dt from the second step on; last step returns denoised. */
export const sampleGradientEstimation: KSamplerFn = async (a) => {
  const { sigmas, report, D } = prepare(a);
  const geGamma = 2;
  let x = a.x;
  let oldD: Float32Array | null = null;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const den = await D(x, sigmas[i]);
    await report(i, x, den);
    const d = toD(x, den, sigmas[i]);
    const dt = sigmas[i + 1] - sigmas[i];
    if (sigmas[i + 1] === 0) x = den;
    else if (i >= 1 && oldD)
      x = lincomb([
        [x, 1],
        [d, dt + (geGamma - 1) * dt],
        [oldD, -(geGamma - 1) * dt],
      ]);
    else
      x = lincomb([
        [x, 1],
        [d, dt],
      ]);
    oldD = d;
  }
  return x;
};

/**
 * exp_heun_2_x0: exponential Heun in data prediction and lambda = -log sigma (ComfyUI's seeds_2 with r = 1, eta 0,
 * solver phi_2). Per step: x2 = (sigma_{i+1} / sigma_i) x + (1 - e^-h) D_i, a second model call at sigma_{i+1},
 * then x = (sigma_{i+1} / sigma_i) x - (b1 D_i + b2 D(x2)), b2 = (e^-h - 1 + h) / -h, b1 = e^-h - 1 - b2.
 * The step to 0 returns denoised (one call).
 */
export const sampleExpHeun2X0: KSamplerFn = async (a) => {
  const { sigmas, report, D } = prepare(a);
  let x = a.x;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const s = sigmas[i],
      sn = sigmas[i + 1];
    const den = await D(x, s);
    await report(i, x, den);
    if (sn === 0) {
      x = den;
      continue;
    }
    const lamS = -Math.log(s),
      lamT = -Math.log(sn);
    const h = lamT - lamS;
    // ComfyUI goes through lambda and back: sigma_s1 = exp(-lambda_t), alpha = sigma * exp(lambda)
    const sigmaS1 = Math.exp(-lamT),
      alphaS1 = sigmaS1 * Math.exp(lamT),
      alphaT = sn * Math.exp(lamT);
    const em1 = Math.expm1(-h);
    const x2 = lincomb([
      [x, sigmaS1 / s],
      [den, -alphaS1 * em1],
    ]);
    const den2 = await D(x2, sigmaS1);
    const b2 = (em1 + h) / -h,
      b1 = em1 - b2;
    x = lincomb([
      [x, sn / s],
      [den, -alphaT * b1],
      [den2, -alphaT * b2],
    ]);
  }
  return x;
};
