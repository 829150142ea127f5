/**
 * ComfyUI's ModelSamplingDiscrete + EPS for SD1.5/SDXL-style eps-prediction models: the discrete sigma table,
 * sigma <-> timestep conversion, input scaling and the eps -> denoised conversion, plus cfg.
 * The table is computed like ComfyUI: betas = linspace(sqrt(0.00085), sqrt(0.012), 1000, float64)^2,
 * abar = cumprod(1 - betas) (float64), sigma = sqrt((1 - abar) / abar) stored as float32, log_sigmas as float32.
 * Float32 tensor arithmetic is emulated with Math.fround where it decides a table entry.
 *
 * Example:
 *   const ms = DiscreteModelSampling.sd();
 *   const denoiser = epsDenoiser(ms, async (xScaled, t) => unet(xScaled, t, context));
 *   const x0 = await denoiser(x, 14.6146);          // = x - eps(x / sqrt(sigma^2 + 1), 999) * sigma
 */
import type { Denoiser } from './noise.js';

const f = Math.fround;

/** torch.linspace in float64 (two-sided fill). */
function linspace64(start: number, end: number, steps: number): Float64Array {
  const out = new Float64Array(steps);
  if (steps === 1) {
    out[0] = start;
    return out;
  }
  const step = (end - start) / (steps - 1);
  const half = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) out[i] = i < half ? start + step * i : end - step * (steps - i - 1);
  return out;
}

/** The float64 sigma table before it is stored as float32 (zsnr rescales this one). */
export function sdSigmas64(linearStart = 0.00085, linearEnd = 0.012, timesteps = 1000): Float64Array {
  const roots = linspace64(Math.sqrt(linearStart), Math.sqrt(linearEnd), timesteps);
  const sig = new Float64Array(timesteps);
  let abar = 1;
  for (let i = 0; i < timesteps; i++) {
    abar *= 1 - roots[i] * roots[i];
    sig[i] = Math.sqrt((1 - abar) / abar);
  }
  return sig;
}

export class DiscreteModelSampling {
  /** float32 sigmas, ascending (index = discrete timestep) */
  readonly sigmas: Float32Array;
  readonly logSigmas: Float32Array;

  constructor(sigmas64: ArrayLike<number>) {
    this.sigmas = Float32Array.from(sigmas64);
    this.logSigmas = Float32Array.from(sigmas64, (s) => Math.log(s));
  }

  /** SD1.x/SDXL: linear schedule in sqrt space, 0.00085..0.012, 1000 steps (ComfyUI's "linear" beta_schedule). */
  static sd(linearStart = 0.00085, linearEnd = 0.012, timesteps = 1000): DiscreteModelSampling {
    return new DiscreteModelSampling(sdSigmas64(linearStart, linearEnd, timesteps));
  }

  get sigmaMin(): number {
    return this.sigmas[0];
  }
  get sigmaMax(): number {
    return this.sigmas[this.sigmas.length - 1];
  }
  get numTimesteps(): number {
    return this.sigmas.length;
  }

  /** timestep(sigma): the index whose log sigma is nearest (argmin |log sigma - log sigma_t|, first on ties). */
  timestep(sigma: number): number {
    const ls = f(Math.log(f(sigma)));
    let best = 0,
      bestD = Infinity;
    for (let t = 0; t < this.logSigmas.length; t++) {
      const d = Math.abs(f(ls - this.logSigmas[t]));
      if (d < bestD) {
        bestD = d;
        best = t;
      }
    }
    return best;
  }

  /** sigma(t) for a fractional timestep: log-linear interpolation of the table, in float32 like torch. */
  sigma(timestep: number): number {
    const t = Math.min(Math.max(f(timestep), 0), this.sigmas.length - 1);
    const lo = Math.floor(t),
      hi = Math.ceil(t),
      w = f(t - lo);
    const ls = f(f(f(1 - w) * this.logSigmas[lo]) + f(w * this.logSigmas[hi]));
    return f(Math.exp(ls));
  }

  /** alphas_cumprod[t] = 1 / (1 + sigma_t^2) */
  alphaCumprod(t: number): number {
    const s = this.sigmas[t];
    return 1 / (1 + s * s);
  }

  /** ComfyUI percent_to_sigma (start/end percent of conditioning and ControlNet ranges). */
  percentToSigma(percent: number): number {
    if (percent <= 0) return 999999999.9;
    if (percent >= 1) return 0;
    return this.sigma(f((1 - percent) * 999));
  }
}

/** EPS.calculate_input: the UNet sees x / sqrt(sigma^2 + 1) (= the DDPM-space sample). */
export function scaleInput(x: Float32Array, sigma: number): Float32Array {
  const c = 1 / Math.sqrt(sigma * sigma + 1);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] * c;
  return out;
}

/** EPS.calculate_denoised: x - eps * sigma. */
export function epsToDenoised(x: Float32Array, eps: Float32Array, sigma: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] - eps[i] * sigma;
  return out;
}

/** cfg as ComfyUI applies it: uncond + (cond - uncond) * cfg (works on eps or denoised alike). */
export function cfgCombine(cond: Float32Array, uncond: Float32Array, cfg: number): Float32Array {
  const out = new Float32Array(cond.length);
  for (let i = 0; i < cond.length; i++) out[i] = uncond[i] + (cond[i] - uncond[i]) * cfg;
  return out;
}

/** The eps-model callback: UNet input (already scaled) and the discrete timestep (a float, as ComfyUI passes it). */
export type EpsModel = (xScaled: Float32Array, timestep: number, sigma: number) => Promise<Float32Array>;

/**
 * Wraps an eps-prediction model into a k-diffusion denoiser the way ComfyUI's model_base.apply_model does:
 * t = timestep(sigma), eps = model(x / sqrt(sigma^2 + 1), t), denoised = x - eps * sigma.
 */
export function epsDenoiser(ms: DiscreteModelSampling, model: EpsModel): Denoiser {
  return async (x, sigma) => {
    const eps = await model(scaleInput(x, sigma), ms.timestep(sigma), sigma);
    return epsToDenoised(x, eps, sigma);
  };
}

/** Both predictions of one cfg model call: the cfg-combined denoised and the unconditional branch's denoised. */
export type UncondDenoise = (
  x: Float32Array,
  sigma: number,
) => Promise<{ denoised: Float32Array; uncond: Float32Array }>;

/**
 * A cfg denoiser that can also report the unconditional prediction (what ComfyUI's post-cfg hook hands the cfg_pp
 * samplers as "uncond_denoised"). Calling it as a plain denoiser behaves as before (cfg 1: positive branch only);
 * `withUncond` always runs both branches, as ComfyUI does for cfg_pp samplers (disable_cfg1_optimization).
 */
export type CfgDenoiser = Denoiser & { withUncond: UncondDenoise };

/**
 * ComfyUI's cfg on two denoisers: denoised = uncond + (cond - uncond) * cfg (cond evaluated first).
 * Example: const d = cfgDenoiser(dCond, dUncond, 5); const { denoised, uncond } = await d.withUncond(x, sigma);
 */
export function cfgDenoiser(dc: Denoiser, du: Denoiser, cfg: number): CfgDenoiser {
  const withUncond: UncondDenoise = async (x, sigma) => {
    const c = await dc(x, sigma),
      u = await du(x, sigma);
    return { denoised: cfgCombine(c, u, cfg), uncond: u };
  };
  const plain: Denoiser =
    Math.abs(cfg - 1) <= 1e-9 ? (x, sigma) => dc(x, sigma) : async (x, sigma) => (await withUncond(x, sigma)).denoised;
  return Object.assign(plain, { withUncond });
}

/**
 * ComfyUI's cfg on the denoised: with cfg == 1 only the positive branch runs; otherwise
 * denoised = uncond + (cond - uncond) * cfg, each branch through epsDenoiser. `withUncond` gives the cfg_pp samplers
 * both predictions.
 */
export function cfgEpsDenoiser(ms: DiscreteModelSampling, cond: EpsModel, uncond: EpsModel, cfg: number): CfgDenoiser {
  return cfgDenoiser(epsDenoiser(ms, cond), epsDenoiser(ms, uncond), cfg);
}
