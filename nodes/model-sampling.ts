/**
 * Model patches and schedules around the model's sampling: ModelSamplingDiscrete (eps / v_prediction / lcm / x0,
 * zsnr), RescaleCFG, SDTurboScheduler, and the ComfyUI-TCD custom node TCDModelSamplingDiscrete (a distilled
 * 50-step table, the tcd SAMPLER with its eta, and the SIGMAS for SamplerCustom), as their published workflows use them.
 */
import { defineNode, t } from './define.js';
import { calculateSigmas } from '../server/engine/sampling/schedules.js';
import { modelSamplingFor, type SamplingSpec } from '../server/engine/sampling/model-sampling-variants.js';
import type { DiscreteModelSampling } from '../server/engine/sampling/model-sampling.js';
import type { ModelValue, SamplerValue, SigmasValue } from './types.js';

/** The sampling a model runs with: its patch, else the checkpoint's prediction type on the plain table. */
export function samplingOf(model: ModelValue): { spec: SamplingSpec; ms: DiscreteModelSampling } {
  const spec: SamplingSpec = model.sampling ?? {
    prediction: model.config.predictionType === 'v_prediction' ? 'v_prediction' : 'eps',
    zsnr: false,
  };
  return { spec, ms: modelSamplingFor(spec) };
}

const modelIn = t.socket('MODEL', 'model');

export const ModelSamplingDiscrete = defineNode({
  id: 'ModelSamplingDiscrete',
  displayName: 'ModelSamplingDiscrete',
  category: 'advanced/model',
  module: 'comfy_extras.nodes_model_advanced',
  description:
    'Overrides what the model predicts (eps, v_prediction, lcm, x0) and optionally rescales its noise schedule to zero terminal SNR.',
  inputs: [modelIn, t.combo('sampling', ['eps', 'v_prediction', 'lcm', 'x0']), t.boolean('zsnr', { default: false })],
  outputs: [t.out('MODEL')],
  execute: ({ model, sampling, zsnr }) => {
    const m: ModelValue = { ...model, sampling: { prediction: sampling, zsnr } };
    return { outputs: [m] };
  },
});

export const RescaleCFG = defineNode({
  id: 'RescaleCFG',
  displayName: 'RescaleCFG',
  category: 'advanced/model',
  module: 'comfy_extras.nodes_model_advanced',
  description:
    "Rescales the guided prediction's spread to the positive one's (for v-prediction / zsnr models at high cfg).",
  inputs: [modelIn, t.float('multiplier', { default: 0.7, min: 0, max: 1, step: 0.01 })],
  outputs: [t.out('MODEL')],
  execute: ({ model, multiplier }) => {
    const m: ModelValue = { ...model, rescaleCfg: multiplier };
    return { outputs: [m] };
  },
});

export const SDTurboScheduler = defineNode({
  id: 'SDTurboScheduler',
  displayName: 'SDTurboScheduler',
  category: 'sampling/custom_sampling/schedulers',
  module: 'comfy_extras.nodes_custom_sampler',
  description: 'Sigmas at timesteps 999, 899, ... 99 (the first `steps` from 10 - int(10 x denoise)), then 0.',
  inputs: [
    modelIn,
    t.int('steps', { default: 1, min: 1, max: 10 }),
    t.float('denoise', { default: 1.0, min: 0, max: 1.0, step: 0.01 }),
  ],
  outputs: [t.out('SIGMAS')],
  execute: ({ model, steps, denoise }) => {
    const { ms } = samplingOf(model);
    const start = 10 - Math.trunc(10 * denoise);
    const timesteps = Array.from({ length: 10 }, (_, i) => (10 - i) * 100 - 1).slice(start, start + steps);
    const sigmas: SigmasValue = [...timesteps.map((ts) => ms.sigma(ts)), 0];
    return { outputs: [sigmas] };
  },
});

export const TCDModelSamplingDiscrete = defineNode({
  id: 'TCDModelSamplingDiscrete',
  displayName: 'TCD Model Sampling Discrete',
  category: 'advanced/model',
  module: 'ComfyUI-TCD',
  description:
    'ComfyUI-TCD: the model on the distilled 50-step schedule, the TCD sampler with gamma (eta) and its sigmas, for SamplerCustom.',
  inputs: [
    modelIn,
    t.int('steps', { default: 4, min: 1, max: 50 }),
    t.combo('scheduler', ['simple', 'sgm_uniform']),
    t.float('denoise', { default: 1.0, min: 0, max: 1.0, step: 0.01 }),
    t.float('eta', { default: 0.3, min: 0, max: 1.0, step: 0.01 }),
  ],
  outputs: [t.out('MODEL'), t.out('SAMPLER'), t.out('SIGMAS')],
  execute: ({ model, steps, scheduler, denoise, eta }) => {
    const spec: SamplingSpec = { prediction: 'eps', zsnr: false, distilled: true };
    const ms = modelSamplingFor(spec);
    let sigmas: SigmasValue = [];
    if (denoise > 0) {
      // the custom node schedules int(steps / denoise) steps and keeps the last steps + 1 sigmas
      const all = calculateSigmas(ms, scheduler, Math.trunc(steps / denoise));
      sigmas = all.slice(Math.max(0, all.length - (steps + 1)));
    }
    const m: ModelValue = { ...model, sampling: spec };
    const sampler: SamplerValue = { name: 'tcd', eta };
    return { outputs: [m, sampler, sigmas] };
  },
});
