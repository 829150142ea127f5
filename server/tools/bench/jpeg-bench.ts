/**
 * Preview JPEG encoding time: the project's encoder (server/storage/jpeg.ts) against jpeg-js, which rebuilt its tables
 * on every call, on a smooth test image at preview sizes (latent2rgb previews are latent-sized, TAESD ones up to 512).
 * Example: npx tsx server/tools/bench/jpeg-bench.ts --sizes 64,128,512 --runs 20
 */
import { parseArgs } from 'node:util';
import jpeg from 'jpeg-js';
import { encodeJpeg } from '../../storage/jpeg.js';
import { median } from './op-check.js';

const { values } = parseArgs({
  options: { sizes: { type: 'string', default: '64,128,512' }, runs: { type: 'string', default: '20' } },
});
const runs = Number(values.runs);
const time = (f: () => unknown) => {
  f(); // warm-up
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    f();
    ms.push(performance.now() - t);
  }
  return +median(ms).toFixed(2);
};
const rows = values.sizes!.split(',').map((v) => {
  const s = Number(v);
  const px = new Uint8Array(s * s * 4);
  for (let i = 0; i < s * s; i++)
    for (let c = 0; c < 3; c++) px[i * 4 + c] = 128 + 100 * Math.sin((i % s) / 9 + c) * Math.cos(i / s / 7 - c);
  return {
    size: s,
    projectMs: time(() => encodeJpeg(px, s, s, 4, 80)),
    jpegJsMs: time(() => jpeg.encode({ data: px, width: s, height: s }, 80)),
  };
});
console.log(JSON.stringify({ quality: 80, runs, rows }, null, 1));
