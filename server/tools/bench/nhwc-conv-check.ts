/**
 * com.microsoft NhwcConv on ONNX Runtime's CUDA provider, against ONNX Conv, in fp16 (GraphOptions.nhwcConv):
 * - contract: one conv per shape as Conv (NCHW) and as NhwcConv with the weight stored [out, kh, kw, in] ('nhwc'),
 *   stored [out, in, kh, kw] like Conv's ('nhwc-w-oihw'), and fed as a graph input [out, kh, kw, in] with a
 *   constant bias ('nhwc-w-fed', what the LoRA 'inputs' mode gives it); max |diff| against Conv, or the error;
 * - speed: chains of `--chain` same-width convs (so host copies of the input and output weigh little) as Conv on NCHW,
 *   NhwcConv on NHWC, and NhwcConv between Transposes each ('nhwc-T': what ORT makes of un-cancelled moves, with the
 *   optimized model's op counts); median ms per conv over --runs runs after warm-up.
 * Prints one JSON report.
 *   node dist/server/tools/bench/nhwc-conv-check.js [--ep cuda] [--runs 50] [--chain 20] [--out FILE]
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type * as Ort from 'onnxruntime-node';
import { GraphBuilder, Value } from '../../engine/onnx/graph.js';
import { memoryWeights } from '../../engine/onnx/weights.js';
import { floatToHalfArray } from '../../engine/onnx/half.js';
import { halfToFloat } from '../../engine/io/safetensors.js';
import { median, opCheckRuntime, opCounts, randn } from './op-check.js';

const { values } = parseArgs({
  options: {
    ep: { type: 'string', default: 'cuda' },
    runs: { type: 'string', default: '50' },
    chain: { type: 'string', default: '20' },
    out: { type: 'string' },
  },
});
const runs = Number(values.runs),
  chain = Number(values.chain);
const { ort, ortPackage: ortPkg, session } = opCheckRuntime(values.ep!);

interface ConvShape {
  c: number;
  m: number;
  hw: number;
  k: number;
}
type Form = 'conv' | 'nhwc' | 'nhwc-w-oihw' | 'nhwc-w-fed' | 'nhwc-T';

/**
 * `n` convs of one shape in a row (n > 1 needs c === m), all with the same weight and bias (a chain for timing, its
 * weights the size of one conv's), in the given form; input `x`, output `y`.
 */
function convGraph(s: ConvShape, form: Form, n: number): GraphBuilder {
  const tensors = {
    w0: { shape: [s.m, s.c, s.k, s.k], data: randn(s.m * s.c * s.k * s.k, (s.c * s.k * s.k) ** -0.5, 1) },
    b0: { shape: [s.m], data: randn(s.m, 0.1, 2) },
  };
  const g = new GraphBuilder({ weights: memoryWeights(tensors), dtype: 'float16', fp16Io: true, name: form });
  const channelsLastIo = form === 'nhwc' || form === 'nhwc-w-oihw' || form === 'nhwc-w-fed';
  let h: Value = g.input('x', 'float16', channelsLastIo ? [1, s.hw, s.hw, s.c] : [1, s.c, s.hw, s.hw]);
  const attrs = { kernel_shape: [s.k, s.k], pads: Array(4).fill((s.k - 1) / 2), strides: [1, 1] };
  for (let i = 0; i < n; i++) {
    const bias = g.weight('b0');
    if (form === 'conv') h = g.op.Conv(h, g.weight('w0'), bias, attrs);
    else {
      let w: Value;
      if (form === 'nhwc-w-oihw') w = g.weight('w0');
      else if (form === 'nhwc-w-fed') w = i === 0 ? g.input('w0', 'float16', [s.m, s.k, s.k, s.c]) : new Value('w0');
      else w = g.weightNhwc('w0');
      // plain Transposes (not transposeOf): this form shows what ORT does with moves nobody cancelled
      if (form === 'nhwc-T') h = g.op.Transpose(h, { perm: [0, 2, 3, 1] });
      [h] = g.node('NhwcConv', [h, w, bias], attrs, 1, 'com.microsoft');
      if (form === 'nhwc-T') h = g.op.Transpose(h, { perm: [0, 3, 1, 2] });
    }
  }
  g.output(h, 'y', 'float16');
  return g;
}

function nhwcToNchw(a: Float32Array, hw: number, c: number): Float32Array {
  const out = new Float32Array(a.length);
  for (let p = 0; p < hw * hw; p++) for (let ch = 0; ch < c; ch++) out[ch * hw * hw + p] = a[p * c + ch];
  return out;
}

async function runOnce(s: ConvShape, form: Form, x: Float32Array) {
  const g = convGraph(s, form, 1);
  const sess = await session(g);
  const channelsLastIo = form !== 'conv';
  const feeds: Record<string, Ort.Tensor> = {
    x: new ort.Tensor(
      'float16',
      floatToHalfArray(channelsLastIo ? x.map((_, i) => x[(i % s.c) * s.hw * s.hw + Math.floor(i / s.c)]) : x),
      channelsLastIo ? [1, s.hw, s.hw, s.c] : [1, s.c, s.hw, s.hw],
    ),
  };
  if (form === 'nhwc-w-fed') {
    feeds.w0 = new ort.Tensor('float16', floatToHalfArray(g.readWeight('w0:nhwc')), [s.m, s.k, s.k, s.c]);
  }
  const y = (await sess.run(feeds)).y;
  await sess.release();
  const f = Float32Array.from(y.data as Uint16Array, halfToFloat);
  return channelsLastIo ? nhwcToNchw(f, s.hw, s.m) : f;
}

const contractShapes: ConvShape[] = [
  { c: 320, m: 320, hw: 128, k: 3 },
  { c: 640, m: 640, hw: 64, k: 3 },
  { c: 1280, m: 1280, hw: 32, k: 3 },
  { c: 640, m: 1280, hw: 32, k: 1 },
  { c: 4, m: 320, hw: 128, k: 3 },
  { c: 320, m: 4, hw: 128, k: 3 },
];
const contract = [];
for (const s of contractShapes) {
  const x = randn(s.c * s.hw * s.hw, 1, 7);
  const ref = await runOnce(s, 'conv', x);
  const refMax = ref.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const row: Record<string, unknown> = { shape: s, refMaxAbs: +refMax.toPrecision(4) };
  for (const form of ['nhwc', 'nhwc-w-oihw', 'nhwc-w-fed'] as const) {
    try {
      const y = await runOnce(s, form, x);
      row[form] = +y.reduce((m, v, i) => Math.max(m, Math.abs(v - ref[i])), 0).toPrecision(4);
    } catch (e) {
      row[form] = `error: ${(e as Error).message.slice(0, 300)}`;
    }
  }
  console.error(JSON.stringify(row));
  contract.push(row);
}

const speedShapes: ConvShape[] = [
  { c: 320, m: 320, hw: 128, k: 3 },
  { c: 640, m: 640, hw: 64, k: 3 },
  { c: 1280, m: 1280, hw: 32, k: 3 },
  { c: 320, m: 320, hw: 128, k: 1 },
  { c: 1280, m: 1280, hw: 32, k: 1 },
];
const dir = mkdtempSync(join(tmpdir(), 'nhwc-check-'));
const speed = [];
for (const s of speedShapes) {
  const row: Record<string, unknown> = { shape: s, chain };
  for (const form of ['conv', 'nhwc', 'nhwc-T'] as const) {
    try {
      // ORT's optimized model of the un-cancelled form: what its transpose optimizer leaves (one small shape)
      const optimized = form === 'nhwc-T' && s.c === 320 && s.k === 3 ? join(dir, 'nhwc-T.onnx') : undefined;
      const sess = await session(convGraph(s, form, chain), optimized);
      const dims = form === 'nhwc' ? [1, s.hw, s.hw, s.c] : [1, s.c, s.hw, s.hw];
      const feeds = { x: new ort.Tensor('float16', floatToHalfArray(randn(s.c * s.hw * s.hw, 1, 3)), dims) };
      for (let i = 0; i < 5; i++) await sess.run(feeds);
      const ms: number[] = [];
      for (let i = 0; i < runs; i++) {
        const t0 = performance.now();
        await sess.run(feeds);
        ms.push(performance.now() - t0);
      }
      await sess.release();
      row[form] = +(median(ms) / chain).toFixed(4);
      if (optimized) row[`${form} optimized ops`] = opCounts(optimized);
    } catch (e) {
      row[form] = `error: ${(e as Error).message.slice(0, 300)}`;
    }
  }
  console.error(JSON.stringify(row));
  speed.push(row);
}

const report = { ep: values.ep, ortPackage: ortPkg, runs, msPerConv: 'median run / chain', contract, speed };
const text = JSON.stringify(report, null, 1);
if (values.out) writeFileSync(values.out, text);
console.log(text);
