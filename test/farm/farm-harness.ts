/**
 * Test farm on loopback: a real redis-server (own port, temp dir, AOF on), the API server in this process with
 * `queue: redis://...`, workers as child processes of the real CLI (so a test can kill -9 one). Tests skip visibly
 * when redis-server is not installed: `{ skip: redisSkip() }`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, linkSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import { ensureDemoCheckpoint, DEMO_CHECKPOINT_NAME } from '../../server/tools/make-checkpoint.js';
import { KEYS, aliveWorkers, type WorkerState } from '../../server/farm/protocol.js';
import { serve } from '../../server/host.js';
import type { RunningServer } from '../../server/app/server.js';
import type { NodeServices } from '../../nodes/services.js';

export function redisSkip(): string | false {
  return spawnSync('redis-server', ['--version']).status === 0
    ? false
    : 'redis-server is not installed (apt-get install -y redis-server)';
}

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
    s.on('error', rej);
  });
}

export class RedisProcess {
  proc: ChildProcess | null = null;
  constructor(
    readonly port: number,
    readonly dir: string,
  ) {}
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }
  async start(): Promise<void> {
    this.proc = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--dir',
        this.dir,
        '--appendonly',
        'yes',
        '--save',
        '',
        '--protected-mode',
        'no',
      ],
      { stdio: 'ignore' },
    );
    const deadline = Date.now() + 10000;
    for (;;) {
      const r = new Redis({ port: this.port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
      r.on('error', () => {});
      try {
        await r.connect();
        await r.ping();
        r.disconnect();
        break;
      } catch {
        r.disconnect();
        if (this.proc.exitCode !== null || Date.now() > deadline) throw new Error('redis-server did not start');
        await sleep(100);
      }
    }
  }
  /** SIGTERM: redis flushes the AOF and exits. */
  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    await new Promise<void>((r) => {
      p.once('exit', () => r());
      p.kill('SIGTERM');
    });
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface FarmDirs {
  root: string;
  models: string;
  output: string;
  input: string;
  temp: string;
  data: string;
}

/** Shared folders plus the demo checkpoint. */
export async function farmDirs(): Promise<FarmDirs> {
  const root = mkdtempSync(join(tmpdir(), 'tcd-farm-'));
  const d = {
    root,
    models: join(root, 'models'),
    output: join(root, 'output'),
    input: join(root, 'input'),
    temp: join(root, 'temp'),
    data: join(root, 'data'),
  };
  for (const p of Object.values(d)) mkdirSync(p, { recursive: true });
  await ensureDemoCheckpoint(d.models);
  return d;
}

/** A worker's own models folder holding (links to) the given checkpoints of the shared one. */
export function workerModels(d: FarmDirs, name: string, ckpts: string[] = [DEMO_CHECKPOINT_NAME]): string {
  const dir = join(d.root, `models-${name}`, 'checkpoints');
  mkdirSync(dir, { recursive: true });
  for (const c of ckpts) linkSync(join(d.models, 'checkpoints', c), join(dir, c)); // hard link: the model list skips symlinks
  return join(d.root, `models-${name}`);
}

/** `tcd-studio worker` as a child process; resolves once it advertises itself in Redis. */
export async function spawnWorker(
  redisUrl: string,
  d: FarmDirs,
  id: string,
  extra: string[] = [],
  models = workerModels(d, id),
  o: { dataName?: string; env?: Record<string, string> } = {},
): Promise<ChildProcess> {
  const cli = resolve('server/cli.ts');
  const p = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      cli,
      'worker',
      '--queue',
      redisUrl,
      '--id',
      id,
      '--models',
      models,
      '--output',
      d.output,
      '--input',
      d.input,
      '--temp',
      d.temp,
      '--data',
      join(d.data, o.dataName ?? id),
      '--ep',
      'cpu',
      '--lock-ms',
      '3000',
      '--stalled-ms',
      '1000',
      ...extra,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...o.env } },
  );
  p.stdout!.on('data', (b) => {
    if (process.env.FARM_DEBUG) process.stderr.write(`[${id}] ${b}`);
  });
  p.stderr!.on('data', (b) => {
    if (process.env.FARM_DEBUG) process.stderr.write(`[${id}!] ${b}`);
  });
  const deadline = Date.now() + 60000;
  while (!(await workerStates(redisUrl)).some((w) => w.id === id)) {
    if (p.exitCode !== null) throw new Error(`worker ${id} exited with ${p.exitCode}`);
    if (Date.now() > deadline) throw new Error(`worker ${id} did not register`);
    await sleep(200);
  }
  return p;
}

export async function workerStates(redisUrl: string): Promise<WorkerState[]> {
  const r = new Redis(redisUrl);
  try {
    return aliveWorkers(await r.hgetall(KEYS.workers));
  } finally {
    r.disconnect();
  }
}

/**
 * Prompts each registered worker counted as done, alive or not: on a loaded machine a worker's heartbeat can be older
 * than the liveness TTL while its last published count is still the one to check.
 */
export async function doneCounts(redisUrl: string): Promise<Record<string, number>> {
  const r = new Redis(redisUrl);
  try {
    const all = await r.hgetall(KEYS.workers);
    return Object.fromEntries(
      Object.values(all)
        .map((v) => JSON.parse(v) as WorkerState)
        .map((w) => [w.id, w.done]),
    );
  } finally {
    r.disconnect();
  }
}

export async function stopWorker(p: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  await new Promise<void>((r) => {
    p.once('exit', () => r());
    p.kill(signal);
  });
}

export function removeDirs(d: FarmDirs): void {
  rmSync(d.root, { recursive: true, force: true });
}

/**
 * The API server in this process, on a free port and d's folders, queueing on the Redis at `queueUrl` (which need
 * not be up yet). `o.data` replaces d.data (several servers side by side), `o.log` receives its log lines.
 */
export function serveFarm(
  d: FarmDirs,
  queueUrl: string,
  o: { data?: string; log?: (m: string) => void } = {},
): Promise<RunningServer<NodeServices>> {
  return serve({
    port: 0,
    listen: '127.0.0.1',
    models: d.models,
    data: o.data ?? d.data,
    output: d.output,
    input: d.input,
    temp: d.temp,
    queue: queueUrl,
    log: o.log ?? (() => {}),
  });
}

/** A redis-server on a free port (data in d.data) and the API server in this process queueing on it. */
export async function startFarmServer(
  d: FarmDirs,
): Promise<{ redis: RedisProcess; server: RunningServer<NodeServices> }> {
  const redis = new RedisProcess(await freePort(), d.data);
  await redis.start();
  return { redis, server: await serveFarm(d, redis.url) };
}

/** Stops what startFarmServer started and removes the folders. */
export async function stopFarmServer(
  f: { redis: RedisProcess; server: RunningServer<NodeServices> },
  d: FarmDirs,
): Promise<void> {
  await f.server.close();
  await f.redis.stop();
  removeDirs(d);
}

/** The 64x64, 4-step demo prompt. */
export function demoPrompt(
  o: { seed?: number; steps?: number; size?: number; prefix?: string; ckpt?: string; text?: string } = {},
) {
  return {
    ckpt: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: o.ckpt ?? DEMO_CHECKPOINT_NAME } },
    pos: { class_type: 'CLIPTextEncode', inputs: { text: o.text ?? 'a lighthouse', clip: ['ckpt', 1] } },
    empty: { class_type: 'EmptyLatentImage', inputs: { width: o.size ?? 64, height: o.size ?? 64, batch_size: 1 } },
    tcd: {
      class_type: 'TCDSampler',
      inputs: {
        model: ['ckpt', 0],
        positive: ['pos', 0],
        negative: ['pos', 0],
        latent_image: ['empty', 0],
        seed: o.seed ?? 1,
        steps: o.steps ?? 4,
        cfg: 1,
        eta: 0.3,
        denoise: 1,
        original_inference_steps: 50,
      },
    },
    decode: { class_type: 'VAEDecode', inputs: { samples: ['tcd', 0], vae: ['ckpt', 2] } },
    save: { class_type: 'SaveImage', inputs: { images: ['decode', 0], filename_prefix: o.prefix ?? 'farm' } },
  };
}
