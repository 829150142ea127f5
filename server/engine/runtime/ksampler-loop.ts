/**
 * A whole KSampler / SamplerCustom run inside the engine worker: ComfyUI's wrapper (ksample: noise scaling, the
 * sampler, its noise source) around a denoiser whose UNet calls stay in the worker. The latent lives on the host side
 * of the worker (a few hundred KB: one copy per UNet call is far cheaper than a message round trip to the main
 * thread); the CFG branches run as one batched UNet call where latents live on the host (cpu, cuda; unet-branches.ts).
 * Regional conditioning (several entries, areas, masks) runs each entry on its region (calc_cond_batch,
 * sampling/regional.ts); a denoise mask makes it KSamplerX0Inpaint (sampling/inpaint.ts).
 * Progress, previews (the step's denoised estimate) and cancellation work as in the TCD loop: each step's report is
 * posted without waiting for the main thread, and before each UNet call the loop lets the worker's event loop turn
 * once and checks for a cancel, so once a cancel has reached the worker no further UNet call starts.
 * Example (worker): const { x, denoised } = await runKSamplerLoop(store, call, (p) => port.postMessage(p), () => cancelled);
 */
import { ksample } from '../sampling/ksample.js';
import { guidedDenoiser } from '../sampling/guided-denoiser.js';
import { inpaintDenoiser } from '../sampling/inpaint.js';
import { cfgDenoiser, scaleInput, type DiscreteModelSampling } from '../sampling/model-sampling.js';
import {
  DistilledModelSampling,
  denoisedFrom,
  modelSamplingFor,
  rescaledCfg,
} from '../sampling/model-sampling-variants.js';
import type { Denoiser } from '../sampling/noise.js';
import { regionalDenoiser } from '../sampling/regional.js';
import { CFG_PP_SAMPLERS } from '../sampling/registry.js';
import { TorchGenerator } from '../rng.js';
import type { Tensor } from '../tensor.js';
import type { KSamplerLoopCall, KSamplerLoopResult, LoopCond, StepProgress } from './protocol.js';
import type { SessionStore } from './session-store.js';
import { LoopCancelled, letMessagesIn } from './tcd-loop.js';
import { UNetBranches } from './unet-branches.js';
import { phaseMarks } from './timeline.js';

/** Whether the run needs the negative side: not at cfg 1 (ComfyUI's cfg1 optimisation), except for cfg_pp samplers. */
export function needsNegative(call: Pick<KSamplerLoopCall, 'sampler' | 'cfg'>): boolean {
  return Math.abs(call.cfg - 1) > 1e-9 || CFG_PP_SAMPLERS.has(call.sampler);
}

function nonEmpty(list: LoopCond[], what: string): LoopCond[] {
  if (!list.length) throw new Error(`${what} conditioning is empty`);
  return list;
}

export async function runKSamplerLoop(
  store: SessionStore,
  call: KSamplerLoopCall,
  progress: (p: StepProgress) => void | Promise<void>,
  isCancelled: () => boolean,
): Promise<KSamplerLoopResult> {
  // the loop's phases on the worker timeline: ks_setup (to the first UNet call), then ks_yield and ks_unet per UNet
  // call, ks_sampler (the sampler's own math between them), ks_progress per step, ks_end
  const mark = phaseMarks(store, 'ks');
  let started = false;
  const shape = [...call.latent.shape];
  const latent = call.latent.data;
  if (call.sigmas.length < 2) return { x: { shape, data: latent.slice() }, denoised: { shape, data: latent.slice() } };
  if (call.noise.length !== latent.length)
    throw new Error(`sampleK: the initial noise has ${call.noise.length} values, the latent ${latent.length}`);
  if (call.denoiseMask && call.denoiseMask.length !== latent.length)
    throw new Error("sampleK: the denoise mask must have the latent's size");
  const seed = BigInt(call.seed);
  const ms = modelSamplingFor(call.sampling);
  const positive = nonEmpty(call.positive, 'positive');
  const negative = needsNegative(call) ? nonEmpty(call.negative, 'negative') : null;
  const opened: UNetBranches[] = [];
  const open = async (conds: LoopCond[]) => {
    const u = await UNetBranches.open(store, call.model, conds, (p) => ms.percentToSigma(p));
    opened.push(u);
    return u;
  };
  const checked = (u: UNetBranches, at: number[]) => async (xScaled: Float32Array, t: number, sigma: number) => {
    mark(started ? 'sampler' : 'setup');
    started = true;
    await letMessagesIn();
    if (isCancelled()) throw new LoopCancelled();
    mark('yield');
    const eps = await u.epsHost({ shape: at, data: xScaled }, t, sigma);
    mark('unet');
    return eps;
  };
  try {
    const regional = [...positive, ...(negative ?? [])].some((c) => c.region);
    let guided: Denoiser;
    if (!regional) {
      // one entry per side: both sides in one batched UNet call
      const unet = await open(negative ? [positive[0], negative[0]] : [positive[0]]);
      guided = guidedDenoiser({
        ms,
        prediction: call.sampling.prediction,
        eps: checked(unet, shape),
        cfg: call.cfg,
        branches: negative ? 2 : 1,
        batch: shape[0],
        ...(call.rescaleCfg !== undefined ? { rescaleCfg: call.rescaleCfg } : {}),
      });
    } else {
      guided = await regionalGuidance(call, ms, shape, positive, negative, async (c) => {
        const at = c.region ? [shape[0], shape[1], c.region.h, c.region.w] : shape;
        return checked(await open([c]), at);
      });
    }
    let lastDenoised = latent;
    const x = await ksample({
      sampler: call.sampler,
      sigmas: call.sigmas,
      cfg: call.cfg,
      shape,
      latentImage: latent,
      denoiser: call.denoiseMask ? inpaintDenoiser(guided, call.denoiseMask, latent, call.noise) : guided,
      initialNoise: call.noise,
      // ancestral noise: a fresh generator seeded with the same seed, like ComfyUI's default noise sampler on a CPU;
      // a distilled table (LCM/TCD patches) keeps the full one for the samplers' alpha lookups (ComfyUI's alphas_cumprod)
      samplerNoise: new TorchGenerator(seed),
      modelSampling: ms instanceof DistilledModelSampling ? ms.base : ms,
      ...(call.eta !== undefined ? { eta: call.eta } : {}),
      ...(call.sNoise !== undefined ? { sNoise: call.sNoise } : {}),
      onStep: async ({ i, total, denoised }) => {
        mark('sampler');
        lastDenoised = denoised;
        // the sampler keeps using its arrays (multistep history): previews travel as copies
        await progress({ step: i, total, ...(call.previews ? { preview: { shape, data: denoised.slice() } } : {}) });
        mark('progress');
      },
    });
    const result: Tensor = { shape, data: x === latent ? x.slice() : x };
    return {
      x: result,
      denoised: { shape, data: lastDenoised === latent || lastDenoised === x ? lastDenoised.slice() : lastDenoised },
    };
  } finally {
    for (const u of opened) u.close();
    mark('end');
  }
}

/**
 * Regional guidance: each side averages its entries' denoised predictions over their regions (calc_cond_batch), then
 * cfg (or RescaleCFG) combines the sides. One UNet call per entry (the regions differ in shape).
 */
async function regionalGuidance(
  call: KSamplerLoopCall,
  ms: DiscreteModelSampling,
  shape: number[],
  positive: LoopCond[],
  negative: LoopCond[] | null,
  epsOf: (c: LoopCond) => Promise<(xScaled: Float32Array, t: number, sigma: number) => Promise<Float32Array[]>>,
): Promise<Denoiser> {
  const side = async (conds: LoopCond[]): Promise<Denoiser> => {
    const parts = [];
    for (const c of conds) {
      const eps = await epsOf(c);
      const d: Denoiser = async (x, sigma) =>
        denoisedFrom(
          call.sampling.prediction,
          ms,
          x,
          (await eps(scaleInput(x, sigma), ms.timestep(sigma), sigma))[0],
          sigma,
        );
      parts.push({
        region: c.region ?? { h: shape[2], w: shape[3], y: 0, x: 0, mult: new Float32Array(latentSize(shape)).fill(1) },
        d,
      });
    }
    return regionalDenoiser(parts, shape);
  };
  const dc = await side(positive);
  const du = negative ? await side(negative) : dc;
  const multiplier = call.rescaleCfg;
  if (multiplier === undefined || Math.abs(call.cfg - 1) <= 1e-9) return cfgDenoiser(dc, du, call.cfg);
  return async (x, sigma) =>
    rescaledCfg(x, await dc(x, sigma), await du(x, sigma), sigma, call.cfg, multiplier, shape[0]);
}

const latentSize = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
