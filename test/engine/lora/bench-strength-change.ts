/**
 * Measures what a LoRA strength change costs in the worker: recomputing the patched weights (ORT Gemm per weight)
 * for every LoRA-patchable UNet weight of the real SDXL layout (the real-size preset's keys and shapes, random values),
 * at a given rank. The sessions are not rebuilt and the checkpoint is not read on a strength change, so this is the
 * whole cost besides the next UNet run. Not a test (no assertions); run by hand:
 *   npx tsx test/engine/lora/bench-strength-change.ts [rank=64] [fraction of keys=1] [model=sdxl]
 */
import { cpus } from 'node:os';
import { checkpointKeys } from '../../../server/engine/model/checkpoint-layout.js';
import { presetConfig } from '../../../server/tools/make-checkpoint.js';
import { loraKeyMap, patchableKeys } from '../../../server/engine/lora/key-map.js';
import type { PatchTerm } from '../../../server/engine/lora/patch.js';
import { patchWithOrt } from '../../../server/engine/lora/patcher.js';

const rank = Number(process.argv[2] ?? 64);
const fraction = Number(process.argv[3] ?? 1);
const model = (process.argv[4] ?? 'sdxl') as 'sdxl' | 'sd15';
const config = presetConfig(model);
const keys = Object.fromEntries(checkpointKeys(config).map((k) => [k.name, k.shape]));
const map = loraKeyMap(config, (k) => keys[k], Object.keys(keys));
const all = patchableKeys(map, 'unet');
// every k-th key, so a fraction still samples all block kinds and sizes
const stride = Math.max(1, Math.round(1 / fraction));
const chosen = all.filter((_, i) => i % stride === 0);

function fill(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}

let values = 0,
  macs = 0,
  ms = 0;
for (const [i, key] of chosen.entries()) {
  const shape = keys[key];
  const cols = shape.slice(1).reduce((a, b) => a * b, 1);
  const base = fill(shape[0] * cols, i);
  const r = Math.min(rank, shape[0], cols);
  const term: PatchTerm = {
    target: { component: 'unet', key },
    factor: 0.5,
    module: {
      name: key,
      format: 'kohya',
      rank: r,
      alpha: null,
      keys: [],
      up: { shape: [shape[0], r], data: fill(shape[0] * r, i + 1) },
      down: { shape: [r, cols], data: fill(r * cols, i + 2) },
    },
  };
  const t0 = performance.now();
  await patchWithOrt([term], base, shape);
  ms += performance.now() - t0;
  values += base.length;
  macs += shape[0] * r * cols;
}
console.log(
  `${model} UNet, ${chosen.length}/${all.length} patchable weights (${(values / 1e9).toFixed(3)}e9 values), rank ${rank}, ${cpus().length} CPUs:`,
);
console.log(
  `strength change = ${(ms / 1000).toFixed(2)} s patch compute (${(macs / 1e9).toFixed(1)} GMAC, ${(values / (ms / 1000) / 1e9).toFixed(2)}e9 weights/s)`,
);
