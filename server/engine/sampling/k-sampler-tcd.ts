/**
 * TCD as a k-diffusion sampler (usable from KSampler / SamplerCustom), derived from diffusers' TCDScheduler.step.
 *
 * Derivation (eps models, k-diffusion sample X = x_ddpm / sqrt(abar), sigma^2 = (1 - abar) / abar):
 *   diffusers: x0 = (x_t - sqrt(1-abar_t) eps) / sqrt(abar_t);  x_s = sqrt(abar_s) x0 + sqrt(1-abar_s) eps
 *              x_prev = sqrt(abar_prev / abar_s) x_s + sqrt(1 - abar_prev / abar_s) z,  s = floor((1 - gamma) t_prev)
 *   divide by sqrt(abar): X_s = x0 + sigma_s eps,  X_prev = X_s + sqrt(sigma_prev^2 - sigma_s^2) z,
 *   with x0 = D(X, sigma_t) and eps = (X - x0) / sigma_t.
 * So step i: x0 = D(x, sigma_i); t = timestep(sigma_{i+1}); sigma_s = sigma_table[floor((1 - gamma) t)];
 * x = x0 + sigma_s eps + sqrt(sigma_{i+1}^2 - sigma_s^2) z (z drawn iff gamma > 0).
 * On the last step (sigma_{i+1} = 0) diffusers uses t_prev = 0, so it returns x_s at timestep 0 in DDPM scale,
 * sqrt(abar_0) (x0 + sigma_min eps), not x0: we return exactly that, so that with sigmas = table[TCD timesteps] + [0]
 * and the initial x = z * sqrt(1 + sigma_max^2) (KSampler's full-denoise noise scaling) the result equals
 * diffusers' TCD latent, noise draw for noise draw.
 *
 * Example:
 *   const sigmas = tcdSigmas(ms, tcdTimesteps(4));     // [14.61, 6.92, 2.16, 0.88, 0]
 *   const out = await sampleTcdK({ denoiser, x, sigmas, eta: 0.3, noise: gen, shape, modelSampling: ms });
 */
import { prepare, type KSamplerFn } from './k-samplers.js';
import type { DiscreteModelSampling } from './model-sampling.js';
import { lincomb } from './vec.js';

/** sigmas of the discrete table at the given (TCD) timesteps, plus the final 0. */
export function tcdSigmas(ms: DiscreteModelSampling, timesteps: number[]): number[] {
  return [...timesteps.map((t) => ms.sigmas[t]), 0];
}

/** tcd: gamma = `eta` (default 0.3, diffusers' default). Needs `modelSampling` for the timestep grid. */
export const sampleTcdK: KSamplerFn = async (a) => {
  const { sigmas, report, D, draw } = prepare(a);
  const ms = a.modelSampling;
  if (!ms) throw new Error('tcd sampler needs modelSampling (the discrete sigma table)');
  const gamma = a.eta ?? 0.3;
  if (!(gamma >= 0 && gamma <= 1)) throw new Error('gamma must be less than or equal to 1.0');
  let x = a.x;
  for (let i = 0; i < sigmas.length - 1; i++) {
    const s = sigmas[i],
      sn = sigmas[i + 1];
    const den = await D(x, s);
    await report(i, x, den);
    // x0 + sigma_s * eps = den + (sigma_s / s) * (x - den)
    if (sn === 0) {
      const ss = ms.sigmas[0];
      const k = 1 / Math.sqrt(1 + ss * ss);
      x = lincomb([
        [den, k * (1 - ss / s)],
        [x, (k * ss) / s],
      ]);
      continue;
    }
    const t = ms.timestep(sn);
    const ts = Math.floor(Math.fround(Math.fround(1 - gamma) * t));
    const ss = gamma === 0 ? sn : Math.min(sn, ms.sigmas[ts]);
    const terms: [Float32Array, number][] = [
      [den, 1 - ss / s],
      [x, ss / s],
    ];
    if (gamma > 0) terms.push([draw(), Math.sqrt(Math.max(0, sn * sn - ss * ss))]);
    x = lincomb(terms);
  }
  return x;
};
