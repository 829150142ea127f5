/**
 * Worker-side owner of ONNX Runtime sessions: settles the execution provider (falling back to CPU when the chosen
 * one cannot create a session), keeps checkpoints open, and caches one session per
 * (checkpoint, component, variant, LoRAs, dtype, provider) under the memory budget.
 * Example (inside the worker):
 *   const store = await SessionStore.start(init, log);
 *   const s = await store.session({ checkpoint, component: 'unet', loras: [], build: (w, cfg, dtype) => buildUnet(...) });
 */
import { basename } from 'node:path';
import ort from 'onnxruntime-node';
import type { ModelConfig } from '../model/config.js';
import { detectModelFile } from '../model/detect.js';
import { SafetensorsFile } from '../io/safetensors.js';
import { GraphBuilder } from '../onnx/graph.js';
import { serializeModel } from '../onnx/serialize.js';
import { safetensorsWeights, type WeightSource } from '../onnx/weights.js';
import { weightSourceFor } from '../model/weights.js';
import { componentBytes } from './estimate.js';
import {
  artifactCached,
  sharedWeights,
  type SharedWeights,
  builderCodeVersion,
  fileIdentity,
  graphArtifact,
  graphCacheBudgetBytes,
  graphKey,
} from './graph-cache.js';
import { ModelCache } from './model-cache.js';
import type { Component, ComputeDtype, LoraRef } from '../types.js';
import type { RuntimeStats, WorkerInit } from './protocol.js';
import {
  type ExecutionProvider,
  type GpuTuning,
  type GraphTuning,
  ProviderUnusable,
  computeDtypeFor,
  describeChoice,
  DEFAULT_GPU_TUNING,
  graphTuningFor,
  isGpu,
  logSeverityOf,
  sessionOptionsFor,
  settleProvider,
} from './providers.js';
import { cudaProblemsHere, describeCudaProblems } from './cuda-check.js';
import { mainOrtPackage } from './cuda-ort.js';
import { BoundSession, firstLine } from './bound-session.js';
import { shareArena } from './shared-arena.js';
import {
  CUDA_ADDON,
  describeCudaOptions,
  installCudaOptions,
  parseCudaOptions,
  type InstalledCudaOptions,
} from './cuda-options.js';

export interface ComponentSpec {
  checkpoint: string;
  component: Component;
  loras: readonly LoraRef[];
  /** tells apart graphs of one component with different outputs (e.g. which CLIP layer) */
  variant?: string;
  /** the compute dtype, when not the provider's (dtypeOf): an fp16 VAE's fp32 fallback */
  dtype?: ComputeDtype;
  build(weights: WeightSource, config: ModelConfig, dtype: ComputeDtype): GraphBuilder;
  /**
   * Where the graph's weights come from when it must be built (not when its artifact is cached on disk): default,
   * the checkpoint with `loras` merged by weightSourceFor. LoRA-baked GPU graphs pass patched tensors computed in
   * the worker (lora/session.ts). `shared`: the LoRA-free graph's weight file when sharesWeightsOf made one.
   */
  weights?: (shared: SharedWeights | null) => Promise<WeightSource>;
  /**
   * The graph holds every initializer of this component's LoRA-free graph of `variant` (a LoRA branch graph): that
   * graph's artifact is made first (no session) and its weights are shared on disk, not read and written again.
   */
  sharesWeightsOf?: { variant: string };
}

/**
 * A network that is a whole file of its own, not a checkpoint component (an upscale model, a TAESD half): built
 * from the file's tensors by `build`, always fp32 (small networks; ComfyUI runs upscale models in fp32).
 */
export interface FileModelSpec {
  path: string;
  /** names the network in keys and errors, e.g. 'upscale' */
  kind: string;
  variant?: string;
  build(weights: WeightSource, file: SafetensorsFile): GraphBuilder;
}

interface Loaded {
  session: ort.InferenceSession;
  dispose(): Promise<void>;
}

/** How long one component took to become a session: graph (build + serialise, or reuse) and session creation. */
export interface LoadTiming {
  name: string;
  graphMs: number;
  sessionMs: number;
  reused: boolean;
}

/** The components run once per sampling step, which CUDA graphs are for (--cuda-graph). */
const BOUND_COMPONENTS: readonly Component[] = ['unet', 'controlnet'];

/** Thrown inside a load when a GPU provider failed; the store switches to CPU and retries once. */
class ProviderFailed extends Error {}

export class SessionStore {
  private checkpoints = new Map<string, { file: SafetensorsFile; config: ModelConfig; mtimeMs: number }>();
  readonly cache: ModelCache<Loaded>;
  /** graphs serialised from a checkpoint vs loaded from an earlier run's files in cacheDir */
  private graphsBuilt = 0;
  private graphsReused = 0;
  /** per load, in order (the bench reads them through stats) */
  readonly loadTimings: LoadTiming[] = [];
  /** GPU knobs (layout, fused attention, graph capture, profiling) from the engine options (WorkerInit) */
  readonly tuning: GpuTuning;

  /** `strict`: the provider was asked for by name and must not fall back to the CPU (--ep cuda) */
  private constructor(
    private init: WorkerInit,
    public ep: ExecutionProvider,
    readonly log: (line: string) => void,
    private strict = false,
  ) {
    this.tuning = { ...DEFAULT_GPU_TUNING, ...init.tuning, deviceId: init.device ?? 0 };
    this.cache = new ModelCache<Loaded>({ ram: init.ramBudget, vram: init.vramBudget });
  }

  /**
   * Settles the provider (listSupportedBackends, the CUDA library check, one-node probe sessions; 'auto' tries cuda,
   * webgpu, cpu) and logs the choice once. Rejects when cuda was asked for by name and cannot be used.
   */
  static async start(init: WorkerInit, log: (line: string) => void): Promise<SessionStore> {
    // before the first session (the probes): ONNX Runtime reads it once, when it makes the process's environment
    if (init.tuning?.ortLogLevel) ort.env.logLevel = init.tuning.ortLogLevel;
    const cudaOptions = installRequestedCudaOptions(init, log);
    const choice = await settleProvider(init.ep, {
      supported: ort.listSupportedBackends(),
      cudaMissing: () => {
        const p = cudaProblemsHere(process.env, init.ortPackage);
        return p.length ? describeCudaProblems(p).replace(/\n/g, '; ') : null;
      },
      probe,
    });
    if (choice.ep !== 'cpu' || choice.reason !== null) log(describeChoice(choice));
    if (choice.ep === 'cuda' && cudaOptions) {
      log(`engine: CUDA provider options in effect: ${cudaOptions.effective() || '(not reported)'}`);
    }
    const store = new SessionStore(init, choice.ep, log, choice.requested === 'cuda');
    if (store.tuning.sharedArena) store.tuning.sharedArena = store.registerSharedArena();
    return store;
  }

  /** The onnxruntime-node package this engine runs and the native helper's path (the helper calls into the former). */
  private get ortPackageDir(): string {
    return this.init.ortPackage ?? mainOrtPackage() ?? '';
  }
  private get addonPath(): string {
    return this.init.cudaAddon ?? CUDA_ADDON;
  }

  /**
   * --shared-arena: registers one arena for the provider's memory with the process's ONNX Runtime environment, which
   * every session made from then on takes. Not possible (webgpu, no helper): logged, and sessions keep their own.
   */
  private registerSharedArena(): boolean {
    const ep = this.ep;
    if (ep === 'webgpu') {
      this.log('engine: --shared-arena not used: WebGPU sessions have no ONNX Runtime arena');
      return false;
    }
    try {
      const release = shareArena(
        this.ortPackageDir,
        ep,
        this.tuning.deviceId ?? 0,
        parseCudaOptions(this.tuning.cudaOptions ?? ''),
        this.addonPath,
        logSeverityOf(this.tuning),
      );
      this.log(`engine: one memory arena shared by all ${ep} sessions (${release})`);
      return true;
    } catch (e) {
      this.log(`engine: --shared-arena not used: ${firstLine(e)}`);
      return false;
    }
  }

  /** The open checkpoint and its detected config (re-opened when the file changed on disk). */
  checkpoint(path: string): { file: SafetensorsFile; config: ModelConfig } {
    const mtimeMs = fileIdentity(path).mtimeMs;
    const hit = this.checkpoints.get(path);
    if (hit && hit.mtimeMs === mtimeMs) return hit;
    hit?.file.close();
    const file = SafetensorsFile.open(path);
    const entry = { file, config: detectModelFile(file), mtimeMs };
    this.checkpoints.set(path, entry);
    return entry;
  }

  /** The dtype a component's graphs are built in on the provider in use, unless a spec says otherwise. */
  dtypeOf(component: Component): ComputeDtype {
    return computeDtypeFor(this.ep, component, this.tuning.vaePrecision);
  }

  /** set by tests to run a LoRA mode on the CPU provider; null: bake/inputs per tuning on GPUs, inputs on the CPU */
  loraModeOverride: 'bake' | 'inputs' | 'branch' | null = null;

  /** How LoRA weights reach the sessions (lora/session.ts): baked per LoRA set on GPUs (by default), fed on the CPU. */
  get loraMode(): 'bake' | 'inputs' | 'branch' {
    return this.loraModeOverride ?? (isGpu(this.ep) ? this.tuning.lora : 'inputs');
  }

  /**
   * set by tests to run the per-step components (UNet, ControlNet) as bound sessions on the CPU provider (the CUDA
   * graph path's twin); null: per tuning
   */
  boundOverride: boolean | null = null;

  /** The per-step components run as BoundSessions (fixed device bindings, CUDA graphs) on cuda with --cuda-graph. */
  private bound(component: Component): boolean {
    if (!BOUND_COMPONENTS.includes(component) || (this.ep !== 'cuda' && this.ep !== 'cpu')) return false;
    if (this.boundOverride !== null) return this.boundOverride;
    if (this.ep !== 'cuda' || this.tuning.cudaGraph !== true) return false;
    // LoRA weights fed every run would be copied to the GPU every step
    if (this.loraMode === 'inputs') return this.dropCudaGraph('--cuda-graph is not used with --gpu-lora inputs');
    return true;
  }

  /** --cuda-graph off for this engine, saying why: the flag is dropped, not the provider. */
  private dropCudaGraph(why: string): false {
    this.log(`engine: running without CUDA graphs: ${why}`);
    this.tuning.cudaGraph = false;
    return false;
  }

  /**
   * The component as a BoundSession, or null (logged) when the helper cannot make one on CUDA: --cuda-graph is then
   * dropped and it runs as an ordinary session, rather than the engine falling back to the CPU.
   */
  private boundSession(model: string | Uint8Array, name: string, logId: string): BoundSession | null {
    try {
      const s = BoundSession.create(model, {
        ep: this.ep === 'cuda' ? 'cuda' : 'cpu',
        deviceId: this.tuning.deviceId ?? 0,
        cudaOptions: parseCudaOptions(this.tuning.cudaOptions ?? ''),
        cudaGraph: this.ep === 'cuda',
        logId,
        logSeverity: logSeverityOf(this.tuning),
        ortPackageDir: this.ortPackageDir,
        addonPath: this.addonPath,
        log: this.log,
      });
      if (s.cudaGraph) this.log(`engine: ${name}: fixed GPU bindings, one CUDA graph per input shape`);
      return s;
    } catch (e) {
      // e.g. the helper not built: the component runs as an ordinary CUDA session
      if (this.ep !== 'cuda' || this.boundOverride !== null) throw e;
      this.dropCudaGraph((e as Error).message.split('\n')[0]);
      return null;
    }
  }

  /** set by tests to build a GPU graph form on the CPU provider; null: per provider and tuning */
  graphTuningOverride: GraphTuning | null = null;
  /** Graph-shape choices for the provider in use (the component builders read this; part of the graph key). */
  get graphTuning(): GraphTuning {
    return this.graphTuningOverride ?? graphTuningFor(this.ep, this.tuning);
  }

  async session(spec: ComponentSpec): Promise<ort.InferenceSession> {
    try {
      return (await this.load(spec)).session;
    } catch (e) {
      if (!(e instanceof ProviderFailed)) throw e;
      if (this.strict) throw new ProviderUnusable(this.ep, e.message);
      this.log(`engine: asked for execution provider ${this.ep}, using cpu: ${e.message}`);
      this.ep = 'cpu';
      await this.cache.clear(); // GPU sessions and their budget pool no longer apply
      return (await this.load(spec)).session;
    }
  }

  private async load(spec: ComponentSpec): Promise<Loaded> {
    const { file, config } = this.checkpoint(spec.checkpoint);
    const ep = this.ep;
    const dtype = spec.dtype ?? computeDtypeFor(ep, spec.component, this.tuning.vaePrecision);
    const bytes = componentBytes(file, config, spec.component, dtype);
    const variant = spec.variant ?? '';
    // the files' identities (size, mtime) key both the graph artifact and the session: a checkpoint or LoRA replaced
    // under the same name is new weights (its loader re-runs on it), never the session loaded from the old file
    const checkpointId = fileIdentity(spec.checkpoint);
    const loraIds = spec.loras.map((l) => ({ ...fileIdentity(l.path), strength: l.strength }));
    // the text encoders are built the same on every provider: GPU graph knobs do not make them new graphs
    const graph = spec.component.startsWith('text_encoder') ? {} : this.graphTuning;
    const artifactKey = (variant: string, loras: typeof loraIds) =>
      graphKey({
        code: builderCodeVersion(),
        checkpoint: checkpointId,
        component: spec.component,
        variant,
        dtype,
        graph,
        loras,
      });
    const key = JSON.stringify({
      checkpoint: spec.checkpoint,
      id: checkpointId,
      component: spec.component,
      variant,
      loras: loraIds,
      dtype,
      ep,
      graph,
    });
    const name = `${config.family} ${spec.component.replace(/_/g, ' ')}${variant ? ` (${variant})` : ''} of ${basename(spec.checkpoint)}`;
    return this.cache.acquire(key, { pool: isGpu(ep) ? 'vram' : 'ram', bytes }, name, async () => {
      const t0 = performance.now();
      const request = {
        cacheDir: this.init.cacheDir,
        key: artifactKey(variant, loraIds),
        externalize: bytes >= this.init.externalDataMinBytes,
      };
      const budgetBytes = graphCacheBudgetBytes(this.init.cacheDir, this.init.graphCacheMB);
      const cached = artifactCached(request);
      let reuseFrom: string | undefined;
      if (spec.sharesWeightsOf && request.externalize && !cached) {
        reuseFrom = artifactKey(spec.sharesWeightsOf.variant, []);
        const base = spec.sharesWeightsOf.variant;
        graphArtifact({
          ...request,
          key: reuseFrom,
          build: () => spec.build(weightSourceFor(file, spec.component, []), config, dtype),
          inUse: { owner: key, loaded: () => this.cache.keys() },
          log: this.log,
          budgetBytes,
        });
        this.log(`engine: ${name}: shares the weights of the ${base ? `${base} ` : ''}graph without LoRAs`);
      }
      // prepared weights (LoRA-baked graphs) are computed only when the graph must actually be built
      let source: WeightSource | null = null;
      if (spec.weights && !cached) {
        const shared = reuseFrom ? sharedWeights(this.init.cacheDir, reuseFrom) : null;
        try {
          source = await spec.weights(shared);
        } finally {
          shared?.close();
        }
      }
      const artifact = graphArtifact({
        ...request,
        build: () => spec.build(source ?? weightSourceFor(file, spec.component, spec.loras), config, dtype),
        inUse: { owner: key, loaded: () => this.cache.keys() },
        log: this.log, // disk budget: spare loaded graphs
        budgetBytes,
        reuseFrom,
      });
      if (artifact.kind === 'file' && artifact.reused) this.graphsReused++;
      else this.graphsBuilt++;
      const t1 = performance.now();
      let session: ort.InferenceSession;
      try {
        const bound = this.bound(spec.component)
          ? this.boundSession(
              artifact.kind === 'file' ? artifact.path : artifact.bytes,
              name,
              `${config.family}:${spec.component}`,
            )
          : null;
        if (bound) {
          session = bound as unknown as ort.InferenceSession; // the loops use run() and release(), as ORT's
        } else {
          const options = sessionOptionsFor(ep, spec.component, config.family, this.tuning);
          session =
            artifact.kind === 'file'
              ? await ort.InferenceSession.create(artifact.path, options)
              : await ort.InferenceSession.create(artifact.bytes, options);
        }
      } catch (e) {
        if (ep !== 'cpu') throw new ProviderFailed(`creating the ${name} session failed: ${(e as Error).message}`);
        throw e;
      }
      this.loadTimings.push({
        name,
        graphMs: t1 - t0,
        sessionMs: performance.now() - t1,
        reused: artifact.kind === 'file' && artifact.reused,
      });
      const profiling = this.tuning.profileDir !== null;
      return {
        session,
        dispose: async () => {
          if (profiling) session.endProfiling(); // writes the profile JSON
          await session.release();
        },
      };
    });
  }

  /**
   * A session for a small helper graph (the LoRA patcher) on this store's provider and device, outside the model
   * cache; the caller releases it.
   */
  async utilitySession(g: GraphBuilder): Promise<ort.InferenceSession> {
    const options = sessionOptionsFor(this.ep, 'unet', 'sd1', { ...this.tuning, profileDir: null });
    return ort.InferenceSession.create(serializeModel(g), options);
  }

  private files = new Map<string, { file: SafetensorsFile; mtimeMs: number }>();

  /** An open file for fileModelSession (re-opened when it changed on disk). */
  openFile(path: string): SafetensorsFile {
    const mtimeMs = fileIdentity(path).mtimeMs;
    const hit = this.files.get(path);
    if (hit && hit.mtimeMs === mtimeMs) return hit.file;
    hit?.file.close();
    const file = SafetensorsFile.open(path);
    this.files.set(path, { file, mtimeMs });
    return file;
  }

  /** The session of a single-file network (FileModelSpec), cached like components under the same budget. */
  async fileModelSession(spec: FileModelSpec): Promise<ort.InferenceSession> {
    const file = this.openFile(spec.path);
    const ep = this.ep;
    const id = fileIdentity(spec.path);
    const key = JSON.stringify({ file: spec.path, kind: spec.kind, variant: spec.variant ?? '', id, ep });
    const bytes = file.keys().reduce((n, k) => n + file.info(k).shape.reduce((a, b) => a * b, 1) * 4, 0);
    const name = `${spec.kind} ${basename(spec.path)}`;
    const loaded = await this.cache.acquire(key, { pool: isGpu(ep) ? 'vram' : 'ram', bytes }, name, async () => {
      const t0 = performance.now();
      const graph = serializeModel(spec.build(safetensorsWeights(file), file));
      this.graphsBuilt++;
      const t1 = performance.now();
      // conv-heavy like the VAE: the same provider options (NHWC on WebGPU)
      const options = { ...sessionOptionsFor(ep, 'vae_decoder', 'sd1', this.tuning), logId: name };
      const session = await ort.InferenceSession.create(graph, options);
      this.loadTimings.push({ name, graphMs: t1 - t0, sessionMs: performance.now() - t1, reused: false });
      return { session, dispose: () => session.release() };
    });
    return loaded.session;
  }

  /** Unloads every session and closes the checkpoints (POST /free). */
  async free(): Promise<void> {
    await this.cache.clear();
    for (const c of this.checkpoints.values()) c.file.close();
    this.checkpoints.clear();
    for (const f of this.files.values()) f.file.close();
    this.files.clear();
  }

  stats(): RuntimeStats {
    return {
      ep: this.ep,
      ortVersion: ort.env.versions.node ?? ort.env.versions.common,
      loaded: this.cache.keys(),
      evictions: [...this.cache.evictions],
      ramUsed: this.cache.used('ram'),
      vramUsed: this.cache.used('vram'),
      ramBudget: this.init.ramBudget,
      vramBudget: this.init.vramBudget,
      graphsBuilt: this.graphsBuilt,
      graphsReused: this.graphsReused,
      loadTimings: [...this.loadTimings],
      runTimings: [...this.runTimings],
    };
  }

  /**
   * session.run durations per component (last 1000), for the bench: in-worker time without message passing. Called
   * as a run ends (or with its `end`, a performance.now() reading): `at`, its start, is end - ms on the epoch clock
   * (comparable with the main thread's).
   */
  readonly runTimings: { component: string; ms: number; at: number }[] = [];
  recordRun(component: string, ms: number, end = performance.now()): void {
    this.runTimings.push({ component, ms, at: performance.timeOrigin + end - ms });
    if (this.runTimings.length > 1000) this.runTimings.shift();
  }
}

/**
 * --cuda-options: parsed wherever they are given (a typo fails on every machine), handed to the CUDA provider
 * (cuda-options.ts) before the provider is settled when CUDA may run here: asked for (cuda, auto) and its libraries
 * present. The probe session of the settling then already runs with them, so a value the provider rejects shows as
 * the reason CUDA was not used (auto) or as the start error (cuda).
 */
function installRequestedCudaOptions(init: WorkerInit, log: (line: string) => void): InstalledCudaOptions | null {
  const entries = parseCudaOptions(init.tuning?.cudaOptions ?? '');
  if (!entries.length) return null;
  const asked = (init.ep ?? '').trim().toLowerCase();
  if (asked !== 'cuda' && asked !== 'auto') return null;
  if (cudaProblemsHere(process.env, init.ortPackage).length) return null; // settling says what is missing
  const pkg = init.ortPackage ?? mainOrtPackage();
  if (!pkg) return null;
  const installed = installCudaOptions(pkg, entries, init.cudaAddon ?? CUDA_ADDON);
  log(`engine: CUDA provider options ${describeCudaOptions(entries)} (${installed.ortRelease})`);
  return installed;
}

/** Creates a one-node session on `ep`; returns why it failed, or null when it works. */
async function probe(ep: ExecutionProvider): Promise<string | null> {
  const g = new GraphBuilder({ name: 'probe' });
  const x = g.input('x', 'float32', [1]);
  g.output(g.op.Add(x, x), 'y');
  try {
    const s = await ort.InferenceSession.create(serializeModel(g), { executionProviders: [ep] });
    await s.release();
    return null;
  } catch (e) {
    return firstLine(e);
  }
}
