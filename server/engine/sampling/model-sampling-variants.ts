/**
 * ComfyUI's model-sampling variants for discrete-time SD models (ModelSamplingDiscrete node, ComfyUI-TCD):
 * - zsnr: the sigma table rescaled to zero terminal SNR (float64, last alpha_bar 4.8973451890853435e-08);
 * - distilled (LCM, TCD): the 50-entry table sigma[999 - 20 k], timestep(sigma) = argmin * 20 + 19 and
 *   sigma(t) interpolated at (t - 19) / 20 (ModelSamplingDiscreteDistilled);
 * - what the network predicts, turned into the denoised sample: eps, v_prediction, x0, lcm (consistency-model
 *   boundary scalings c_skip/c_out at sigma_data 0.5 and timestep x 10).
 * Example:
 *   const ms = modelSamplingFor({ prediction: 'v_prediction', zsnr: true });
 *   const d = predictionDenoiser(ms, 'v_prediction', (xs, t) => unet(xs, t));
 */
import type { Denoiser } from './noise.js';
import { DiscreteModelSampling, scaleInput, sdSigmas64, type EpsModel } from './model-sampling.js';

const f = Math.fround;

export type Prediction = 'eps' | 'v_prediction' | 'x0' | 'lcm';
export interface SamplingSpec {
  prediction: Prediction;
  zsnr: boolean;
  distilled?: boolean;
}

/** rescale_zero_terminal_snr_sigmas (float64) */
export function rescaleZeroTerminalSnr(sigmas: Float64Array): Float64Array {
  const sqrtAbar = Float64Array.from(sigmas, (s) => Math.sqrt(1 / (s * s + 1)));
  const first = sqrtAbar[0],
    last = sqrtAbar[sqrtAbar.length - 1];
  const out = new Float64Array(sigmas.length);
  for (let i = 0; i < out.length; i++) {
    let abar = ((sqrtAbar[i] - last) * (first / (first - last))) ** 2;
    if (i === out.length - 1) abar = 4.8973451890853435e-8;
    out[i] = Math.sqrt((1 - abar) / abar);
  }
  return out;
}

/** ModelSamplingDiscreteDistilled: 50 of the 1000 sigmas, with its own timestep <-> sigma maps. */
export class DistilledModelSampling extends DiscreteModelSampling {
  readonly skip: number;
  /** the full table it was taken from (TCD's alpha_prod_s lookups index it) */
  readonly base: DiscreteModelSampling;
  constructor(base: DiscreteModelSampling, originalTimesteps = 50) {
    const n = base.sigmas.length,
      skip = Math.floor(n / originalTimesteps);
    const valid = new Float32Array(originalTimesteps);
    for (let x = 0; x < originalTimesteps; x++) valid[originalTimesteps - 1 - x] = base.sigmas[n - 1 - x * skip];
    super(valid);
    this.skip = skip;
    this.base = base;
  }

  override timestep(sigma: number): number {
    return super.timestep(sigma) * this.skip + (this.skip - 1);
  }

  override sigma(timestep: number): number {
    return super.sigma(f(f(f(timestep) - (this.skip - 1)) / this.skip));
  }
}

const tables = new Map<string, DiscreteModelSampling>();
/** The sigma table a model samples with (memoised: the tables are pure functions of the spec). */
export function modelSamplingFor(spec: SamplingSpec): DiscreteModelSampling {
  const key = `${spec.zsnr}|${spec.distilled || spec.prediction === 'lcm'}`;
  let ms = tables.get(key);
  if (!ms) {
    const base64 = sdSigmas64();
    const base = new DiscreteModelSampling(spec.zsnr ? rescaleZeroTerminalSnr(base64) : base64);
    ms = spec.distilled || spec.prediction === 'lcm' ? new DistilledModelSampling(base) : base;
    tables.set(key, ms);
  }
  return ms;
}

/** calculate_denoised for each prediction type (sigma_data 1; LCM's boundary condition at sigma_data 0.5). */
export function denoisedFrom(
  prediction: Prediction,
  ms: DiscreteModelSampling,
  x: Float32Array,
  out: Float32Array,
  sigma: number,
): Float32Array {
  const r = new Float32Array(x.length);
  switch (prediction) {
    case 'eps':
      for (let i = 0; i < r.length; i++) r[i] = x[i] - out[i] * sigma;
      break;
    case 'x0':
      r.set(out);
      break;
    case 'v_prediction': {
      const s2 = sigma * sigma + 1,
        a = 1 / s2,
        b = sigma / Math.sqrt(s2);
      for (let i = 0; i < r.length; i++) r[i] = x[i] * a - out[i] * b;
      break;
    }
    case 'lcm': {
      const t = ms.timestep(sigma) * 10,
        sd2 = 0.25;
      const cSkip = sd2 / (t * t + sd2),
        cOut = t / Math.sqrt(t * t + sd2);
      for (let i = 0; i < r.length; i++) r[i] = cOut * (x[i] - out[i] * sigma) + cSkip * x[i];
      break;
    }
  }
  return r;
}

/** A k-diffusion denoiser around a network of any prediction type: input x / sqrt(sigma^2 + 1), t = timestep(sigma). */
export function predictionDenoiser(ms: DiscreteModelSampling, prediction: Prediction, model: EpsModel): Denoiser {
  return async (x, sigma) =>
    denoisedFrom(prediction, ms, x, await model(scaleInput(x, sigma), ms.timestep(sigma), sigma), sigma);
}

/** torch.std over one batch item (unbiased) */
function std(v: Float32Array, from: number, to: number): number {
  let mean = 0;
  for (let i = from; i < to; i++) mean += v[i];
  mean /= to - from;
  let ss = 0;
  for (let i = from; i < to; i++) ss += (v[i] - mean) ** 2;
  return Math.sqrt(ss / (to - from - 1));
}

/**
 * RescaleCFG (arXiv 2305.08891 section 3.4, ComfyUI's sampler_cfg_function): cfg in v space, its per-item std rescaled
 * to the positive branch's, mixed back by `multiplier`; returns the denoised sample.
 */
export function rescaledCfg(
  x: Float32Array,
  condDenoised: Float32Array,
  uncondDenoised: Float32Array,
  sigma: number,
  cfg: number,
  multiplier: number,
  batch: number,
): Float32Array {
  const s2 = sigma * sigma + 1,
    root = Math.sqrt(s2),
    n = x.length,
    per = n / batch;
  const xs = new Float32Array(n),
    vc = new Float32Array(n),
    vcfg = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    xs[i] = x[i] / s2;
    vc[i] = ((xs[i] - condDenoised[i]) * root) / sigma;
    const vu = ((xs[i] - uncondDenoised[i]) * root) / sigma;
    vcfg[i] = vu + cfg * (vc[i] - vu);
  }
  const out = new Float32Array(n);
  for (let b = 0; b < batch; b++) {
    const k = std(vc, b * per, (b + 1) * per) / std(vcfg, b * per, (b + 1) * per);
    for (let i = b * per; i < (b + 1) * per; i++) {
      const vFinal = multiplier * vcfg[i] * k + (1 - multiplier) * vcfg[i];
      out[i] = xs[i] - (vFinal * sigma) / root;
    }
  }
  return out;
}
