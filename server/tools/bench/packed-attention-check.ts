/**
 * The packed attention form (GraphOptions.packedAttention) on ONNX Runtime's CUDA provider, in fp16, with the real
 * SD1.5 512 / SDXL 1024 attention shapes at batch 2 (CFG) and random weights:
 * - contract: one attention as q, k, v MatMuls into MultiHeadAttention ('plain'), as the packed form ('packed': one
 *   MatMul, reshaped to packed QKV / KV) and as its CPU twin ('twin'); max |diff| of each against 'plain', or the error
 *   (the CPU EP runs no packed input: there 'packed' reports its error and 'twin' the layout check);
 * - speed: chains of `--chain` attentions of one shape (each reads the previous output), median ms per attention over
 *   --runs runs after warm-up, and the node counts of ORT's optimized model of each form (what it fused or added).
 * Prints one JSON report.
 *   node dist/server/tools/bench/packed-attention-check.js [--ep cuda] [--shapes sd15,sdxl] [--runs 20] [--chain 10]
 *     [--out FILE]
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type * as Ort from 'onnxruntime-node';
import { attention, linear } from '../../engine/model/blocks.js';
import { packedAttention } from '../../engine/model/packed-attention.js';
import { GraphBuilder, type Value } from '../../engine/onnx/graph.js';
import { memoryWeights } from '../../engine/onnx/weights.js';
import { floatToHalfArray } from '../../engine/onnx/half.js';
import { halfToFloat } from '../../engine/io/safetensors.js';
import { median, opCheckRuntime, opCounts, randn } from './op-check.js';

const { values } = parseArgs({
  options: {
    ep: { type: 'string', default: 'cuda' },
    shapes: { type: 'string', default: 'sd15,sdxl' },
    runs: { type: 'string', default: '20' },
    chain: { type: 'string', default: '10' },
    out: { type: 'string' },
  },
});
const runs = Number(values.runs),
  chain = Number(values.chain);
const { ort, ortPackage: ortPkg, session } = opCheckRuntime(values.ep!);

/** One attention: width c in `heads` heads over s tokens; cross-attention reads a context of l tokens of width ctx. */
interface AttnShape {
  name: string;
  c: number;
  heads: number;
  s: number;
  cross?: { l: number; ctx: number };
}
const SHAPES: Record<string, AttnShape[]> = {
  // SD1.5 at 512: 8 heads; latent 64x64 -> 4096 / 1024 / 256 tokens; text context 77 x 768
  sd15: [
    { name: 'sd15 self 320', c: 320, heads: 8, s: 4096 },
    { name: 'sd15 cross 320', c: 320, heads: 8, s: 4096, cross: { l: 77, ctx: 768 } },
    { name: 'sd15 self 1280', c: 1280, heads: 8, s: 256 },
    { name: 'sd15 cross 1280', c: 1280, heads: 8, s: 256, cross: { l: 77, ctx: 768 } },
  ],
  // SDXL at 1024: heads of 64 channels; latent 128x128 -> 4096 / 1024 tokens at the attention levels; context 77 x 2048
  sdxl: [
    { name: 'sdxl self 640', c: 640, heads: 10, s: 4096 },
    { name: 'sdxl cross 640', c: 640, heads: 10, s: 4096, cross: { l: 77, ctx: 2048 } },
    { name: 'sdxl self 1280', c: 1280, heads: 20, s: 1024 },
    { name: 'sdxl cross 1280', c: 1280, heads: 20, s: 1024, cross: { l: 77, ctx: 2048 } },
  ],
  // a smoke test that runs anywhere
  tiny: [
    { name: 'tiny self', c: 64, heads: 4, s: 64 },
    { name: 'tiny cross', c: 64, heads: 4, s: 64, cross: { l: 7, ctx: 32 } },
  ],
};
const BATCH = 2;
type Form = 'plain' | 'packed' | 'twin';

/** `n` attentions of one shape in a row, all with the same to_q/k/v weights (to_out left out), in the given form. */
function attentionGraph(sh: AttnShape, form: Form, n: number): GraphBuilder {
  const kvIn = sh.cross?.ctx ?? sh.c;
  const w = (rows: number, cols: number, seed: number) => ({
    shape: [rows, cols],
    data: randn(rows * cols, cols ** -0.5, seed),
  });
  const weights = memoryWeights({
    'a.to_q.weight': w(sh.c, sh.c, 1),
    'a.to_k.weight': w(sh.c, kvIn, 2),
    'a.to_v.weight': w(sh.c, kvIn, 3),
  });
  const g = new GraphBuilder({
    weights,
    dtype: 'float16',
    fp16Io: true,
    fusedAttention: true,
    linear: 'matmul',
    packedAttention: form === 'plain' ? false : form === 'packed' ? true : 'cpu-twin',
    name: form,
  });
  let h: Value = g.input('x', 'float16', [BATCH, sh.s, sh.c]);
  const ctx = sh.cross ? g.input('ctx', 'float16', [BATCH, sh.cross.l, sh.cross.ctx]) : null;
  const split = { heads: sh.heads, headDim: sh.c / sh.heads };
  for (let i = 0; i < n; i++) {
    const kv = ctx ?? h;
    h =
      packedAttention(g, 'a', h, kv, kv, split) ??
      attention(g, linear(g, 'a.to_q', h), linear(g, 'a.to_k', kv), linear(g, 'a.to_v', kv), split);
  }
  g.output(h, 'y', 'float16');
  return g;
}

function feedsFor(sh: AttnShape): Record<string, Ort.Tensor> {
  const x = new ort.Tensor('float16', floatToHalfArray(randn(BATCH * sh.s * sh.c, 1, 7)), [BATCH, sh.s, sh.c]);
  if (!sh.cross) return { x };
  const { l, ctx } = sh.cross;
  return { x, ctx: new ort.Tensor('float16', floatToHalfArray(randn(BATCH * l * ctx, 1, 8)), [BATCH, l, ctx]) };
}

const dir = mkdtempSync(join(tmpdir(), 'packed-check-'));
const contract = [];
const speed = [];
for (const sh of values.shapes.split(',').flatMap((k) => SHAPES[k] ?? [])) {
  const feeds = feedsFor(sh);
  const outputs = new Map<Form, Float32Array>();
  const row: Record<string, unknown> = { shape: sh };
  for (const form of ['plain', 'packed', 'twin'] as const) {
    try {
      const sess = await session(attentionGraph(sh, form, 1));
      const y = (await sess.run(feeds)).y;
      await sess.release();
      outputs.set(form, Float32Array.from(y.data as Uint16Array, halfToFloat));
      const ref = outputs.get('plain')!;
      const got = outputs.get(form)!;
      row[form] = +got.reduce((m, v, i) => Math.max(m, Math.abs(v - ref[i])), 0).toPrecision(4);
    } catch (e) {
      row[form] = `error: ${(e as Error).message.slice(0, 300)}`;
    }
  }
  console.error(JSON.stringify(row));
  contract.push(row);

  const timed: Record<string, unknown> = { shape: sh.name, chain };
  for (const form of ['plain', 'packed'] as const) {
    try {
      const optimized = join(dir, `${sh.name.replace(/ /g, '-')}-${form}.onnx`);
      const sess = await session(attentionGraph(sh, form, chain), optimized);
      for (let i = 0; i < 3; i++) await sess.run(feeds);
      const ms: number[] = [];
      for (let i = 0; i < runs; i++) {
        const t0 = performance.now();
        await sess.run(feeds);
        ms.push(performance.now() - t0);
      }
      await sess.release();
      timed[form] = +(median(ms) / chain).toFixed(4);
      timed[`${form} optimized ops`] = opCounts(optimized);
    } catch (e) {
      timed[form] = `error: ${(e as Error).message.slice(0, 300)}`;
    }
  }
  console.error(JSON.stringify(timed));
  speed.push(timed);
}

const report = {
  ep: values.ep,
  ortPackage: ortPkg,
  batch: BATCH,
  runs,
  msPerAttention: 'median run / chain',
  contract,
  speed,
};
const text = JSON.stringify(report, null, 1);
if (values.out) writeFileSync(values.out, text);
console.log(text);
