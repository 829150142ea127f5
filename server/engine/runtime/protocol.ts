/**
 * What crosses the boundary between the Engine (main thread) and its worker: plain serializable descriptors (also
 * the cache keys) and Float32Arrays whose buffers are transferred to a worker thread, never copied (a worker child
 * process gets structured-clone copies: see worker-port.ts).
 * Example: { id: 7, call: { op: 'vaeDecode', vae: { checkpoint: '/models/sd15.safetensors' }, z } }
 */
import type { Tensor } from '../tensor.js';
import type { LoraRef, ModelRef } from '../types.js';
import type { ExecutionProvider } from './providers.js';

/** Text encoder(s) of a checkpoint. clipSkip counts layers from the end: -1 = last (with final norm), -2 = penultimate. */
export interface ClipRef { checkpoint: string; loras: LoraRef[]; clipSkip?: number }

export interface VaeRef { checkpoint: string }

export interface UNetExtra { textEmbeds: Tensor; timeIds: Tensor }

/** One conditioning branch of a sampling loop: the UNet's context (and SDXL's pooled embeds and time ids). */
export interface CondBranch { context: Tensor; extra?: UNetExtra }

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
}

/** What a sampling loop reports after each step. */
export interface StepProgress { step: number; total: number; preview?: Tensor }

export type Call =
  | { op: 'encodeText'; clip: ClipRef; text: string }
  | { op: 'unet'; model: ModelRef; x: Tensor; t: Float32Array; context: Tensor; extra?: UNetExtra }
  | TcdLoopCall
  | { op: 'vaeDecode'; vae: VaeRef; z: Tensor }
  | { op: 'vaeEncode'; vae: VaeRef; image: Tensor }
  | { op: 'free' }
  | { op: 'stats' }
  /** test hooks: make the worker exit, throw outside any handler, or block its thread */
  | { op: 'debug'; action: 'exit' | 'throw' | 'block'; ms?: number }
  /** test hook: the worker's pid and its environment variable `name` (null when unset) -> WorkerEnvProbe */
  | { op: 'debug'; action: 'env'; name: string };

/** What { op: 'debug', action: 'env' } returns: where the worker runs and what it sees. */
export interface WorkerEnvProbe { pid: number; isolation: 'thread' | 'process'; value: string | null }

export interface EncodedText { context: Tensor; pooled: Tensor | null }

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
  /** per session.run: component and ms, inside the worker (no message passing) */
  runTimings: { component: string; ms: number }[];
}

export interface Request { id: number; call: Call }

/** Asks the worker to stop the call `cancel` at its next step boundary (handled at once, not queued). */
export interface CancelRequest { cancel: number }

/**
 * The main thread got the last progress of call `ack`. A loop starts its next step only after the previous step's
 * ack, so it never runs ahead of what the caller has seen (progress stays live, an interrupt lands within a step).
 */
export interface ProgressAck { ack: number }

export type WorkerMessage = Request | CancelRequest | ProgressAck;

export type Response =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: { name: string; message: string; stack?: string } }
  | { id: number; progress: StepProgress }
  | { id: null; log: string }
  /** the worker has settled its execution provider (the probe session is done) */
  | { id: null; ready: true };

/** Settings the worker starts with (a thread's workerData; a child process gets them through its environment). */
export interface WorkerInit {
  /** requested provider (option or TCD_EP); the worker settles on what actually works */
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
}

/** "unet of sd15.safetensors": names a call in errors. */
export function describeCall(call: Call): string {
  const base = (p: string) => p.split(/[\\/]/).pop() ?? p;
  switch (call.op) {
    case 'encodeText': return `text encoder of ${base(call.clip.checkpoint)}`;
    case 'unet': return `unet of ${base(call.model.checkpoint)}`;
    case 'sampleTcd': return `TCD sampling loop of ${base(call.model.checkpoint)}`;
    case 'vaeDecode': return `vae decoder of ${base(call.vae.checkpoint)}`;
    case 'vaeEncode': return `vae encoder of ${base(call.vae.checkpoint)}`;
    default: return call.op;
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
