/**
 * Sampler and scheduler names for the KSampler / KSamplerSelect / BasicScheduler combo inputs, in ComfyUI's order
 * (only the samplers implemented here), plus 'tcd'. `getSampler(name)` returns the pure sampler function.
 * Example: const fn = getSampler('dpmpp_2m'); const out = await fn({ denoiser, x, sigmas });
 */
import {
  sampleDpm2,
  sampleDpm2Ancestral,
  sampleEuler,
  sampleEulerAncestral,
  sampleHeun,
  sampleHeunpp2,
  sampleIpndm,
  sampleLms,
  type KSamplerFn,
} from './k-samplers.js';
import {
  sampleDdpm,
  sampleDpmpp2m,
  sampleDpmpp2mSde,
  sampleDpmpp2sAncestral,
  sampleDpmpp3mSde,
  sampleDpmppSde,
  sampleLcm,
} from './k-samplers-dpmpp.js';
import { sampleTcdK } from './k-sampler-tcd.js';
import { sampleUniPc, sampleUniPcBh2 } from './k-sampler-unipc.js';
import { sampleDeis } from './k-sampler-deis.js';
import {
  sampleExpHeun2X0,
  sampleGradientEstimation,
  sampleIpndmV,
  sampleResMultistep,
} from './k-samplers-multistep.js';
import {
  sampleDpmpp2mCfgPp,
  sampleDpmpp2sAncestralCfgPp,
  sampleEulerAncestralCfgPp,
  sampleEulerCfgPp,
  sampleGradientEstimationCfgPp,
  sampleResMultistepCfgPp,
} from './k-samplers-cfgpp.js';
export { SCHEDULER_NAMES } from './schedules.js';

const SAMPLERS: Record<string, KSamplerFn> = {
  euler: sampleEuler,
  euler_cfg_pp: sampleEulerCfgPp,
  euler_ancestral: sampleEulerAncestral,
  euler_ancestral_cfg_pp: sampleEulerAncestralCfgPp,
  heun: sampleHeun,
  heunpp2: sampleHeunpp2,
  exp_heun_2_x0: sampleExpHeun2X0,
  dpm_2: sampleDpm2,
  dpm_2_ancestral: sampleDpm2Ancestral,
  lms: sampleLms,
  dpmpp_2s_ancestral: sampleDpmpp2sAncestral,
  dpmpp_2s_ancestral_cfg_pp: sampleDpmpp2sAncestralCfgPp,
  dpmpp_sde: sampleDpmppSde,
  // ComfyUI's *_gpu variants run the same solver with the Brownian tree on the GPU; ours draw Gaussian noise anyway
  dpmpp_sde_gpu: sampleDpmppSde,
  dpmpp_2m: sampleDpmpp2m,
  dpmpp_2m_cfg_pp: sampleDpmpp2mCfgPp,
  dpmpp_2m_sde: sampleDpmpp2mSde,
  dpmpp_2m_sde_gpu: sampleDpmpp2mSde,
  dpmpp_2m_sde_heun: (a) => sampleDpmpp2mSde({ ...a, solverType: 'heun' }),
  dpmpp_2m_sde_heun_gpu: (a) => sampleDpmpp2mSde({ ...a, solverType: 'heun' }),
  dpmpp_3m_sde: sampleDpmpp3mSde,
  dpmpp_3m_sde_gpu: sampleDpmpp3mSde,
  ddpm: sampleDdpm,
  lcm: sampleLcm,
  ipndm: sampleIpndm,
  ipndm_v: sampleIpndmV,
  deis: sampleDeis,
  res_multistep: sampleResMultistep,
  res_multistep_cfg_pp: sampleResMultistepCfgPp,
  gradient_estimation: sampleGradientEstimation,
  gradient_estimation_cfg_pp: sampleGradientEstimationCfgPp,
  // ComfyUI's ddim is euler (its "random" inpaint noise only matters with a denoise mask)
  ddim: sampleEuler,
  uni_pc: sampleUniPc,
  uni_pc_bh2: sampleUniPcBh2,
  tcd: sampleTcdK,
};

/** ComfyUI's SAMPLER_NAMES order, restricted to what is implemented, then 'tcd'. */
export const SAMPLER_NAMES: readonly string[] = [
  'euler',
  'euler_cfg_pp',
  'euler_ancestral',
  'euler_ancestral_cfg_pp',
  'heun',
  'heunpp2',
  'exp_heun_2_x0',
  'dpm_2',
  'dpm_2_ancestral',
  'lms',
  'dpmpp_2s_ancestral',
  'dpmpp_2s_ancestral_cfg_pp',
  'dpmpp_sde',
  'dpmpp_sde_gpu',
  'dpmpp_2m',
  'dpmpp_2m_cfg_pp',
  'dpmpp_2m_sde',
  'dpmpp_2m_sde_gpu',
  'dpmpp_2m_sde_heun',
  'dpmpp_2m_sde_heun_gpu',
  'dpmpp_3m_sde',
  'dpmpp_3m_sde_gpu',
  'ddpm',
  'lcm',
  'ipndm',
  'ipndm_v',
  'deis',
  'res_multistep',
  'res_multistep_cfg_pp',
  'gradient_estimation',
  'gradient_estimation_cfg_pp',
  'ddim',
  'uni_pc',
  'uni_pc_bh2',
  'tcd',
];

/**
 * CFG++ samplers: they step along the unconditional prediction, so the caller must give them a denoiser with
 * `withUncond` (cfgDenoiser / cfgEpsDenoiser) that runs the negative branch even at cfg 1, as ComfyUI does.
 */
export const CFG_PP_SAMPLERS = new Set([
  'euler_cfg_pp',
  'euler_ancestral_cfg_pp',
  'dpmpp_2s_ancestral_cfg_pp',
  'dpmpp_2m_cfg_pp',
  'res_multistep_cfg_pp',
  'gradient_estimation_cfg_pp',
]);

/** Samplers that draw noise (need a noise source; ComfyUI seeds it with the KSampler seed). */
export const NOISY_SAMPLERS = new Set([
  'euler_ancestral',
  'euler_ancestral_cfg_pp',
  'dpmpp_2s_ancestral_cfg_pp',
  'dpm_2_ancestral',
  'dpmpp_2s_ancestral',
  'dpmpp_sde',
  'dpmpp_sde_gpu',
  'dpmpp_2m_sde',
  'dpmpp_2m_sde_gpu',
  'dpmpp_2m_sde_heun',
  'dpmpp_2m_sde_heun_gpu',
  'dpmpp_3m_sde',
  'dpmpp_3m_sde_gpu',
  'ddpm',
  'lcm',
  'tcd',
]);

/** Samplers whose ComfyUI noise comes from a torchsde Brownian tree, which we replace by independent Gaussian draws. */
export const BROWNIAN_SAMPLERS = new Set([
  'dpmpp_sde',
  'dpmpp_sde_gpu',
  'dpmpp_2m_sde',
  'dpmpp_2m_sde_gpu',
  'dpmpp_2m_sde_heun',
  'dpmpp_2m_sde_heun_gpu',
  'dpmpp_3m_sde',
  'dpmpp_3m_sde_gpu',
]);

export function getSampler(name: string): KSamplerFn {
  const fn = SAMPLERS[name];
  if (!fn) throw new Error(`unknown sampler "${name}" (known: ${SAMPLER_NAMES.join(', ')})`);
  return fn;
}
