/**
 * Samplers as pure functions: diffusers' TCD scheduler, ComfyUI's k-diffusion samplers and schedules, the discrete
 * model sampling of eps models and the KSampler wrapper. Only callbacks touch a model.
 * Example: import { ksample, SAMPLER_NAMES, SCHEDULER_NAMES } from './sampling/index.js';
 */
export * from './noise.js';
export * from './tcd.js';
export * from './model-sampling.js';
export * from './schedules.js';
export {
  ancestralStep,
  sampleDpm2,
  sampleDpm2Ancestral,
  sampleEuler,
  sampleEulerAncestral,
  sampleHeun,
  sampleHeunpp2,
  sampleIpndm,
  sampleLms,
  type KSamplerArgs,
  type KSamplerFn,
} from './k-samplers.js';
export * from './k-samplers-dpmpp.js';
export * from './k-sampler-tcd.js';
export { SAMPLER_NAMES, NOISY_SAMPLERS, BROWNIAN_SAMPLERS, getSampler } from './registry.js';
export * from './ksample.js';
