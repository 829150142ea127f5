/**
 * Graph forms with CUDA-only com.microsoft operators, checked for structure here (the CPU EP has no kernels for them;
 * numbers are checked on the device, server/tools/bench/device-run.sh cuda6 / cuda7):
 * - GroupNorm (GraphOptions.fusedGroupNorm): one node with the SiLU fused in, channels-last between two Transposes,
 *   float32 gamma/beta, for the widths ONNX Runtime's CUDA kernel takes; other widths keep InstanceNormalization.
 * - BiasSplitGelu (GraphOptions.fusedGeglu): the GEGLU feed-forward's bias, split and GELU gate in one node.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { groupNorm } from '../../../server/engine/model/blocks.js';
import { FloatAttr, GraphBuilder } from '../../../server/engine/onnx/graph.js';
import { memoryWeights } from '../../../server/engine/onnx/weights.js';
import { DataType } from '../../../server/engine/onnx/schema.js';
import { presetWeights } from '../../helpers/preset-weights.js';

function build(channels: number, fused: boolean, silu: boolean) {
  const weights = memoryWeights({
    'n.weight': { shape: [channels], data: new Float32Array(channels).fill(1.5) },
    'n.bias': { shape: [channels], data: new Float32Array(channels).fill(0.25) },
  });
  const g = new GraphBuilder({ weights, dtype: 'float16', fusedGroupNorm: fused });
  const x = g.input('x', 'float32', ['B', channels, 'H', 'W']);
  g.output(groupNorm(g, 'n', x, { groups: 32, eps: 1e-6, silu }), 'y');
  return g;
}

test('fused: Transpose, com.microsoft GroupNorm (SiLU as activation 1, eps kept), Transpose; gamma/beta float32', () => {
  const g = build(320, true, true);
  const ops = g.nodes.map((n) => `${n.domain ? `${n.domain}.` : ''}${n.opType}`);
  assert.deepEqual(
    ops.filter((o) => o !== 'Cast' && o !== 'Identity'),
    ['Transpose', 'com.microsoft.GroupNorm', 'Transpose'],
  );
  const gn = g.nodes.find((n) => n.opType === 'GroupNorm')!;
  assert.equal(gn.attrs.activation, 1);
  assert.equal(gn.attrs.groups, 32);
  assert.equal(gn.attrs.channels_last, 1);
  assert.equal((gn.attrs.epsilon as FloatAttr).value, 1e-6);
  const [, gamma, beta] = gn.inputs.map((name) => g.constants.find((c) => c.name === name));
  assert.equal(gamma?.dataType, DataType.FLOAT);
  assert.equal(beta?.dataType, DataType.FLOAT);
  assert.equal(new Float32Array(gamma!.raw.slice().buffer)[0], 1.5);
  assert.equal(build(320, true, false).nodes.find((n) => n.opType === 'GroupNorm')!.attrs.activation, 0);
});

test('widths the CUDA kernel does not take, and the unfused form, keep InstanceNormalization (+ SiLU as Sigmoid, Mul)', () => {
  for (const g of [build(64, true, true), build(320, false, true)]) {
    const ops = g.nodes.map((n) => n.opType);
    assert.ok(!ops.includes('GroupNorm'));
    assert.ok(ops.includes('InstanceNormalization'));
    assert.ok(ops.includes('Sigmoid'));
  }
});

test('fused GEGLU (CUDA, real SD1.5 shapes, structure only): MatMul, com.microsoft BiasSplitGelu on the bias, then the out linear; other widths keep Split', async () => {
  const { buildUNetGraph } = await import('../../../server/engine/model/unet.js');
  const { config, weights } = presetWeights('sd15');
  const opts = { dtype: 'float16' as const, linear: 'matmul' as const, fusedAttention: true };
  const fused = buildUNetGraph(config.unet, weights, { ...opts, fusedGeglu: true }).nodes.map((n) => n.opType);
  const plain = buildUNetGraph(config.unet, weights, opts).nodes.map((n) => n.opType);
  const count = (ops: string[], op: string) => ops.filter((o) => o === op).length;
  assert.equal(count(fused, 'BiasSplitGelu'), 16, 'one per SD1.5 transformer block');
  assert.equal(count(plain, 'BiasSplitGelu'), 0);
  assert.equal(count(plain, 'Split') - count(fused, 'Split'), 16);
});
