/**
 * Execution-provider choice and per-provider session settings. Pure functions: the worker calls them with what
 * onnxruntime-node reports, tests call them with made-up lists.
 * Example: const { ep, reason } = chooseProvider(process.env.TCD_EP, ort.listSupportedBackends());
 *          const opts = sessionOptionsFor(ep, 'unet', 'sdxl');
 */
import type { InferenceSession } from 'onnxruntime-node';
import type { ModelFamily } from '../config.js';

export type ExecutionProvider = 'cpu' | 'webgpu' | 'cuda';
export const EXECUTION_PROVIDERS: readonly ExecutionProvider[] = ['cpu', 'webgpu', 'cuda'];

/** One network the engine builds from a checkpoint. Text encoders are numbered in concatenation order. */
export type Component = 'unet' | 'vae_decoder' | 'vae_encoder' | `text_encoder_${number}`;

export type ComputeDtype = 'float32' | 'float16';

export interface BackendInfo { name: string; bundled: boolean }

export interface ProviderChoice {
  ep: ExecutionProvider;
  /** what was asked for (normalised), so the log line can say "asked X, using Y because Z" */
  requested: ExecutionProvider;
  /** null when the requested provider is used as is */
  reason: string | null;
}

/**
 * Picks the provider from a request (option or TCD_EP; undefined/'' = cpu) and the backends this
 * onnxruntime-node build lists. Unknown names and unlisted providers fall back to cpu with a reason.
 * A listed provider may still fail at session creation (cuda is listed with bundled=false when its
 * libraries were not installed); the worker handles that with `fallbackReason`.
 */
export function chooseProvider(request: string | undefined, supported: readonly BackendInfo[]): ProviderChoice {
  const asked = (request ?? '').trim().toLowerCase() || 'cpu';
  if (!(EXECUTION_PROVIDERS as readonly string[]).includes(asked)) {
    return { ep: 'cpu', requested: 'cpu', reason: `unknown execution provider "${asked}" (expected ${EXECUTION_PROVIDERS.join(' | ')})` };
  }
  const ep = asked as ExecutionProvider;
  if (ep === 'cpu') return { ep, requested: ep, reason: null };
  if (!supported.some((b) => b.name === ep)) {
    const names = supported.map((b) => b.name).join(', ') || 'none';
    return { ep: 'cpu', requested: ep, reason: `${ep} is not in this onnxruntime-node build's backends (${names})` };
  }
  return { ep, requested: ep, reason: null };
}

/** The log line printed once when the provider in use differs from the one asked for. */
export function describeChoice(c: ProviderChoice): string {
  if (c.reason === null) return `engine: execution provider ${c.ep}`;
  return `engine: asked for execution provider ${c.requested}, using ${c.ep}: ${c.reason}`;
}

/**
 * Compute dtype of a component on a provider: fp32 on CPU (exact references, and CPU kernels for fp16 are slow);
 * fp16 on GPUs, except the SDXL VAE, whose activations overflow fp16 (the reason madebyollin's fp16-fix VAE exists).
 */
export function computeDtypeFor(ep: ExecutionProvider, component: Component, family: ModelFamily): ComputeDtype {
  if (ep === 'cpu') return 'float32';
  if (family === 'sdxl' && component.startsWith('vae_')) return 'float32';
  return 'float16';
}

export function isGpu(ep: ExecutionProvider): boolean {
  return ep !== 'cpu';
}

/**
 * Session options for one component on one provider.
 * - Every output returns to JavaScript (the samplers are pure JS over Float32Arrays), so outputs are asked for on
 *   the CPU ('cpu' location); only the UNet's output is consumed again by the next step, and it goes through the
 *   sampler first. A later on-device sampler would switch the UNet to 'gpu-buffer' here and nowhere else.
 * - GPU providers list 'cpu' after themselves so nodes they lack run on the CPU instead of failing.
 * - webgpu: NHWC preferred for the conv-heavy UNet and VAE (its conv kernels are written for NHWC), NCHW for the
 *   text encoders (no convs, avoids layout transposes); bucketed buffer cache for the dynamic shapes we run.
 * - cpu: the memory arena and memory patterns pay off because the same shapes repeat every sampling step.
 */
export function sessionOptionsFor(ep: ExecutionProvider, component: Component, family: ModelFamily): InferenceSession.SessionOptions {
  const convHeavy = component === 'unet' || component.startsWith('vae_');
  const common = {
    graphOptimizationLevel: 'all' as const,
    executionMode: 'sequential' as const,
    logSeverityLevel: 3 as const, // errors only: ORT's warnings about unused initializers are noise here
    logId: `${family}:${component}`,
  };
  switch (ep) {
    case 'cpu':
      return { ...common, executionProviders: [{ name: 'cpu', useArena: true }], enableCpuMemArena: true, enableMemPattern: true };
    case 'webgpu':
      return {
        ...common,
        executionProviders: [
          { name: 'webgpu', preferredLayout: convHeavy ? 'NHWC' : 'NCHW', storageBufferCacheMode: 'bucket', validationMode: 'basic' },
          'cpu',
        ],
        enableMemPattern: false, // shapes vary between calls (batch, resolution, prompt length)
        preferredOutputLocation: 'cpu',
      };
    case 'cuda':
      return { ...common, executionProviders: [{ name: 'cuda', deviceId: 0 }, 'cpu'], enableMemPattern: false };
  }
}
