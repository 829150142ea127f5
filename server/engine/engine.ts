/**
 * Engine: the one object nodes call to run networks. It lives on the main thread and never runs ONNX Runtime there.
 *
 * Design
 * - Models are named by plain serializable descriptors, which are also the cache keys and what is sent to the
 *   worker: ModelRef = { checkpoint: absolute path, loras: [{ path, strength }] }, ClipRef = the same plus clipSkip
 *   (layers from the end, -1 = last), VaeRef = { checkpoint }.
 * - Every ORT call happens in a worker thread (runtime/worker.ts): it reads checkpoints, builds graphs, creates and
 *   caches sessions, runs them. Messages carry descriptors and Float32Arrays; the buffers are transferred, not
 *   copied. Caller arrays are never detached: the engine copies inputs once into buffers it owns and transfers
 *   those (samplers keep using x and the context after a call). Outputs come back transferred, zero-copy.
 * - A worker that crashes (uncaught throw, exit, out of memory) rejects only the calls in flight, each with an error
 *   naming its component; the next call starts a fresh worker (runtime/worker-client.ts).
 * - The engine reads no environment: every setting is an option (the command line resolves flags and TCD_*
 *   variables once, server/settings.ts), and the worker gets them in its start message (WorkerInit).
 * - Isolation (option isolation): the worker is a thread (default) or a child process
 *   (runtime/worker-port.ts) with extra environment variables (option env) and its own fate on a native crash; same
 *   protocol, but buffers are copied to and from a process instead of transferred.
 * - Execution provider: option `ep` = auto | cpu | webgpu | cuda (the library's default is cpu; the CLI's
 *   is auto). auto: cuda when it loads, else webgpu, else cpu, logged in one line with the reasons. An explicit
 *   webgpu that is not in listSupportedBackends() or cannot create a session falls back to cpu with one log line; an
 *   explicit cuda that cannot load is an error (ProviderUnusable: the constructor checks its libraries, the worker
 *   its session), never a silent fallback. Compute dtype: fp32 on CPU; fp16 on webgpu/cuda (the VAE with its
 *   residual stream scaled, and decoded again in fp32 when it overflows; --vae-precision forces one). Session options come from the pure sessionOptionsFor(ep, component, family) (runtime/providers.ts).
 * - Sessions are cached across calls and prompts, keyed by (checkpoint, component, variant, LoRAs, dtype, ep), in an
 *   LRU cache with a byte budget: RAM (option ramBudgetMB, default 75% of total RAM) for CPU
 *   sessions, VRAM (vramBudgetMB, default unlimited: Node cannot query VRAM) for GPU sessions.
 *   A component's size is estimated before loading as parameter count x dtype bytes; a component larger than the
 *   whole budget fails with an error naming it and both sizes. free() unloads everything (POST /free).
 * - Graph bytes: components under externalDataMinMB (default 64) are serialised in memory with inline weights;
 *   bigger ones are written once to cacheDir (default <dataDir>/onnx-cache) as model.onnx + external data under a
 *   content-addressed key (builder code, checkpoint/LoRA identity, component, dtype), so a second start reuses them.
 *
 * Text conditioning follows ComfyUI: prompts split into 77-token windows, each encoded, concatenated on the
 * sequence axis, pooled from the first window; emphasis `(word:1.2)` lerps from the empty prompt's encoding;
 * clipSkip -k selects hidden_states[-k], with the final layer norm applied on SD1 (ComfyUI's and diffusers'
 * clip skip) and not on SDXL; SDXL's default is the checkpoint's defaultClipSkip (-2).
 *
 * Scaling convention (explicit, because it is where SD ports go wrong): the engine never applies the VAE
 * scaling_factor. vaeDecode takes the decoder's own input, i.e. a model-space latent already divided by
 * scaling_factor (ComfyUI's LATENT convention), and returns the image in [-1, 1], unclamped. vaeEncode returns the
 * mean of the latent distribution, unscaled. The model side (sampler nodes) multiplies by scaling_factor going in
 * and divides by it coming out; config.vae.scalingFactor from inspect() gives the number.
 *
 * Example:
 *   const engine = new Engine({ ep: 'cpu' });
 *   const ckpt = '/models/sd15.safetensors';
 *   const { context } = await engine.encodeText({ checkpoint: ckpt, loras: [], clipSkip: -1 }, 'a cat');
 *   const eps = await engine.unet({ checkpoint: ckpt, loras: [] }, x, Float32Array.of(999), context);
 *   const image = await engine.vaeDecode({ checkpoint: ckpt }, zOverScale);
 *   await engine.close();
 */
import { existsSync } from 'node:fs';
import { totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ModelConfig, ModelFamily } from './model/config.js';
import { detectModelFile } from './model/detect.js';
import { SafetensorsFile } from './io/safetensors.js';
import type { Tensor } from './tensor.js';
import { fileIdentity } from './runtime/graph-cache.js';
import type { ModelRef } from './types.js';
import type {
  Call,
  ClipRef,
  EncodedText,
  KSamplerLoopCall,
  KSamplerLoopResult,
  LoopCond,
  RuntimeStats,
  StepProgress,
  TcdLoopCall,
  UNetExtra,
  UpscaleModelRef,
  VaeRef,
  WorkerInit,
} from './runtime/protocol.js';
import { WorkerClient } from './runtime/worker-client.js';
import { type IsolationMode, type WorkerIsolation, checkIsolation } from './runtime/worker-port.js';
import { applyPinningEnv, findVulkanLayer, webgpuPinningEnv } from './runtime/gpu-pinning.js';
import { cudaProblemsHere, describeCudaProblems } from './runtime/cuda-check.js';
import { cudaOrtPackage, mainOrtPackage } from './runtime/cuda-ort.js';
import { CUDA_ADDON, parseCudaOptions } from './runtime/cuda-options.js';
import { DEFAULT_GPU_TUNING, ProviderUnusable, type GpuTuning } from './runtime/providers.js';
import { admit, MemoryAdmissionError, type AdmissionOp } from './runtime/estimate.js';
import type { CheckpointSaveSpec } from './model/checkpoint-save.js';

export type { LoraRef, ModelRef } from './types.js';
export type {
  ClipRef,
  CondBranch,
  EncodedText,
  RuntimeStats,
  StepProgress,
  UNetExtra,
  TaesdRef,
  UpscaleModelRef,
  VaeRef,
} from './runtime/protocol.js';

export interface EngineOptions {
  /** auto | cpu | webgpu | cuda; default cpu (the CLI defaults to auto) */
  ep?: string;
  /** RAM budget for loaded models; default 75% of total RAM */
  ramBudgetMB?: number;
  /** VRAM budget for GPU sessions; default unlimited */
  vramBudgetMB?: number;
  /** default ./data */
  dataDir?: string;
  /** memory limit of a 'process' engine in MB (the parent stops the child past it); default 85% of total RAM */
  maxRssMB?: number;
  /** disk budget of cacheDir in MiB (0 = no limit); default half the free disk, at least 8 GiB (graph-cache.ts) */
  graphCacheMB?: number;
  /** GPU tuning knobs (runtime/providers.ts); unset ones keep DEFAULT_GPU_TUNING */
  tuning?: Partial<Omit<GpuTuning, 'deviceId'>>;
  /** where big graphs are written; default <dataDir>/onnx-cache */
  cacheDir?: string;
  /** components with more weight bytes than this use external-data files in cacheDir; default 64 */
  externalDataMinMB?: number;
  /** one line per event worth a log (provider choice, crashes); default console.log */
  log?: (line: string) => void;
  /** GPU index (CUDA deviceId) for this engine; default 0 (not pinned). One engine per GPU for several GPUs. */
  device?: number;
  /**
   * Where the worker runs: 'thread' (a worker thread of this process) or 'process' (a child Node process: its own
   * environment variables, and a native crash in ONNX Runtime kills only the child). Default 'thread'.
   */
  isolation?: IsolationMode;
  /**
   * Extra environment variables for the worker process, read by native code when it starts (e.g. the variables that
   * pin WebGPU's Vulkan adapter to one GPU). Needs isolation 'process': an error with 'thread'.
   * Example: new Engine({ ep: 'webgpu', isolation: 'process', env: { SOME_VULKAN_LAYER_VAR: '1' } })
   */
  env?: Record<string, string>;
}

const MB = 1024 * 1024;

/** The worker settings an EngineOptions resolves to (options, then defaults; never the environment). */
export function resolveEngineOptions(o: EngineOptions = {}): WorkerInit {
  const dataDir = resolve(o.dataDir ?? 'data');
  return {
    ep: o.ep,
    ramBudget: o.ramBudgetMB !== undefined ? o.ramBudgetMB * MB : Math.floor(totalmem() * 0.75),
    vramBudget: o.vramBudgetMB !== undefined ? o.vramBudgetMB * MB : Infinity,
    cacheDir: resolve(o.cacheDir ?? join(dataDir, 'onnx-cache')),
    externalDataMinBytes: (o.externalDataMinMB ?? 64) * MB,
    device: o.device ?? 0,
    tuning: { ...DEFAULT_GPU_TUNING, ...definedOnly(o.tuning ?? {}) },
    ...(o.graphCacheMB !== undefined ? { graphCacheMB: o.graphCacheMB } : {}),
    ...(o.tuning?.cudaOptions || o.tuning?.cudaGraph || o.tuning?.sharedArena
      ? { cudaAddon: join(projectRoot(), CUDA_ADDON) }
      : {}),
  };
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The worker's isolation an EngineOptions resolves to (option, else 'thread'). */
export function resolveEngineIsolation(o: EngineOptions = {}): WorkerIsolation {
  const raw = o.isolation ?? 'thread';
  if (raw !== 'thread' && raw !== 'process')
    throw new Error(`engine isolation must be thread or process, got "${raw}"`);
  const isolation: WorkerIsolation = { mode: raw, ...(o.env ? { env: { ...o.env } } : {}) };
  // a child engine gets a memory limit (default 85% of RAM): past it the parent stops the engine, not the kernel the server
  if (raw === 'process') {
    isolation.maxRssBytes = o.maxRssMB !== undefined ? o.maxRssMB * MB : Math.floor(totalmem() * 0.85);
  }
  checkIsolation(isolation);
  return isolation;
}

/** The project root: the nearest folder above this module with a package.json (server/engine or dist/server/engine). */
function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

/** The GPU this process's WebGPU is pinned to: thread engines share the process's one Vulkan instance. */
let processWebGpuDevice: number | null = null;

/**
 * GPU pinning for WebGPU engines given a device (option `device`): CUDA takes the index as deviceId,
 * but WebGPU picks its adapter below ONNX Runtime, so the Vulkan device-select layer (runtime/gpu-pinning.ts) is
 * switched on through environment variables: in the child's env for isolation 'process', else in this process's
 * env (main thread, before the worker's first WebGPU session; one GPU per process). Without the built layer, GPU 0
 * runs on Dawn's default adapter (logged) and any other GPU is an error rather than a silent wrong GPU.
 */
export function pinWebGpu(
  ep: string | undefined,
  device: number | undefined,
  isolation: WorkerIsolation,
  log: (l: string) => void,
  layerDir: string | null = findVulkanLayer(projectRoot()),
): WorkerIsolation {
  if ((ep ?? '').trim().toLowerCase() !== 'webgpu' || device === undefined) return isolation;
  const base = isolation.mode === 'process' ? { ...process.env, ...isolation.env } : process.env;
  const pin = webgpuPinningEnv(device, layerDir, { base });
  if ('error' in pin) {
    if (device === 0) {
      log(`engine: webgpu runs on the default GPU: ${pin.error}`);
      return isolation;
    }
    throw new Error(`cannot run WebGPU on GPU ${device}: ${pin.error}`);
  }
  if (isolation.mode === 'process') return { ...isolation, env: { ...isolation.env, ...pin.env } };
  if (processWebGpuDevice !== null && processWebGpuDevice !== device) {
    throw new Error(
      `WebGPU in one process runs on one GPU and this one is on GPU ${processWebGpuDevice}: run GPU ${device} with isolation 'process' (serve --devices does) or in its own worker process`,
    );
  }
  applyPinningEnv(pin.env);
  processWebGpuDevice = device;
  return isolation;
}

/**
 * Throws ProviderUnusable when `ep` names cuda and its libraries are missing (what, and how to get them), so
 * `--ep cuda` fails at start instead of at the first prompt. Other requests pass (auto and webgpu settle in the worker).
 */
export function checkRequestedProvider(
  ep: string | undefined,
  env: Record<string, string | undefined> = process.env,
): void {
  if ((ep ?? '').trim().toLowerCase() !== 'cuda') return;
  const problems = cudaProblemsHere(env, cudaOrtPackage(projectRoot()));
  if (problems.length) throw new ProviderUnusable('cuda', `\n${describeCudaProblems(problems)}`);
}

/**
 * Engines that may run CUDA (ep cuda | auto) use the onnxruntime-node release the CUDA provider was built for: when
 * that is not the resolved package but setup:cuda's pinned copy, the worker becomes a child process importing it
 * (runtime/cuda-ort.ts), and the worker is told which package it runs (its CUDA library check). Sets settings.ortPackage.
 */
function withCudaOrt(settings: WorkerInit, isolation: WorkerIsolation): WorkerIsolation {
  const ep = (settings.ep ?? '').trim().toLowerCase();
  if (ep !== 'cuda' && ep !== 'auto') return isolation;
  const pkg = cudaOrtPackage(projectRoot());
  if (!pkg || pkg === mainOrtPackage()) return isolation;
  settings.ortPackage = pkg;
  return { ...isolation, mode: 'process', ortPackage: pkg };
}

/** Each engine's worker client, for the test hooks in engine/testing.ts (kept off the Engine API). */
export const workerClients = new WeakMap<Engine, WorkerClient>();

/** A tensor copy in a fresh buffer the engine may transfer. */
/**
 * How a sampling loop reports: onStep per step, previews (the step's latent, or with previewDecoder, a TAESD decoder
 * file, the decoded image in StepProgress.previewImage), abort through signal. The loop never waits for onStep (it may
 * be steps ahead of it); an abort stops it before the first UNet call after the cancel reaches the worker, and every
 * step that ran is still reported (onStep may be called after the abort, before the InterruptedError).
 */
export interface SamplingOptions {
  onStep?: (p: StepProgress) => void;
  previews?: boolean;
  previewDecoder?: string;
  signal?: AbortSignal;
}

function copyVaeRef(v: VaeRef): VaeRef {
  return { checkpoint: v.checkpoint, ...(v.taesd ? { taesd: { ...v.taesd } } : {}) };
}

function own(t: Tensor): Tensor {
  return { shape: [...t.shape], data: t.data.slice() };
}

/** A conditioning branch (or loop entry, with its region) in fresh buffers; every field travels. */
function ownBranch<B extends LoopCond>(b: B): B {
  return {
    ...b,
    context: own(b.context),
    ...(b.control ? { control: b.control.map((c) => ({ ...c, hint: own(c.hint) })) } : {}),
    ...(b.extra ? { extra: { textEmbeds: own(b.extra.textEmbeds), timeIds: own(b.extra.timeIds) } } : {}),
    ...(b.concat ? { concat: own(b.concat) } : {}),
    ...(b.region ? { region: { ...b.region, mult: b.region.mult.slice() } } : {}),
  };
}

export class Engine {
  private client: WorkerClient;
  private inspected = new Map<string, { mtimeMs: number; result: { family: ModelFamily; config: ModelConfig } }>();
  readonly settings: WorkerInit;
  readonly isolation: WorkerIsolation;

  constructor(options: EngineOptions = {}) {
    this.settings = resolveEngineOptions(options);
    checkRequestedProvider(this.settings.ep);
    parseCudaOptions(this.settings.tuning?.cudaOptions ?? ''); // a typo fails here, on every machine
    const log = options.log ?? ((l: string) => console.log(l));
    this.isolation = withCudaOrt(
      this.settings,
      pinWebGpu(this.settings.ep, options.device, resolveEngineIsolation(options), log),
    );
    this.client = new WorkerClient(this.settings, log, this.isolation);
    workerClients.set(this, this.client);
  }

  /**
   * Memory admission (runtime/estimate.ts) for a call on `checkpoint` at latent [h, w] with `batch` images evaluated
   * together: throws MemoryAdmissionError, naming the largest size that fits, when the activations cannot fit this
   * engine's budget (CPU: the RAM budget, fp32; GPU: the VRAM budget, fp16 but fp32 for the SDXL VAE, which may fall back to it).
   */
  admit(checkpoint: string, op: AdmissionOp, latentH: number, latentW: number, batch: number): void {
    const { config } = this.inspect(checkpoint);
    const ep = (this.settings.ep ?? '').trim().toLowerCase();
    const gpu = ep === 'webgpu' || ep === 'cuda';
    const dtypeBytes = !gpu || (op !== 'unet' && config.family === 'sdxl') ? 4 : 2;
    const budget = gpu ? this.settings.vramBudget : this.settings.ramBudget;
    admit(
      config,
      { op, latentH, latentW, batch, dtypeBytes },
      budget,
      gpu ? 'the GPU memory budget (TCD_VRAM_BUDGET_MB)' : "the engine's memory budget (TCD_RAM_BUDGET_MB)",
    );
  }

  /** True when `admit` would pass. */
  fits(checkpoint: string, op: AdmissionOp, latentH: number, latentW: number, batch: number): boolean {
    try {
      this.admit(checkpoint, op, latentH, latentW, batch);
      return true;
    } catch (e) {
      if (e instanceof MemoryAdmissionError) return false;
      throw e;
    }
  }

  /** Family and config of a checkpoint (or a VAE-only file), from its header only. Cached until the file changes. */
  inspect(checkpointPath: string): { family: ModelFamily; config: ModelConfig } {
    const mtimeMs = fileIdentity(checkpointPath).mtimeMs;
    const hit = this.inspected.get(checkpointPath);
    if (hit && hit.mtimeMs === mtimeMs) return hit.result;
    const file = SafetensorsFile.open(checkpointPath);
    try {
      const config = detectModelFile(file);
      const result = { family: config.family, config };
      this.inspected.set(checkpointPath, { mtimeMs, result });
      return result;
    } finally {
      file.close();
    }
  }

  /**
   * Conditioning for a prompt. context: [1, 77 x windows, channels] (SDXL: CLIP-L and OpenCLIP-G concatenated on
   * channels); pooled: [1, projection] from the first window (SDXL), null for SD1.
   */
  encodeText(clip: ClipRef, text: string): Promise<EncodedText> {
    return this.client.call<EncodedText>({ op: 'encodeText', clip: { ...clip, loras: [...clip.loras] }, text });
  }

  /**
   * Predicted noise for latents x [B, 4, H, W] at float timesteps t [B] (SDXL adds pooled text embeds and time ids;
   * inpainting UNets take `concat` [B, 5, H, W]: mask, then the masked image's latent).
   */
  unet(
    model: ModelRef,
    x: Tensor,
    t: Float32Array,
    context: Tensor,
    extra?: UNetExtra,
    concat?: Tensor,
  ): Promise<Tensor> {
    const batch = x.shape[0];
    if (x.shape.length !== 4) throw new Error(`unet: x must be [B, C, H, W], got [${x.shape}]`);
    if (t.length !== batch) throw new Error(`unet: ${t.length} timesteps for a batch of ${batch}`);
    if (context.shape.length !== 3 || context.shape[0] !== batch)
      throw new Error(`unet: context must be [${batch}, tokens, channels], got [${context.shape}]`);
    this.admit(model.checkpoint, 'unet', x.shape[2], x.shape[3], batch);
    const call: Call = {
      op: 'unet',
      model: { ...model, loras: [...model.loras] },
      x: own(x),
      t: t.slice(),
      context: own(context),
      ...(extra ? { extra: { textEmbeds: own(extra.textEmbeds), timeIds: own(extra.timeIds) } } : {}),
      ...(concat ? { concat: own(concat) } : {}),
    };
    return this.client.call<Tensor>(call);
  }

  /**
   * A whole TCD denoising loop in the worker (runtime/tcd-loop.ts): on GPU providers the latent and conditioning
   * stay on the GPU from the first step to the last. `noises` are the generator's draws for the noisy steps, in
   * order (eta > 0: one per step but the last). onStep gets each step (and its pred_noised_sample when previews are
   * asked for); aborting `signal` stops the loop before its next UNet call with an InterruptedError.
   * Example:
   *   const gen = new TorchGenerator(seed); const x = gen.randn(shape);
   *   const noises = timesteps.slice(1).map(() => gen.randn(shape));
   *   const latent = await engine.sampleTcd({ model, x: { shape, data: x }, timesteps, eta: 0.3, noises, positive: { context }, cfg: 1 });
   */
  sampleTcd(
    req: Omit<TcdLoopCall, 'op' | 'previews' | 'predictionType'> & { predictionType?: TcdLoopCall['predictionType'] },
    opts: SamplingOptions = {},
  ): Promise<Tensor> {
    this.admit(req.model.checkpoint, 'unet', req.x.shape[2], req.x.shape[3], req.x.shape[0] * (req.negative ? 2 : 1));
    const branch = ownBranch;
    const call: TcdLoopCall = {
      op: 'sampleTcd',
      model: { ...req.model, loras: [...req.model.loras] },
      x: own(req.x),
      timesteps: [...req.timesteps],
      eta: req.eta,
      noises: req.noises.map((z) => z.slice()),
      positive: branch(req.positive),
      ...(req.negative ? { negative: branch(req.negative) } : {}),
      cfg: req.cfg,
      predictionType: req.predictionType ?? 'epsilon',
      previews: opts.previews ?? false,
      ...(opts.previewDecoder ? { previewDecoder: opts.previewDecoder } : {}),
    };
    return this.client.call<Tensor>(call, { onProgress: opts.onStep, signal: opts.signal });
  }

  /**
   * A whole KSampler / SamplerCustom run in the worker (runtime/ksampler-loop.ts): ComfyUI's noise and sampler
   * semantics (engine/sampling/ksample.ts) with every UNet call, and CFG as one batched call, inside the worker.
   * onStep gets each step (and its denoised estimate when previews are asked for); aborting `signal` stops the loop
   * before its next UNet call with an InterruptedError. Latents are model space.
   * Example:
   *   const { x } = await engine.sampleK({ model, sampling: { prediction: 'eps', zsnr: false }, sampler: 'euler', sigmas,
   *     latent, noise: new TorchGenerator(42n).randn(latent.shape), seed: '42',
   *     positive: [{ context }], negative: [{ context: neg }], cfg: 7 });
   */
  sampleK(
    req: Omit<KSamplerLoopCall, 'op' | 'previews' | 'previewDecoder'>,
    opts: SamplingOptions = {},
  ): Promise<KSamplerLoopResult> {
    // CFG runs positive and negative as one batched call
    this.admit(
      req.model.checkpoint,
      'unet',
      req.latent.shape[2],
      req.latent.shape[3],
      req.latent.shape[0] * (req.negative.length ? 2 : 1),
    );
    const call: KSamplerLoopCall = {
      ...req,
      op: 'sampleK',
      model: { ...req.model, loras: [...req.model.loras] },
      sigmas: [...req.sigmas],
      latent: own(req.latent),
      noise: req.noise.slice(),
      ...(req.denoiseMask ? { denoiseMask: req.denoiseMask.slice() } : {}),
      positive: req.positive.map(ownBranch),
      negative: req.negative.map(ownBranch),
      previews: opts.previews ?? false,
      ...(opts.previewDecoder ? { previewDecoder: opts.previewDecoder } : {}),
    };
    return this.client.call<KSamplerLoopResult>(call, { onProgress: opts.onStep, signal: opts.signal });
  }

  /** Image [B, 3, 8H, 8W] in [-1, 1] (unclamped) from the decoder input z = latent / scaling_factor [B, 4, H, W]. */
  vaeDecode(vae: VaeRef, latentScaledForDecoder: Tensor): Promise<Tensor> {
    const [b, , h, w] = latentScaledForDecoder.shape;
    if (!vae.taesd) this.admit(vae.checkpoint, 'vae_decode', h, w, b);
    return this.client.call<Tensor>({
      op: 'vaeDecode',
      vae: copyVaeRef(vae),
      z: own(latentScaledForDecoder),
    });
  }

  /** Whether a plain decode (or encode) of this VAE at latent h x w fits the memory budget; TAESD always does. */
  fitsVae(vae: VaeRef, op: 'vae_decode' | 'vae_encode', latentH: number, latentW: number, batch: number): boolean {
    return vae.taesd ? true : this.fits(vae.checkpoint, op, latentH, latentW, batch);
  }

  /** Mean of the latent distribution [B, 4, H/8, W/8] (unscaled) for an image [B, 3, H, W] in [-1, 1]. */
  vaeEncode(vae: VaeRef, image: Tensor): Promise<Tensor> {
    const [b, , h, w] = image.shape;
    if (!vae.taesd) this.admit(vae.checkpoint, 'vae_encode', Math.ceil(h / 8), Math.ceil(w / 8), b);
    return this.client.call<Tensor>({ op: 'vaeEncode', vae: copyVaeRef(vae), image: own(image) });
  }

  /**
   * One call of an ESRGAN-family upscale model (spandrel's semantics): image [1, 3, h, w] in [0, 1] -> [1, 3, sh, sw]
   * clamped to [0, 1]; sizes the network cannot take directly are padded and cropped back inside the call.
   */
  upscaleImage(model: UpscaleModelRef, image: Tensor): Promise<Tensor> {
    if (image.shape.length !== 4 || image.shape[0] !== 1)
      throw new Error(`upscaleImage: image must be [1, C, H, W], got [${image.shape}]`);
    return this.client.call<Tensor>({ op: 'upscaleImage', model: { path: model.path }, image: own(image) });
  }

  /** Writes model + CLIP + VAE (merges and LoRAs applied) as one checkpoint file, in the worker (CheckpointSave). */
  saveCheckpoint(spec: CheckpointSaveSpec): Promise<{ bytes: number; tensors: number }> {
    return this.client.call<{ bytes: number; tensors: number }>({
      op: 'saveCheckpoint',
      spec: JSON.parse(JSON.stringify(spec)) as CheckpointSaveSpec,
    });
  }

  /** Unloads every model (POST /free). */
  async free(): Promise<void> {
    if (this.client.running) await this.client.call({ op: 'free' });
  }

  /** What is loaded, what was evicted, memory used against the budgets. */
  stats(): Promise<RuntimeStats> {
    return this.client.call<RuntimeStats>({ op: 'stats' });
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
