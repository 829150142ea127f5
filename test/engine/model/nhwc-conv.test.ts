/**
 * The CUDA NhwcConv form (GraphOptions.nhwcConv): 2-D convolutions as com.microsoft NhwcConv, channels-last between
 * Transposes that cancel against their neighbours' at build time (the channels-last GroupNorm's above all).
 * The CPU EP has no NhwcConv kernel, so the numbers are checked on its CPU twin ('cpu-twin': the same graph with ONNX
 * Conv in NhwcConv's place, weights stored channels-last and moved back in the graph, the GroupNorm channels-last
 * too) against the diffusers fixtures; the CUDA graph itself is checked for structure with the real SD1.5 shapes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { conv2d } from '../../../server/engine/model/blocks.js';
import { GraphBuilder } from '../../../server/engine/onnx/graph.js';
import { memoryWeights } from '../../../server/engine/onnx/weights.js';
import { serializeModel } from '../../../server/engine/onnx/serialize.js';
import { createSession, runSession } from '../../../server/engine/onnx/session.js';
import { exposeWeights } from '../../../server/engine/lora/session.js';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import { detectCheckpoint } from '../../../server/engine/model/detect.js';
import { safetensorsWeights } from '../../../server/engine/onnx/weights.js';
import { buildUNetGraph, type UNetBuildOptions } from '../../../server/engine/model/unet.js';
import { buildVaeDecoderGraph, buildVaeEncoderGraph } from '../../../server/engine/model/vae.js';
import {
  componentTolerance,
  fixturePath,
  fixtureSkip,
  maxAbs,
  maxAbsDiff,
  unetFixtureCase,
} from '../../helpers/fixtures.js';
import { presetWeights } from '../../helpers/preset-weights.js';
import { assertSameControl, controlNetFormRuns } from '../../helpers/controlnet-files.js';

const skip = fixtureSkip();
const iota = (n: number) => Float32Array.from({ length: n }, (_, i) => i);

test('the NhwcConv weight is the conv weight stored [out, kh, kw, in]; a 2-D [out, in] weight becomes [out, 1, 1, in]', () => {
  // w[o, c, y, x] = 1000 o + 100 c + 10 y + x, so every position says where it came from
  const w = new Float32Array(2 * 3 * 2 * 2);
  for (let o = 0; o < 2; o++)
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < 2; y++)
        for (let x = 0; x < 2; x++) w[((o * 3 + c) * 2 + y) * 2 + x] = 1000 * o + 100 * c + 10 * y + x;
  const g = new GraphBuilder({
    weights: memoryWeights({
      'k.weight': { shape: [2, 3, 2, 2], data: w },
      'p.weight': { shape: [2, 3], data: iota(6) },
    }),
    nhwcConv: true,
  });
  g.weightNhwc('k.weight');
  g.weightNhwc('p.weight');
  assert.deepEqual(g.weightInits.get('k.weight:nhwc'), [2, 2, 2, 3]);
  assert.deepEqual(g.weightInits.get('p.weight:nhwc'), [2, 1, 1, 3]);
  const got = g.readWeight('k.weight:nhwc');
  for (let o = 0; o < 2; o++)
    for (let y = 0; y < 2; y++)
      for (let x = 0; x < 2; x++)
        for (let c = 0; c < 3; c++)
          assert.equal(got[((o * 2 + y) * 2 + x) * 3 + c], 1000 * o + 100 * c + 10 * y + x, `[${o}, ${y}, ${x}, ${c}]`);
  assert.deepEqual([...g.readWeight('p.weight:nhwc')], [0, 1, 2, 3, 4, 5]);
});

test('transposeOf: an inverse move gives the value back, the same move twice is one node, unread moves are dropped', () => {
  const g = new GraphBuilder();
  const x = g.input('x', 'float32', [1, 2, 3, 4]);
  const nhwc = g.transposeOf(x, [0, 2, 3, 1]);
  assert.equal(g.transposeOf(x, [0, 2, 3, 1]).name, nhwc.name);
  const back = g.transposeOf(nhwc, [0, 3, 1, 2]);
  assert.equal(g.transposeOf(back, [0, 2, 3, 1]).name, nhwc.name, 'moving back and forth again cancels');
  assert.equal(g.transposeOf(nhwc, [0, 3, 1, 2]).name, back.name);
  // a perm that does not undo the first one is a real move
  assert.notEqual(g.transposeOf(nhwc, [0, 2, 3, 1]).name, x.name);
  g.output(g.op.Relu(nhwc), 'y');
  g.dropUnusedLayoutMoves();
  assert.deepEqual(
    g.nodes.map((n) => n.opType),
    ['Transpose', 'Relu', 'Identity'],
  );
});

function convGraph(nhwcConv: boolean | 'cpu-twin') {
  const weights = memoryWeights({
    'a.weight': { shape: [6, 3, 3, 3], data: iota(162).map((v) => Math.sin(v)) },
    'a.bias': { shape: [6], data: iota(6).map((v) => v / 10) },
    'b.weight': { shape: [4, 6, 1, 1], data: iota(24).map((v) => Math.cos(v)) },
    'b.bias': { shape: [4], data: iota(4) },
  });
  const g = new GraphBuilder({ weights, nhwcConv });
  const x = g.input('x', 'float32', [1, 3, 5, 7]);
  const h = conv2d(g, 'a', x, { padding: 1, stride: 2 });
  g.output(conv2d(g, 'b', h), 'y');
  return g;
}

test('CUDA form of two stacked convs: NhwcConv, NhwcConv with one Transpose in, one out, none between', () => {
  const g = convGraph(true);
  g.dropUnusedLayoutMoves();
  const ops = g.nodes.map((n) => `${n.domain ? `${n.domain}.` : ''}${n.opType}`);
  assert.deepEqual(ops, ['Transpose', 'com.microsoft.NhwcConv', 'com.microsoft.NhwcConv', 'Transpose', 'Identity']);
  const conv = g.nodes.find((n) => n.opType === 'NhwcConv')!;
  assert.deepEqual(conv.inputs.slice(1), ['a.weight:nhwc', 'a.bias']);
  assert.deepEqual(conv.attrs, { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [2, 2] });
  assert.deepEqual([...g.weightInits.keys()].sort(), ['a.bias', 'a.weight:nhwc', 'b.bias', 'b.weight:nhwc']);
});

test('CPU twin of stacked convs and its LoRA-fed form (weights fed as stored, permuted in the graph) equal plain Conv', async () => {
  const x = { data: iota(105).map((v) => Math.sin(v * 0.7)), shape: [1, 3, 5, 7] };
  const plain = (await runSession(await createSession(serializeModel(convGraph(false))), { x })).y;
  const twin = (await runSession(await createSession(serializeModel(convGraph('cpu-twin'))), { x })).y;
  assert.deepEqual(twin.shape, [1, 4, 3, 4]);
  assert.ok(maxAbsDiff(twin.data, plain.data) < 1e-5, `twin vs plain ${maxAbsDiff(twin.data, plain.data)}`);
  const fed = exposeWeights(convGraph('cpu-twin'), new Set(['a.weight', 'b.weight']));
  const feeds = {
    x,
    'a.weight': { data: iota(162).map((v) => Math.sin(v)), shape: [6, 3, 3, 3] },
    'b.weight': { data: iota(24).map((v) => Math.cos(v)), shape: [4, 6, 1, 1] },
  };
  const out = (await runSession(await createSession(serializeModel(fed)), feeds)).y;
  assert.ok(maxAbsDiff(out.data, plain.data) < 1e-5, `fed vs plain ${maxAbsDiff(out.data, plain.data)}`);
});

test('SD1.5 UNet CUDA graph (real shapes, structure only): every conv an NhwcConv on a channels-last weight, no back-and-forth Transposes', async () => {
  const { config, weights } = presetWeights('sd15', 'zeros');
  const cuda: UNetBuildOptions = {
    dtype: 'float16',
    linear: 'matmul',
    fusedAttention: true,
    fusedBlocks: true,
    fusedGroupNorm: true,
    fusedGeglu: true,
  };
  const base = buildUNetGraph(config.unet, weights, cuda);
  const g = buildUNetGraph(config.unet, weights, { ...cuda, nhwcConv: true });
  g.dropUnusedLayoutMoves();
  const count = (b: GraphBuilder, op: string) => b.nodes.filter((n) => n.opType === op).length;
  const convs = count(base, 'Conv');
  // conv_in, 22 ResBlocks x 2, 14 skip 1x1s, 3 down, 3 up, conv_out (the transformers' 1x1 proj_in/out are MatMuls)
  assert.equal(convs, 1 + 44 + 14 + 3 + 3 + 1);
  assert.equal(count(g, 'NhwcConv'), convs);
  assert.equal(count(g, 'Conv'), 0);
  for (const n of g.nodes.filter((n) => n.opType === 'NhwcConv')) {
    const w = n.inputs[1];
    assert.ok(w.endsWith(':nhwc'), `${n.name} reads ${w}`);
    const [o, i, kh, kw] = weights.shape(w.replace(/:nhwc$/, ''));
    assert.deepEqual(g.weightInits.get(w), [o, kh, kw, i]);
    assert.ok(!g.weightInits.has(w.replace(/:nhwc$/, '')), 'the NCHW copy is not stored as well');
  }
  // no Transpose reads a Transpose (every back-and-forth cancelled), none left unread
  const producer = new Map(g.nodes.flatMap((n) => n.outputs.map((o) => [o, n] as const)));
  const readers = new Set(g.nodes.flatMap((n) => n.inputs));
  for (const t of g.nodes.filter((n) => n.opType === 'Transpose')) {
    assert.notEqual(producer.get(t.inputs[0])?.opType, 'Transpose', `${t.name} reads a Transpose`);
    assert.ok(readers.has(t.outputs[0]), `${t.name} is read`);
  }
  // what the layout moves cost: channels-last GroupNorm + conv pairs share theirs
  const moves = count(g, 'Transpose') - count(base, 'Transpose');
  console.log(
    `nhwc: ${count(g, 'Transpose')} Transposes (${count(base, 'Transpose')} without), ${g.nodes.length} nodes (${base.nodes.length})`,
  );
  assert.ok(moves < convs, `${moves} Transposes more for ${convs} convs`);
});

const unetFeeds = (family: 'sd1' | 'sdxl') => unetFixtureCase(family);

for (const family of ['sd1', 'sdxl'] as const) {
  test(
    `${family} UNet, CPU twin of the CUDA NhwcConv + channels-last GroupNorm form, matches diffusers`,
    { skip },
    async () => {
      const { ckpt, cases, cfg, feeds, ref } = unetFeeds(family);
      const opts: UNetBuildOptions = { fusedAttention: true, fusedGroupNorm: true, nhwcConv: 'cpu-twin' };
      const g = buildUNetGraph(cfg, safetensorsWeights(ckpt), opts);
      const bytes = serializeModel(g);
      assert.ok(g.nodes.filter((n) => n.opType === 'Conv').length > 10);
      assert.ok(
        [...g.weightInits.keys()].some((k) => k.endsWith(':nhwc')),
        'conv weights stored channels-last',
      );
      const { eps } = await runSession(await createSession(bytes), feeds);
      const diff = maxAbsDiff(eps.data, ref.data),
        tol = componentTolerance(ref.data);
      assert.ok(diff <= tol / 5, `twin fp32: max |ours - ref| = ${diff} > ${tol / 5}`);
      if (family === 'sd1') {
        // fp16: the channels-last weights through the fp16 serialiser
        const half = serializeModel(buildUNetGraph(cfg, safetensorsWeights(ckpt), { ...opts, dtype: 'float16' }));
        const out16 = (await runSession(await createSession(half), feeds)).eps;
        const diff16 = maxAbsDiff(out16.data, ref.data);
        assert.ok(diff16 < 1e-2 * Math.max(1, maxAbs(ref.data)), `twin fp16 max diff ${diff16}`);
      }
      ckpt.close();
      cases.close();
    },
  );
}

for (const family of ['sd1', 'sdxl'] as const) {
  test(
    `${family} VAE decode and encode (stride-2 convs padded right/bottom), CPU twin of the NhwcConv form, match diffusers`,
    { skip },
    async () => {
      const ckpt = SafetensorsFile.open(fixturePath(`${family}_tiny.safetensors`));
      const cases = SafetensorsFile.open(fixturePath(`${family}_tiny_cases.safetensors`));
      const cfg = detectCheckpoint(ckpt).vae;
      const check = (what: string, got: Float32Array, ref: Float32Array, tol: number) => {
        const diff = maxAbsDiff(got, ref);
        assert.ok(diff <= tol, `twin ${what}: max |ours - ref| = ${diff} > ${tol}`);
      };
      const decoded = cases.readFloat32('vae/decoded'),
        mean = cases.readFloat32('vae/encoded_mean');
      // fp32 and fp16 (the GPU's dtype: residual stream carried scaled, weights channels-last through the fp16 writer)
      for (const dtype of ['float32', 'float16'] as const) {
        const opts = { dtype, fusedGroupNorm: true, nhwcConv: 'cpu-twin' as const };
        const tol = (ref: Float32Array) =>
          dtype === 'float32' ? componentTolerance(ref) : 2e-2 * Math.max(1, maxAbs(ref));
        const dec = serializeModel(buildVaeDecoderGraph(cfg, safetensorsWeights(ckpt), opts));
        const { image } = await runSession(await createSession(dec), { latent: cases.readTensor('vae/z') });
        check(`${dtype} decode`, image.data, decoded, tol(decoded));
        const enc = serializeModel(buildVaeEncoderGraph(cfg, safetensorsWeights(ckpt), opts));
        const out = (await runSession(await createSession(enc), { image: cases.readTensor('vae/image') })).mean;
        check(`${dtype} encode mean`, out.data, mean, tol(mean));
      }
      ckpt.close();
      cases.close();
    },
  );
}

test(
  'sd1 ControlNet and controlled UNet, CPU twin of the NhwcConv form, give the plain graphs residuals and output',
  { skip },
  async () => {
    const [plain, twin] = await controlNetFormRuns([{}, { fusedGroupNorm: true, nhwcConv: 'cpu-twin' }]);
    assertSameControl(twin, plain);
  },
);
