/**
 * What crosses the boundary between the Engine (main thread) and its worker: plain serializable descriptors (also
 * the cache keys) and Float32Arrays whose buffers are transferred to a worker thread, never copied (a worker child
 * process gets structured-clone copies: see worker-port.ts).
 * Example: { id: 7, call: { op: 'vaeDecode', vae: { checkpoint: '/models/sd15.safetensors' }, z } }
 */
import type { GpuTuning } from './providers.js';
import type { Tensor } from '../tensor.js';
import type { SamplingSpec } from '../sampling/model-sampling-variants.js';
import type { Region } from '../sampling/regional.js';
import type { LoraRef, MergeRef, ModelRef } from '../types.js';
import type { ExecutionProvider } from './providers.js';
import type { CheckpointSaveSpec } from '../model/checkpoint-save.js';

/** Text encoder(s) of a checkpoint. clipSkip counts layers from the end: -1 = last (with final norm), -2 = penultimate. */
export interface ClipRef {
  checkpoint: string;
  loras: LoraRef[];
  clipSkip?: number;
  merges?: MergeRef[];
}

/**
 * A VAE: a checkpoint's (or a VAE-only file's) AutoencoderKL, or a TAESD pair (models/vae_approx) when `taesd` is
 * set; checkpoint then names the decoder file (it identifies the VAE in caches and errors).
 */
export interface VaeRef {
  checkpoint: string;
  taesd?: TaesdRef;
}

/** TAESD encoder and decoder files (absolute paths) with the latent scale/shift of the family they stand in for. */
export interface TaesdRef {
  encoder: string;
  decoder: string;
  scale: number;
  shift: number;
}

/** An ESRGAN-family upscale model file (models/upscale_models), absolute path. */
export interface UpscaleModelRef {
  path: string;
}

export interface UNetExtra {
  textEmbeds: Tensor;
  timeIds: Tensor;
}

/**
 * One applied ControlNet of a conditioning branch (ControlNetApply / ControlNetApplyAdvanced). The worker resizes the
 * hint to the UNet input's size x 8 (nearest-exact, centre crop), runs the ControlNet on the branch's own UNet inputs
 * and adds strength x its residuals while the step's sigma lies in the start/end percent range.
 */
export interface ControlRef {
  /** absolute path of the ControlNet file */
  path: string;
  /** DiffControlNetLoader: the model (with its LoRAs and merges) whose UNet weights the differences are added to */
  diffBase?: ModelRef;
  /** the hint image, channels first [B, C, H, W], values in [0, 1] */
  hint: Tensor;
  strength: number;
  startPercent: number;
  endPercent: number;
}

/**
 * One conditioning branch of a sampling loop: the UNet's context (and SDXL's pooled embeds and time ids); for
 * inpainting UNets (9 input channels) also `concat` [B, 5, h, w]: the mask and the masked image's latent (model
 * space), fed beside the latent on every UNet call (ComfyUI's c_concat).
 */
export interface CondBranch {
  context: Tensor;
  extra?: UNetExtra;
  concat?: Tensor;
  /** ControlNets applied to this branch, in the order they were applied (their residuals sum) */
  control?: ControlRef[];
}

/**
 * A whole TCD denoising loop run inside the worker (tcd-loop.ts), so latents and conditioning stay where the UNet
 * runs (GPU buffers on GPU providers) between steps. The noise of every noisy step is drawn by the caller in the
 * reference order and sent along; the result is the final latent (model space).
 */
export interface TcdLoopCall {
  op: 'sampleTcd';
  model: ModelRef;
  /** the starting latent [B, C, h, w] (noise, or the noised image latent for img2img) */
  x: Tensor;
  timesteps: number[];
  eta: number;
  /** randn for step i (i < timesteps.length - 1) when eta > 0; empty otherwise */
  noises: Float32Array[];
  positive: CondBranch;
  /** classifier-free guidance: eps = neg + cfg * (pos - neg); absent = positive branch only */
  negative?: CondBranch;
  cfg: number;
  predictionType: 'epsilon' | 'v_prediction';
  /** send each step's predicted noised sample back (latent previews) */
  previews: boolean;
  /** a TAESD decoder file: previews come back decoded by it (StepProgress.previewImage) */
  previewDecoder?: string;
}

/**
 * One entry of a conditioning list in a k-sampler loop: the UNet inputs of that entry, and for regional conditioning
 * (several entries, areas, masks) its region of the latent with the weights (its context is then at the region's
 * shape). Further per-entry extras (timestep range, ControlNet) belong here too; ksampler-loop.ts applies them.
 */
export interface LoopCond extends CondBranch {
  region?: Region;
}

/**
 * A whole KSampler / KSamplerAdvanced / SamplerCustom run inside the worker (ksampler-loop.ts): ComfyUI's wrapper
 * (engine/sampling/ksample.ts) around any registry sampler, with the latent on the host side of the worker and the
 * UNet's CFG branches in one batched call. Noise follows ComfyUI on a CPU: the caller sends the initial noise
 * (prepare_noise: randn from a torch generator seeded with `seed`, batch_index aware; zeros without add_noise), the
 * sampler's own noise is a fresh generator with the same seed. A denoise mask (inpainting) makes the loop
 * KSamplerX0Inpaint. The result is the final sample and the last denoised estimate, model space.
 */
export interface KSamplerLoopCall {
  op: 'sampleK';
  model: ModelRef;
  /** the model's sampling: sigma table (zsnr, distilled) and prediction type (ModelSamplingDiscrete & co.) */
  sampling: SamplingSpec;
  /** RescaleCFG's multiplier, when the model carries that patch */
  rescaleCfg?: number;
  /** a registry sampler name (registry.ts) */
  sampler: string;
  /** sampler extras (SamplerTCD's eta, ...) */
  eta?: number;
  sNoise?: number;
  /** the schedule, already sliced (KSamplerAdvanced's start/end steps); fewer than 2 sigmas returns the latent */
  sigmas: number[];
  /** model-space latent [B, C, h, w] (ComfyUI's LATENT times the VAE scaling factor) */
  latent: Tensor;
  /** the initial noise, the latent's size (zeros when noise is not added) */
  noise: Float32Array;
  /** ComfyUI's denoise mask resized to the latent (1 = denoise, 0 = keep), the latent's size */
  denoiseMask?: Float32Array;
  /** the noise seed of the sampler's own noise, a decimal string (64-bit seeds do not fit a number) */
  seed: string;
  /** conditioning lists: one entry, or regional entries (each with its region) */
  positive: LoopCond[];
  negative: LoopCond[];
  cfg: number;
  /** send each step's denoised estimate back (latent previews) */
  previews: boolean;
  /** a TAESD decoder file: previews come back decoded by it (StepProgress.previewImage) */
  previewDecoder?: string;
}

export interface KSamplerLoopResult {
  x: Tensor;
  denoised: Tensor;
}

/** What a sampling loop reports after each step. */
export interface StepProgress {
  step: number;
  total: number;
  preview?: Tensor;
  /** the preview decoded by the call's TAESD previewDecoder: the first batch item, [1, 3, H, W] in [-1, 1] */
  previewImage?: Tensor;
}

export type Call =
  | { op: 'encodeText'; clip: ClipRef; text: string }
  | { op: 'unet'; model: ModelRef; x: Tensor; t: Float32Array; context: Tensor; extra?: UNetExtra; concat?: Tensor }
  | TcdLoopCall
  | KSamplerLoopCall
  | { op: 'vaeDecode'; vae: VaeRef; z: Tensor }
  | { op: 'vaeEncode'; vae: VaeRef; image: Tensor }
  /** CheckpointSave: writes the patched model, CLIP and VAE as one checkpoint file */
  | { op: 'saveCheckpoint'; spec: CheckpointSaveSpec }
  /** one call of an upscale model on an image [1, 3, h, w] in [0, 1] -> [1, 3, s*h, s*w] in [0, 1] */
  | { op: 'upscaleImage'; model: UpscaleModelRef; image: Tensor }
  | { op: 'free' }
  | { op: 'stats' }
  /** test hooks: make the worker exit, throw outside any handler, or block its thread */
  | { op: 'debug'; action: 'exit' | 'throw' | 'block'; ms?: number }
  /** test hook: the worker's pid and its environment variable `name` (null when unset) -> WorkerEnvProbe */
  | { op: 'debug'; action: 'env'; name: string };

/** What { op: 'debug', action: 'env' } returns: where the worker runs and what it sees. */
export interface WorkerEnvProbe {
  pid: number;
  isolation: 'thread' | 'process';
  value: string | null;
}

export interface EncodedText {
  context: Tensor;
  pooled: Tensor | null;
}

export interface RuntimeStats {
  ep: ExecutionProvider;
  /** the onnxruntime-node release the worker runs (CUDA engines may run a pinned one: cuda-ort.ts) */
  ortVersion: string;
  /** cache keys of the loaded sessions, least recently used first */
  loaded: string[];
  evictions: string[];
  ramUsed: number;
  vramUsed: number;
  ramBudget: number;
  vramBudget: number;
  /** graphs serialised from a checkpoint in this worker vs loaded from files an earlier run left in cacheDir */
  graphsBuilt: number;
  graphsReused: number;
  /** per session load: graph build/serialise (or cache reuse) and session creation times, ms */
  loadTimings: { name: string; graphMs: number; sessionMs: number; reused: boolean }[];
  /**
   * the worker's timeline (last 1000): per session.run its component and ms, inside the worker (no message passing),
   * and 'cancel' (ms 0) when a cancel arrived; `at` is the start in ms since the epoch (performance.timeOrigin based)
   */
  runTimings: { component: string; ms: number; at: number }[];
}

export interface Request {
  id: number;
  call: Call;
}

/**
 * Asks the worker to stop the call `cancel` (handled at once, not queued): a sampling loop starts no UNet call after
 * this has reached the worker, and the step under way, if any, is still reported.
 */
export interface CancelRequest {
  cancel: number;
}

export type WorkerMessage = Request | CancelRequest;

export type Response =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: { name: string; message: string; stack?: string } }
  /** a loop's step report, posted without waiting for the main thread (it never arrives after its call's result) */
  | { id: number; progress: StepProgress }
  | { id: null; log: string }
  /** the worker has settled its execution provider (the probe session is done) */
  | { id: null; ready: true };

/** Settings the worker starts with (a thread's workerData; a child process's first message). */
export interface WorkerInit {
  /** requested provider (EngineOptions.ep); the worker settles on what actually works */
  ep: string | undefined;
  ramBudget: number;
  vramBudget: number;
  cacheDir: string;
  /** components whose weights exceed this go to external-data files in cacheDir; smaller ones stay in memory */
  externalDataMinBytes: number;
  /** GPU index this engine runs on (CUDA deviceId); default 0 */
  device?: number;
  /** the onnxruntime-node package the worker runs with when it is not the resolved one (CUDA's pin, cuda-ort.ts) */
  ortPackage?: string;
  /** GPU tuning knobs (providers.ts); unset ones keep DEFAULT_GPU_TUNING */
  tuning?: Partial<Omit<GpuTuning, 'deviceId'>>;
  /** graph cache disk budget in MiB (0 = no limit); absent: graphCacheBudgetBytes' default */
  graphCacheMB?: number;
  /**
   * the native addon behind tuning.cudaOptions, cudaGraph and sharedArena (cuda-options.ts, bound-session.ts,
   * shared-arena.ts); set with them
   */
  cudaAddon?: string;
}

/** "unet of sd15.safetensors": names a call in errors. */
export function describeCall(call: Call): string {
  const base = (p: string) => p.split(/[\\/]/).pop() ?? p;
  switch (call.op) {
    case 'encodeText':
      return `text encoder of ${base(call.clip.checkpoint)}`;
    case 'unet':
      return `unet of ${base(call.model.checkpoint)}`;
    case 'sampleTcd':
      return `TCD sampling loop of ${base(call.model.checkpoint)}`;
    case 'sampleK':
      return `${call.sampler} sampling loop of ${base(call.model.checkpoint)}`;
    case 'vaeDecode':
      return `vae decoder of ${base(call.vae.checkpoint)}`;
    case 'vaeEncode':
      return `vae encoder of ${base(call.vae.checkpoint)}`;
    case 'upscaleImage':
      return `upscale model ${base(call.model.path)}`;
    default:
      return call.op;
  }
}

/** The buffers a call carries, to pass as postMessage's transfer list. */
export function transferablesOf(value: unknown, out: ArrayBuffer[] = []): ArrayBuffer[] {
  if (value instanceof Float32Array || value instanceof Int32Array || value instanceof Uint8Array) {
    if (value.buffer instanceof ArrayBuffer && !out.includes(value.buffer)) out.push(value.buffer);
  } else if (Array.isArray(value)) {
    for (const v of value) transferablesOf(v, out);
  } else if (value && typeof value === 'object') {
    for (const v of Object.values(value)) transferablesOf(v, out);
  }
  return out;
}
