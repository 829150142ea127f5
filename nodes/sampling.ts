/**
 * Sampler nodes: TCDSampler (diffusers' TCDScheduler exactly), KSampler and KSamplerAdvanced (ComfyUI semantics),
 * SamplerCustom with KSamplerSelect, BasicScheduler and SamplerTCD.
 */
import { controlFamilyCheck, controlToUncond } from './controlnet.js';
import { areaInsideCheck } from './conditioning-ops.js';
import { defineNode, seedInput, seedValue, t } from './define.js';
import type { NodeContext } from '../server/executor/node-definition.js';
import type { NodeServices } from './services.js';
import { TorchGenerator } from '../server/engine/rng.js';
import { tcdAddNoise, tcdTimesteps } from '../server/engine/sampling/tcd.js';
import { interpolate } from '../server/engine/ops/resize.js';
import type { Tensor } from '../server/engine/tensor.js';
import { samplingOf } from './model-sampling.js';
import { ksamplerSigmas } from '../server/engine/sampling/schedules.js';
import { CFG_PP_SAMPLERS, SAMPLER_NAMES, SCHEDULER_NAMES } from '../server/engine/sampling/registry.js';
import { condBranch, isRegional, loopConds } from './guidance.js';
import { previewDecoderOption, sendPreview } from './latent-preview.js';
import type { Conditioning, LatentValue, ModelValue, SamplerValue, SigmasValue } from './types.js';

/** Cross-node checks of a sampler before anything runs: ControlNet families, areas inside the latent. */
function samplerInputsCheck(linked: Record<string, unknown>): string | true {
  const family = controlFamilyCheck(linked);
  return family === true ? areaInsideCheck(linked) : family;
}

type Ctx = NodeContext<NodeServices>;

function tcdScheduleProblem(steps: number, denoise: number, original: number): boolean {
  try {
    tcdTimesteps(steps, denoise, original);
    return false;
  } catch {
    return true;
  }
}

/**
 * TCDSampler's schedule in its own inputs' words, before anything runs: TCD takes its steps from the
 * trunc(denoise x original_inference_steps) timesteps left by denoise (diffusers' rule, tcdTimesteps), so a low
 * denoise leaves fewer timesteps than steps. The engine keeps diffusers' wording (num_inference_steps, strength).
 */
export function tcdScheduleCheck(steps: number, denoise: number, original: number): string | true {
  if (!tcdScheduleProblem(steps, denoise, original)) return true;
  if (steps > original) return `steps ${steps} is more than original_inference_steps ${original}`;
  const left = Math.trunc(original * denoise);
  // the least denoise, in the widget's 0.01 steps, that the schedule accepts
  let need = Math.floor((steps / original) * 100) / 100;
  while (need < 1 && tcdScheduleProblem(steps, need, original)) need = Math.round(need * 100 + 1) / 100;
  const fewer = left > 0 ? `lower steps to at most ${left}, or ` : '';
  return (
    `denoise ${denoise} x original_inference_steps ${original} leaves ${left} timestep${left === 1 ? '' : 's'}, ` +
    `fewer than steps ${steps}: ${fewer}raise denoise to at least ${need}`
  );
}

function scaled(data: Float32Array, k: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let i = 0; i < out.length; i++) out[i] = data[i] * k;
  return out;
}

const modelIn = t.socket('MODEL', 'model', { tooltip: 'The model used for denoising the input latent.' });
const positiveIn = t.socket('CONDITIONING', 'positive', {
  tooltip: 'The conditioning describing the attributes you want to include in the image.',
});
const negativeIn = t.socket('CONDITIONING', 'negative', {
  tooltip: 'The conditioning describing the attributes you want to exclude from the image.',
});
const latentIn = t.socket('LATENT', 'latent_image', { tooltip: 'The latent image to denoise.' });
const cfgIn = (def: number) =>
  t.float('cfg', {
    default: def,
    min: 0,
    max: 100,
    step: 0.1,
    round: 0.01,
    tooltip: 'Classifier-free guidance scale.',
  });
const denoiseIn = t.float('denoise', {
  default: 1.0,
  min: 0,
  max: 1,
  step: 0.01,
  tooltip: 'The amount of denoising applied; lower values keep more of the input latent (image-to-image).',
});

export const TCDSampler = defineNode({
  id: 'TCDSampler',
  displayName: 'TCD Sampler',
  category: 'sampling',
  description:
    "Trajectory Consistency Distillation sampling (arXiv 2402.19159), exactly as diffusers' TCDScheduler: 4-8 steps with a TCD LoRA.",
  inputs: [
    modelIn,
    positiveIn,
    negativeIn,
    latentIn,
    seedInput(),
    t.int('steps', { default: 4, min: 1, max: 50, tooltip: 'Number of TCD steps (4-8 is typical).' }),
    cfgIn(1.0),
    t.float('eta', {
      default: 0.3,
      min: 0,
      max: 1,
      step: 0.01,
      tooltip: 'gamma in the paper: 0 is deterministic, higher is smoother (more stochastic).',
    }),
    denoiseIn,
    t.int('original_inference_steps', {
      default: 50,
      min: 1,
      max: 1000,
      tooltip: 'The grid the TCD timesteps are taken from (50 in the paper).',
    }),
  ],
  outputs: [t.out('LATENT')],
  validate: (a, _s, linked) => {
    const schedule = tcdScheduleCheck(a.steps, a.denoise, a.original_inference_steps);
    return schedule === true ? samplerInputsCheck(linked) : schedule;
  },
  execute: async (a, ctx) => {
    if (a.latent_image.noise_mask)
      throw new Error(
        'latent_image has a noise mask (inpainting), which TCDSampler does not apply; use KSampler with sampler "tcd" for inpainting',
      );
    for (const [name, c] of [
      ['positive', a.positive],
      ['negative', a.negative],
    ] as const) {
      if (isRegional(c))
        throw new Error(
          `${name} has several entries, areas or masks (regional prompts), which TCDSampler does not apply; use KSampler with sampler "tcd"`,
        );
    }
    const model = a.model,
      latent = a.latent_image.samples;
    const shape = latent.shape,
      scale = model.config.vae.scalingFactor;
    const { steps, denoise, eta, cfg } = a;
    const timesteps = tcdTimesteps(steps, denoise, a.original_inference_steps);
    const gen = new TorchGenerator(seedValue(a.seed));
    // the initial noise is the generator's first draw, then one draw per noisy step, as in the reference pipeline
    const noise = gen.randn(shape);
    const noises = eta > 0 ? timesteps.slice(1).map(() => gen.randn(shape)) : [];
    const x = denoise >= 1 ? noise : tcdAddNoise(scaled(latent.data, scale), noise, timesteps[0]);
    // diffusers runs the negative branch only for guidance_scale > 1
    const src = { latent: scaled(latent.data, scale), shape };
    const positive = condBranch(model, a.positive, shape, 'positive', src);
    // ControlNetApply (old) hands its ControlNets to the negative side, as in KSampler
    const negative =
      cfg > 1 && a.negative
        ? condBranch(model, controlToUncond(a.positive, a.negative), shape, 'negative', src)
        : undefined;
    ctx.checkInterrupted();
    const previews = !!ctx.services.previews;
    // the whole loop runs in the engine worker (latents stay on the GPU there); progress comes back per step
    const result = await ctx.services
      .engine()
      .sampleTcd(
        {
          model: model.ref,
          x: { shape, data: x },
          timesteps,
          eta,
          noises,
          positive,
          negative,
          cfg,
          predictionType: model.config.predictionType === 'v_prediction' ? 'v_prediction' : 'epsilon',
        },
        {
          previews,
          ...previewDecoderOption(ctx.services, model.config.family),
          signal: ctx.signal,
          onStep: (p) => {
            ctx.progress(p.step + 1, p.total);
            sendPreview(ctx, p, shape, model.config.family);
          },
        },
      )
      .catch((e: unknown) => {
        ctx.checkInterrupted();
        throw e;
      });
    const out = result.data;
    const samples: LatentValue = { samples: { shape: [...shape], data: scaled(out, 1 / scale) } };
    return { outputs: [samples] };
  },
});

interface KRun {
  model: ModelValue;
  positive: Conditioning;
  negative: Conditioning;
  latent: LatentValue;
  seed: bigint;
  cfg: number;
  sampler: SamplerValue;
  sigmas: number[];
  addNoise: boolean;
}

/**
 * ComfyUI's prepare_noise: one draw for the whole batch, or with batch_index (LatentFromBatch...) one [1, ...] draw
 * per index up to the largest, each item taking its index's draw.
 */
function seedNoise(seed: bigint, shape: number[], batchIndex?: number[]): Float32Array {
  const gen = new TorchGenerator(seed);
  if (!batchIndex) return gen.randn(shape);
  const per = shape.slice(1).reduce((a, b) => a * b, 1),
    draws: Float32Array[] = [];
  for (let i = 0; i <= Math.max(...batchIndex); i++) draws.push(gen.randn([1, ...shape.slice(1)]));
  const out = new Float32Array(per * shape[0]);
  batchIndex.forEach((b, i) => out.set(draws[b], i * per));
  return out;
}

/** ComfyUI's prepare_mask: the noise mask resized (bilinear) to the latent, repeated over channels and batch. */
export function denoiseMask(mask: Tensor, shape: number[]): Float32Array {
  const [b, c, h, w] = shape;
  const [mh, mw] = mask.shape.slice(-2),
    mb = mask.data.length / (mh * mw);
  const resized =
    mh === h && mw === w ? mask.data : interpolate({ shape: [mb, 1, mh, mw], data: mask.data }, h, w, 'bilinear').data;
  const out = new Float32Array(b * c * h * w);
  for (let i = 0; i < b; i++)
    for (let k = 0; k < c; k++)
      out.set(resized.subarray((i % mb) * h * w, ((i % mb) + 1) * h * w), (i * c + k) * h * w);
  return out;
}

/**
 * ComfyUI's sampling around any registry sampler, run as one loop in the engine worker (Engine.sampleK ->
 * engine/sampling/ksample.ts): x = latent*scale + noise*sigma0 (sqrt(1+sigma0^2) at full denoise), then the sampler,
 * with every UNet call (CFG as one batched call, regional entries on their regions) in the worker. The node side
 * prepares what ComfyUI prepares before sampling: noise (prepare_noise), the denoise mask, conditioning and regions.
 */
async function runKSampler(r: KRun, ctx: Ctx): Promise<{ x: Float32Array; denoised: Float32Array }> {
  const shape = r.latent.samples.shape,
    scale = r.model.config.vae.scalingFactor;
  const lat = scaled(r.latent.samples.data, scale);
  if (r.sigmas.length < 2) return { x: lat, denoised: lat };
  // cfg 1 skips the negative side (except for the cfg_pp samplers): it need not be valid then
  const needsNegative = Math.abs(r.cfg - 1) > 1e-9 || CFG_PP_SAMPLERS.has(r.sampler.name);
  const mask = r.latent.noise_mask ? denoiseMask(r.latent.noise_mask, shape) : undefined;
  // inpainting UNets also read the mask and the masked image (inpaint-concat.ts); plain models ignore `src`
  const src = { latent: lat, ...(mask ? { denoiseMask: mask } : {}) };
  const positive = loopConds(r.model, r.positive, shape, 'positive', src);
  const negative = needsNegative
    ? loopConds(r.model, controlToUncond(r.positive, r.negative), shape, 'negative', src)
    : [];
  const noise = r.addNoise ? seedNoise(r.seed, shape, r.latent.batch_index) : new Float32Array(lat.length);
  ctx.checkInterrupted();
  const result = await ctx.services
    .engine()
    .sampleK(
      {
        model: r.model.ref,
        sampling: samplingOf(r.model).spec,
        ...(r.model.rescaleCfg !== undefined ? { rescaleCfg: r.model.rescaleCfg } : {}),
        sampler: r.sampler.name,
        ...(r.sampler.eta !== undefined ? { eta: r.sampler.eta } : {}),
        sigmas: r.sigmas,
        latent: { shape, data: lat },
        noise,
        ...(mask ? { denoiseMask: mask } : {}),
        seed: r.seed.toString(),
        positive,
        negative,
        cfg: r.cfg,
      },
      {
        previews: !!ctx.services.previews,
        ...previewDecoderOption(ctx.services, r.model.config.family),
        signal: ctx.signal,
        onStep: (p) => {
          ctx.progress(p.step + 1, p.total);
          sendPreview(ctx, p, shape, r.model.config.family);
        },
      },
    )
    .catch((e: unknown) => {
      ctx.checkInterrupted();
      throw e;
    });
  return { x: result.x.data, denoised: result.denoised.data };
}

const toLatent = (data: Float32Array, like: LatentValue, scale: number): LatentValue => ({
  samples: { shape: [...like.samples.shape], data: scaled(data, 1 / scale) },
});
const samplerCombo = () =>
  t.combo('sampler_name', [...SAMPLER_NAMES], {
    tooltip: 'The algorithm used when sampling; tcd is Trajectory Consistency Distillation.',
  });
const schedulerCombo = () =>
  t.combo('scheduler', [...SCHEDULER_NAMES], { default: 'normal', tooltip: 'How the noise levels are spaced.' });

export const KSampler = defineNode({
  id: 'KSampler',
  displayName: 'KSampler',
  category: 'sampling',
  description:
    'Uses the provided model, positive and negative conditioning to denoise the latent image (ComfyUI semantics).',
  inputs: [
    modelIn,
    seedInput(),
    t.int('steps', { default: 20, min: 1, max: 10000, tooltip: 'The number of steps used in the denoising process.' }),
    cfgIn(8.0),
    samplerCombo(),
    schedulerCombo(),
    positiveIn,
    negativeIn,
    latentIn,
    denoiseIn,
  ],
  outputs: [t.out('LATENT', 'LATENT', 'The denoised latent.')],
  // a ControlNet of another family than the model: refused before anything runs
  validate: (_a, _s, linked) => samplerInputsCheck(linked),
  execute: async (a, ctx) => {
    const model = a.model;
    const sigmas = ksamplerSigmas(samplingOf(model).ms, a.sampler_name, a.scheduler, a.steps, a.denoise);
    const { x } = await runKSampler(
      {
        model,
        positive: a.positive,
        negative: a.negative,
        latent: a.latent_image,
        seed: seedValue(a.seed),
        cfg: a.cfg,
        sampler: { name: a.sampler_name },
        sigmas,
        addNoise: true,
      },
      ctx,
    );
    return { outputs: [toLatent(x, a.latent_image, model.config.vae.scalingFactor)] };
  },
});

export const KSamplerAdvanced = defineNode({
  id: 'KSamplerAdvanced',
  displayName: 'KSampler (Advanced)',
  category: 'sampling',
  description: 'KSampler with control over noise and the range of steps, for multi-stage sampling.',
  inputs: [
    modelIn,
    t.combo('add_noise', ['enable', 'disable']),
    seedInput('noise_seed'),
    t.int('steps', { default: 20, min: 1, max: 10000 }),
    cfgIn(8.0),
    samplerCombo(),
    schedulerCombo(),
    positiveIn,
    negativeIn,
    latentIn,
    t.int('start_at_step', { default: 0, min: 0, max: 10000 }),
    t.int('end_at_step', { default: 10000, min: 0, max: 10000 }),
    t.combo('return_with_leftover_noise', ['disable', 'enable']),
  ],
  outputs: [t.out('LATENT')],
  // a ControlNet of another family than the model: refused before anything runs
  validate: (_a, _s, linked) => samplerInputsCheck(linked),
  execute: async (a, ctx) => {
    const model = a.model;
    let sigmas = ksamplerSigmas(samplingOf(model).ms, a.sampler_name, a.scheduler, a.steps, 1);
    const end = a.end_at_step,
      start = a.start_at_step;
    if (end < sigmas.length - 1) {
      sigmas = sigmas.slice(0, end + 1);
      if (a.return_with_leftover_noise !== 'enable') sigmas[sigmas.length - 1] = 0;
    }
    sigmas = start < sigmas.length - 1 ? sigmas.slice(start) : [];
    const { x } = await runKSampler(
      {
        model,
        positive: a.positive,
        negative: a.negative,
        latent: a.latent_image,
        seed: seedValue(a.noise_seed),
        cfg: a.cfg,
        sampler: { name: a.sampler_name },
        sigmas,
        addNoise: a.add_noise === 'enable',
      },
      ctx,
    );
    return { outputs: [toLatent(x, a.latent_image, model.config.vae.scalingFactor)] };
  },
});

export const KSamplerSelect = defineNode({
  id: 'KSamplerSelect',
  displayName: 'KSamplerSelect',
  category: 'sampling/custom_sampling/samplers',
  inputs: [samplerCombo()],
  outputs: [t.out('SAMPLER')],
  execute: ({ sampler_name }) => {
    const s: SamplerValue = { name: sampler_name };
    return { outputs: [s] };
  },
});

export const SamplerTCD = defineNode({
  id: 'SamplerTCD',
  displayName: 'SamplerTCD',
  category: 'sampling/custom_sampling/samplers',
  description: 'The TCD sampler for SamplerCustom, with its gamma (eta).',
  inputs: [
    t.float('eta', {
      default: 0.3,
      min: 0,
      max: 1,
      step: 0.01,
      tooltip: 'gamma in the paper: 0 is deterministic, higher is smoother.',
    }),
  ],
  outputs: [t.out('SAMPLER')],
  execute: ({ eta }) => {
    const s: SamplerValue = { name: 'tcd', eta };
    return { outputs: [s] };
  },
});

export const BasicScheduler = defineNode({
  id: 'BasicScheduler',
  displayName: 'BasicScheduler',
  category: 'sampling/custom_sampling/schedulers',
  inputs: [
    t.socket('MODEL', 'model'),
    schedulerCombo(),
    t.int('steps', { default: 20, min: 1, max: 10000 }),
    t.float('denoise', { default: 1.0, min: 0, max: 1, step: 0.01 }),
  ],
  outputs: [t.out('SIGMAS')],
  execute: ({ model, scheduler, steps, denoise }) => {
    const s: SigmasValue = ksamplerSigmas(samplingOf(model).ms, '', scheduler, steps, denoise);
    return { outputs: [s] };
  },
});

export const SamplerCustom = defineNode({
  id: 'SamplerCustom',
  displayName: 'SamplerCustom',
  category: 'sampling/custom_sampling',
  inputs: [
    modelIn,
    t.boolean('add_noise', { default: true }),
    seedInput('noise_seed'),
    cfgIn(8.0),
    positiveIn,
    negativeIn,
    t.socket('SAMPLER', 'sampler'),
    t.socket('SIGMAS', 'sigmas'),
    latentIn,
  ],
  outputs: [t.out('LATENT', 'output'), t.out('LATENT', 'denoised_output')],
  // a ControlNet of another family than the model: refused before anything runs
  validate: (_a, _s, linked) => samplerInputsCheck(linked),
  execute: async (a, ctx) => {
    const model = a.model,
      lat = a.latent_image;
    const { x, denoised } = await runKSampler(
      {
        model,
        positive: a.positive,
        negative: a.negative,
        latent: lat,
        seed: seedValue(a.noise_seed),
        cfg: a.cfg,
        sampler: a.sampler,
        sigmas: [...a.sigmas],
        addNoise: a.add_noise,
      },
      ctx,
    );
    const scale = model.config.vae.scalingFactor;
    return { outputs: [toLatent(x, lat, scale), toLatent(denoised, lat, scale)] };
  },
});
