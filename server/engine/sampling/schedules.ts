/**
 * ComfyUI's noise schedules (calculate_sigmas) and KSampler's sigma rules, over a DiscreteModelSampling.
 * Each returns steps + 1 sigmas ending in 0 (except where ComfyUI itself differs), as float32 values like
 * torch.FloatTensor(...). Float32 tensor arithmetic is emulated with Math.fround.
 *
 * Example:
 *   const ms = DiscreteModelSampling.sd();
 *   calculateSigmas(ms, 'karras', 4);                 // [14.61, 4.09, ..., 0]
 *   ksamplerSigmas(ms, 'dpm_2', 'normal', 20, 0.6);   // KSampler: steps+1 rule and denoise truncation
 */
import type { DiscreteModelSampling } from './model-sampling.js';
import { betaPpf } from './beta-dist.js';

const f = Math.fround;

export const SCHEDULER_NAMES = [
  'simple',
  'sgm_uniform',
  'karras',
  'exponential',
  'ddim_uniform',
  'beta',
  'normal',
  'linear_quadratic',
  'kl_optimal',
] as const;
export type SchedulerName = (typeof SCHEDULER_NAMES)[number];

/** torch.linspace(start, end, steps) in the default float32 dtype. */
function linspaceF32(start: number, end: number, steps: number): number[] {
  if (steps <= 0) return [];
  if (steps === 1) return [f(start)];
  const s = f(start),
    e = f(end);
  const step = f((e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  return Array.from({ length: steps }, (_, i) => f(i < half ? s + step * i : e - step * (steps - i - 1)));
}

/** k-diffusion get_sigmas_karras (rho = 7), float32. */
export function karrasSigmas(n: number, sigmaMin: number, sigmaMax: number, rho = 7): number[] {
  const minInv = sigmaMin ** (1 / rho),
    maxInv = sigmaMax ** (1 / rho);
  const ramp = linspaceF32(0, 1, n);
  return [...ramp.map((r) => f(f(f(maxInv) + f(r * f(minInv - maxInv))) ** rho)), 0];
}

/** k-diffusion get_sigmas_exponential: exp(linspace(log max, log min, n)), float32. */
export function exponentialSigmas(n: number, sigmaMin: number, sigmaMax: number): number[] {
  return [...linspaceF32(Math.log(sigmaMax), Math.log(sigmaMin), n).map((v) => f(Math.exp(v))), 0];
}

/** ComfyUI kl_optimal_scheduler (tan of interpolated atan); n = 1 gives NaN exactly as ComfyUI does (0/0). */
export function klOptimalSigmas(n: number, sigmaMin: number, sigmaMax: number): number[] {
  const out: number[] = [];
  const aMin = Math.atan(sigmaMin),
    aMax = Math.atan(sigmaMax);
  for (let i = 0; i < n; i++) {
    const adj = f(i / (n - 1));
    out.push(f(Math.tan(f(f(adj * f(aMin)) + f(f(1 - adj) * f(aMax))))));
  }
  return [...out, 0];
}

/** normal (and sgm_uniform): sigma(t) at t = linspace(timestep(sigma_max), timestep(sigma_min), ...). */
export function normalSigmas(ms: DiscreteModelSampling, steps: number, sgm = false): number[] {
  const start = ms.timestep(ms.sigmaMax),
    end = ms.timestep(ms.sigmaMin);
  let appendZero = true;
  let ts: number[];
  if (sgm) ts = linspaceF32(start, end, steps + 1).slice(0, -1);
  else {
    // models whose smallest sigma is ~0 get one more step instead of an appended zero
    if (Math.abs(ms.sigma(end)) <= 1e-5) {
      steps += 1;
      appendZero = false;
    }
    ts = linspaceF32(start, end, steps);
  }
  const sigs = ts.map((t) => ms.sigma(t));
  return appendZero ? [...sigs, 0] : sigs;
}

/** simple: every len/steps-th table entry from the top. */
export function simpleSigmas(ms: DiscreteModelSampling, steps: number): number[] {
  const n = ms.sigmas.length,
    ss = n / steps;
  const out: number[] = [];
  for (let x = 0; x < steps; x++) out.push(ms.sigmas[n - 1 - Math.trunc(x * ss)]);
  return [...out, 0];
}

/** ddim_uniform: table entries 1, 1 + k, 1 + 2k, ... (k = len // steps), reversed. */
export function ddimUniformSigmas(ms: DiscreteModelSampling, steps: number): number[] {
  const n = ms.sigmas.length;
  let sigs: number[];
  if (Math.abs(ms.sigmas[1]) <= 1e-5) {
    steps += 1;
    sigs = [];
  } else sigs = [0];
  const ss = Math.max(Math.floor(n / steps), 1);
  for (let x = 1; x < n; x += ss) sigs.push(ms.sigmas[x]);
  return sigs.reverse();
}

/** beta (arXiv 2407.12173): table entries at rint(BetaPPF(1 - i/steps; 0.6, 0.6) * (len - 1)), repeats dropped. */
export function betaSigmas(ms: DiscreteModelSampling, steps: number, alpha = 0.6, beta = 0.6): number[] {
  const total = ms.sigmas.length - 1;
  const out: number[] = [];
  let last = -1;
  for (let i = 0; i < steps; i++) {
    const t = roundHalfEven(betaPpf(1 - i / steps, alpha, beta) * total);
    if (t !== last) out.push(ms.sigmas[t]);
    last = t;
  }
  return [...out, 0];
}

function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v - Math.trunc(v)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** linear_quadratic (Mochi): linear then quadratic in 1 - sigma/sigma_max, scaled by sigma_max. */
export function linearQuadraticSigmas(
  ms: DiscreteModelSampling,
  steps: number,
  thresholdNoise = 0.025,
  linearSteps?: number,
): number[] {
  let sched: number[];
  if (steps === 1) sched = [1, 0];
  else {
    const ls = linearSteps ?? Math.floor(steps / 2);
    const lin = Array.from({ length: ls }, (_, i) => (i * thresholdNoise) / ls);
    const diff = ls - thresholdNoise * steps;
    const qs = steps - ls;
    const qCoef = diff / (ls * qs ** 2);
    const lCoef = thresholdNoise / ls - (2 * diff) / qs ** 2;
    const c = qCoef * ls ** 2;
    const quad: number[] = [];
    for (let i = ls; i < steps; i++) quad.push(qCoef * i ** 2 + lCoef * i + c);
    sched = [...lin, ...quad, 1].map((v) => 1 - v);
  }
  return sched.map((v) => f(f(v) * ms.sigmaMax));
}

/** ComfyUI calculate_sigmas(model_sampling, scheduler, steps). */
export function calculateSigmas(ms: DiscreteModelSampling, scheduler: string, steps: number): number[] {
  switch (scheduler as SchedulerName) {
    case 'simple':
      return simpleSigmas(ms, steps);
    case 'sgm_uniform':
      return normalSigmas(ms, steps, true);
    case 'karras':
      return karrasSigmas(steps, ms.sigmaMin, ms.sigmaMax);
    case 'exponential':
      return exponentialSigmas(steps, ms.sigmaMin, ms.sigmaMax);
    case 'ddim_uniform':
      return ddimUniformSigmas(ms, steps);
    case 'beta':
      return betaSigmas(ms, steps);
    case 'normal':
      return normalSigmas(ms, steps);
    case 'linear_quadratic':
      return linearQuadraticSigmas(ms, steps);
    case 'kl_optimal':
      return klOptimalSigmas(steps, ms.sigmaMin, ms.sigmaMax);
    default:
      throw new Error(`error invalid scheduler ${scheduler}`);
  }
}

/** Samplers for which KSampler computes steps + 1 sigmas and drops the penultimate one. */
export const DISCARD_PENULTIMATE_SIGMA_SAMPLERS = new Set(['dpm_2', 'dpm_2_ancestral', 'uni_pc', 'uni_pc_bh2']);

/**
 * KSampler.set_steps: the steps + 1 rule for dpm_2/dpm_2_ancestral/uni_pc, and for denoise < 1 the last steps + 1
 * sigmas of a schedule of int(steps / denoise) steps (denoise <= 0: no sigmas at all).
 */
export function ksamplerSigmas(
  ms: DiscreteModelSampling,
  sampler: string,
  scheduler: string,
  steps: number,
  denoise = 1,
): number[] {
  const calc = (n: number) => {
    if (DISCARD_PENULTIMATE_SIGMA_SAMPLERS.has(sampler)) {
      const s = calculateSigmas(ms, scheduler, n + 1);
      return [...s.slice(0, -2), s[s.length - 1]];
    }
    return calculateSigmas(ms, scheduler, n);
  };
  if (denoise > 0.9999) return calc(steps);
  if (denoise <= 0) return [];
  const all = calc(Math.trunc(steps / denoise));
  return all.slice(-(steps + 1));
}
