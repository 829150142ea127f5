/**
 * The whole TCD denoising loop inside the worker: conditioning is uploaded once, and on GPU providers the latent,
 * eps and the step's result stay in GPU buffers from the first step to the last (the UNet's eps output and the
 * step graph's `prev` are 'gpu-buffer' outputs fed straight back). Only the per-step noise (drawn on the main thread
 * in the reference order), the timestep and the step scalars go up; only previews (when asked) and the final latent
 * come down. On the CPU provider the same code runs with CPU tensors: that is the tested twin of the GPU path.
 * Same numbers as sampleTcd + tcdStep in JS (the step graph is tcdStep in float32; tests compare them).
 * Progress is posted and never waited for: the loop does not stop per step for the main thread. Cancellation: before
 * each UNet call the loop lets the worker's event loop turn once (a cancel that has arrived gets handled) and then
 * checks it, so once a cancel has reached the worker no further UNet call starts.
 * Example (worker): const latent = await runTcdLoop(store, call, (p) => port.postMessage(p), () => cancelled);
 */
import ort from 'onnxruntime-node';
import { serializeModel } from '../onnx/serialize.js';
import { buildTcdStepGraph, TCD_STEP_SCALARS } from '../sampling/tcd-step-graph.js';
import { tcdStepScalars } from '../sampling/tcd.js';
import { DiscreteModelSampling } from '../sampling/model-sampling.js';
import type { Tensor } from '../tensor.js';
import { UNetBranches } from './unet-branches.js';
import { phaseMarks } from './timeline.js';
import { deviceTensors } from './device-tensors.js';
import type { CondBranch, StepProgress, TcdLoopCall } from './protocol.js';
import { latentsOnHost, loopSessionOptions } from './providers.js';
import type { SessionStore } from './session-store.js';

const stepSessions = new Map<string, Promise<ort.InferenceSession>>();

function stepSession(
  store: SessionStore,
  guided: boolean,
  predictionType: TcdLoopCall['predictionType'],
): Promise<ort.InferenceSession> {
  const key = `${store.ep}:${predictionType}:${guided}`;
  let s = stepSessions.get(key);
  if (!s) {
    s = ort.InferenceSession.create(
      serializeModel(buildTcdStepGraph({ guided, predictionType })),
      loopSessionOptions(store.ep, 'step', store.tuning),
    );
    stepSessions.set(key, s);
    s.catch(() => stepSessions.delete(key));
  }
  return s;
}

/** Releases the step sessions (POST /free). */
export async function releaseLoopSessions(): Promise<void> {
  const all = [...stepSessions.values()];
  stepSessions.clear();
  for (const s of all) await (await s.catch(() => null))?.release();
}

/**
 * One turn of the worker's event loop: the loops await it before checking for a cancel, since a step's work may
 * finish without the port's 'message' handler getting a chance to run.
 */
export function letMessagesIn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Thrown when the caller cancelled the loop; the executor reports the prompt as interrupted. */
export class LoopCancelled extends Error {
  constructor() {
    super('Processing interrupted');
    this.name = 'InterruptedError';
  }
}

const scalar = (v: number) => new ort.Tensor('float32', Float32Array.of(v), [1]);

export async function runTcdLoop(
  store: SessionStore,
  call: TcdLoopCall,
  progress: (p: StepProgress) => void | Promise<void>,
  isCancelled: () => boolean,
): Promise<Tensor> {
  // the loop's phases on the worker timeline (the bench's loopPhasesMs): tcd_setup, then per step tcd_yield,
  // tcd_unet, tcd_step, tcd_progress, and tcd_end (the last step's download and report, closing)
  const mark = phaseMarks(store, 'tcd');
  const n = call.timesteps.length;
  const shape = call.x.shape,
    size = call.x.data.length,
    batch = shape[0];
  const noisySteps = call.eta > 0 ? n - 1 : 0;
  if (call.noises.length !== noisySteps)
    throw new Error(
      `sampleTcd: ${noisySteps} noise draws needed (eta ${call.eta}, ${n} steps), got ${call.noises.length}`,
    );
  if (call.noises.some((z) => z.length !== size))
    throw new Error("sampleTcd: every noise draw must have the latent's size");
  const { config } = store.checkpoint(call.model.checkpoint);
  const branches: CondBranch[] = call.negative ? [call.positive, call.negative] : [call.positive];
  if (config.unet.adm && branches.some((b) => !b.extra))
    throw new Error(`the ${config.family} unet needs textEmbeds (pooled) and timeIds`);

  // conditioning goes up once; CFG is one batched UNet call where latents live on the host (unet-branches.ts)
  // ControlNets' start/end ranges on the model's own sigma table (a TCD timestep t has sigma(t) there)
  const ms = DiscreteModelSampling.sd();
  const unet = await UNetBranches.open(store, call.model, branches, (p) => ms.percentToSigma(p));
  const step = await stepSession(store, branches.length === 2, call.predictionType);
  const dev = deviceTensors(store);
  const capture = store.tuning.graphCapture && !latentsOnHost(store.ep);
  const owned: ort.Tensor[] = []; // device copies made here, disposed at the end
  const up = async (t: Tensor) => {
    const d = await dev.upload(t);
    owned.push(d);
    return d;
  };
  const zeros = await up({ shape, data: new Float32Array(size) });
  let x = await dev.upload(call.x);
  mark('setup');
  try {
    for (let i = 0; i < n; i++) {
      await letMessagesIn();
      if (isCancelled()) throw new LoopCancelled();
      mark('yield');
      const last = i === n - 1;
      const t = call.timesteps[i];
      // graph capture replays recorded GPU work and takes only GPU-resident inputs: then t goes up as well
      const tFeed = capture ? await dev.upload({ shape: [batch], data: new Float32Array(batch).fill(t) }) : null;
      const eps = await unet.eps(x, tFeed ?? t, ms.sigma(t));
      mark('unet');
      const sc = tcdStepScalars(t, last ? null : call.timesteps[i + 1], call.eta);
      const noise = sc.noisy ? await dev.upload({ shape, data: call.noises[i] }) : zeros;
      const values = [sc.sqrtAlpha, sc.sqrtBeta, sc.sqrtAlphaS, sc.sqrtBetaS, sc.keep, sc.noiseScale, call.cfg];
      const feeds: Record<string, ort.Tensor> = { x, pos: eps[0], noise };
      if (eps.length === 2) feeds.neg = eps[1];
      TCD_STEP_SCALARS.forEach((name, k) => {
        feeds[name] = scalar(values[k]);
      });
      // every output is fetched (GPU outputs are bound together); pns comes down only for previews and the end
      const out = await step.run(feeds);
      for (const e of eps) dispose(e);
      if (tFeed) dispose(tFeed);
      if (noise !== zeros) dispose(noise);
      dispose(x);
      mark('step');
      if (last) {
        dispose(out.prev);
        const result = await dev.download(out.pns);
        dispose(out.pns);
        await progress({
          step: i,
          total: n,
          ...(call.previews ? { preview: { shape: [...shape], data: result.data.slice() } } : {}),
        });
        return { shape: [...shape], data: result.data };
      }
      x = out.prev;
      const preview = call.previews ? await dev.download(out.pns) : undefined;
      dispose(out.pns);
      // posted, not waited for (a TAESD preview is decoded first, here in the worker)
      await progress({ step: i, total: n, ...(preview ? { preview } : {}) });
      mark('progress');
    }
    throw new Error('sampleTcd: no timesteps');
  } catch (e) {
    dispose(x);
    throw e;
  } finally {
    for (const d of owned) dispose(d);
    unet.close();
    mark('end');
  }
}

/** Frees a GPU buffer now rather than at garbage collection (CPU tensors need nothing). */
function dispose(t: ort.Tensor): void {
  if (t.location === 'gpu-buffer') t.dispose();
}
