/**
 * ComfyUI's CFG++ samplers (comfy/k_diffusion/sampling.py *_cfg_pp), for eps/"discrete" models (alpha = 1,
 * lambda = -log sigma). CFG++ steps the sample along the *unconditional* prediction and renoises with the
 * cfg-combined one, so these samplers need both: ComfyUI captures the unconditional denoised through a
 * sampler_post_cfg_function hook and forces the negative branch to run even at cfg 1. Here the denoiser carries a
 * `withUncond(x, sigma)` method that returns both (cfgDenoiser / cfgEpsDenoiser in model-sampling.ts attach it);
 * a plain denoiser counts as unguided (uncond = denoised).
 *
 * Example:
 *   const denoiser = cfgEpsDenoiser(ms, condEps, uncondEps, 1.2);
 *   const out = await sampleDpmpp2mCfgPp({ denoiser, x, sigmas: ksamplerSigmas(ms, 'dpmpp_2m_cfg_pp', 'karras', 20) });
 */
import { ancestralStep, prepare, type KSamplerArgs, type KSamplerFn } from './k-samplers.js';
import type { UncondDenoise } from './model-sampling.js';
import { resMultistepCoefficients } from './k-samplers-multistep.js';
import { lincomb, toD } from './vec.js';

const f = Math.fround;

/**
 * get_ancestral_step as torch computes it on float32 sigmas. dpmpp_2s_ancestral_cfg_pp takes log(sigma_down), and
 * for a big step (sigma_next << sigma) sigma_down^2 = sigma_next^2 - sigma_up^2 cancels to a few float32 ulps, so
 * ComfyUI's sigma_down is off by up to ~1% there; the step depends on it visibly, so we round the same way.
 */
function ancestralStepF32(sigmaFrom: number, sigmaTo: number, eta: number): { down: number; up: number } {
  if (!eta) return { down: sigmaTo, up: 0 };
  const from2 = f(sigmaFrom * sigmaFrom),
    to2 = f(sigmaTo * sigmaTo);
  const up = Math.min(sigmaTo, f(eta * f(Math.sqrt(f(f(to2 * f(from2 - to2)) / from2)))));
  return { down: f(Math.sqrt(f(to2 - f(up * up)))), up };
}

/**
 * The denoiser's (denoised, uncond) pair. A plain denoiser (no `withUncond`) is taken as unguided: its prediction is
 * also the unconditional one, and each CFG++ sampler then reduces to its base sampler (euler, dpmpp_2m, ...).
 */
function withUncond(a: KSamplerArgs): UncondDenoise {
  const w = (a.denoiser as { withUncond?: UncondDenoise }).withUncond;
  if (w) return w;
  const D = a.denoiser;
  return async (x, sigma) => {
    const d = await D(x, sigma);
    return { denoised: d, uncond: d };
  };
}

/**
 * euler_ancestral_cfg_pp: x = denoised + sigma_down * (x - uncond) / sigma, plus noise * sigma_up
 * (ancestral step with `eta`, default 1); the step to sigma 0 returns denoised.
 */
export const sampleEulerAncestralCfgPp: KSamplerFn = async (a) => {
  const { sigmas, report, draw, sNoise } = prepare(a);
  const W = withUncond(a);
  const eta = a.eta ?? 1;
  let x = a.x;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const s = sigmas[i],
      sn = sigmas[i + 1];
    const { denoised, uncond } = await W(x, s);
    await report(i, x, denoised);
    if (sn === 0) {
      x = denoised;
      continue;
    }
    const { down, up } = ancestralStep(s, sn, eta);
    const terms: [Float32Array, number][] = [
      [denoised, 1],
      [x, down / s],
      [uncond, -down / s],
    ];
    if (eta > 0 && sNoise > 0) terms.push([draw(), sNoise * up]);
    x = lincomb(terms);
  }
  return x;
};

/** euler_cfg_pp: euler_ancestral_cfg_pp with eta 0 and no noise. */
export const sampleEulerCfgPp: KSamplerFn = (a) => sampleEulerAncestralCfgPp({ ...a, eta: 0, sNoise: 0 });

/**
 * dpmpp_2s_ancestral_cfg_pp: DPM-Solver++(2S) on the unconditional prediction down to sigma_down (the midpoint
 * call is made for its unconditional output only), noise * sigma_up, then the guidance vector (denoised - uncond of
 * the first call) is added back, on the last step too.
 */
export const sampleDpmpp2sAncestralCfgPp: KSamplerFn = async (a) => {
  const { sigmas, report, draw, sNoise } = prepare(a);
  const W = withUncond(a);
  const eta = a.eta ?? 1;
  let x = a.x;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const s = sigmas[i],
      sn = sigmas[i + 1];
    const { denoised, uncond } = await W(x, s);
    const { down, up } = ancestralStepF32(s, sn, eta);
    await report(i, x, denoised);
    if (down === 0) {
      x = lincomb([
        [x, 1],
        [toD(x, uncond, s), -s],
      ]);
    } else {
      const t = -Math.log(s),
        tNext = -Math.log(down);
      const h = tNext - t;
      const sMid = Math.exp(-(t + h / 2));
      const x2 = lincomb([
        [x, sMid / s],
        [uncond, -Math.expm1(-h / 2)],
      ]);
      const { uncond: uncond2 } = await W(x2, sMid);
      x = lincomb([
        [x, Math.exp(-tNext) / s],
        [uncond2, -Math.expm1(-h)],
      ]);
    }
    const terms: [Float32Array, number][] = [
      [x, 1],
      [denoised, 1],
      [uncond, -1],
    ];
    if (sn > 0) terms.push([draw(), sNoise * up]);
    x = lincomb(terms);
  }
  return x;
};

/**
 * dpmpp_2m_cfg_pp: x = denoised - e^-h uncond + e^-h x, with the 2M correction
 * - expm1(-h) / (2 r) * (denoised - uncond_{i-1}) once there is a previous step; the step to 0 returns denoised.
 */
export const sampleDpmpp2mCfgPp: KSamplerFn = async (a) => {
  const { sigmas, report } = prepare(a);
  const W = withUncond(a);
  let x = a.x;
  let oldUncond: Float32Array | null = null;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const s = sigmas[i],
      sn = sigmas[i + 1];
    const { denoised, uncond } = await W(x, s);
    await report(i, x, denoised);
    if (sn === 0)
      x = denoised; // e^-h = 0: ComfyUI's expression reduces to denoised exactly
    else {
      const t = -Math.log(s),
        h = -Math.log(sn) - t,
        e = Math.exp(-h);
      if (!oldUncond)
        x = lincomb([
          [denoised, 1],
          [uncond, -e],
          [x, e],
        ]);
      else {
        const r = (t + Math.log(sigmas[i - 1])) / h;
        const c = Math.expm1(-h) / (2 * r);
        x = lincomb([
          [denoised, 1 - c],
          [oldUncond, c],
          [uncond, -e],
          [x, e],
        ]);
      }
    }
    oldUncond = uncond;
  }
  return x;
};

/**
 * res_multistep_cfg_pp (eta 0): the first step and the step to 0 are x = denoised + (x - uncond) / sigma * sigma_next;
 * the others add the guidance (denoised - uncond) to x and take the RES 2nd-order step on the unconditional
 * predictions: x = e^-h (x + denoised - uncond) + h (b1 uncond_i + b2 uncond_{i-1}).
 */
export const sampleResMultistepCfgPp: KSamplerFn = async (a) => {
  const { sigmas, report } = prepare(a);
  const W = withUncond(a);
  let x = a.x;
  let old: Float32Array | null = null;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const s = sigmas[i],
      sn = sigmas[i + 1];
    const { denoised, uncond } = await W(x, s);
    await report(i, x, denoised);
    if (sn === 0 || !old)
      x = lincomb([
        [denoised, 1],
        [x, sn / s],
        [uncond, -sn / s],
      ]);
    else {
      const { h, b1, b2 } = resMultistepCoefficients(sigmas[i - 1], s, sn);
      const e = Math.exp(-h);
      x = lincomb([
        [x, e],
        [denoised, e],
        [uncond, -e + h * b1],
        [old, h * b2],
      ]);
    }
    old = uncond;
  }
  return x;
};

/**
 * gradient_estimation_cfg_pp (ge_gamma 2): d = (x - uncond) / sigma, x = denoised + d * sigma_next, plus
 * (gamma - 1) (d_i - d_{i-1}) dt from the second step on; the step to 0 returns denoised.
 */
export const sampleGradientEstimationCfgPp: KSamplerFn = async (a) => {
  const { sigmas, report } = prepare(a);
  const W = withUncond(a);
  const geGamma = 2;
  let x = a.x;
  let oldD: Float32Array | null = null;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const s = sigmas[i],
      sn = sigmas[i + 1];
    const { denoised, uncond } = await W(x, s);
    await report(i, x, denoised);
    const d = toD(x, uncond, s);
    if (sn === 0) x = denoised;
    else {
      const terms: [Float32Array, number][] = [
        [denoised, 1],
        [d, sn],
      ];
      if (i >= 1 && oldD) terms.push([d, (geGamma - 1) * (sn - s)], [oldD, -(geGamma - 1) * (sn - s)]);
      x = lincomb(terms);
    }
    oldD = d;
  }
  return x;
};
