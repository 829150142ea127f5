/**
 * The composition root: builds node services (engine, folders) and starts the server with the node registry.
 * It takes resolved settings (server/settings.ts: the command line reads flags and environment once); what is not
 * given keeps its default, relative folders from the working directory.
 */
import { resolve, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { createRegistry } from '../nodes/index.js';
import type { NodeServices } from '../nodes/services.js';
import { Engine, checkRequestedProvider, type EngineOptions } from './engine/engine.js';
import { gpuTuningOf, settingsWith, type Settings } from './settings.js';
import { ensureDemoCheckpoint } from './tools/make-checkpoint.js';
import { ensureDemoControlNet } from './tools/make-controlnet.js';
import { ensureDemoUpscaleModel } from './tools/make-upscale-model.js';
import { startServer, type RunningServer } from './app/server.js';
import type { LogBuffer } from './app/log-buffer.js';
import type { ModelFolders } from './storage/model-folders.js';
import { loadExtraModelPaths } from './storage/extra-model-paths.js';
import { Executor } from './executor/execute.js';
import { RedisBackend } from './farm/redis-queue.js';
import { MultiDeviceBackend } from './farm/multi-device.js';

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), existsUp());
function existsUp(): string {
  // dist/server/host.js sits two levels below the root, server/host.ts one
  return fileURLToPath(import.meta.url).includes(`${'/dist/'}`) ? '../..' : '..';
}

export function packageVersion(): string {
  try {
    return JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')).version;
  } catch {
    return '0.0.0';
  }
}

/** What `serve` takes: settings (server/settings.ts; unset ones keep their defaults, no environment is read). */
export type HostOptions = Partial<Settings> & { log?: (m: string) => void; logBuffer?: LogBuffer };

/** The engine options the settings give (folders, provider, budgets, GPU tuning). */
export function engineOptions(s: Settings, log: (m: string) => void): EngineOptions {
  return {
    ep: s.ep,
    dataDir: s.data,
    log,
    device: s.device,
    isolation: s.isolation,
    maxRssMB: s.engineMaxRssMB,
    ramBudgetMB: s.ramBudgetMB,
    vramBudgetMB: s.vramBudgetMB,
    graphCacheMB: s.graphCacheMB,
    tuning: gpuTuningOf(s),
  };
}

/** Node services with a lazily started engine. */
export function makeServices(
  models: ModelFolders,
  dirs: NodeServices['dirs'],
  engineOpts: EngineOptions,
  previews = true,
  previewMethod: NodeServices['previewMethod'] = 'latent2rgb',
): NodeServices {
  let engine: Engine | null = null;
  return { dirs, models, previews, previewMethod, engine: () => (engine ??= new Engine(engineOpts)) };
}

/** The preview drawing a --preview-method asks for ('none' is handled by the previews switch). */
export function previewKind(method: string | undefined): NodeServices['previewMethod'] {
  return method === 'taesd' ? 'taesd' : 'latent2rgb';
}

/**
 * One engine per local GPU (serve --devices): WebGPU picks its GPU per process (the Vulkan device-select layer reads
 * the process environment), so WebGPU engines run in child processes; CUDA takes a deviceId per session and keeps the
 * configured isolation (--isolation, default thread).
 */
export function deviceIsolation(
  ep: string | undefined,
  configured?: 'thread' | 'process',
): 'thread' | 'process' | undefined {
  return (ep ?? '').trim().toLowerCase() === 'webgpu' ? 'process' : configured;
}

/** Start the full server (the `serve` command). Creates the demo checkpoint when models/checkpoints has none. */
export async function serve(o: HostOptions = {}): Promise<RunningServer<NodeServices>> {
  const log = o.log ?? ((m: string) => console.log(m));
  const r = settingsWith(o);
  checkRequestedProvider(r.ep); // --ep cuda on a machine without it: exit now, saying what is missing
  const engine = engineOptions(r, log);
  if (r.demo) {
    const p = await ensureDemoCheckpoint(r.models);
    await ensureDemoControlNet(r.models); // workflows/controlnet.json's ControlNet (matches the demo model)
    log(`demo model: ${p} (random weights: it draws noise-like images until you add a real checkpoint)`);
    await ensureDemoUpscaleModel(r.models); // a few KB: lets the esrgan-upscale workflow run out of the box
  }
  const extra = loadExtraModelPaths(r.extraModelPaths);
  if (extra.file)
    log(
      `extra model folders from ${extra.file}: ${
        Object.entries(extra.paths)
          .map(([k, v]) => `${k} (${v.length})`)
          .join(', ') || 'none'
      }`,
    );
  let services: NodeServices | null = null;
  const extraServices: NodeServices[] = [];
  const server = await startServer<NodeServices>({
    host: r.listen,
    port: r.port,
    modelsDir: r.models,
    dataDir: r.data,
    outputDir: r.output,
    inputDir: r.input,
    tempDir: r.temp,
    token: r.token,
    corsOrigin: r.cors,
    workflowsDir: join(PROJECT_ROOT, 'workflows'),
    clientDir: join(PROJECT_ROOT, 'dist', 'client'),
    frontEndRoot: r.frontEndRoot,
    modelCatalog: r.catalog,
    extraModelPaths: extra.paths,
    version: packageVersion(),
    registry: createRegistry(),
    log,
    logBuffer: o.logBuffer,
    // the engine runs in a child process with a memory limit by default: whatever slips past admission kills only it
    makeServices: ({ models, dirs }) =>
      (services = makeServices(
        models,
        dirs,
        { ...engine, isolation: r.isolation ?? 'process' },
        r.previews,
        previewKind(r.previewMethod),
      )),
    free: async (s) => {
      await s.engine().free();
    },
    // farm (server/farm): prompts on Redis for worker processes, or one executor per local device
    queueBackend: r.queue
      ? (ctx) => new RedisBackend(ctx, { url: r.queue! })
      : r.devices && r.devices.length > 1
        ? (ctx) =>
            new MultiDeviceBackend(ctx, r.devices!, (device) => {
              const s = makeServices(
                services!.models,
                services!.dirs,
                {
                  ...engine,
                  log: (m) => log(`[device ${device}] ${m}`),
                  device: Number(device),
                  isolation: deviceIsolation(r.ep, r.isolation),
                },
                r.previews,
                previewKind(r.previewMethod),
              );
              extraServices.push(s);
              return new Executor(ctx.executor.registry, s);
            })
        : undefined,
  });
  const close = server.close;
  server.close = async () => {
    await close();
    await services?.engine().close();
    for (const s of extraServices) await s.engine().close();
  };
  return server;
}
