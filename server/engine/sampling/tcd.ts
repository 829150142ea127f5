/**
 * The TCD scheduler exactly as diffusers' TCDScheduler computes it with its default config (1000 training steps,
 * scaled_linear betas 0.00085..0.012, original_inference_steps 50, "leading" TCD timesteps, set_alpha_to_one),
 * as pure functions over Float32Arrays. The model is reached only through the `denoise` callback.
 *
 * Pipeline RNG rule (diffusers TCD pipelines): with one generator g, the initial latent is randn(shape, g)
 * (times init_noise_sigma = 1), then every step that adds noise (eta > 0 and not the last step) draws
 * randn(shape, g) from the same generator, in step order. For img2img the noise for add_noise is drawn first.
 *
 * Example:
 *   const ts = tcdTimesteps(4);                                   // [999, 759, 499, 259]
 *   const x0 = tcdInitialLatent(gen, [1, 4, 64, 64]);
 *   const latent = await sampleTcd({ x: x0, timesteps: ts, eta: 0.3, noise: gen, denoise: async (x, t) => unetEps(x, t) });
 */
import type { NoiseSource } from './noise.js';

export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';

const f = Math.fround;

/** Python's str() of a float, for error messages identical to diffusers' (1.0 -> "1.0"). */
function pyFloat(v: number): string {
  return Number.isInteger(v) ? v.toFixed(1) : String(v);
}

/** torch.linspace(start, end, steps, dtype=float32) on the CPU: float32 step, filled from both ends (halfway split). */
export function torchLinspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  if (steps === 1) {
    out[0] = start;
    return out;
  }
  const s = f(start),
    e = f(end);
  // float32 step; each element rounded once (bit-exact against torch's alphas_cumprod in the fixtures)
  const step = f((e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) out[i] = i < halfway ? s + step * i : e - step * (steps - i - 1);
  return out;
}

/**
 * alphas_cumprod of the scaled_linear schedule as torch computes it in float32:
 * betas = linspace(sqrt(b0), sqrt(b1), n, float32) ** 2; cumprod(1 - betas) (torch accumulates the CPU cumprod in double).
 */
export function scaledLinearAlphasCumprod(
  numTrainTimesteps = 1000,
  betaStart = 0.00085,
  betaEnd = 0.012,
): Float32Array {
  const roots = torchLinspaceF32(Math.sqrt(betaStart), Math.sqrt(betaEnd), numTrainTimesteps);
  const out = new Float32Array(numTrainTimesteps);
  let acc = 1;
  for (let i = 0; i < numTrainTimesteps; i++) {
    const alpha = f(1 - f(roots[i] * roots[i]));
    acc *= alpha;
    out[i] = acc;
  }
  return out;
}

/** The default TCDScheduler schedule, computed once. */
export const TCD_ALPHAS_CUMPROD = scaledLinearAlphasCumprod();
export const TCD_TRAIN_TIMESTEPS = 1000;
export const TCD_ORIGINAL_STEPS = 50;

/**
 * TCDScheduler.set_timesteps(steps, strength=strength) with original_inference_steps = originalSteps:
 * the TCD training schedule k-1, 2k-1, ... (k = 1000 // originalSteps, int(originalSteps*strength) entries),
 * reversed and sampled at floor(linspace(0, len, steps, endpoint=False)). Throws diffusers' errors.
 * Example: tcdTimesteps(4) -> [999, 759, 499, 259]; tcdTimesteps(4, 0.5) -> [499, 379, 259, 139]
 */
export function tcdTimesteps(
  steps: number,
  strength = 1.0,
  originalSteps = TCD_ORIGINAL_STEPS,
  numTrainTimesteps = TCD_TRAIN_TIMESTEPS,
): number[] {
  if (!Number.isInteger(steps) || steps < 1)
    throw new Error(`num_inference_steps must be a positive integer, got ${steps}`);
  if (originalSteps > numTrainTimesteps) {
    throw new Error(
      `\`original_steps\`: ${originalSteps} cannot be larger than \`self.config.train_timesteps\`: ${numTrainTimesteps}`,
    );
  }
  const k = Math.floor(numTrainTimesteps / originalSteps);
  const count = Math.trunc(originalSteps * strength); // python int() truncates
  const origin: number[] = [];
  for (let i = 1; i <= count; i++) origin.push(i * k - 1);
  if (steps > numTrainTimesteps)
    throw new Error(
      `\`num_inference_steps\`: ${steps} cannot be larger than \`self.config.train_timesteps\`: ${numTrainTimesteps}`,
    );
  const skipping = Math.floor(origin.length / steps);
  if (skipping < 1) {
    throw new Error(
      `The combination of \`original_steps x strength\`: ${originalSteps} x ${pyFloat(strength)} is smaller than \`num_inference_steps\`: ${steps}. ` +
        `Make sure to either reduce \`num_inference_steps\` to a value smaller than ${count} or increase \`strength\` to a value higher than ${pyFloat(steps / originalSteps)}.`,
    );
  }
  if (steps > originalSteps)
    throw new Error(
      `\`num_inference_steps\`: ${steps} cannot be larger than \`original_inference_steps\`: ${originalSteps}`,
    );
  origin.reverse();
  // np.linspace(0, len, steps, endpoint=False) = i * (len / steps), then floor
  const step = origin.length / steps;
  return Array.from({ length: steps }, (_, i) => origin[Math.floor(i * step)]);
}

export interface TcdStepArgs {
  modelOutput: Float32Array;
  /** the current discrete timestep */
  timestep: number;
  /** the next timestep of the schedule, or null on the last step (diffusers then uses timestep 0) */
  prevTimestep: number | null;
  sample: Float32Array;
  /** gamma in the paper; 0 = deterministic, 1 = fully stochastic */
  eta: number;
  /** N(0, 1) noise: required exactly when eta > 0 and this is not the last step */
  noise?: Float32Array;
  predictionType?: PredictionType;
  alphasCumprod?: Float32Array;
}

/**
 * The scalars of one TCDScheduler.step, shared by the JS step below and the step graph the worker's GPU loop runs
 * (tcd-step-graph.ts): square roots of alpha_prod / beta_prod at t and at s = floor((1 - eta) * prev_t), and the
 * factors of prev_sample = keep * pred_noised_sample + noiseScale * noise (keep 1, noiseScale 0 when no noise).
 * Example: tcdStepScalars(999, 759, 0.3) // { sqrtAlpha: 0.0683, ..., keep: 0.98.., noiseScale: 0.18.. }
 */
export function tcdStepScalars(
  timestep: number,
  prevTimestep: number | null,
  eta: number,
  ac: Float32Array = TCD_ALPHAS_CUMPROD,
): {
  sqrtAlpha: number;
  sqrtBeta: number;
  sqrtAlphaS: number;
  sqrtBetaS: number;
  keep: number;
  noiseScale: number;
  noisy: boolean;
} {
  if (!(eta >= 0 && eta <= 1)) throw new Error('gamma must be less than or equal to 1.0');
  const last = prevTimestep === null;
  const prevT = last ? 0 : prevTimestep;
  // torch: (1 - eta) * long tensor is a float32 product, then floor
  const timestepS = Math.floor(f(f(1 - eta) * f(prevT)));
  const alphaT = ac[timestep],
    betaT = f(1 - alphaT);
  const alphaPrev = ac[prevT];
  const alphaS = ac[timestepS],
    betaS = f(1 - alphaS);
  const noisy = eta > 0 && !last;
  const r = alphaPrev / alphaS;
  return {
    sqrtAlpha: Math.sqrt(alphaT),
    sqrtBeta: Math.sqrt(betaT),
    sqrtAlphaS: Math.sqrt(alphaS),
    sqrtBetaS: Math.sqrt(betaS),
    keep: noisy ? Math.sqrt(r) : 1,
    noiseScale: noisy ? Math.sqrt(1 - r) : 0,
    noisy,
  };
}

/**
 * One TCDScheduler.step(): returns prev_sample and pred_noised_sample (x_s).
 * Example: const { prevSample } = tcdStep({ modelOutput: eps, timestep: 999, prevTimestep: 759, sample: x, eta: 0.3, noise: z });
 */
export function tcdStep(a: TcdStepArgs): { prevSample: Float32Array; predNoisedSample: Float32Array } {
  const sc = tcdStepScalars(a.timestep, a.prevTimestep, a.eta, a.alphasCumprod);
  const sqA = sc.sqrtAlpha,
    sqB = sc.sqrtBeta,
    sqAs = sc.sqrtAlphaS,
    sqBs = sc.sqrtBetaS;
  const n = a.sample.length,
    mo = a.modelOutput,
    x = a.sample;
  if (mo.length !== n) throw new Error(`tcdStep: model output has ${mo.length} values, sample has ${n}`);
  const pns = new Float32Array(n);
  const kind = a.predictionType ?? 'epsilon';
  for (let i = 0; i < n; i++) {
    let x0: number, eps: number;
    if (kind === 'epsilon') {
      x0 = (x[i] - sqB * mo[i]) / sqA;
      eps = mo[i];
    } else if (kind === 'sample') {
      x0 = mo[i];
      eps = (x[i] - sqA * x0) / sqB;
    } else if (kind === 'v_prediction') {
      x0 = sqA * x[i] - sqB * mo[i];
      eps = sqA * mo[i] + sqB * x[i];
    } else
      throw new Error(
        `prediction_type given as ${String(kind)} must be one of \`epsilon\`, \`sample\` or \`v_prediction\` for \`TCDScheduler\`.`,
      );
    pns[i] = sqAs * x0 + sqBs * eps;
  }
  if (sc.noisy) {
    if (!a.noise || a.noise.length !== n)
      throw new Error('tcdStep: eta > 0 before the last step needs noise of the sample size');
    const prev = new Float32Array(n);
    for (let i = 0; i < n; i++) prev[i] = sc.keep * pns[i] + sc.noiseScale * a.noise[i];
    return { prevSample: prev, predNoisedSample: pns };
  }
  return { prevSample: pns, predNoisedSample: pns };
}

/** scheduler.add_noise: sqrt(abar_t) * latent + sqrt(1 - abar_t) * noise (img2img start at timesteps[0]). */
export function tcdAddNoise(
  latent: Float32Array,
  noise: Float32Array,
  timestep: number,
  alphasCumprod: Float32Array = TCD_ALPHAS_CUMPROD,
): Float32Array {
  const a = alphasCumprod[timestep];
  const ca = Math.sqrt(a),
    cb = Math.sqrt(f(1 - a));
  const out = new Float32Array(latent.length);
  for (let i = 0; i < out.length; i++) out[i] = ca * latent[i] + cb * noise[i];
  return out;
}

/** The initial latent of a text-to-image run: randn(shape) * init_noise_sigma (= 1 for TCD). */
export function tcdInitialLatent(noise: NoiseSource, shape: number[]): Float32Array {
  return Float32Array.from(noise.randn(shape));
}

export interface SampleTcdOptions {
  /** initial noise (txt2img) or tcdAddNoise(image latent, noise, timesteps[0]) (img2img) */
  x: Float32Array;
  /** the schedule from tcdTimesteps */
  timesteps: number[];
  eta: number;
  /** the model: returns the raw prediction (eps for SD1.5/SDXL) for x at discrete timestep t (cfg applied by the caller) */
  denoise: (x: Float32Array, t: number) => Promise<Float32Array>;
  noise?: NoiseSource;
  /** latent shape used for noise draws; defaults to [x.length] */
  shape?: number[];
  predictionType?: PredictionType;
  onStep?: (info: {
    i: number;
    total: number;
    timestep: number;
    x: Float32Array;
    predNoisedSample: Float32Array;
  }) => void | Promise<void>;
}

/**
 * The TCD denoising loop of diffusers' TCD pipelines: model, then step; one noise draw per step exactly where
 * diffusers draws it (eta > 0 and not the last step).
 */
export async function sampleTcd(o: SampleTcdOptions): Promise<Float32Array> {
  let x = o.x;
  const n = o.timesteps.length;
  for (let i = 0; i < n; i++) {
    const t = o.timesteps[i];
    const modelOutput = await o.denoise(x, t);
    const last = i === n - 1;
    let noise: Float32Array | undefined;
    if (o.eta > 0 && !last) {
      if (!o.noise) throw new Error('sampleTcd: eta > 0 needs a noise source');
      noise = o.noise.randn(o.shape ?? [x.length]);
    }
    const r = tcdStep({
      modelOutput,
      timestep: t,
      prevTimestep: last ? null : o.timesteps[i + 1],
      sample: x,
      eta: o.eta,
      noise,
      predictionType: o.predictionType,
    });
    x = r.prevSample;
    if (o.onStep) await o.onStep({ i, total: n, timestep: t, x, predNoisedSample: r.predNoisedSample });
  }
  return x;
}
