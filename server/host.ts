/**
 * The composition root: builds node services (engine, folders) and starts the server with the node registry.
 * Settings come from flags, then environment (TCD_PORT, TCD_LISTEN, TCD_MODELS, TCD_DATA, TCD_OUTPUT, TCD_INPUT,
 * TCD_TEMP, TCD_TOKEN, TCD_CORS, TCD_EP), then defaults relative to the working directory.
 */
import { resolve, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { createRegistry } from '../nodes/index.js';
import type { NodeServices } from '../nodes/services.js';
import { Engine, checkRequestedProvider } from './engine/engine.js';
import { ensureDemoCheckpoint } from './tools/make-checkpoint.js';
import { startServer, type RunningServer } from './app/server.js';
import type { ModelFolders } from './storage/model-folders.js';
import { loadExtraModelPaths } from './storage/extra-model-paths.js';
import { Executor } from './executor/execute.js';
import { RedisPromptQueue } from './farm/redis-queue.js';
import { MultiDeviceQueue } from './farm/multi-device.js';

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), existsUp());
function existsUp(): string {
  // dist/server/host.js sits two levels below the root, server/host.ts one
  return fileURLToPath(import.meta.url).includes(`${'/dist/'}`) ? '../..' : '..';
}

export function packageVersion(): string {
  try { return JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')).version; } catch { return '0.0.0'; }
}

export interface HostOptions {
  port?: number;
  listen?: string;
  models?: string;
  data?: string;
  output?: string;
  input?: string;
  temp?: string;
  token?: string;
  cors?: string;
  ep?: string;
  previews?: boolean;
  demo?: boolean;
  log?: (m: string) => void;
  /** farm: redis://HOST:PORT puts prompts on BullMQ for `tcd-studio worker` processes (server/farm) */
  queue?: string;
  /** embedded mode with several GPUs: one executor per device index (server/farm/multi-device.ts) */
  devices?: string[];
  /** extra_model_paths.yaml in ComfyUI's format (default: that file in the working folder, when present) */
  extraModelPaths?: string;
  /** a built ComfyUI frontend served at / instead of the editor (ComfyUI's --front-end-root) */
  frontEndRoot?: string;
}

export function resolveHostOptions(o: HostOptions) {
  const env = process.env;
  const data = resolve(o.data ?? env.TCD_DATA ?? 'data');
  return {
    port: o.port ?? (env.TCD_PORT ? Number(env.TCD_PORT) : 8188),
    host: o.listen ?? env.TCD_LISTEN ?? '127.0.0.1',
    modelsDir: resolve(o.models ?? env.TCD_MODELS ?? 'models'),
    dataDir: data,
    outputDir: resolve(o.output ?? env.TCD_OUTPUT ?? 'output'),
    inputDir: resolve(o.input ?? env.TCD_INPUT ?? 'input'),
    tempDir: resolve(o.temp ?? env.TCD_TEMP ?? 'temp'),
    token: o.token ?? env.TCD_TOKEN ?? undefined,
    corsOrigin: o.cors ?? env.TCD_CORS ?? undefined,
    // auto: cuda when it loads, else webgpu, else cpu (the engine worker logs which and why)
    ep: o.ep ?? env.TCD_EP ?? 'auto',
  };
}

export function makeServices(models: ModelFolders, dirs: NodeServices['dirs'],
  engineOpts: { ep?: string; dataDir: string; log: (m: string) => void; device?: number; isolation?: 'thread' | 'process' }, previews = true): NodeServices {
  let engine: Engine | null = null;
  return {
    dirs, models, previews,
    engine: () => (engine ??= new Engine({ ep: engineOpts.ep, dataDir: engineOpts.dataDir, log: engineOpts.log, device: engineOpts.device, isolation: engineOpts.isolation })),
  };
}

/**
 * One engine per local GPU (serve --devices): WebGPU picks its GPU per process (the Vulkan device-select layer reads
 * the process environment), so WebGPU engines run in child processes; CUDA takes a deviceId per session and keeps the
 * worker thread unless TCD_ENGINE_ISOLATION says otherwise.
 */
export function deviceIsolation(ep: string | undefined): 'thread' | 'process' | undefined {
  return (ep ?? process.env.TCD_EP ?? '').trim().toLowerCase() === 'webgpu' ? 'process' : undefined;
}

/** `serve` runs its engine in a child process unless TCD_ENGINE_ISOLATION says thread. */
export function serveIsolation(): 'thread' | 'process' {
  return process.env.TCD_ENGINE_ISOLATION?.trim() === 'thread' ? 'thread' : 'process';
}

/** Start the full server (the `serve` command). Creates the demo checkpoint when models/checkpoints has none. */
export async function serve(o: HostOptions = {}): Promise<RunningServer<NodeServices>> {
  const log = o.log ?? ((m: string) => console.log(m));
  const r = resolveHostOptions(o);
  checkRequestedProvider(r.ep); // --ep cuda on a machine without it: exit now, saying what is missing
  if (o.demo !== false) {
    const p = await ensureDemoCheckpoint(r.modelsDir);
    log(`demo model: ${p} (random weights: it draws noise-like images until you add a real checkpoint)`);
  }
  const extra = loadExtraModelPaths(o.extraModelPaths ?? process.env.TCD_EXTRA_MODEL_PATHS);
  if (extra.file) log(`extra model folders from ${extra.file}: ${Object.entries(extra.paths).map(([k, v]) => `${k} (${v.length})`).join(', ') || 'none'}`);
  let services: NodeServices | null = null;
  const extraServices: NodeServices[] = [];
  const server = await startServer<NodeServices>({
    ...r,
    workflowsDir: join(PROJECT_ROOT, 'workflows'),
    clientDir: join(PROJECT_ROOT, 'dist', 'client'),
    frontEndRoot: o.frontEndRoot ? resolve(o.frontEndRoot) : undefined,
    extraModelPaths: extra.paths,
    version: packageVersion(),
    registry: createRegistry(),
    log,
    // the engine runs in a child process with a memory limit by default: whatever slips past admission kills only it
    makeServices: ({ models, dirs }) => (services = makeServices(models, dirs, { ep: r.ep, dataDir: r.dataDir, log, isolation: serveIsolation() }, o.previews !== false)),
    free: async (s) => { await s.engine().free(); },
    // farm (server/farm): prompts on Redis for worker processes, or one executor per local device
    queueBackend: o.queue ? (ctx) => new RedisPromptQueue(ctx, { url: o.queue! })
      : o.devices && o.devices.length > 1 ? (ctx) => new MultiDeviceQueue(ctx, o.devices!, (device) => {
        const s = makeServices(services!.models, services!.dirs, { ep: r.ep, dataDir: r.dataDir, log: (m) => log(`[device ${device}] ${m}`), device: Number(device), isolation: deviceIsolation(r.ep) }, o.previews !== false);
        extraServices.push(s);
        return new Executor(ctx.executor.registry, s);
      }) : undefined,
  });
  const close = server.close;
  server.close = async () => { await close(); await services?.engine().close(); for (const s of extraServices) await s.engine().close(); };
  return server;
}
