/**
 * The UNet's SpatialTransformer (ldm attention.py / diffusers Transformer2DModel) on the ONNX builder:
 * GroupNorm(eps 1e-6), proj_in (1x1 conv for SD1, Linear for SDXL: the same per-token map), `depth` BasicTransformerBlocks
 * (self-attention, cross-attention on the text context, GEGLU feed-forward, each pre-LayerNorm with a residual),
 * proj_out, and the residual around the whole thing.
 * Example: h = spatialTransformer(g, cfg, 'model.diffusion_model.input_blocks.1.1', h, context, 1);
 */
import type { UNetConfig } from './config.js';
import {
  attention,
  channelsLast,
  channelsLastOp,
  gelu,
  groupNorm,
  key,
  layerNorm,
  linear,
  linearWithoutBias,
} from './blocks.js';
import { FloatAttr, type GraphBuilder, type Value } from '../onnx/graph.js';
import { type Hypernetwork, hypernetworkKV } from './hypernetwork.js';
import { packedAttention } from './packed-attention.js';

/**
 * Hypernetworks on the attentions (HypernetworkLoader; only graphs built with one have these nodes): the nets, and
 * the context's patched key/value inputs, computed once per graph for every cross-attention.
 */
export interface AttentionHypernets {
  nets: readonly Hypernetwork[];
  context: { k: Value; v: Value } | null;
}

/** ldm Normalize() in SpatialTransformer uses eps 1e-6 (the ResBlocks use 1e-5) */
const TRANSFORMER_NORM_EPS = 1e-6;

/** Head split from the config rule: a fixed head count (SD1) or fixed channels per head (SDXL). */
function headsFor(cfg: UNetConfig, channels: number): { heads: number; headDim: number } {
  if (cfg.numHeads !== null) {
    if (channels % cfg.numHeads !== 0)
      throw new Error(`${channels} attention channels do not split into ${cfg.numHeads} heads`);
    return { heads: cfg.numHeads, headDim: channels / cfg.numHeads };
  }
  if (cfg.headChannels !== null) {
    if (channels % cfg.headChannels !== 0)
      throw new Error(`${channels} attention channels do not split into heads of ${cfg.headChannels}`);
    return { heads: channels / cfg.headChannels, headDim: cfg.headChannels };
  }
  throw new Error('UNetConfig sets neither numHeads nor headChannels');
}

/**
 * CrossAttention: to_q on x, to_k on kIn and to_v on vIn (both the context, or x for self-attention, unless a
 * hypernetwork patched them), to_out.0 after the heads merge. The packed form (packed-attention.ts) makes the
 * projections of one input a single MatMul where it applies.
 */
function crossAttention(
  g: GraphBuilder,
  p: string,
  x: Value,
  kIn: Value,
  vIn: Value,
  split: { heads: number; headDim: number },
): Value {
  return g.scope(p, () => {
    const packed = packedAttention(g, p, x, kIn, vIn, split); // [B, T, C] or null
    if (packed) return linear(g, `${p}.to_out.0`, packed);
    const q = linear(g, `${p}.to_q`, x); // [B, T, C]
    const k = linear(g, `${p}.to_k`, kIn); // [B, S, C]
    const v = linear(g, `${p}.to_v`, vIn); // [B, S, C]
    return linear(g, `${p}.to_out.0`, attention(g, q, k, v, split));
  });
}

/** GEGLU feed-forward: ff.net.0.proj gives [value | gate] (2 x inner); value * gelu(gate), then ff.net.2. */
function feedForward(g: GraphBuilder, p: string, x: Value): Value {
  return g.scope(p, () => {
    const inner2 = g.weightShape(`${p}.net.0.proj.weight`)[0];
    const biased = g.hasWeight(`${p}.net.0.proj.bias`);
    if (g.fusedGeglu && g.linear === 'matmul' && biased && [2560, 5120, 10240].includes(inner2)) {
      // BiasSplitGelu: (y + bias) split in halves, left * gelu(right), in one CUDA kernel
      const { y, bias } = linearWithoutBias(g, `${p}.net.0.proj`, x); // [B, T, 2 * inner]
      const [act] = g.node('BiasSplitGelu', [y, bias], {}, 1, 'com.microsoft'); // [B, T, inner]
      return linear(g, `${p}.net.2`, act);
    }
    const proj = linear(g, `${p}.net.0.proj`, x); // [B, T, 2 * inner]
    const [value, gate] = g.op.Split(proj, g.constInt64([inner2 / 2, inner2 / 2]), { axis: -1 }, 2); // [B, T, inner] each
    const act = g.fusedBlocks ? g.node('Gelu', [gate], {}, 1, 'com.microsoft')[0] : gelu(g, gate);
    return linear(g, `${p}.net.2`, g.op.Mul(value, act));
  });
}

/**
 * com.microsoft SkipLayerNormalization: LayerNorm(x + skip) and the sum itself (output 3; the training outputs 1 and 2,
 * mean and inverse std, stay unnamed).
 */
function skipLayerNorm(g: GraphBuilder, p: string, x: Value, skip: Value): { normed: Value; sum: Value } {
  return g.scope(p, () => {
    const outs = g.node(
      'SkipLayerNormalization',
      [x, skip, g.weight(key(p, 'weight')), g.weight(key(p, 'bias'))],
      { epsilon: new FloatAttr(1e-5) },
      4,
      'com.microsoft',
    );
    const node = g.nodes[g.nodes.length - 1];
    node.outputs[1] = '';
    node.outputs[2] = '';
    return { normed: outs[0], sum: outs[3] };
  });
}

/** BasicTransformerBlock: x += attn1(norm1 x); x += attn2(norm2 x, context); x += ff(norm3 x). */
function transformerBlock(
  g: GraphBuilder,
  p: string,
  x: Value,
  context: Value,
  split: { heads: number; headDim: number },
  hyper?: AttentionHypernets,
): Value {
  // self-attention's keys/values come from norm1 x, patched per block when a hypernetwork has the block's width
  const attn1 = (n1: Value) => {
    const kv = hyper ? hypernetworkKV(g, hyper.nets, n1, split.heads * split.headDim) : null;
    return crossAttention(g, `${p}.attn1`, n1, kv?.k ?? n1, kv?.v ?? n1, split);
  };
  const attn2 = (n2: Value) =>
    crossAttention(g, `${p}.attn2`, n2, hyper?.context?.k ?? context, hyper?.context?.v ?? context, split);
  if (g.fusedBlocks) {
    // the same block with each residual add folded into the next LayerNorm (two nodes fewer per block)
    return g.scope(p, () => {
      const n1 = layerNorm(g, `${p}.norm1`, x);
      const s2 = skipLayerNorm(g, `${p}.norm2`, attn1(n1), x);
      const s3 = skipLayerNorm(g, `${p}.norm3`, attn2(s2.normed), s2.sum);
      return g.op.Add(s3.sum, feedForward(g, `${p}.ff`, s3.normed));
    });
  }
  return g.scope(p, () => {
    let h = g.op.Add(x, attn1(layerNorm(g, `${p}.norm1`, x)));
    h = g.op.Add(h, attn2(layerNorm(g, `${p}.norm2`, h)));
    return g.op.Add(h, feedForward(g, `${p}.ff`, layerNorm(g, `${p}.norm3`, h)));
  });
}

/**
 * SpatialTransformer at module path `p`: x [B, C, H, W], context [B, S, contextDim] -> [B, C, H, W].
 * `depth` = number of transformer_blocks.
 */
export function spatialTransformer(
  g: GraphBuilder,
  cfg: UNetConfig,
  p: string,
  x: Value,
  context: Value,
  depth: number,
  hyper?: AttentionHypernets,
): Value {
  return g.scope(p, () => {
    const channels = g.weightShape(key(p, 'norm.weight'))[0];
    const split = headsFor(cfg, channels);
    const normed = groupNorm(g, `${p}.norm`, x, { groups: cfg.normGroups, eps: TRANSFORMER_NORM_EPS });
    const run = (tokens: Value) => {
      // SD1's 1x1-conv proj_in/proj_out ([C, C, 1, 1]) equal SDXL's Linear ([C, C]) per token; linear() takes both
      let h = linear(g, `${p}.proj_in`, tokens); // [B, HW, C]
      for (let j = 0; j < depth; j++) h = transformerBlock(g, `${p}.transformer_blocks.${j}`, h, context, split, hyper);
      return linear(g, `${p}.proj_out`, h); // [B, HW, C]
    };
    if (channelsLast(g)) {
      // [B, H, W, C] is the tokens' layout already: reshapes only, the residual add channels-last too
      return channelsLastOp(
        g,
        (n, xs) => g.op.Add(g.op.Reshape(run(g.op.Reshape(n, g.constInt64([0, -1, channels]))), g.op.Shape(xs)), xs),
        normed,
        x,
      );
    }
    const xShape = g.op.Shape(x); // [4]: B, C, H, W
    const toTokens = (v: Value) => g.op.Transpose(g.op.Reshape(v, g.constInt64([0, 0, -1])), { perm: [0, 2, 1] }); // [B, HW, C]
    const toImage = (v: Value) => g.op.Reshape(g.op.Transpose(v, { perm: [0, 2, 1] }), xShape); // [B, C, H, W]
    return g.op.Add(toImage(run(toTokens(normed))), x);
  });
}
