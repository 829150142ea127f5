/**
 * The packed attention form (GraphOptions.packedAttention, CUDA): self-attention q, k, v and cross-attention k, v as
 * one MatMul by a packed weight each, read by com.microsoft MultiHeadAttention as packed QKV [B, S, N, 3, H] / KV
 * [B, L, N, 2, H]. ONNX Runtime's CPU EP implements neither packed input ("Packed QKV of shape (B, L, N, 3, H) not
 * implemented for CPU", onnxruntime-node 1.30), so numbers are checked on the CPU twin ('cpu-twin': the same packed
 * MatMul, its result reshaped to the packed layout and split back into q, k, v before an unpacked MultiHeadAttention)
 * and the real form's structure separately. LoRA bake / branch / fed inputs, hypernetworks and ControlNet with it on.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { attention, linear } from '../../../server/engine/model/blocks.js';
import { packedAttention } from '../../../server/engine/model/packed-attention.js';
import { buildUNetGraph, type UNetBuildOptions } from '../../../server/engine/model/unet.js';
import { detectCheckpoint } from '../../../server/engine/model/detect.js';
import { readHypernetwork } from '../../../server/engine/model/hypernetwork.js';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import { exposeWeights, loraStats, packedLowRank } from '../../../server/engine/lora/session.js';
import { lowRankDelta, planLoras } from '../../../server/engine/lora/patch.js';
import {
  GraphBuilder,
  packedWeightName,
  packHeads,
  parsePackedName,
  type Value,
} from '../../../server/engine/onnx/graph.js';
import { serializeModel } from '../../../server/engine/onnx/serialize.js';
import { createSession, runSession } from '../../../server/engine/onnx/session.js';
import { type LowRankDelta, memoryWeights, safetensorsWeights } from '../../../server/engine/onnx/weights.js';
import { runComponentCall } from '../../../server/engine/runtime/components.js';
import { SessionStore } from '../../../server/engine/runtime/session-store.js';
import type { Tensor } from '../../../server/engine/tensor.js';
import {
  assertComponentClose,
  componentTolerance,
  fixturePath,
  fixtureSkip,
  maxAbs,
  maxAbsDiff,
  unetFixtureCase,
} from '../../helpers/fixtures.js';
import { presetWeights } from '../../helpers/preset-weights.js';
import { assertSameControl, controlNetFormRuns, type ControlNetFormRun } from '../../helpers/controlnet-files.js';

const skip = fixtureSkip();
const count = (g: GraphBuilder, op: string) => g.nodes.filter((n) => n.opType === op).length;

/** A deterministic pseudo-random fill in [-0.5, 0.5). */
function fill(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 31 - 0.5;
  });
}

// one attention of 3 heads of 4 channels on a 5-wide input and a 7-wide context
const HEADS = 3,
  HEAD = 4,
  C = HEADS * HEAD,
  IN = 5,
  CTX = 7;
function attentionWeights(extra: Record<string, { shape: number[]; data: Float32Array }> = {}) {
  const t = (shape: number[], seed: number) => ({ shape, data: fill(shape[0] * shape[1], seed) });
  return memoryWeights({
    'self.to_q.weight': t([C, IN], 1),
    'self.to_k.weight': t([C, IN], 2),
    'self.to_v.weight': t([C, IN], 3),
    'cross.to_q.weight': t([C, IN], 4),
    'cross.to_k.weight': t([C, CTX], 5),
    'cross.to_v.weight': t([C, CTX], 6),
    ...extra,
  });
}

/** Self- and cross-attention outputs of the attention weights, packed (the form or its twin) or unpacked. */
function attentionGraph(form: boolean | 'cpu-twin', weights = attentionWeights()) {
  const g = new GraphBuilder({ weights, fusedAttention: true, linear: 'matmul', packedAttention: form });
  const x = g.input('x', 'float32', ['B', 'S', IN]);
  const ctx = g.input('ctx', 'float32', ['B', 'L', CTX]);
  const split = { heads: HEADS, headDim: HEAD };
  const run = (p: string, kv: Value) =>
    packedAttention(g, p, x, kv, kv, split) ??
    attention(g, linear(g, `${p}.to_q`, x), linear(g, `${p}.to_k`, kv), linear(g, `${p}.to_v`, kv), split);
  g.output(run('self', x), 'self');
  g.output(run('cross', ctx), 'cross');
  return g;
}
const attentionFeeds = {
  x: { shape: [2, 6, IN], data: fill(2 * 6 * IN, 7) },
  ctx: { shape: [2, 3, CTX], data: fill(2 * 3 * CTX, 8) },
};

test('packHeads: column (head, part, channel) of the packed weight is that part row n*H + h, read by input', () => {
  const parts = [fill(C * IN, 1), fill(C * IN, 2), fill(C * IN, 3)];
  const packed = packHeads(parts, C, IN, HEADS);
  assert.equal(packed.length, IN * 3 * C);
  for (let i = 0; i < IN; i++)
    for (let n = 0; n < HEADS; n++)
      for (let j = 0; j < 3; j++)
        for (let h = 0; h < HEAD; h++)
          assert.equal(packed[i * 3 * C + (n * 3 + j) * HEAD + h], parts[j][(n * HEAD + h) * IN + i]);
  const name = packedWeightName(['a.to_k.weight', 'a.to_v.weight'], 8);
  assert.deepEqual(parsePackedName(name), { parts: ['a.to_k.weight', 'a.to_v.weight'], heads: 8 });
  assert.equal(parsePackedName('a.to_k.weight:T'), null);
  assert.equal(parsePackedName('a.to_k.weight'), null);
});

test('one attention: the CPU twin gives the unpacked attention (3 heads), MatMuls 3 -> 1 (self) and 2 -> 1 (k, v)', async () => {
  const plain = attentionGraph(false);
  const twin = attentionGraph('cpu-twin');
  assert.equal(count(plain, 'MatMul'), 6);
  assert.equal(count(twin, 'MatMul'), 3, 'self: one packed; cross: q and one packed k/v');
  assert.deepEqual(
    [...twin.weightInits].filter(([n]) => parsePackedName(n)),
    [
      [packedWeightName(['self.to_q.weight', 'self.to_k.weight', 'self.to_v.weight'], HEADS), [IN, 3 * C]],
      [packedWeightName(['cross.to_k.weight', 'cross.to_v.weight'], HEADS), [CTX, 2 * C]],
    ],
  );
  const want = await runSession(await createSession(serializeModel(plain)), attentionFeeds);
  const got = await runSession(await createSession(serializeModel(twin)), attentionFeeds);
  for (const o of ['self', 'cross']) {
    assert.ok(maxAbs(want[o].data) > 1e-2, `${o} is not trivially zero`);
    assert.ok(maxAbsDiff(got[o].data, want[o].data) < 1e-5, `${o}: ${maxAbsDiff(got[o].data, want[o].data)}`);
  }
});

test('the real form: MultiHeadAttention reads the packed MatMul reshaped to [B, S, N, 3, H] / [B, L, N, 2, H]', () => {
  const g = attentionGraph(true);
  const mha = g.nodes.filter((n) => n.opType === 'MultiHeadAttention');
  assert.equal(mha.length, 2);
  const producer = new Map(g.nodes.flatMap((n) => n.outputs.map((o) => [o, n] as const)));
  const shapeOf = (reshaped: string) => {
    const r = producer.get(reshaped)!;
    assert.equal(r.opType, 'Reshape');
    assert.equal(producer.get(r.inputs[0])!.opType, 'MatMul');
    const c = g.constants.find((k) => k.name === r.inputs[1])!;
    return [...new BigInt64Array(c.raw.slice().buffer)].map(Number);
  };
  const [self, cross] = mha;
  assert.equal(self.inputs.length, 1, 'packed QKV: key and value empty');
  assert.deepEqual(shapeOf(self.inputs[0]), [0, 0, HEADS, 3, HEAD]);
  assert.equal(cross.inputs.length, 2, 'packed KV: value empty');
  assert.equal(producer.get(cross.inputs[0])!.opType, 'MatMul', 'q by its own MatMul');
  assert.deepEqual(shapeOf(cross.inputs[1]), [0, 0, HEADS, 2, HEAD]);
  assert.equal(count(g, 'Split'), 0);
  for (const n of mha) assert.equal(n.attrs.num_heads, HEADS);
});

test('where it does not apply the attention stays unpacked: form off, a bias, a low-rank branch, k and v apart', () => {
  const packedCount = (g: GraphBuilder) => [...g.weightInits.keys()].filter((n) => parsePackedName(n)).length;
  assert.equal(packedCount(attentionGraph(false)), 0);
  const bias = attentionWeights({ 'self.to_k.bias': { shape: [C], data: fill(C, 9) } });
  assert.equal(packedCount(attentionGraph(true, bias)), 1, 'self-attention with a k bias unpacked, cross packed');
  const lr: LowRankDelta = { rank: 2, up: fill(C * 2, 10), down: fill(2 * CTX, 11) };
  const branch = { ...attentionWeights(), lowRank: (k: string) => (k === 'cross.to_v.weight' ? lr : undefined) };
  const g = attentionGraph(true, branch);
  assert.equal(packedCount(g), 1, 'cross-attention with a LoRA branch on v unpacked, self packed');
  assert.ok(g.weightInits.has('cross.to_v.weight:lr_up'));
  // kIn != vIn (a hypernetwork patched them): unpacked
  const h = new GraphBuilder({
    weights: attentionWeights(),
    fusedAttention: true,
    linear: 'matmul',
    packedAttention: true,
  });
  const x = h.input('x', 'float32', ['B', 'S', IN]);
  const ctx = h.input('ctx', 'float32', ['B', 'L', CTX]);
  assert.equal(packedAttention(h, 'cross', x, ctx, h.op.Neg(ctx), { heads: HEADS, headDim: HEAD }), null);
  const gemm = new GraphBuilder({ weights: attentionWeights(), fusedAttention: true, packedAttention: true });
  const y = gemm.input('x', 'float32', ['B', 'S', IN]);
  assert.equal(packedAttention(gemm, 'self', y, y, y, { heads: HEADS, headDim: HEAD }), null, 'Gemm linears');
});

test('LoRA fed as inputs (exposeWeights): the packed weight is computed in the graph from the fed q, k, v', async () => {
  const patchable = new Set(['self.to_q.weight', 'self.to_k.weight', 'self.to_v.weight', 'cross.to_v.weight']);
  const fed = exposeWeights(attentionGraph('cpu-twin'), patchable);
  assert.ok(fed.inputs.some((i) => i.name === 'cross.to_v.weight'));
  assert.ok(fed.weightInits.has('cross.to_k.weight'), 'an unfed part stays an initializer');
  const w = attentionWeights();
  // other values than the graph's own: the outputs must follow the feeds
  const shift = (k: string) => ({ shape: w.shape(k), data: w.read(k).map((v) => v * 1.5 - 0.1) });
  const feeds = Object.fromEntries([...patchable].map((k) => [k, shift(k)]));
  const got = await runSession(await createSession(serializeModel(fed)), { ...attentionFeeds, ...feeds });
  const moved = memoryWeights(
    Object.fromEntries(
      ['self', 'cross']
        .flatMap((p) => ['q', 'k', 'v'].map((m) => `${p}.to_${m}.weight`))
        .map((k) => [k, patchable.has(k) ? shift(k) : { shape: w.shape(k), data: w.read(k) }]),
    ),
  );
  const want = await runSession(await createSession(serializeModel(attentionGraph(false, moved))), attentionFeeds);
  for (const o of ['self', 'cross']) assert.ok(maxAbsDiff(got[o].data, want[o].data) < 1e-5, o);
});

test('packedLowRank: packed + a @ b is the packed weight of the patched parts', () => {
  const parts = ['p.to_q.weight', 'p.to_k.weight', 'p.to_v.weight'];
  const base = parts.map((_, j) => fill(C * IN, 20 + j));
  const deltas = new Map<string, LowRankDelta>([
    [parts[0], { rank: 2, up: fill(C * 2, 30), down: fill(2 * IN, 31) }],
    [parts[2], { rank: 3, up: fill(C * 3, 32), down: fill(3 * IN, 33) }],
  ]);
  const { a, b, rank } = packedLowRank(parts, HEADS, deltas, C, IN);
  assert.equal(rank, 5);
  const width = 3 * C;
  const baked = packHeads(base, C, IN, HEADS);
  for (let i = 0; i < IN; i++)
    for (let c = 0; c < width; c++)
      for (let r = 0; r < rank; r++) baked[i * width + c] += a[i * rank + r] * b[r * width + c];
  const merged = base.map((w, j) => {
    const d = deltas.get(parts[j]);
    if (!d) return w;
    return w.map((v, idx) => {
      const o = Math.floor(idx / IN),
        i = idx % IN;
      let acc = 0;
      for (let r = 0; r < d.rank; r++) acc += d.up[o * d.rank + r] * d.down[r * IN + i];
      return v + acc;
    });
  });
  assert.ok(maxAbsDiff(baked, packHeads(merged, C, IN, HEADS)) < 1e-6);
});

test('real SD1.5 / SDXL shapes (structure only): MatMuls 2 fewer per self- and 1 per cross-attention', async () => {
  for (const [preset, blocks, heads, headDim] of [
    ['sd15', 16, 8, 40],
    ['sdxl', 70, 10, 64],
  ] as const) {
    const { config, weights } = presetWeights(preset);
    const opts: UNetBuildOptions = { dtype: 'float16', linear: 'matmul', fusedAttention: true, fusedBlocks: true };
    const plain = buildUNetGraph(config.unet, weights, opts);
    const off = buildUNetGraph(config.unet, weights, { ...opts, packedAttention: false });
    const packed = buildUNetGraph(config.unet, weights, { ...opts, packedAttention: true });
    assert.deepEqual(
      off.nodes.map((n) => n.opType),
      plain.nodes.map((n) => n.opType),
      'off: the graph as before',
    );
    assert.equal(count(plain, 'MatMul') - count(packed, 'MatMul'), 3 * blocks, `${preset}: 2 + 1 per block`);
    assert.equal(plain.nodes.length - packed.nodes.length, blocks, `${preset}: 3 MatMuls out, 2 Reshapes in`);
    const mha = packed.nodes.filter((n) => n.opType === 'MultiHeadAttention');
    assert.equal(mha.filter((n) => n.inputs.length === 1).length, blocks, 'packed QKV');
    assert.equal(mha.filter((n) => n.inputs.length === 2).length, blocks, 'q and packed KV');
    const inits = [...packed.weightInits].filter(([n]) => parsePackedName(n));
    assert.equal(inits.length, 2 * blocks);
    // the first transformer's self-attention: [C, 3 C] packed by its head count (SD1.5: 320; SDXL: 640)
    const [[name, shape]] = inits;
    assert.deepEqual(shape, [heads * headDim, 3 * heads * headDim]);
    assert.equal(parsePackedName(name)!.heads, heads);
  }
});

const unetFeeds = (family: 'sd1' | 'sdxl') => unetFixtureCase(family);
const TWIN: UNetBuildOptions = { fusedAttention: true, linear: 'matmul', packedAttention: 'cpu-twin' };

for (const family of ['sd1', 'sdxl'] as const) {
  test(`${family} UNet, CPU twin of the packed attention form, matches diffusers`, { skip }, async () => {
    const { ckpt, cases, config, feeds } = unetFeeds(family);
    const ref = cases.readTensor('unet/out');
    const g = buildUNetGraph(config.unet, safetensorsWeights(ckpt), TWIN);
    const base = buildUNetGraph(config.unet, safetensorsWeights(ckpt), { ...TWIN, packedAttention: false });
    const attentions = count(base, 'MultiHeadAttention') / 2;
    assert.ok(attentions > 0);
    assert.equal(count(base, 'MatMul') - count(g, 'MatMul'), 3 * attentions);
    assert.equal([...g.weightInits.keys()].filter((n) => parsePackedName(n)).length, 2 * attentions);
    const { eps } = await runSession(await createSession(serializeModel(g)), feeds);
    assertComponentClose(eps, ref, `${family} packed twin fp32`, 0.2);
    if (family === 'sd1') {
      // fp16: the packed weights through the fp16 writer
      const half = serializeModel(buildUNetGraph(config.unet, safetensorsWeights(ckpt), { ...TWIN, dtype: 'float16' }));
      const out16 = (await runSession(await createSession(half), feeds)).eps;
      assert.ok(maxAbsDiff(out16.data, ref.data) < 1e-2 * Math.max(1, maxAbs(ref.data)), 'twin fp16');
    }
    ckpt.close();
    cases.close();
  });
}

const HN_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'data', 'hypernetwork');
test(
  'sd1 with a hypernetwork (context and 64-channel self-attentions): those attentions unpacked, ComfyUI reference met',
  { skip: skip || (existsSync(join(HN_DIR, 'reference.safetensors')) ? false : 'hypernetwork reference absent') },
  async () => {
    const ckpt = SafetensorsFile.open(fixturePath('sd1_tiny.safetensors'));
    const ref = SafetensorsFile.open(join(HN_DIR, 'reference.safetensors'));
    const hnFile = SafetensorsFile.open(join(HN_DIR, 'hn_relu.safetensors'));
    const cfg = detectCheckpoint(ckpt).unet;
    const hypernetworks = [readHypernetwork(hnFile, 0.8)]; // the reference strength
    const g = buildUNetGraph(cfg, safetensorsWeights(ckpt), { ...TWIN, hypernetworks });
    const packed = [...g.weightInits.keys()].filter((n) => parsePackedName(n));
    // cross-attentions read the patched context: none packed; self-attentions packed except at width 64
    assert.ok(packed.every((n) => n.includes('.attn1.')));
    assert.ok(packed.length > 0);
    assert.ok(packed.length < count(g, 'MultiHeadAttention') / 2);
    const feeds = { x: ref.readTensor('x'), t: ref.readTensor('t'), context: ref.readTensor('context') };
    const { eps } = await runSession(await createSession(serializeModel(g)), feeds);
    const want = ref.readFloat32('eps_relu');
    assert.ok(maxAbsDiff(eps.data, want) <= componentTolerance(want), `max diff ${maxAbsDiff(eps.data, want)}`);
    ckpt.close();
    ref.close();
    hnFile.close();
  },
);

test(
  'sd1 ControlNet and controlled UNet, CPU twin of the packed form, give the plain graphs residuals and output',
  { skip },
  async () => {
    const [plain, twin] = await controlNetFormRuns([{ fusedAttention: true, linear: 'matmul' }, TWIN]);
    const packed = (r: ControlNetFormRun) => [...r.controlNet.weightInits.keys()].filter(parsePackedName).length;
    assert.equal(packed(plain), 0);
    assert.ok(packed(twin) > 0, 'the ControlNet attentions are packed');
    assertSameControl(twin, plain);
  },
);

test(
  'sd1 LoRA branches with the packed form: attentions with a branch unpacked, the rest packed; diffusers met',
  { skip },
  async () => {
    const { ckpt, cases, config, feeds } = unetFeeds('sd1');
    const lora = fixturePath('sd1_tiny_lora_kohya.safetensors');
    const { plan } = planLoras(ckpt, config, [{ path: lora, strength: 0.8 }], 'unet');
    const deltas = new Map([...plan].map(([k, terms]) => [k, lowRankDelta(terms, ckpt.shape(k))]));
    assert.ok(
      [...deltas.keys()].some((k) => k.endsWith('attn1.to_q.weight')),
      'the LoRA patches attentions',
    );
    const weights = { ...safetensorsWeights(ckpt), lowRank: (k: string) => deltas.get(k) };
    const g = buildUNetGraph(config.unet, weights, TWIN);
    for (const name of [...g.weightInits.keys()].filter((n) => parsePackedName(n))) {
      assert.ok(!parsePackedName(name)!.parts.some((k) => deltas.has(k)), `${name} packs a weight with a branch`);
    }
    assert.ok([...g.weightInits.keys()].some((n) => /to_[qkv]\.weight:lr_up$/.test(n)));
    const { eps } = await runSession(await createSession(serializeModel(g)), feeds);
    assertComponentClose(eps, cases.readTensor('lora/unet_out'), 'sd1 branches, packed form on');
    ckpt.close();
    cases.close();
  },
);

// the session store with the form's twin forced on the CPU EP: LoRA bake (from the plain graph's weight file on disk,
// and in memory), branch and fed inputs, sdxl kohya at 1.0 against diffusers
for (const [mode, onDisk] of [
  ['bake', true],
  ['bake', false],
  ['branch', true],
  ['inputs', false],
] as const) {
  describe(
    `LoRA ${mode} mode with the packed form (CPU twin)${onDisk ? ', graphs on disk' : ', in memory'}`,
    { skip },
    () => {
      let store: SessionStore, cacheDir: string;
      before(async () => {
        cacheDir = mkdtempSync(join(tmpdir(), `tcd-packed-${mode}-`));
        store = await SessionStore.start(
          {
            ep: 'cpu',
            ramBudget: 4 * 1024 ** 3,
            vramBudget: Infinity,
            cacheDir,
            externalDataMinBytes: onDisk ? 0 : Infinity,
          },
          () => {},
        );
        store.loraModeOverride = mode;
        store.graphTuningOverride = { fusedAttention: true, linear: 'matmul', packedAttention: 'cpu-twin' };
      });
      after(async () => {
        await store.free();
        rmSync(cacheDir, { recursive: true, force: true });
      });

      test('sdxl kohya at 1.0 matches diffusers; no LoRA gives the plain model', async () => {
        const cases = SafetensorsFile.open(fixturePath('sdxl_tiny_cases.safetensors'));
        const unet = (strength: number) =>
          runComponentCall(store, {
            op: 'unet',
            model: {
              checkpoint: fixturePath('sdxl_tiny.safetensors'),
              loras: strength ? [{ path: fixturePath('sdxl_tiny_lora_kohya.safetensors'), strength }] : [],
            },
            x: cases.readTensor('unet/x'),
            t: cases.readFloat32('unet/t'),
            context: cases.readTensor('unet/context'),
            extra: { textEmbeds: cases.readTensor('unet/text_embeds'), timeIds: cases.readTensor('unet/time_ids') },
          }) as Promise<Tensor>;
        assertComponentClose(await unet(0), cases.readTensor('unet/out'), `${mode}: no LoRA`);
        assertComponentClose(await unet(1), cases.readTensor('lora/unet_out@1.0'), `${mode} 1.0`);
        if (mode === 'bake') {
          const attention = loraStats.lastSkippedKeys.filter((k) => /attn[12]\.to_[qkv]/.test(k));
          assert.deepEqual(attention, [], 'every attention projection the LoRA patches was baked');
        }
        cases.close();
      });
    },
  );
}
