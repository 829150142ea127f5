/**
 * The denoiser a KSampler run samples with, over a model that evaluates every conditioning branch at once ([cond] or
 * [cond, uncond]: the worker's batched UNet call). Each branch's network output becomes a denoised sample by the
 * model's prediction type (eps, v_prediction, x0, lcm), then cfg combines them as ComfyUI does: uncond + (cond -
 * uncond) * cfg, or RescaleCFG when the model carries it. `withUncond` hands the cfg_pp samplers both predictions.
 * The same numbers as cfgEpsDenoiser / predictionDenoiser over two separate branch models.
 * Example:
 *   const d = guidedDenoiser({ ms, prediction: 'eps', eps: (xs, t) => unet.epsHost(xs, t), cfg: 5, branches: 2, batch: 1 });
 *   const x0 = await d(x, sigma);
 */
import type { CfgDenoiser, DiscreteModelSampling, UncondDenoise } from './model-sampling.js';
import { cfgCombine, scaleInput } from './model-sampling.js';
import { denoisedFrom, rescaledCfg, type Prediction } from './model-sampling-variants.js';
import type { Denoiser } from './noise.js';

/** Network outputs of every branch for one model input (x already scaled), in branch order. */
export type BranchesModel = (xScaled: Float32Array, timestep: number, sigma: number) => Promise<Float32Array[]>;

export interface GuidedDenoiserOptions {
  ms: DiscreteModelSampling;
  prediction: Prediction;
  eps: BranchesModel;
  cfg: number;
  /** 1: positive only (cfg 1, not a cfg_pp sampler); 2: positive and negative */
  branches: 1 | 2;
  /** RescaleCFG multiplier (applied when cfg != 1) */
  rescaleCfg?: number;
  /** latent batch size (RescaleCFG's std is per batch item) */
  batch: number;
}

export function guidedDenoiser(o: GuidedDenoiserOptions): Denoiser | CfgDenoiser {
  const all = async (x: Float32Array, sigma: number) => {
    const outs = await o.eps(scaleInput(x, sigma), o.ms.timestep(sigma), sigma);
    return outs.map((out) => denoisedFrom(o.prediction, o.ms, x, out, sigma));
  };
  const first: Denoiser = async (x, sigma) => (await all(x, sigma))[0];
  if (o.branches === 1) return first;
  const cfgOne = Math.abs(o.cfg - 1) <= 1e-9;
  const rescale = o.rescaleCfg;
  const both: UncondDenoise = async (x, sigma) => {
    const [c, u] = await all(x, sigma);
    const denoised =
      rescale !== undefined && !cfgOne ? rescaledCfg(x, c, u, sigma, o.cfg, rescale, o.batch) : cfgCombine(c, u, o.cfg);
    return { denoised, uncond: u };
  };
  const plain: Denoiser = cfgOne ? first : async (x, sigma) => (await both(x, sigma)).denoised;
  return Object.assign(plain, { withUncond: both });
}
