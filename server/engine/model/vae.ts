/**
 * AutoencoderKL graphs with LDM names (first_stage_model.encoder./decoder., quant_conv, post_quant_conv).
 * Decoder: input `latent` [B, C, h, w] ALREADY DIVIDED by cfg.scalingFactor (callers divide the model-space latent);
 *          output `image` [B, 3, 8h, 8w] in [-1, 1], unclamped.
 * Encoder: input `image` [B, 3, H, W] in [-1, 1]; output `mean` [B, C, H/8, W/8] = mean of the latent distribution
 *          (first half of the moments), unscaled (multiply by scalingFactor for model space).
 * B, H, W are dynamic.
 * Example:
 *   const s = await createSession(serializeModel(buildVaeDecoderGraph(cfg.vae, weights)));
 *   const { image } = await runSession(s, { latent: scaled(z, 1 / cfg.vae.scalingFactor) });
 */
import type { VaeConfig } from './config.js';
import { conv2d, groupNorm, linear, resnetBlock, upsampleNearest2x, attention, key } from './blocks.js';
import { FloatAttr, GraphBuilder, type LinearForm, type Value } from '../onnx/graph.js';
import type { ComputeDtype } from '../types.js';
import { DataType } from '../onnx/schema.js';
import type { WeightSource } from '../onnx/weights.js';

export interface VaeGraphOptions {
  dtype?: ComputeDtype;
  /** fused com.microsoft MultiHeadAttention in the mid-block attention (GPU graphs; see GraphOptions) */
  fusedAttention?: boolean;
  /** how linears multiply (GraphOptions.linear; GPU graphs only) */
  linear?: LinearForm;
  /**
   * GPU graphs: the mid-block attention's operator ('fused' MultiHeadAttention or 'plain' MatMul/Softmax/MatMul),
   * optionally computed in fp16 inside an fp32 graph ('-fp16': q/k/v cast down, the output cast back; the SDXL VAE
   * runs fp32 because its conv activations overflow fp16, its attention inputs are GroupNorm-ed). Default: fused when
   * fusedAttention, else plain, in the graph's dtype.
   */
  midAttention?: VaeAttentionForm;
  /** com.microsoft GroupNorm with fused SiLU (GraphOptions.fusedGroupNorm; CUDA only) */
  fusedGroupNorm?: boolean;
}

export type VaeAttentionForm = 'fused' | 'plain' | 'fused-fp16' | 'plain-fp16';

const VAE_EPS = 1e-6; // ldm Normalize(): GroupNorm(32, eps=1e-6)

function vaeResnet(g: GraphBuilder, cfg: VaeConfig, p: string, x: Value): Value {
  return g.scope(p, () =>
    resnetBlock(
      g,
      {
        norm1: `${p}.norm1`,
        conv1: `${p}.conv1`,
        norm2: `${p}.norm2`,
        conv2: `${p}.conv2`,
        shortcut: `${p}.nin_shortcut`,
      },
      x,
      { groups: cfg.normGroups, eps: VAE_EPS },
    ),
  );
}

/** ldm AttnBlock: single-head self-attention over H*W positions; q/k/v/proj_out stored as 1x1 convs or linears. */
function vaeAttention(g: GraphBuilder, cfg: VaeConfig, p: string, x: Value, form: VaeAttentionForm | undefined): Value {
  return g.scope(p, () => {
    const C = g.weightShape(key(`${p}.q`, 'weight'))[0];
    const h = groupNorm(g, `${p}.norm`, x, { groups: cfg.normGroups, eps: VAE_EPS });
    const tokens = g.op.Transpose(g.op.Reshape(h, g.constInt64([0, C, -1])), { perm: [0, 2, 1] }); // [B, HW, C]
    const [q, k, v] = ['q', 'k', 'v'].map((n) => linear(g, `${p}.${n}`, tokens));
    const attended =
      form === undefined ? attention(g, q, k, v, { heads: 1, headDim: C }) : singleHeadAttention(g, q, k, v, C, form);
    const a = linear(g, `${p}.proj_out`, attended); // [B, HW, C]
    const back = g.op.Reshape(g.op.Transpose(a, { perm: [0, 2, 1] }), g.op.Shape(x)); // [B, C, H, W]
    return g.op.Add(x, back);
  });
}

/**
 * softmax(q k^T / sqrt(C)) v for one head of width C, in the form asked for. q and k are each scaled by C^-1/4 in
 * the graph's dtype first (scores cannot overflow fp16), so the kernels run unscaled.
 */
function singleHeadAttention(g: GraphBuilder, q: Value, k: Value, v: Value, C: number, form: VaeAttentionForm): Value {
  const s = g.scalar(C ** -0.25);
  const half = form.endsWith('-fp16') && g.floatType !== DataType.FLOAT16;
  const down = (t: Value) => (half ? g.op.Cast(t, { to: DataType.FLOAT16 }) : t);
  const [qs, ks, vs] = [down(g.op.Mul(q, s)), down(g.op.Mul(k, s)), down(v)]; // [B, HW, C]
  let o: Value;
  if (form.startsWith('fused')) {
    o = g.node('MultiHeadAttention', [qs, ks, vs], { num_heads: 1, scale: new FloatAttr(1) }, 1, 'com.microsoft')[0]; // [B, HW, C]
  } else {
    const scores = g.op.MatMul(qs, g.op.Transpose(ks, { perm: [0, 2, 1] })); // [B, HW, HW]
    o = g.op.MatMul(g.op.Softmax(scores, { axis: -1 }), vs); // [B, HW, C]
  }
  return half ? g.op.Cast(o, { to: g.floatType }) : o;
}

function midBlock(g: GraphBuilder, cfg: VaeConfig, p: string, x: Value, form?: VaeAttentionForm): Value {
  x = vaeResnet(g, cfg, `${p}mid.block_1`, x);
  x = vaeAttention(g, cfg, `${p}mid.attn_1`, x, form);
  return vaeResnet(g, cfg, `${p}mid.block_2`, x);
}

/** Decoder graph: `latent` (already / scalingFactor) -> `image` in [-1, 1]. */
export function buildVaeDecoderGraph(cfg: VaeConfig, weights: WeightSource, opts: VaeGraphOptions = {}): GraphBuilder {
  const g = new GraphBuilder({
    weights,
    dtype: opts.dtype ?? 'float32',
    fusedAttention: opts.fusedAttention,
    linear: opts.linear,
    fusedGroupNorm: opts.fusedGroupNorm,
    name: 'vae_decoder',
  });
  const p = cfg.decoderPrefix;
  let x = g.input('latent', 'float32', ['B', cfg.latentChannels, 'h', 'w']);
  x = conv2d(g, `${cfg.prefix}post_quant_conv`, x);
  x = conv2d(g, `${p}conv_in`, x, { padding: 1 });
  x = midBlock(g, cfg, p, x, opts.midAttention);
  for (let i = cfg.channelMult.length - 1; i >= 0; i--) {
    for (let j = 0; j <= cfg.numResBlocks; j++) x = vaeResnet(g, cfg, `${p}up.${i}.block.${j}`, x);
    if (i !== 0) x = conv2d(g, `${p}up.${i}.upsample.conv`, upsampleNearest2x(g, x), { padding: 1 });
  }
  x = groupNorm(g, `${p}norm_out`, x, { groups: cfg.normGroups, eps: VAE_EPS, silu: true });
  g.output(conv2d(g, `${p}conv_out`, x, { padding: 1 }), 'image', 'float32', ['B', 3, 'H', 'W']);
  return g;
}

/** Encoder graph: `image` in [-1, 1] -> `mean` of the latent distribution (unscaled). */
export function buildVaeEncoderGraph(cfg: VaeConfig, weights: WeightSource, opts: VaeGraphOptions = {}): GraphBuilder {
  const g = new GraphBuilder({
    weights,
    dtype: opts.dtype ?? 'float32',
    fusedAttention: opts.fusedAttention,
    linear: opts.linear,
    fusedGroupNorm: opts.fusedGroupNorm,
    name: 'vae_encoder',
  });
  const p = cfg.encoderPrefix;
  let x = g.input('image', 'float32', ['B', 3, 'H', 'W']);
  x = conv2d(g, `${p}conv_in`, x, { padding: 1 });
  for (let i = 0; i < cfg.channelMult.length; i++) {
    for (let j = 0; j < cfg.numResBlocks; j++) x = vaeResnet(g, cfg, `${p}down.${i}.block.${j}`, x);
    // ldm Downsample pads (0, 1, 0, 1) (right and bottom only), then a stride-2 conv without padding
    if (i !== cfg.channelMult.length - 1)
      x = conv2d(g, `${p}down.${i}.downsample.conv`, x, { stride: 2, padding: [0, 0, 1, 1] });
  }
  x = midBlock(g, cfg, p, x, opts.midAttention);
  x = groupNorm(g, `${p}norm_out`, x, { groups: cfg.normGroups, eps: VAE_EPS, silu: true });
  x = conv2d(g, `${p}conv_out`, x, { padding: 1 });
  const moments = conv2d(g, `${cfg.prefix}quant_conv`, x); // [B, 2C, h, w] = mean ++ logvar
  const mean = g.op.Slice(moments, g.constInt64([0]), g.constInt64([cfg.latentChannels]), g.constInt64([1])); // [B, C, h, w]
  g.output(mean, 'mean', 'float32', ['B', cfg.latentChannels, 'h', 'w']);
  return g;
}
