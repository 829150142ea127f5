/**
 * Times ImageUpscaleWithModel's work on a RealESRGAN_x4plus-sized RRDBNet (64 features, 23 blocks, growth 32,
 * random weights written once to <tmp>/tcd-bench/): the first call (graph build + session), then a whole image of
 * --size pixels through ComfyUI's tiling (512 tiles, overlap 32), and checks the provider against the CPU on a small
 * image. Prints one JSON report.
 *   node dist/server/tools/bench/upscale-bench.js --ep cuda --size 1024 [--out FILE]
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Engine } from '../../engine/engine.js';
import { tiledScale } from '../../engine/ops/tiled-scale.js';
import { makeEsrganModel } from '../make-upscale-model.js';

const { values } = parseArgs({
  options: {
    ep: { type: 'string', default: 'cpu' },
    size: { type: 'string', default: '512' },
    out: { type: 'string' },
  },
});
const size = Number(values.size);
const dir = join(tmpdir(), 'tcd-bench');
mkdirSync(dir, { recursive: true });
const path = join(dir, 'esrgan-x4plus-random.safetensors');
if (!existsSync(path))
  await makeEsrganModel({
    spec: {
      layout: 'basicsr',
      prefix: '',
      inChannels: 3,
      outChannels: 3,
      features: 64,
      blocks: 23,
      growth: 32,
      upsamples: 2,
      unshuffle: 1,
    },
    out: path,
    seed: 1,
  });

const image = (s: number) => ({
  shape: [1, 3, s, s],
  data: Float32Array.from({ length: 3 * s * s }, (_, i) => 0.5 + 0.4 * Math.sin(i * 0.013)),
});
const engine = new Engine({ ep: values.ep, log: (l) => console.error(l) });
const ref = { path };
const t0 = performance.now();
const small = await engine.upscaleImage(ref, image(64));
const coldMs = performance.now() - t0;
let maxDiffVsCpu: number | null = null;
if (values.ep !== 'cpu') {
  const cpu = new Engine({ ep: 'cpu', log: () => {} });
  const c = await cpu.upscaleImage(ref, image(64));
  maxDiffVsCpu = c.data.reduce((m, v, i) => Math.max(m, Math.abs(v - small.data[i])), 0);
  await cpu.close();
}
const tiles: number[] = [];
let last = performance.now();
const t1 = performance.now();
const out = await tiledScale(image(size), (t) => engine.upscaleImage(ref, t), {
  tile: 512,
  overlap: 32,
  scale: 4,
  onTile: () => {
    const now = performance.now();
    tiles.push(Math.round(now - last));
    last = now;
  },
});
const report = {
  ep: values.ep,
  model: 'RRDBNet 64 features, 23 blocks, x4 (RealESRGAN_x4plus size, random weights)',
  coldFirstCallMs: Math.round(coldMs),
  image: `${size}x${size} -> ${out.shape[3]}x${out.shape[2]}`,
  wholeImageMs: Math.round(performance.now() - t1),
  tileMs: tiles,
  maxDiffVsCpu,
};
await engine.close();
const text = JSON.stringify(report, null, 2);
if (values.out) writeFileSync(values.out, text);
console.log(text);
