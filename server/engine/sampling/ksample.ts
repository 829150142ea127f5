/**
 * The one KSampler wrapper: what ComfyUI's KSampler / KSamplerAdvanced / SamplerCustom do around a sampler, for
 * eps-prediction models. The nodes reach it through Engine.sampleK, which runs it inside the engine worker
 * (runtime/ksampler-loop.ts) with a denoiser over the worker's UNet
 * (rules as recorded in the fixtures' comfy_ksampler.json):
 *  - sigmas = ksamplerSigmas(scheduler, steps, denoise) (steps + 1 rule for dpm_2*, denoise < 1 truncation),
 *    or explicit sigmas; then KSamplerAdvanced's last_step / start_step slicing;
 *  - x = latent + noise * sqrt(1 + sigma0^2) when sigma0 is the schedule max (full denoise), else noise * sigma0;
 *  - denoised = x - eps(x / sqrt(sigma^2 + 1), t = argmin |log sigma - log sigma_t|) * sigma, cfg on the denoised
 *    (uncond + (cond - uncond) * cfg; cfg == 1 runs the positive branch only);
 *  - the sampler's own noise comes from `samplerNoise`: in ComfyUI on a CPU, a fresh torch CPU generator seeded
 *    with the same seed as the initial noise (so its first draw equals the initial noise).
 *    dpmpp_sde / dpmpp_2m_sde / dpmpp_3m_sde use a torchsde Brownian tree in ComfyUI; here they take independent
 *    Gaussian draws from samplerNoise (same statistics, not the same numbers).
 * Latents are in model space (ComfyUI's LATENT times the VAE scaling factor, i.e. after process_latent_in);
 * the result is in model space too (divide by the scaling factor for a ComfyUI LATENT, or decode latent / factor).
 *
 * End-to-end entry point (the real UNet; the comfy_ksampler.safetensors check):
 *   const shape = [1, 4, 8, 8];
 *   const latent = await ksample({
 *     sampler: 'euler_ancestral', scheduler: 'karras', steps: 6, cfg: 2, denoise: 1, shape,
 *     latentImage: new Float32Array(256),                              // EmptyLatentImage
 *     initialNoise: new TorchGenerator(99).randn(shape),               // torch.manual_seed(seed) on CPU
 *     samplerNoise: new TorchGenerator(99),                            // fresh generator, same seed
 *     cond: (xIn, t) => unetEps(xIn, t, positiveContext), uncond: (xIn, t) => unetEps(xIn, t, negativeContext),
 *   });
 *   image = vaeDecode(latent / 0.18215)
 */
import type { Denoiser, NoiseSource, OnStep } from './noise.js';
import { DiscreteModelSampling, cfgEpsDenoiser, epsDenoiser, type EpsModel } from './model-sampling.js';
import { ksamplerSigmas } from './schedules.js';
import { CFG_PP_SAMPLERS, getSampler } from './registry.js';
import { lincomb } from './vec.js';

export interface KSampleOptions {
  sampler: string;
  scheduler?: string;
  steps?: number;
  /** KSampler denoise (1 = from pure noise) */
  denoise?: number;
  /** explicit sigmas (SamplerCustom); overrides scheduler/steps/denoise */
  sigmas?: number[];
  cfg: number;
  /** eps model with the positive conditioning (needed unless `denoiser` is given) */
  cond?: EpsModel;
  /** eps model with the negative conditioning (needed when cfg != 1, and always by the cfg_pp samplers) */
  uncond?: EpsModel;
  /** or a ready k-diffusion denoiser (then cond/uncond/cfg are not used) */
  denoiser?: Denoiser;
  shape: number[];
  /** model-space latent (zeros for an empty latent) */
  latentImage: Float32Array;
  /** randn(shape) from the seed; KSamplerAdvanced add_noise = disable passes zeros */
  initialNoise: Float32Array;
  /** the sampler's own noise (ancestral / SDE / lcm / ddpm / tcd) */
  samplerNoise?: NoiseSource;
  /** KSamplerAdvanced */
  startStep?: number;
  lastStep?: number;
  forceFullDenoise?: boolean;
  /** sampler extras: eta (tcd: gamma), sNoise */
  eta?: number;
  sNoise?: number;
  modelSampling?: DiscreteModelSampling;
  onStep?: OnStep;
}

/** KSampler.sample's sigma slicing for KSamplerAdvanced (null = return the latent unchanged). */
export function sliceSigmas(
  sigmas: number[],
  startStep?: number,
  lastStep?: number,
  forceFullDenoise = false,
): number[] | null {
  let s = sigmas;
  if (lastStep !== undefined && lastStep < s.length - 1) {
    s = s.slice(0, lastStep + 1);
    if (forceFullDenoise) s[s.length - 1] = 0;
  }
  if (startStep !== undefined) {
    if (startStep < s.length - 1) s = s.slice(startStep);
    else return null;
  }
  return s;
}

/** Sampler.max_denoise: sigma0 is (within 1e-5 relative) the model's largest sigma, or above it. */
export function isMaxDenoise(ms: DiscreteModelSampling, sigma0: number): boolean {
  const max = ms.sigmaMax;
  return Math.abs(max - sigma0) <= 1e-5 * Math.max(Math.abs(max), Math.abs(sigma0)) || sigma0 > max;
}

/**
 * EPS.noise_scaling: the sampler's starting x.
 * Example: initialSample(ms, 14.6146, noise, zeros) // noise * sqrt(1 + 14.6146^2)
 */
export function initialSample(
  ms: DiscreteModelSampling,
  sigma0: number,
  noise: Float32Array,
  latent: Float32Array,
): Float32Array {
  const k = isMaxDenoise(ms, sigma0) ? Math.sqrt(1 + sigma0 * sigma0) : sigma0;
  return lincomb([
    [noise, k],
    [latent, 1],
  ]);
}

/** Runs one KSampler: returns the model-space latent. */
export async function ksample(o: KSampleOptions): Promise<Float32Array> {
  const ms = o.modelSampling ?? DiscreteModelSampling.sd();
  let sigmas = o.sigmas ?? ksamplerSigmas(ms, o.sampler, o.scheduler ?? 'normal', o.steps ?? 20, o.denoise ?? 1);
  const sliced = sliceSigmas([...sigmas], o.startStep, o.lastStep, o.forceFullDenoise);
  if (sliced === null) return Float32Array.from(o.latentImage);
  sigmas = sliced;
  if (sigmas.length === 0) return Float32Array.from(o.latentImage);
  let denoiser = o.denoiser;
  if (!denoiser) {
    // math.isclose(cfg, 1): the negative branch is skipped entirely, except for the cfg_pp samplers, which step along it
    const cfgPp = CFG_PP_SAMPLERS.has(o.sampler);
    if (!o.cond) throw new Error('ksample: pass a cond eps model or a denoiser');
    if (Math.abs(o.cfg - 1) <= 1e-9 && !cfgPp) denoiser = epsDenoiser(ms, o.cond);
    else if (o.uncond) denoiser = cfgEpsDenoiser(ms, o.cond, o.uncond, o.cfg);
    else throw new Error(`ksample: ${cfgPp ? `${o.sampler} needs` : 'cfg != 1 needs'} an uncond model`);
  }
  const x = initialSample(ms, sigmas[0], o.initialNoise, o.latentImage);
  return getSampler(o.sampler)({
    denoiser,
    x,
    sigmas,
    noise: o.samplerNoise,
    shape: o.shape,
    onStep: o.onStep,
    eta: o.eta,
    sNoise: o.sNoise,
    modelSampling: ms,
  });
}
