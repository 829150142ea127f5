/**
 * Several GPUs on one host, end to end: starts the real server in embedded mode with `devices` (one executor and
 * engine per GPU; WebGPU engines in child processes pinned by the Vulkan device-select layer), queues a burst of
 * TCD text-to-image prompts over HTTP with the typed client, and reports the wall time and what nvidia-smi saw on
 * each GPU (peak memory and utilisation). Run with --devices 0 and --devices 0,1 to compare.
 * Example (GPU host): node dist/server/tools/bench/multi-gpu.js --devices 0,1 --prompts 16 --arch sd15 --size 512 --ep webgpu
 */
import { execFile } from 'node:child_process';
import { linkSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { TcdClient } from '../../client-api/index.js';
import { serve } from '../../host.js';
import type { PresetName } from '../make-checkpoint.js';
import { benchCheckpoint } from './run.js';

interface GpuSample {
  index: number;
  memMiB: number;
  util: number;
}

function sampleGpus(): Promise<GpuSample[]> {
  return new Promise((resolve) => {
    execFile(
      'nvidia-smi',
      ['--query-gpu=index,memory.used,utilization.gpu', '--format=csv,noheader,nounits'],
      { timeout: 5000 },
      (err, out) => {
        if (err) {
          resolve([]);
          return;
        }
        resolve(
          String(out)
            .trim()
            .split('\n')
            .map((l) => l.split(',').map((v) => Number(v.trim())))
            .map(([index, memMiB, util]) => ({ index, memMiB, util })),
        );
      },
    );
  });
}

function prompt(ckpt: string, size: number, seed: number): Record<string, unknown> {
  return {
    ckpt: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: ckpt } },
    pos: {
      class_type: 'CLIPTextEncode',
      inputs: { text: 'a lighthouse on a cliff at dusk, detailed', clip: ['ckpt', 1] },
    },
    neg: { class_type: 'CLIPTextEncode', inputs: { text: '', clip: ['ckpt', 1] } },
    empty: { class_type: 'EmptyLatentImage', inputs: { width: size, height: size, batch_size: 1 } },
    tcd: {
      class_type: 'TCDSampler',
      inputs: {
        model: ['ckpt', 0],
        positive: ['pos', 0],
        negative: ['neg', 0],
        latent_image: ['empty', 0],
        seed,
        steps: 4,
        cfg: 1,
        eta: 0.3,
        denoise: 1,
        original_inference_steps: 50,
      },
    },
    decode: { class_type: 'VAEDecode', inputs: { samples: ['tcd', 0], vae: ['ckpt', 2] } },
    save: { class_type: 'SaveImage', inputs: { images: ['decode', 0], filename_prefix: `multi/${seed}` } },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      devices: { type: 'string', default: '0,1' },
      prompts: { type: 'string', default: '16' },
      arch: { type: 'string', default: 'sd15' },
      size: { type: 'string', default: '512' },
      ep: { type: 'string', default: 'webgpu' },
      port: { type: 'string', default: '8391' },
    },
  });
  const devices = values
    .devices!.split(',')
    .map((d) => d.trim())
    .filter(Boolean);
  const n = Number(values.prompts),
    size = Number(values.size);
  const log = (l: string) => console.error(l);
  const ckpt = await benchCheckpoint(values.arch as PresetName, log);
  const root = join(tmpdir(), 'tcd-bench', `serve-${devices.join('-')}`);
  rmSync(join(root, 'models'), { recursive: true, force: true });
  mkdirSync(join(root, 'models', 'checkpoints'), { recursive: true });
  // a hard link: the model folders refuse symlinks (they could point outside the folder)
  linkSync(ckpt.path, join(root, 'models', 'checkpoints', `${values.arch}.safetensors`));
  const server = await serve({
    port: Number(values.port),
    models: join(root, 'models'),
    data: join(tmpdir(), 'tcd-bench', 'serve-data'),
    output: join(root, 'output'),
    ep: values.ep,
    devices: devices.length > 1 ? devices : undefined,
    demo: false,
    previews: false,
    log: (m) => {
      if (!/^(GET|POST) /.test(m)) log(m);
    },
  });
  const client = new TcdClient({ url: server.url });
  const peak = new Map<number, { memMiB: number; util: number }>();
  const timer = setInterval(() => {
    void sampleGpus().then((s) =>
      s.forEach((g) => {
        const p = peak.get(g.index) ?? { memMiB: 0, util: 0 };
        peak.set(g.index, { memMiB: Math.max(p.memMiB, g.memMiB), util: Math.max(p.util, g.util) });
      }),
    );
  }, 300);
  try {
    // warm-up: one prompt per device loads every engine (graphs, sessions, shaders)
    const t0 = performance.now();
    await Promise.all(
      devices.map((_, i) => client.run(prompt(`${values.arch}.safetensors`, size, 1000 + i), { fetchImages: false })),
    );
    const warmS = (performance.now() - t0) / 1000;
    peak.clear();
    const t1 = performance.now();
    const done = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        client.run(prompt(`${values.arch}.safetensors`, size, i + 1), { fetchImages: false }),
      ),
    );
    const wallS = (performance.now() - t1) / 1000;
    const report = {
      devices,
      prompts: n,
      arch: values.arch,
      size,
      ep: values.ep,
      warmUpS: round(warmS),
      wallS: round(wallS),
      secondsPerImage: round(wallS / n),
      images: done.reduce((a, r) => a + r.images.length, 0),
      gpus: [...peak.entries()]
        .sort((a, b) => a[0] - b[0])
        .map(([index, p]) => ({ index, peakMemMiB: p.memMiB, peakUtilPct: p.util })),
    };
    console.log(JSON.stringify(report));
  } finally {
    clearInterval(timer);
    client.close();
    await server.close();
  }
}

const round = (x: number) => Math.round(x * 1000) / 1000;

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.stack : e);
  process.exitCode = 1;
});
