/**
 * The graph builder, serialiser and blocks run in onnxruntime (CPU EP) and match hand computations in plain JS.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, statSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder } from '../../../server/engine/onnx/graph.js';
import { serializeModel, writeModel } from '../../../server/engine/onnx/serialize.js';
import { createSession, runSession } from '../../../server/engine/onnx/session.js';
import { memoryWeights } from '../../../server/engine/onnx/weights.js';
import { onnxProto, DataType } from '../../../server/engine/onnx/schema.js';
import {
  attention,
  conv2d,
  gelu,
  groupNorm,
  layerNorm,
  linear,
  quickGelu,
  upsampleNearest2x,
} from '../../../server/engine/model/blocks.js';
import { maxAbsDiff } from '../../helpers/fixtures.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return (s / 2 ** 32) * 2 - 1;
  };
}
function rand(n: number, r: () => number): Float32Array {
  return Float32Array.from({ length: n }, r);
}
function erf(x: number): number {
  // Abramowitz-Stegun 7.1.26 is too coarse; use a series / continued fraction mix
  const t = Math.abs(x);
  if (t < 3) {
    let sum = 0,
      term = t,
      k = 0;
    while (Math.abs(term) > 1e-17 * Math.abs(sum) || k < 3) {
      sum += term / (2 * k + 1);
      k++;
      term *= (-t * t) / k;
      if (k > 200) break;
    }
    return ((Math.sign(x) * 2) / Math.sqrt(Math.PI)) * sum;
  }
  return Math.sign(x);
}

test('linear + gelu + quick_gelu + layer norm match a hand computation', async () => {
  const r = rng(1);
  const [B, T, I, O] = [2, 3, 4, 5];
  const W = rand(O * I, r),
    b = rand(O, r),
    lw = rand(O, r),
    lb = rand(O, r),
    x = rand(B * T * I, r);
  const weights = memoryWeights({
    'm.fc.weight': { shape: [O, I], data: W },
    'm.fc.bias': { shape: [O], data: b },
    'm.ln.weight': { shape: [O], data: lw },
    'm.ln.bias': { shape: [O], data: lb },
  });
  const g = new GraphBuilder({ weights });
  const xi = g.input('x', 'float32', ['B', 'T', I]);
  const h = linear(g, 'm.fc', xi);
  g.output(layerNorm(g, 'm.ln', gelu(g, h)), 'ln');
  g.output(quickGelu(g, h), 'qg');
  const out = await runSession(await createSession(serializeModel(g)), { x: { shape: [B, T, I], data: x } });
  const refLn = new Float32Array(B * T * O),
    refQg = new Float32Array(B * T * O);
  for (let row = 0; row < B * T; row++) {
    const hrow = Array.from({ length: O }, (_, o) => {
      let s = b[o];
      for (let i = 0; i < I; i++) s += x[row * I + i] * W[o * I + i];
      return s;
    });
    const gl = hrow.map((v) => 0.5 * v * (1 + erf(v / Math.SQRT2)));
    const mean = gl.reduce((a, c) => a + c, 0) / O,
      v = gl.reduce((a, c) => a + (c - mean) ** 2, 0) / O;
    for (let o = 0; o < O; o++) {
      refLn[row * O + o] = ((gl[o] - mean) / Math.sqrt(v + 1e-5)) * lw[o] + lb[o];
      refQg[row * O + o] = hrow[o] / (1 + Math.exp(-1.702 * hrow[o]));
    }
  }
  assert.deepEqual(out.ln.shape, [B, T, O]);
  assert.ok(maxAbsDiff(out.ln.data, refLn) < 1e-5, `layer norm diff ${maxAbsDiff(out.ln.data, refLn)}`);
  assert.ok(maxAbsDiff(out.qg.data, refQg) < 1e-5);
});

/** conv 3x3 pad 1 -> group norm (2 groups) -> nearest x2, reference in JS */
function convGnUpRef(
  x: Float32Array,
  B: number,
  C: number,
  H: number,
  Wd: number,
  w: Float32Array,
  bias: Float32Array,
  O: number,
  gw: Float32Array,
  gb: Float32Array,
  G: number,
): Float32Array {
  const y = new Float32Array(B * O * H * Wd);
  for (let n = 0; n < B; n++)
    for (let o = 0; o < O; o++)
      for (let i = 0; i < H; i++)
        for (let j = 0; j < Wd; j++) {
          let s = bias[o];
          for (let c = 0; c < C; c++)
            for (let di = 0; di < 3; di++)
              for (let dj = 0; dj < 3; dj++) {
                const ii = i + di - 1,
                  jj = j + dj - 1;
                if (ii >= 0 && ii < H && jj >= 0 && jj < Wd)
                  s += x[((n * C + c) * H + ii) * Wd + jj] * w[((o * C + c) * 3 + di) * 3 + dj];
              }
          y[((n * O + o) * H + i) * Wd + j] = s;
        }
  const per = (O / G) * H * Wd;
  for (let n = 0; n < B; n++)
    for (let gi = 0; gi < G; gi++) {
      const off = (n * G + gi) * per;
      let m = 0;
      for (let k = 0; k < per; k++) m += y[off + k];
      m /= per;
      let v = 0;
      for (let k = 0; k < per; k++) v += (y[off + k] - m) ** 2;
      v /= per;
      for (let k = 0; k < per; k++) {
        const c = gi * (O / G) + Math.floor(k / (H * Wd));
        y[off + k] = ((y[off + k] - m) / Math.sqrt(v + 1e-6)) * gw[c] + gb[c];
      }
    }
  const up = new Float32Array(B * O * 4 * H * Wd);
  for (let nc = 0; nc < B * O; nc++)
    for (let i = 0; i < 2 * H; i++)
      for (let j = 0; j < 2 * Wd; j++) up[(nc * 2 * H + i) * 2 * Wd + j] = y[(nc * H + (i >> 1)) * Wd + (j >> 1)];
  return up;
}

function convGraph(dtype: 'float32' | 'float16') {
  const r = rng(2);
  const [B, C, H, Wd, O, G] = [2, 3, 5, 4, 4, 2];
  const t = {
    'vae.conv.weight': { shape: [O, C, 3, 3], data: rand(O * C * 9, r) },
    'vae.conv.bias': { shape: [O], data: rand(O, r) },
    'vae.norm.weight': { shape: [O], data: rand(O, r) },
    'vae.norm.bias': { shape: [O], data: rand(O, r) },
  };
  const x = rand(B * C * H * Wd, r);
  const g = new GraphBuilder({ weights: memoryWeights(t), dtype });
  const xi = g.input('x', 'float32', ['B', C, 'H', 'W']);
  g.output(
    upsampleNearest2x(g, groupNorm(g, 'vae.norm', conv2d(g, 'vae.conv', xi, { padding: 1 }), { groups: G, eps: 1e-6 })),
    'y',
  );
  const ref = convGnUpRef(
    x,
    B,
    C,
    H,
    Wd,
    t['vae.conv.weight'].data,
    t['vae.conv.bias'].data,
    O,
    t['vae.norm.weight'].data,
    t['vae.norm.bias'].data,
    G,
  );
  return { g, x, shape: [B, C, H, Wd], ref, outShape: [B, O, 2 * H, 2 * Wd] };
}

test('conv2d + group norm + nearest upsample match a hand computation', async () => {
  const { g, x, shape, ref, outShape } = convGraph('float32');
  const out = await runSession(await createSession(serializeModel(g)), { x: { shape, data: x } });
  assert.deepEqual(out.y.shape, outShape);
  assert.ok(maxAbsDiff(out.y.data, ref) < 1e-5, `diff ${maxAbsDiff(out.y.data, ref)}`);
});

test('causal multi-head attention matches a hand computation', async () => {
  const r = rng(3);
  const [B, T, h, d] = [2, 5, 2, 3];
  const C = h * d;
  const q = rand(B * T * C, r),
    k = rand(B * T * C, r),
    v = rand(B * T * C, r);
  const g = new GraphBuilder();
  const [qi, ki, vi] = ['q', 'k', 'v'].map((n) => g.input(n, 'float32', ['B', 'T', C]));
  g.output(attention(g, qi, ki, vi, { heads: h, headDim: d, causal: true }), 'o');
  g.output(attention(g, qi, ki, vi, { heads: h, headDim: d }), 'full');
  const feeds = {
    q: { shape: [B, T, C], data: q },
    k: { shape: [B, T, C], data: k },
    v: { shape: [B, T, C], data: v },
  };
  const out = await runSession(await createSession(serializeModel(g)), feeds);
  for (const causal of [true, false]) {
    const ref = new Float32Array(B * T * C);
    for (let n = 0; n < B; n++)
      for (let hh = 0; hh < h; hh++)
        for (let i = 0; i < T; i++) {
          const jmax = causal ? i : T - 1;
          const s = Array.from({ length: jmax + 1 }, (_, j) => {
            let a = 0;
            for (let e = 0; e < d; e++) a += q[(n * T + i) * C + hh * d + e] * k[(n * T + j) * C + hh * d + e];
            return a / Math.sqrt(d);
          });
          const mx = Math.max(...s),
            ex = s.map((a) => Math.exp(a - mx)),
            z = ex.reduce((a, b) => a + b, 0);
          for (let e = 0; e < d; e++) {
            let a = 0;
            for (let j = 0; j <= jmax; j++) a += (ex[j] / z) * v[(n * T + j) * C + hh * d + e];
            ref[(n * T + i) * C + hh * d + e] = a;
          }
        }
    const got = causal ? out.o : out.full;
    assert.ok(maxAbsDiff(got.data, ref) < 1e-5, `causal=${causal} diff ${maxAbsDiff(got.data, ref)}`);
  }
});

test('external-data model loads from its path and equals the inline model', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tcd-onnx-'));
  try {
    const { g, x, shape, ref } = convGraph('float32');
    const inline = await runSession(await createSession(serializeModel(g)), { x: { shape, data: x } });
    const { modelPath, dataPath } = writeModel(g, join(dir, 'm.onnx'), { externalData: true });
    assert.ok(dataPath && statSync(dataPath).size >= 4 * (4 * 3 * 9 + 12));
    // the .onnx holds no weight bytes: it must be smaller than the weights themselves
    assert.ok(statSync(modelPath).size < statSync(dataPath).size + 2000);
    const ext = await runSession(await createSession(modelPath), { x: { shape, data: x } });
    assert.equal(maxAbsDiff(ext.y.data, inline.y.data), 0);
    assert.ok(maxAbsDiff(ext.y.data, ref) < 1e-5);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('float16 build: fp16 initializers, float32 graph I/O, runs on CPU close to fp32', async () => {
  const { g, x, shape, ref } = convGraph('float16');
  const bytes = serializeModel(g);
  const m = onnxProto.ModelProto.toObject(onnxProto.ModelProto.decode(bytes), { longs: Number }) as any;
  const inits = m.graph.initializer as { name: string; dataType: number }[];
  const weightsInits = inits.filter((i) => /^vae\.(conv|norm)\.(weight|bias)$/.test(i.name));
  assert.equal(weightsInits.length, 4);
  for (const i of weightsInits) assert.equal(i.dataType, DataType.FLOAT16);
  assert.equal(m.graph.input[0].type.tensorType.elemType, DataType.FLOAT);
  assert.equal(m.graph.output[0].type.tensorType.elemType, DataType.FLOAT);
  const out = await runSession(await createSession(bytes), { x: { shape, data: x } });
  const d = maxAbsDiff(out.y.data, ref);
  assert.ok(d > 0 && d < 2e-2, `fp16 diff ${d}`);
  // fp16Io: no Casts at the boundary, fp16 graph inputs and outputs
  const gio = new GraphBuilder({ dtype: 'float16', fp16Io: true });
  gio.output(gio.op.Relu(gio.input('x', 'float32', [2])), 'y');
  const mio = onnxProto.ModelProto.toObject(onnxProto.ModelProto.decode(serializeModel(gio))) as any;
  assert.equal(mio.graph.input[0].type.tensorType.elemType, DataType.FLOAT16);
  assert.equal(mio.graph.output[0].type.tensorType.elemType, DataType.FLOAT16);
  assert.deepEqual(
    mio.graph.node.map((n: { opType: string }) => n.opType),
    ['Relu', 'Identity'],
  );
});
