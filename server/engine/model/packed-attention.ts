/**
 * The packed attention form (GraphOptions.packedAttention, CUDA): a transformer attention's projections that read the
 * same input as one MatMul by a packed weight (GraphBuilder.weightPacked), whose result com.microsoft
 * MultiHeadAttention takes as packed QKV [B, S, N, 3, H] (self-attention) or packed KV [B, L, N, 2, H] (cross-attention,
 * q apart). Two MatMul launches fewer per self-attention and one per cross-attention, and cuBLAS one wider GEMM.
 * ORT's CUDA flash / memory-efficient kernels unpack a packed input with one extra kernel of their own; its TensorRT
 * fused kernels read it as it is. The CPU EP implements neither packed format: 'cpu-twin' splits the MatMul's result
 * back into q, k, v before an unpacked MultiHeadAttention, so the packed weights are checked on the CPU.
 * Example: const o = packedAttention(g, 'model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1', x, x, x,
 *   { heads: 8, headDim: 40 }); // null when the form does not apply (then build q, k, v apart)
 */
import { FloatAttr, type GraphBuilder, type Value } from '../onnx/graph.js';
import { key, linear } from './blocks.js';

/**
 * MultiHeadAttention of to_q(x), to_k(kIn), to_v(vIn) by the packed form, or null where it does not apply: the form
 * is off, attention or linears are not in their fused / MatMul forms, k and v read different inputs (a hypernetwork
 * patched them), or a packed projection has a bias or a low-rank branch (a LoRA kept unmerged, 'branch' mode).
 */
export function packedAttention(
  g: GraphBuilder,
  p: string,
  x: Value,
  kIn: Value,
  vIn: Value,
  split: { heads: number; headDim: number },
): Value | null {
  if (!g.packedAttention || !g.fusedAttention || g.linear !== 'matmul' || kIn.name !== vIn.name) return null;
  const self = kIn.name === x.name;
  const parts = (self ? ['to_q', 'to_k', 'to_v'] : ['to_k', 'to_v']).map((m) => key(`${p}.${m}`, 'weight'));
  if (parts.some((w) => g.hasWeight(w.replace(/weight$/, 'bias')) || g.hasLowRank(w))) return null;
  const { heads, headDim } = split;
  const C = heads * headDim;
  const packed = g.scope(self ? 'to_qkv' : 'to_kv', () => g.op.MatMul(kIn, g.weightPacked(parts, heads))); // [B, L, P*C]
  const byHead = g.op.Reshape(packed, g.constInt64([0, 0, heads, parts.length, headDim])); // [B, L, N, P, H]
  const q = self ? null : linear(g, `${p}.to_q`, x); // [B, S, C]
  const mha = (ins: (Value | null)[]) =>
    g.scope('attn', () =>
      g.node(
        'MultiHeadAttention',
        ins,
        { num_heads: heads, scale: new FloatAttr(headDim ** -0.5) },
        1,
        'com.microsoft',
      ),
    )[0]; // [B, S, C]
  if (g.packedAttention !== 'cpu-twin') return self ? mha([byHead]) : mha([q, byHead]);
  // the twin: each part out of the packed layout as [B, L, C], then the unpacked operator
  const sizes = g.constInt64(parts.map(() => 1));
  const unpacked = g.op
    .Split(byHead, sizes, { axis: 3 }, parts.length)
    .map((v) => g.op.Reshape(v, g.constInt64([0, 0, C]))); // [B, L, C] each
  return self ? mha(unpacked) : mha([q, ...unpacked]);
}
