/**
 * Every setting of tcd-studio in one table: its flag, its environment variable, its default, the commands that take
 * it and one line of help. The command line (server/cli.ts) resolves flags, then environment, then defaults ONCE
 * into a typed `Settings` object and passes it down; nothing below the entry point reads process.env for a setting.
 * `--help` of every command and docs/settings.md (scripts/write-settings-doc.ts) are generated from this table.
 * Adding a setting = adding one entry here; its type follows from the entry.
 * Example:
 *   const r = parseCommandLine('serve', ['--port', '0'], process.env);
 *   if (r.help) console.log(r.help); else await serve(r.settings);
 */
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { DEFAULT_PREVIEW_METHOD, PREVIEW_METHODS } from './preview-method.js';
import { describeCudaOptions, parseCudaOptions } from './engine/runtime/cuda-options.js';

export type Command = 'serve' | 'run' | 'worker' | 'convert' | 'models' | 'make-checkpoint';

/** Sections of --help and docs/settings.md, in order. */
export type Group = 'server' | 'folders' | 'engine' | 'gpu tuning' | 'farm' | 'run' | 'models' | 'make-checkpoint';

export interface Spec<T> {
  /** the long flag without dashes; a setting without one is environment-only */
  flag?: string;
  /** more flag names for the same setting (e.g. run's --out for --output) */
  aliases?: readonly string[];
  env?: string;
  /** older variable names still read, after `env` (and named in the docs as deprecated) */
  deprecatedEnv?: readonly string[];
  commands: readonly Command[];
  group: Group;
  help: string;
  /** what the value looks like in --help (N, DIR, ...); absent for switches */
  meta?: string;
  default: T;
  /** the default as the docs should say it, when `default` is computed later (e.g. "75% of RAM") */
  defaultDoc?: string;
  /** value: --flag VALUE; switch: --flag alone sets `whenSet`; multiple: --flag VALUE, repeatable */
  kind: 'value' | 'switch' | 'multiple';
  whenSet?: T;
  /** text (from a flag or the environment) to value; `source` names where it came from, for errors */
  parse(raw: string, source: string): T;
}

// ---- parsers: each throws an error naming the flag or variable and the bad value --------------------------------

const bad = (source: string, what: string, raw: string) =>
  new Error(`${source} must be ${what}, got ${JSON.stringify(raw)}`);
const text = (raw: string) => raw;
const dir = (raw: string) => resolve(raw);
function int(min: number) {
  return (raw: string, source: string) => {
    const n = Number(raw.trim());
    if (raw.trim() === '' || !Number.isInteger(n) || n < min) throw bad(source, `an integer >= ${min}`, raw);
    return n;
  };
}
/** positive megabytes (budgets) */
function megabytes(raw: string, source: string): number {
  const n = Number(raw.trim());
  if (raw.trim() === '' || !Number.isFinite(n) || n <= 0) throw bad(source, 'a positive number of megabytes', raw);
  return n;
}
/** MiB, 0 = no limit */
function cacheMegabytes(raw: string, source: string): number {
  if (!/^\s*\d+(\.\d+)?\s*$/.test(raw)) throw bad(source, 'a size in MiB (a non-negative number; 0 = no limit)', raw);
  return Number(raw);
}
function bool(raw: string, source: string): boolean {
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off', ''].includes(v)) return false;
  throw bad(source, '1/true or 0/false', raw);
}
/** One of `allowed`, matched case-insensitively, returned as spelled in `allowed`. */
function oneOf<T extends string>(allowed: readonly T[]) {
  return (raw: string, source: string): T => {
    const hit = allowed.find((a) => a.toLowerCase() === raw.trim().toLowerCase());
    if (!hit) throw bad(source, allowed.join(' or '), raw);
    return hit;
  };
}
const commaList = (raw: string) =>
  raw
    .split(',')
    .map((d) => d.trim())
    .filter(Boolean);

// ---- entry builders ------------------------------------------------------------------------------------------

type Base = Omit<Spec<unknown>, 'default' | 'kind' | 'whenSet' | 'parse'>;
function value<T>(o: Base & { default: T; parse: (raw: string, source: string) => T }): Spec<T> {
  return { ...o, kind: 'value' };
}
function optional<T>(o: Base & { parse: (raw: string, source: string) => T }): Spec<T | undefined> {
  return { ...o, default: undefined, kind: 'value' };
}
/** --flag with no value; the environment (if any) gives a boolean */
function flagSwitch(o: Base & { default: boolean; whenSet: boolean }): Spec<boolean> {
  return { ...o, kind: 'switch', parse: bool };
}
function repeated(o: Base): Spec<string[]> {
  return { ...o, default: [], kind: 'multiple', parse: (raw) => [raw] };
}

const SERVE = ['serve'] as const;
const HOSTS = ['serve', 'run', 'worker'] as const;
const QUEUES = ['serve', 'worker'] as const;
const WORKER = ['worker'] as const;

/** THE table. Keys are the property names of `Settings`. */
export const SETTINGS = {
  // server
  port: value({
    flag: 'port',
    env: 'TCD_PORT',
    meta: 'N',
    default: 8188,
    parse: int(0),
    commands: SERVE,
    group: 'server',
    help: 'HTTP port (0: any free port)',
  }),
  listen: value({
    flag: 'listen',
    env: 'TCD_LISTEN',
    meta: 'HOST',
    default: '127.0.0.1',
    parse: text,
    commands: SERVE,
    group: 'server',
    help: 'address to listen on; anything but loopback should come with --token',
  }),
  token: optional({
    flag: 'token',
    env: 'TCD_TOKEN',
    meta: 'TOKEN',
    parse: text,
    commands: SERVE,
    group: 'server',
    help: 'access token every route and the websocket require',
  }),
  cors: optional({
    flag: 'cors',
    env: 'TCD_CORS',
    meta: 'ORIGIN',
    parse: text,
    commands: SERVE,
    group: 'server',
    help: 'send CORS headers for this origin',
  }),
  demo: flagSwitch({
    flag: 'no-demo',
    default: true,
    whenSet: false,
    commands: ['serve', 'run'],
    group: 'server',
    help: 'do not create the demo checkpoint when models/checkpoints is empty',
  }),
  previewMethod: optional({
    flag: 'preview-method',
    env: 'TCD_PREVIEW_METHOD',
    meta: PREVIEW_METHODS.join('|'),
    parse: oneOf(PREVIEW_METHODS),
    commands: SERVE,
    group: 'server',
    defaultDoc: DEFAULT_PREVIEW_METHOD,
    help: 'how samplers draw per-step previews (none: no previews; taesd: the TAESD decoder in models/vae_approx when present, else latent2rgb)',
  }),
  previews: flagSwitch({
    flag: 'no-previews',
    default: true,
    whenSet: false,
    commands: QUEUES,
    group: 'server',
    help: 'no per-step preview images',
  }),
  frontEndRoot: optional({
    flag: 'front-end-root',
    meta: 'DIR',
    parse: dir,
    commands: SERVE,
    group: 'server',
    defaultDoc: 'the built editor',
    help: 'a built ComfyUI frontend served at / instead of the editor',
  }),
  maxImagePixels: optional({
    flag: 'max-image-pixels',
    env: 'TCD_MAX_IMAGE_PIXELS',
    meta: 'N',
    parse: int(1),
    commands: HOSTS,
    group: 'server',
    defaultDoc: '33554432 (32 Mi)',
    help: 'largest image (width x height) uploads and image loaders accept',
  }),
  // folders
  models: value({
    flag: 'models',
    env: 'TCD_MODELS',
    meta: 'DIR',
    default: 'models',
    parse: dir,
    commands: [...HOSTS, 'models'],
    group: 'folders',
    help: 'model folders (checkpoints/, loras/, ...)',
  }),
  data: value({
    flag: 'data',
    env: 'TCD_DATA',
    deprecatedEnv: ['TCD_DATA_DIR'],
    meta: 'DIR',
    default: 'data',
    parse: dir,
    commands: HOSTS,
    group: 'folders',
    help: "queue database and the engine's graph cache (data/onnx-cache)",
  }),
  output: value({
    flag: 'output',
    aliases: ['out'],
    env: 'TCD_OUTPUT',
    meta: 'DIR',
    default: 'output',
    parse: dir,
    commands: HOSTS,
    group: 'folders',
    help: 'saved images',
  }),
  input: value({
    flag: 'input',
    env: 'TCD_INPUT',
    meta: 'DIR',
    default: 'input',
    parse: dir,
    commands: HOSTS,
    group: 'folders',
    help: 'uploaded / loadable images',
  }),
  temp: value({
    flag: 'temp',
    env: 'TCD_TEMP',
    meta: 'DIR',
    default: 'temp',
    parse: dir,
    commands: HOSTS,
    group: 'folders',
    help: 'preview images (PreviewImage)',
  }),
  extraModelPaths: optional({
    flag: 'extra-model-paths-config',
    env: 'TCD_EXTRA_MODEL_PATHS',
    meta: 'FILE.yaml',
    parse: dir,
    commands: HOSTS,
    group: 'folders',
    defaultDoc: 'extra_model_paths.yaml here, when present',
    help: "more model folders, in ComfyUI's extra_model_paths.yaml format",
  }),
  // engine
  ep: value({
    flag: 'ep',
    env: 'TCD_EP',
    meta: 'auto|cpu|webgpu|cuda',
    default: 'auto',
    parse: text,
    commands: HOSTS,
    group: 'engine',
    help: 'execution provider (auto: cuda when it loads, else webgpu, else cpu); one that cannot start falls back (logged)',
  }),
  device: optional({
    flag: 'device',
    env: 'TCD_DEVICE',
    meta: 'N',
    parse: int(0),
    commands: HOSTS,
    group: 'engine',
    defaultDoc: '0',
    help: 'GPU index (CUDA deviceId; WebGPU through the Vulkan device-select layer)',
  }),
  isolation: optional({
    flag: 'isolation',
    env: 'TCD_ENGINE_ISOLATION',
    meta: 'thread|process',
    parse: oneOf(['thread', 'process'] as const),
    commands: HOSTS,
    group: 'engine',
    defaultDoc: 'process for serve, else thread',
    help: 'engine worker as a thread, or a child process (a native crash kills only the child)',
  }),
  engineMaxRssMB: optional({
    flag: 'engine-max-rss-mb',
    env: 'TCD_ENGINE_MAX_RSS_MB',
    meta: 'MB',
    parse: megabytes,
    commands: HOSTS,
    group: 'engine',
    defaultDoc: '85% of RAM',
    help: 'memory limit of a child-process engine: past it the engine is stopped, not the server',
  }),
  ramBudgetMB: optional({
    flag: 'ram-budget-mb',
    env: 'TCD_RAM_BUDGET_MB',
    meta: 'MB',
    parse: megabytes,
    commands: HOSTS,
    group: 'engine',
    defaultDoc: '75% of RAM',
    help: 'memory for models loaded on the CPU (least recently used go first)',
  }),
  vramBudgetMB: optional({
    flag: 'vram-budget-mb',
    env: 'TCD_VRAM_BUDGET_MB',
    meta: 'MB',
    parse: megabytes,
    commands: HOSTS,
    group: 'engine',
    defaultDoc: 'unlimited',
    help: 'memory for models loaded on the GPU',
  }),
  graphCacheMB: optional({
    flag: 'graph-cache-mb',
    env: 'TCD_GRAPH_CACHE_MB',
    meta: 'MB',
    parse: cacheMegabytes,
    commands: HOSTS,
    group: 'engine',
    defaultDoc: 'half the free disk, >= 8 GiB',
    help: 'disk budget of data/onnx-cache (0: no limit)',
  }),
  // GPU tuning (each measured on the H200; see server/bench/README.md)
  gpuLayout: optional({
    flag: 'gpu-layout',
    env: 'TCD_GPU_LAYOUT',
    meta: 'NHWC|NCHW',
    parse: oneOf(['NHWC', 'NCHW'] as const),
    commands: HOSTS,
    group: 'gpu tuning',
    defaultDoc: 'NHWC',
    help: 'layout of the conv-heavy graphs on webgpu',
  }),
  gpuAttention: optional({
    flag: 'gpu-attention',
    env: 'TCD_GPU_ATTENTION',
    meta: 'fused|plain',
    parse: oneOf(['fused', 'plain'] as const),
    commands: HOSTS,
    group: 'gpu tuning',
    defaultDoc: 'fused',
    help: 'MultiHeadAttention operator or MatMul/Softmax/MatMul in GPU graphs',
  }),
  gpuGraphCapture: flagSwitch({
    flag: 'gpu-graph-capture',
    env: 'TCD_GPU_GRAPH_CAPTURE',
    default: false,
    whenSet: true,
    commands: HOSTS,
    group: 'gpu tuning',
    help: 'ONNX Runtime graph capture of the UNet (webgpu, cuda)',
  }),
  gpuBufferCache: optional({
    flag: 'gpu-buffer-cache',
    env: 'TCD_GPU_BUFFER_CACHE',
    meta: 'bucket|simple',
    parse: oneOf(['bucket', 'simple'] as const),
    commands: HOSTS,
    group: 'gpu tuning',
    defaultDoc: 'bucket',
    help: 'webgpu storage-buffer cache (simple: exact sizes, lower peak memory)',
  }),
  gpuLinear: optional({
    flag: 'gpu-linear',
    env: 'TCD_GPU_LINEAR',
    meta: 'matmul|gemm|gemm-transb',
    parse: oneOf(['gemm-transb', 'matmul', 'gemm'] as const),
    commands: HOSTS,
    group: 'gpu tuning',
    defaultDoc: 'matmul',
    help: 'how UNet/VAE linear layers multiply on GPUs',
  }),
  gpuLora: optional({
    flag: 'gpu-lora',
    env: 'TCD_GPU_LORA',
    meta: 'bake|inputs|branch',
    parse: oneOf(['bake', 'inputs', 'branch'] as const),
    commands: HOSTS,
    group: 'gpu tuning',
    defaultDoc: 'bake',
    help: 'LoRA on GPUs: baked into a graph per LoRA set, fed every run, or low-rank branches beside the base weights',
  }),
  gpuVaeAttention: optional({
    flag: 'gpu-vae-attention',
    env: 'TCD_GPU_VAE_ATTENTION',
    meta: 'fused|plain|fused-fp16|plain-fp16',
    parse: oneOf(['fused', 'plain', 'fused-fp16', 'plain-fp16'] as const),
    commands: HOSTS,
    group: 'gpu tuning',
    defaultDoc: 'fused',
    help: 'form of the VAE mid-block attention',
  }),
  vaePrecision: optional({
    flag: 'vae-precision',
    env: 'TCD_VAE_PRECISION',
    meta: 'auto|fp16|fp32',
    parse: oneOf(['auto', 'fp16', 'fp32'] as const),
    commands: HOSTS,
    group: 'engine',
    defaultDoc: 'auto',
    help:
      "the VAE's precision: auto is fp32 on the CPU and fp16 on GPUs (SDXL's too: its residual stream is carried at " +
      "1/32, and an image that still overflows is decoded again in fp32); fp16 or fp32 everywhere, like ComfyUI's " +
      '--fp16-vae / --fp32-vae',
  }),
  gpuFusedBlocks: flagSwitch({
    flag: 'gpu-fused-blocks',
    env: 'TCD_GPU_FUSED_BLOCKS',
    default: true,
    whenSet: true,
    commands: HOSTS,
    group: 'gpu tuning',
    help: 'cuda: UNet transformer blocks with SkipLayerNormalization and Gelu (0 turns it off)',
  }),
  gpuFusedGroupNorm: flagSwitch({
    flag: 'gpu-fused-groupnorm',
    env: 'TCD_GPU_FUSED_GROUPNORM',
    default: true,
    whenSet: true,
    commands: HOSTS,
    group: 'gpu tuning',
    help: 'cuda: GroupNorm (+ SiLU) as one com.microsoft GroupNorm node in the UNet and VAE (0 turns it off)',
  }),
  gpuFusedGeglu: flagSwitch({
    flag: 'gpu-fused-geglu',
    env: 'TCD_GPU_FUSED_GEGLU',
    default: true,
    whenSet: true,
    commands: HOSTS,
    group: 'gpu tuning',
    help: "cuda: the UNet feed-forward's bias, split and GELU gate as one com.microsoft BiasSplitGelu node (0: off)",
  }),
  gpuNhwcConv: flagSwitch({
    flag: 'gpu-nhwc-conv',
    env: 'TCD_GPU_NHWC_CONV',
    default: false,
    whenSet: true,
    commands: HOSTS,
    group: 'gpu tuning',
    help: 'cuda: UNet, ControlNet and VAE convolutions as com.microsoft NhwcConv (channels-last)',
  }),
  gpuPackedAttention: flagSwitch({
    flag: 'gpu-packed-attention',
    env: 'TCD_GPU_PACKED_ATTENTION',
    default: false,
    whenSet: true,
    commands: HOSTS,
    group: 'gpu tuning',
    help:
      "cuda: each UNet/ControlNet attention's q, k, v (self-attention) or k, v (cross-attention) projections as one " +
      'MatMul by a packed weight, read by MultiHeadAttention as packed QKV / KV',
  }),
  cudaOptions: optional({
    flag: 'cuda-options',
    env: 'TCD_CUDA_OPTIONS',
    meta: 'KEY=VALUE,...',
    parse: (raw, source) => describeCudaOptions(parseCudaOptions(raw, source)),
    commands: HOSTS,
    group: 'gpu tuning',
    help:
      "cuda: ONNX Runtime CUDA provider options by ONNX Runtime's names (e.g. arena_extend_strategy=kSameAsRequested, " +
      'cudnn_conv_algo_search=HEURISTIC, cudnn_conv_use_max_workspace=0, prefer_nhwc=1, use_tf32=0); needs the ' +
      'helper `npm run setup:cuda` builds',
  }),
  cudaGraph: flagSwitch({
    flag: 'cuda-graph',
    env: 'TCD_CUDA_GRAPH',
    default: false,
    whenSet: true,
    commands: HOSTS,
    group: 'gpu tuning',
    help:
      'cuda: run the UNet and ControlNets with their inputs and outputs bound at fixed GPU addresses and replay one ' +
      'CUDA graph per input shape (fewer kernel launches per step); needs the helper `npm run setup:cuda` builds',
  }),
  sharedArena: flagSwitch({
    flag: 'shared-arena',
    env: 'TCD_SHARED_ARENA',
    default: false,
    whenSet: true,
    commands: HOSTS,
    group: 'gpu tuning',
    help:
      'cuda, cpu: one ONNX Runtime memory arena for all sessions instead of one each (peak memory: the largest ' +
      "session's, not the sum); needs the helper `npm run setup:cuda` builds",
  }),
  ortProfileDir: optional({
    flag: 'ort-profile-dir',
    env: 'TCD_ORT_PROFILE_DIR',
    meta: 'DIR',
    parse: dir,
    commands: HOSTS,
    group: 'gpu tuning',
    help: 'write an ONNX Runtime profile (JSON) per session here',
  }),
  ortLogLevel: optional({
    flag: 'ort-log-level',
    env: 'TCD_ORT_LOG_LEVEL',
    meta: 'verbose|info|warning|error',
    parse: oneOf(['verbose', 'info', 'warning', 'error'] as const),
    commands: HOSTS,
    group: 'gpu tuning',
    defaultDoc: 'error',
    help: "ONNX Runtime's own log on stderr (info: each memory-arena extension, where GPU memory goes)",
  }),
  // farm
  queue: optional({
    flag: 'queue',
    env: 'TCD_QUEUE',
    meta: 'redis://HOST:PORT',
    parse: text,
    commands: QUEUES,
    group: 'farm',
    help: 'serve: put prompts on Redis for worker processes; worker: the Redis to take them from (docs/farm.md)',
  }),
  devices: optional({
    flag: 'devices',
    meta: '0,1,...',
    parse: commaList,
    commands: SERVE,
    group: 'farm',
    help: 'one executor (own engine) per local GPU',
  }),
  concurrency: value({
    flag: 'concurrency',
    meta: 'N',
    default: 1,
    parse: int(1),
    commands: WORKER,
    group: 'farm',
    help: 'prompts this worker runs at once',
  }),
  workerId: optional({
    flag: 'id',
    meta: 'NAME',
    parse: text,
    commands: WORKER,
    group: 'farm',
    defaultDoc: 'host-pid-random',
    help: 'worker name in the farm',
  }),
  affinity: flagSwitch({
    flag: 'no-affinity',
    default: true,
    whenSet: false,
    commands: WORKER,
    group: 'farm',
    help: 'take the oldest prompt, not the one whose checkpoint this worker holds',
  }),
  maxWaitMs: value({
    flag: 'max-wait-ms',
    meta: 'MS',
    default: 10000,
    parse: int(0),
    commands: WORKER,
    group: 'farm',
    help: 'a prompt waiting longer than this is taken whatever its checkpoint',
  }),
  keepModels: value({
    flag: 'keep-models',
    meta: 'N',
    default: 1,
    parse: int(1),
    commands: WORKER,
    group: 'farm',
    help: 'recent checkpoints counted as held when the engine cannot say',
  }),
  lockMs: value({
    flag: 'lock-ms',
    meta: 'MS',
    default: 30000,
    parse: int(1),
    commands: WORKER,
    group: 'farm',
    help: 'BullMQ job lock; a worker silent this long has its prompt run elsewhere',
  }),
  stalledMs: value({
    flag: 'stalled-ms',
    meta: 'MS',
    default: 15000,
    parse: int(1),
    commands: WORKER,
    group: 'farm',
    help: 'how often stalled jobs are looked for',
  }),
  maxStalled: value({
    flag: 'max-stalled',
    meta: 'N',
    default: 1,
    parse: int(0),
    commands: WORKER,
    group: 'farm',
    help: 'stalls after which a prompt fails instead of running again',
  }),
  farmTrace: flagSwitch({
    flag: 'trace',
    env: 'TCD_FARM_TRACE',
    default: false,
    whenSet: true,
    commands: WORKER,
    group: 'farm',
    help: 'log the queue order and every job taken',
  }),
  // run
  set: repeated({
    flag: 'set',
    meta: 'NODE.INPUT=VALUE',
    commands: ['run'],
    group: 'run',
    help: 'override an input (NODE = id, title or class) for every render; repeatable',
  }),
  seeds: optional({
    flag: 'seeds',
    meta: 'A-B',
    parse: text,
    commands: ['run'],
    group: 'run',
    help: 'one render per seed',
  }),
  prompts: optional({
    flag: 'prompts',
    meta: 'FILE.csv',
    parse: text,
    commands: ['run'],
    group: 'run',
    help: 'one render per row; the header names NODE.INPUT columns',
  }),
  convertOut: optional({
    flag: 'out',
    meta: 'FILE',
    parse: text,
    commands: ['convert'],
    group: 'run',
    defaultDoc: 'stdout',
    help: 'where the API-format prompt goes',
  }),
  // models
  catalog: optional({
    flag: 'catalog',
    env: 'TCD_MODEL_CATALOG',
    meta: 'FILE.json',
    parse: text,
    commands: ['models', 'serve'],
    group: 'models',
    defaultDoc: 'built-in',
    help: 'model catalog to list / pull from (models pull, POST /models/pull)',
  }),
  skipSha: flagSwitch({
    flag: 'skip-sha',
    default: false,
    whenSet: true,
    commands: ['models'],
    group: 'models',
    help: "do not verify downloads against the catalog's sha256",
  }),
  // make-checkpoint
  arch: optional({
    flag: 'arch',
    meta: 'sd15|sdxl|demo|sd15-inpaint|sdxl-inpaint|tiny-sd1-inpaint',
    parse: text,
    commands: ['make-checkpoint'],
    group: 'make-checkpoint',
    help: 'architecture of the random-weight checkpoint',
  }),
  checkpointOut: optional({
    flag: 'out',
    meta: 'FILE',
    parse: text,
    commands: ['make-checkpoint'],
    group: 'make-checkpoint',
    help: 'where the .safetensors goes',
  }),
  seed: optional({
    flag: 'seed',
    meta: 'N',
    parse: int(0),
    commands: ['make-checkpoint'],
    group: 'make-checkpoint',
    help: 'random seed of the weights',
  }),
  dtype: optional({
    flag: 'dtype',
    meta: 'F16|F32|BF16',
    parse: text,
    commands: ['make-checkpoint'],
    group: 'make-checkpoint',
    help: 'weight dtype',
  }),
};

export type SettingKey = keyof typeof SETTINGS;
export type Settings = { [K in SettingKey]: (typeof SETTINGS)[K] extends Spec<infer T> ? T : never };

/** The engine's GPU tuning from the settings (unset knobs keep the engine's defaults). */
export function gpuTuningOf(s: Settings) {
  return {
    layout: s.gpuLayout,
    fusedAttention: s.gpuAttention === undefined ? undefined : s.gpuAttention === 'fused',
    graphCapture: s.gpuGraphCapture,
    bufferCache: s.gpuBufferCache,
    profileDir: s.ortProfileDir,
    linear: s.gpuLinear,
    // off, graphTuningFor adds no key (graph tuning and cache keys as before the option)
    lora: s.gpuLora,
    vaeAttention: s.gpuVaeAttention,
    fusedBlocks: s.gpuFusedBlocks,
    fusedGroupNorm: s.gpuFusedGroupNorm,
    fusedGeglu: s.gpuFusedGeglu,
    vaePrecision: s.vaePrecision,
    nhwcConv: s.gpuNhwcConv,
    packedAttention: s.gpuPackedAttention,
    cudaOptions: s.cudaOptions,
    cudaGraph: s.cudaGraph,
    sharedArena: s.sharedArena,
    ortLogLevel: s.ortLogLevel,
  };
}

/** What each command is, for --help. */
export const COMMANDS: Record<Command, { usage: string; summary: string; positionals: boolean }> = {
  serve: { usage: 'serve [options]', summary: 'the HTTP + websocket server and its queue', positionals: false },
  worker: {
    usage: 'worker --queue redis://HOST:PORT [options]',
    summary: 'a farm worker: runs prompts from Redis',
    positionals: false,
  },
  run: {
    usage: 'run WORKFLOW.json|.png ... [options]',
    summary: 'run workflows in this process (no server)',
    positionals: true,
  },
  convert: { usage: 'convert WORKFLOW.json [options]', summary: 'UI-format workflow to API format', positionals: true },
  models: { usage: 'models list | pull NAME... [options]', summary: 'list or download models', positionals: true },
  'make-checkpoint': {
    usage: 'make-checkpoint --arch sd15|sdxl|demo|sd15-inpaint|sdxl-inpaint|tiny-sd1-inpaint --out FILE [options]',
    summary: 'a random-weight test checkpoint',
    positionals: false,
  },
};

const GROUPS: Group[] = ['server', 'folders', 'engine', 'gpu tuning', 'farm', 'run', 'models', 'make-checkpoint'];
const entries = () => Object.entries(SETTINGS) as [SettingKey, Spec<unknown>][];

/** Every default, paths resolved against the working directory. */
export function defaultSettings(): Settings {
  const out: Record<string, unknown> = {};
  for (const [key, s] of entries())
    out[key] = s.parse === dir && typeof s.default === 'string' ? resolve(s.default) : structuredClone(s.default);
  return out as Settings;
}

/** Defaults overridden by `partial` (programmatic use: tests, embedding). No environment is read. */
export function settingsWith(partial: Partial<Settings> = {}): Settings {
  const s = defaultSettings();
  for (const [k, v] of Object.entries(partial)) if (v !== undefined) (s as Record<string, unknown>)[k] = v;
  for (const key of ['models', 'data', 'output', 'input', 'temp'] as const) s[key] = resolve(s[key]);
  return s;
}

export class UsageError extends Error {}

export interface ParsedCommandLine {
  settings: Settings;
  positionals: string[];
  help?: string;
}

/**
 * Flags of `command`, then its environment variables, then defaults. Throws UsageError for an unknown flag or a
 * bad value (naming the flag or variable). `--help` / `-h` returns the help text instead of settings.
 */
export function parseCommandLine(
  command: Command,
  argv: string[],
  env: Record<string, string | undefined>,
): ParsedCommandLine {
  const specs = entries().filter(([, s]) => s.commands.includes(command));
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
  };
  const flagOf = new Map<string, SettingKey>();
  for (const [key, s] of specs) {
    for (const f of s.flag ? [s.flag, ...(s.aliases ?? [])] : []) {
      options[f] = {
        type: s.kind === 'switch' ? 'boolean' : 'string',
        ...(s.kind === 'multiple' ? { multiple: true } : {}),
      };
      flagOf.set(f, key);
    }
  }
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: COMMANDS[command].positionals, strict: true });
  } catch (e) {
    throw new UsageError(`${(e as Error).message} (tcd-studio ${command} --help lists the options)`);
  }
  const settings = defaultSettings();
  if (parsed.values.help) return { settings, positionals: parsed.positionals, help: helpText(command) };
  const out = settings as Record<string, unknown>;
  for (const [key, s] of specs) {
    const flags = s.flag ? [s.flag, ...(s.aliases ?? [])] : [];
    const given = flags.map((f) => [f, parsed.values[f]] as const).find(([, v]) => v !== undefined);
    try {
      if (given) {
        const [f, v] = given;
        out[key] =
          s.kind === 'switch'
            ? s.whenSet
            : s.kind === 'multiple'
              ? (v as string[]).slice()
              : s.parse(v as string, `--${f}`);
        continue;
      }
      const name = [s.env, ...(s.deprecatedEnv ?? [])].find((n) => n && env[n] !== undefined && env[n]!.trim() !== '');
      if (name) out[key] = s.parse(env[name]!, name);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  return { settings, positionals: parsed.positionals };
}

/** Every setting that has a variable, from `env` alone (entry points without these flags, e.g. the bench). */
export function settingsFromEnv(env: Record<string, string | undefined>): Settings {
  const settings = defaultSettings() as Record<string, unknown>;
  for (const [key, s] of entries()) {
    const name = [s.env, ...(s.deprecatedEnv ?? [])].find((n) => n && env[n] !== undefined && env[n]!.trim() !== '');
    if (name) settings[key] = s.parse(env[name]!, name);
  }
  return settings as Settings;
}

function flagText(s: Spec<unknown>): string {
  if (!s.flag) return '';
  const names = [s.flag, ...(s.aliases ?? [])].map((f) => `--${f}`).join(', ');
  return s.meta ? `${names} ${s.meta}` : names;
}

function defaultText(s: Spec<unknown>): string {
  if (s.defaultDoc !== undefined) return s.defaultDoc;
  if (s.kind === 'switch') return s.default === s.whenSet ? 'on' : 'off'; // is the switch in effect by default
  if (s.default === undefined || (Array.isArray(s.default) && s.default.length === 0)) return '';
  return String(s.default);
}

/** `tcd-studio COMMAND --help`: usage, then the command's options grouped, each with its variable and default. */
export function helpText(command: Command): string {
  const specs = entries().filter(([, s]) => s.commands.includes(command) && s.flag);
  const lines = [`usage: tcd-studio ${COMMANDS[command].usage}`, `  ${COMMANDS[command].summary}`];
  const width = 30; // a longer flag puts its help on the next line
  for (const g of GROUPS) {
    const inGroup = specs.filter(([, s]) => s.group === g);
    if (!inGroup.length) continue;
    lines.push('', `${g}:`);
    for (const [, s] of inGroup) {
      const extra = [s.env ? `env ${s.env}` : '', defaultText(s) ? `default ${defaultText(s)}` : '']
        .filter(Boolean)
        .join(', ');
      const flag = flagText(s);
      const help = `${s.help}${extra ? ` (${extra})` : ''}`;
      lines.push(flag.length < width ? `  ${flag.padEnd(width)}${help}` : `  ${flag}\n  ${''.padEnd(width)}${help}`);
    }
  }
  lines.push('', `  ${'-h, --help'.padEnd(width)}this text`);
  return lines.join('\n');
}

/** docs/settings.md: one table of every setting, generated (scripts/write-settings-doc.ts; a test checks it). */
export function settingsMarkdown(): string {
  const cell = (s: string) => s.replace(/\|/g, '\\|');
  const lines = [
    '# Settings',
    '',
    'Every setting of `tcd-studio`, generated from `server/settings.ts` (run `npx tsx scripts/write-settings-doc.ts`',
    'after changing it). A flag wins over its environment variable, which wins over the default. Relative folders',
    'are taken from the working directory. `tcd-studio COMMAND --help` prints the same options for one command.',
    '',
  ];
  for (const g of GROUPS) {
    const inGroup = entries().filter(([, s]) => s.group === g);
    if (!inGroup.length) continue;
    lines.push(
      `## ${g}`,
      '',
      '| Flag | Variable | Default | Commands | Description |',
      '| --- | --- | --- | --- | --- |',
    );
    for (const [, s] of inGroup) {
      const env = [s.env ? `\`${s.env}\`` : '', ...(s.deprecatedEnv ?? []).map((n) => `\`${n}\` (deprecated)`)]
        .filter(Boolean)
        .join(', ');
      const flag = s.flag ? `\`${flagText(s)}\`` : '';
      const def = defaultText(s);
      lines.push(
        `| ${cell(flag)} | ${env} | ${def ? `\`${cell(def)}\`` : ''} | ${s.commands.join(', ')} | ${cell(s.help)} |`,
      );
    }
    lines.push('');
  }
  lines.push(
    "Development only (not read by tcd-studio itself): `TCD_SERVER` (the Vite dev server's API target,",
    'client/vite.config.ts), `TCD_FIXTURES`, `TCD_REAL_SIZE` and `TCD_DEV_CLI` (tests).',
    '',
  );
  return lines.join('\n');
}
