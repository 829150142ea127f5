/**
 * Execution-provider choice and per-provider session settings. Pure functions: the worker calls them with what
 * onnxruntime-node reports, tests call them with made-up lists.
 * Example: const { ep, reason } = chooseProvider('webgpu', ort.listSupportedBackends());
 *          const opts = sessionOptionsFor(ep, 'unet', 'sdxl');
 */
import type { InferenceSession } from 'onnxruntime-node';
import type { Component, ComputeDtype } from '../types.js';
import type { ModelFamily } from '../model/config.js';
import type { LinearForm } from '../onnx/graph.js';
import type { VaeAttentionForm } from '../model/vae.js';
import { SHARED_ARENA_SESSION_CONFIG } from './shared-arena.js';

export type ExecutionProvider = 'cpu' | 'webgpu' | 'cuda';
const EXECUTION_PROVIDERS: readonly ExecutionProvider[] = ['cpu', 'webgpu', 'cuda'];

export interface BackendInfo {
  name: string;
  bundled: boolean;
}

/** What the user asks for: one provider, or 'auto' (cuda when it loads, else webgpu, else cpu). */
export type ProviderRequest = ExecutionProvider | 'auto';

export interface ProviderChoice {
  ep: ExecutionProvider;
  /** what was asked for (normalised), so the log line can say "asked X, using Y because Z" */
  requested: ProviderRequest;
  /** null when the requested provider is used as is */
  reason: string | null;
}

/**
 * Picks the provider from a request (EngineOptions.ep; undefined/'' = cpu) and the backends this
 * onnxruntime-node build lists. Unknown names and unlisted providers fall back to cpu with a reason.
 * A listed provider may still fail at session creation (cuda is listed with bundled=false when its
 * libraries were not installed); the worker handles that with `settleProvider`. 'auto' is settled there too
 * (this returns cuda for it as the first candidate).
 */
export function chooseProvider(request: string | undefined, supported: readonly BackendInfo[]): ProviderChoice {
  const asked = (request ?? '').trim().toLowerCase() || 'cpu';
  if (asked === 'auto') return { ep: 'cuda', requested: 'auto', reason: null };
  if (!(EXECUTION_PROVIDERS as readonly string[]).includes(asked)) {
    const expected = [...EXECUTION_PROVIDERS, 'auto'].join(' | ');
    return { ep: 'cpu', requested: 'cpu', reason: `unknown execution provider "${asked}" (expected ${expected})` };
  }
  const ep = asked as ExecutionProvider;
  if (ep === 'cpu') return { ep, requested: ep, reason: null };
  if (!supported.some((b) => b.name === ep)) {
    const names = supported.map((b) => b.name).join(', ') || 'none';
    return { ep: 'cpu', requested: ep, reason: `${ep} is not in this onnxruntime-node build's backends (${names})` };
  }
  return { ep, requested: ep, reason: null };
}

/** The log line printed once when the provider in use differs from the one asked for (or was picked by auto). */
export function describeChoice(c: ProviderChoice): string {
  if (c.requested === 'auto') return `engine: execution provider auto: using ${c.ep} (${c.reason ?? 'it loads'})`;
  if (c.reason === null) return `engine: execution provider ${c.ep}`;
  return `engine: asked for execution provider ${c.requested}, using ${c.ep}: ${c.reason}`;
}

/** Thrown when a provider asked for by name (--ep cuda) cannot be used: no silent fallback then. */
export class ProviderUnusable extends Error {
  constructor(ep: ExecutionProvider, why: string) {
    super(`execution provider ${ep} was asked for and cannot be used: ${why}`);
    this.name = 'ProviderUnusable';
  }
}

/** What settling a provider needs from the machine (the worker passes the real ones; see session-store.ts). */
export interface ProviderProbes {
  supported: readonly BackendInfo[];
  /** why the CUDA provider cannot load, by file checks (cuda-check.ts), or null when nothing is missing */
  cudaMissing(): string | null;
  /** creates a one-node session on ep; why it failed, or null when it works */
  probe(ep: ExecutionProvider): Promise<string | null>;
}

/**
 * The provider a worker runs on. 'auto': cuda when its libraries are present and a session loads, else webgpu when
 * a session loads, else cpu; the reason names why each faster one was passed over. An explicit 'cuda' that cannot
 * be used throws ProviderUnusable (no silent fallback); an explicit 'webgpu' falls back to cpu with a reason.
 */
export async function settleProvider(request: string | undefined, m: ProviderProbes): Promise<ProviderChoice> {
  const first = chooseProvider(request, m.supported);
  const cudaWhyNot = async (): Promise<string | null> => {
    if (!m.supported.some((b) => b.name === 'cuda')) return 'not in this onnxruntime-node build';
    return m.cudaMissing() ?? (await m.probe('cuda'));
  };
  if (first.requested === 'auto') {
    const passed: string[] = [];
    const cuda = await cudaWhyNot();
    if (cuda === null) return { ep: 'cuda', requested: 'auto', reason: 'CUDA provider loads' };
    passed.push(`cuda: ${cuda}`);
    const webgpu = m.supported.some((b) => b.name === 'webgpu')
      ? await m.probe('webgpu')
      : 'not in this onnxruntime-node build';
    if (webgpu === null) return { ep: 'webgpu', requested: 'auto', reason: passed.join('; ') };
    passed.push(`webgpu: ${webgpu}`);
    return { ep: 'cpu', requested: 'auto', reason: passed.join('; ') };
  }
  if (first.requested === 'cuda') {
    const why = await cudaWhyNot();
    if (why !== null) throw new ProviderUnusable('cuda', why);
    return first;
  }
  if (first.ep !== 'cpu') {
    const failure = await m.probe(first.ep);
    if (failure) return { ...first, ep: 'cpu', reason: `creating a session failed: ${failure}` };
  }
  return first;
}

/** VAE precision (--vae-precision): by provider, or fp16 / fp32 everywhere (ComfyUI's --fp16-vae / --fp32-vae). */
export type VaePrecision = 'auto' | 'fp16' | 'fp32';

/**
 * Compute dtype of a component on a provider: fp32 on CPU (exact references, and CPU kernels for fp16 are slow);
 * fp16 on GPUs. That includes the SDXL VAE, whose activations overflow fp16 as stored: its fp16 graphs carry the
 * residual stream scaled down (model/vae.ts FP16_STREAM_SCALE), and an output that still is not finite is computed
 * again in fp32 (runtime/components.ts). `vaePrecision` fp16/fp32 forces the VAE's dtype on every provider.
 */
export function computeDtypeFor(
  ep: ExecutionProvider,
  component: Component,
  vaePrecision: VaePrecision = 'auto',
): ComputeDtype {
  if (component.startsWith('vae_') && vaePrecision !== 'auto') return vaePrecision === 'fp16' ? 'float16' : 'float32';
  return ep === 'cpu' ? 'float32' : 'float16';
}

export function isGpu(ep: ExecutionProvider): boolean {
  return ep !== 'cpu';
}

/**
 * Whether sampling loops keep latents and UNet outputs in host memory (cpu, cuda) or in GPU buffers (webgpu).
 * onnxruntime-node can hand back GPU-resident outputs only for WebGPU; on CUDA a 4x128x128 latent is 128 KB, so one
 * copy each way per step costs far less than the step. Host-side loops run the UNet's CFG as one batch-2 call.
 */
export function latentsOnHost(ep: ExecutionProvider): boolean {
  return ep !== 'webgpu';
}

/**
 * GPU tuning knobs, each measured on the H200 (see server/tools/bench/README.md for the figures). Defaults are what
 * won; the engine takes them as EngineOptions.tuning, which the command line and the bench fill from these settings
 * (flags or variables, server/settings.ts):
 *   TCD_GPU_LAYOUT=NHWC|NCHW      layout of conv-heavy graphs on webgpu
 *   TCD_GPU_ATTENTION=fused|plain com.microsoft MultiHeadAttention vs MatMul/Softmax/MatMul in GPU graphs
 *   TCD_GPU_GRAPH_CAPTURE=1       ORT graph capture (webgpu/cuda)
 *   TCD_GPU_BUFFER_CACHE=bucket|simple   webgpu storage-buffer cache (simple: exact sizes only; SDXL 1024 peak
 *                                 62 -> 40 GB at the same step time, one image measured; bucket stays default)
 *   TCD_ORT_PROFILE_DIR=DIR       ORT profiling JSON per session (written when the session is released)
 *   TCD_ORT_LOG_LEVEL=info|...    ORT's own log on stderr (info: each memory-arena extension, the memory profile)
 *   TCD_GPU_LINEAR=matmul|gemm|gemm-transb   how UNet/VAE linears multiply (GraphOptions.linear); SD1.5 512 step
 *                                 81.9 ms (matmul) / 81.0 (gemm, pre-transposed) vs 97.1 (gemm-transb, the CPU form)
 *   TCD_GPU_LORA=bake|inputs|branch   LoRA on GPU: patched weights baked into a graph per LoRA set (steps as fast as
 *                                 without; SDXL rank 64 on CUDA: 12.3 s first use), fed every run (SD1.5 2.0 s a
 *                                 step on webgpu) or low-rank side branches (SDXL CUDA steps +55%)
 *   TCD_GPU_FUSED_BLOCKS=1|0      cuda: UNet transformer blocks with com.microsoft SkipLayerNormalization and Gelu
 *                                 (6 nodes fewer per block): SD1.5 512 step 15.3 -> 11.5 ms in the worker, SDXL 1024
 *                                 39.1 -> 35.6 ms (H200, device-run.sh cuda2): on by default
 *   TCD_GPU_FUSED_GROUPNORM=1|0   cuda: GroupNorm (+ SiLU) as com.microsoft GroupNorm between Transposes: SD1.5 512 step
 *                                 14.4 -> 12.6 ms in the worker, VAE 29.4 -> 21.8 ms; SDXL 1024 step 33.3 -> 30.7 ms,
 *                                 VAE 144 -> 120 ms (H200, device-run.sh cuda6): on by default
 *   TCD_GPU_FUSED_GEGLU=1|0       cuda: GEGLU's bias add, split and GELU gate as com.microsoft BiasSplitGelu: SD1.5 512
 *                                 step 11.3 -> 10.7 ms in the worker (H200, device-run.sh cuda7): on by default
 *   TCD_GPU_NHWC_CONV=1|0         cuda: 2-D convolutions as com.microsoft NhwcConv, activations channels-last between
 *                                 them (SD1.5 UNet 154 -> 2 Transposes, 914 -> 762 nodes): not measured yet (no GPU in
 *                                 the session that built it; device-run.sh nhwc decides), so off
 *   TCD_GPU_PACKED_ATTENTION=1|0  cuda: each transformer attention's q/k/v (self) or k/v (cross) projections as one
 *                                 MatMul by a packed weight into MultiHeadAttention's packed inputs (2 + 1 MatMuls
 *                                 fewer per block): built and checked on the CPU by its twin, off until measured
 *   TCD_CUDA_OPTIONS=k=v,...      cuda: ONNX Runtime CUDA provider options (arena, cuDNN search and workspace, NHWC,
 *                                 TF32; cuda-options.ts), which onnxruntime-node cannot pass: not measured yet, none set
 *   TCD_CUDA_GRAPH=1|0            cuda: the UNet and ControlNets as sessions with fixed GPU bindings, replaying one
 *                                 CUDA graph per input shape (bound-session.ts; launch-bound steps): not measured
 *                                 yet, so off
 *   TCD_GPU_VAE_ATTENTION=fused|plain|fused-fp16|plain-fp16   the VAE mid-block attention (VaeGraphOptions); the
 *                                 SDXL 1024 decode measured 1.85-2.4 s in every form (within run-to-run noise)
 * Example: sessionOptionsFor('webgpu', 'unet', 'sdxl', { ...DEFAULT_GPU_TUNING, layout: 'NCHW' })
 */
export interface GpuTuning {
  layout: 'NHWC' | 'NCHW';
  fusedAttention: boolean;
  graphCapture: boolean;
  bufferCache: 'bucket' | 'simple';
  profileDir: string | null;
  linear: LinearForm;
  lora: 'bake' | 'inputs' | 'branch';
  vaeAttention: VaeAttentionForm;
  /** GPU index for providers that take one (CUDA deviceId) */
  deviceId?: number;
  /** cuda: UNet transformer blocks with SkipLayerNormalization and Gelu (GraphOptions.fusedBlocks) */
  fusedBlocks?: boolean;
  /** cuda: com.microsoft GroupNorm (+ SiLU) in the UNet and VAE (GraphOptions.fusedGroupNorm) */
  fusedGroupNorm?: boolean;
  /** cuda: com.microsoft BiasSplitGelu in the UNet feed-forwards (GraphOptions.fusedGeglu) */
  fusedGeglu?: boolean;
  /** the VAE's dtype (computeDtypeFor) */
  vaePrecision?: VaePrecision;
  /** cuda: 2-D convolutions of the UNet, ControlNet and VAE as com.microsoft NhwcConv (GraphOptions.nhwcConv) */
  nhwcConv?: boolean;
  /** cuda: packed q/k/v and k/v projections into MultiHeadAttention (GraphOptions.packedAttention) */
  packedAttention?: boolean;
  /** cuda: ONNX Runtime CUDA provider options, "key=value,..." (cuda-options.ts); '' or absent: the provider's defaults */
  cudaOptions?: string;
  /** cuda: UNets and ControlNets as bound sessions replaying a CUDA graph per input shape (bound-session.ts) */
  cudaGraph?: boolean;
  /** cuda, cpu: one memory arena for all sessions instead of one each (shared-arena.ts); set once it is registered */
  sharedArena?: boolean;
  /** ONNX Runtime's log level for the process and its sessions (diagnostics; absent: errors only) */
  ortLogLevel?: OrtLogLevel;
}

export type OrtLogLevel = 'verbose' | 'info' | 'warning' | 'error';

/**
 * A session's logSeverityLevel for tuning.ortLogLevel. Errors only by default: ORT's warnings about unused
 * initializers are noise here. 'info' is where the memory arenas report each extension ("Extending BFCArena ...").
 */
export function logSeverityOf(tuning: Readonly<GpuTuning>): 0 | 1 | 2 | 3 {
  return ({ verbose: 0, info: 1, warning: 2, error: 3 } as const)[tuning.ortLogLevel ?? 'error'];
}

export const DEFAULT_GPU_TUNING: Readonly<GpuTuning> = {
  layout: 'NHWC',
  fusedAttention: true,
  graphCapture: false,
  bufferCache: 'bucket',
  profileDir: null,
  linear: 'matmul',
  lora: 'bake',
  vaeAttention: 'fused',
  fusedBlocks: true,
  fusedGroupNorm: true,
  fusedGeglu: true,
  nhwcConv: false,
  packedAttention: false,
  cudaGraph: false,
  sharedArena: false,
};

/**
 * The graph-shape choices a component is built with on a provider: GPU graphs take the fused attention operator
 * (when tuned on), the tuned linear form and VAE mid-block attention; CPU graphs stay the plain reference form the
 * fixtures were matched with. Part of the graph cache key.
 */
export interface GraphTuning {
  fusedAttention: boolean;
  linear: LinearForm;
  midAttention?: VaeAttentionForm;
  fusedBlocks?: boolean;
  fusedGroupNorm?: boolean;
  fusedGeglu?: boolean;
  nhwcConv?: boolean;
  /** 'cpu-twin' only from tests (SessionStore.graphTuningOverride): the form's CPU-runnable twin */
  packedAttention?: boolean | 'cpu-twin';
}

export function graphTuningFor(ep: ExecutionProvider, tuning: Readonly<GpuTuning> = DEFAULT_GPU_TUNING): GraphTuning {
  if (!isGpu(ep)) return { fusedAttention: false, linear: 'gemm-transb' };
  const base = { fusedAttention: tuning.fusedAttention, linear: tuning.linear, midAttention: tuning.vaeAttention };
  // present only when on, so the graph keys of earlier builds stay valid; cuda only (webgpu lacks the kernels)
  if (ep !== 'cuda') return base;
  return {
    ...base,
    ...(tuning.fusedBlocks ? { fusedBlocks: true } : {}),
    ...(tuning.fusedGroupNorm ? { fusedGroupNorm: true } : {}),
    ...(tuning.fusedGeglu ? { fusedGeglu: true } : {}),
    ...(tuning.nhwcConv ? { nhwcConv: true } : {}),
    ...(tuning.packedAttention ? { packedAttention: true } : {}),
  };
}

/**
 * Session options for one component on one provider.
 * - Outputs are asked for on the CPU ('cpu' location), except the UNet's on webgpu: its eps stays in a GPU
 *   buffer ('gpu-buffer') so the worker's TCD loop feeds it to the step graph without a round trip; single UNet
 *   calls download it (device-tensors.ts). On cuda every output comes to the CPU (see latentsOnHost).
 * - GPU providers list 'cpu' after themselves so nodes they lack run on the CPU instead of failing.
 * - webgpu: NHWC (tuning.layout) for the conv-heavy UNet and VAE (its conv kernels are written for NHWC), NCHW for
 *   the text encoders (no convs, avoids layout transposes); bucketed buffer cache for the dynamic shapes we run.
 * - cuda: the engine's device (EngineOptions.device, default 0), the only CUDA option onnxruntime-node
 *   passes (tuning.cudaOptions reach the provider through a native helper, cuda-options.ts); the provider libraries
 *   come from `npm run setup:cuda` (docs/cuda.md).
 * - cpu: the memory arena and memory patterns pay off because the same shapes repeat every sampling step.
 * - tuning.profileDir turns on ORT profiling (one JSON per session); tuning.graphCapture ORT graph capture.
 * - tuning.sharedArena: cpu and cuda sessions take the arena registered for the whole process (shared-arena.ts).
 */
export function sessionOptionsFor(
  ep: ExecutionProvider,
  component: Component,
  family: ModelFamily,
  tuning: Readonly<GpuTuning> = DEFAULT_GPU_TUNING,
): InferenceSession.SessionOptions {
  const convHeavy = component === 'unet' || component === 'controlnet' || component.startsWith('vae_');
  const common = {
    graphOptimizationLevel: 'all' as const,
    executionMode: 'sequential' as const,
    logSeverityLevel: logSeverityOf(tuning),
    logId: `${family}:${component}`,
    ...(tuning.profileDir
      ? { enableProfiling: true, profileFilePrefix: `${tuning.profileDir}/${ep}-${family}-${component}` }
      : {}),
  };
  switch (ep) {
    case 'cpu':
      return {
        ...common,
        executionProviders: [{ name: 'cpu', useArena: true }],
        enableCpuMemArena: true,
        enableMemPattern: true,
        ...sharedArenaConfig(tuning),
      };
    case 'webgpu':
      return {
        ...common,
        executionProviders: [
          {
            name: 'webgpu',
            preferredLayout: convHeavy ? tuning.layout : 'NCHW',
            storageBufferCacheMode: tuning.bufferCache,
            validationMode: 'basic',
          },
          'cpu',
        ],
        enableMemPattern: false, // shapes vary between calls (batch, resolution, prompt length)
        preferredOutputLocation: component === 'unet' ? 'gpu-buffer' : 'cpu',
        ...(tuning.graphCapture && component === 'unet' ? { enableGraphCapture: true } : {}),
      };
    case 'cuda':
      // onnxruntime-node takes only deviceId for CUDA, and binds GPU outputs only for WebGPU: a 'gpu-buffer'
      // output location fails every CUDA run ("Failed to find allocator"), so outputs come back to the CPU
      return {
        ...common,
        executionProviders: [{ name: 'cuda', deviceId: tuning.deviceId ?? 0 }, 'cpu'],
        enableMemPattern: false,
        ...sharedArenaConfig(tuning),
        ...(tuning.graphCapture && component === 'unet' ? { enableGraphCapture: true } : {}),
      };
  }
}

/** The config entry that puts a session on the shared arena (--shared-arena, registered by SessionStore.start). */
function sharedArenaConfig(tuning: Readonly<GpuTuning>) {
  return tuning.sharedArena ? SHARED_ARENA_SESSION_CONFIG : {};
}

/**
 * The small graphs a sampling loop runs beside the UNet (tcd-loop.ts, device-tensors.ts): 'upload' copies a CPU
 * tensor into the provider's memory, 'download' copies one back, 'step' is the TCD step graph.
 */
export type LoopGraph = 'upload' | 'download' | 'step';

/**
 * Session options of the loop graphs. On GPU providers results stay in GPU buffers ('gpu-buffer'), except download's
 * output: the step's pns (previews, the final latent) is downloaded only when wanted, so no step waits for the GPU.
 * (onnxruntime-node binds GPU outputs all at once: a run must fetch every output of such a session.) Upload/download
 * are single Identity nodes, kept as they are (no graph optimisation).
 * Example: loopSessionOptions('webgpu', 'step') // preferredOutputLocation 'gpu-buffer'
 */
export function loopSessionOptions(
  ep: ExecutionProvider,
  graph: LoopGraph,
  tuning: Readonly<GpuTuning> = DEFAULT_GPU_TUNING,
): InferenceSession.SessionOptions {
  if (latentsOnHost(ep)) ep = 'cpu'; // the loop's small graphs run where its latents are
  const common = {
    graphOptimizationLevel: graph === 'step' ? ('all' as const) : ('disabled' as const),
    executionMode: 'sequential' as const,
    logSeverityLevel: logSeverityOf(tuning),
    logId: `loop:${graph}`,
  };
  if (ep === 'cpu') return { ...common, executionProviders: ['cpu'], ...sharedArenaConfig(tuning) };
  const location = graph === 'download' ? ('cpu' as const) : ('gpu-buffer' as const);
  const provider = {
    name: 'webgpu',
    preferredLayout: 'NCHW',
    storageBufferCacheMode: tuning.bufferCache,
    validationMode: 'basic',
  };
  return {
    ...common,
    executionProviders: [provider, 'cpu'],
    enableMemPattern: false,
    preferredOutputLocation: location,
  };
}
