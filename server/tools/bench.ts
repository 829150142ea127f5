/**
 * `npm run bench -- --arch sdxl|sd15|demo --size N --steps K --ep cpu|webgpu|cuda [--checkpoint PATH] [--images N]
 *  [--lora FILE | --lora-rank R] [--out FILE]`: times a TCD text-to-image generation (model load, session creation, text encoding, each UNet
 * step, VAE decode, seconds per image, peak RAM and GPU memory) and prints the report as JSON on stdout (progress
 * goes to stderr). Without --checkpoint it uses a seeded random checkpoint of the arch's real size, written once to
 * <tmp>/tcd-bench/. GPU knobs for experiments (server/settings.ts): TCD_GPU_LAYOUT, TCD_GPU_ATTENTION, TCD_GPU_GRAPH_CAPTURE,
 * TCD_GPU_LINEAR, TCD_GPU_LORA, TCD_GPU_VAE_ATTENTION, TCD_ORT_PROFILE_DIR (server/engine/runtime/providers.ts).
 * --loop js runs the TCD loop in JS with one engine.unet call per step (latent round trips) instead of in the worker.
 * --lora-rank R runs the UNet with a seeded random kohya LoRA of rank R over every patchable UNet weight.
 * Example: npm run bench -- --arch sd15 --size 256 --steps 4 --ep cpu
 *          node dist/server/tools/bench.js --arch sdxl --size 1024 --steps 4 --ep webgpu --out /tmp/sdxl.json
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { PRESETS, type PresetName } from './make-checkpoint.js';
import { runBench } from './bench/run.js';
import { gpuTuningOf, settingsFromEnv } from '../settings.js';

const USAGE =
  'usage: bench --arch sdxl|sd15|demo --size N --steps K --ep cpu|webgpu|cuda [--checkpoint PATH] [--images N] [--lora FILE | --lora-rank R] [--loop worker|js] [--cfg S] [--device N] [--out FILE]';

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      arch: { type: 'string' },
      size: { type: 'string' },
      steps: { type: 'string', default: '4' },
      ep: { type: 'string', default: 'cpu' },
      checkpoint: { type: 'string' },
      images: { type: 'string', default: '2' },
      out: { type: 'string' },
      'cache-dir': { type: 'string' },
      lora: { type: 'string' },
      'lora-rank': { type: 'string' },
      loop: { type: 'string', default: 'worker' },
      device: { type: 'string' },
      cfg: { type: 'string', default: '1' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const arch = values.arch as PresetName | undefined;
  // the inpainting presets need concat channels the bench does not feed
  const archs = PRESETS.filter((a) => !a.endsWith('-inpaint'));
  if (!arch || !archs.includes(arch)) {
    console.error(`--arch must be one of ${archs.join(', ')}\n${USAGE}`);
    return 2;
  }
  const size = Number(values.size ?? (arch === 'sdxl' ? 1024 : 512));
  if (values.loop !== 'worker' && values.loop !== 'js') {
    console.error(`--loop must be worker or js, got ${values.loop}\n${USAGE}`);
    return 2;
  }
  const report = await runBench({
    arch,
    size,
    steps: Number(values.steps),
    ep: values.ep!,
    checkpoint: values.checkpoint,
    images: Number(values.images),
    cacheDir: values['cache-dir'],
    lora: values.lora,
    loraRank: values['lora-rank'] ? Number(values['lora-rank']) : undefined,
    loop: values.loop as 'worker' | 'js',
    cfg: Number(values.cfg),
    ...(values.device !== undefined ? { device: Number(values.device) } : {}),
    tuning: gpuTuningOf(settingsFromEnv(process.env)), // the bench's one read of the TCD_GPU_* variables
  });
  const json = JSON.stringify(report, null, 2);
  if (values.out) writeFileSync(values.out, json + '\n');
  console.log(json);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
    process.exitCode = 1;
  },
);
