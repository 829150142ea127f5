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
import type { ModelFamily, VaeConfig } from './config.js';
import {
  attention,
  channelsLast,
  channelsLastOp,
  conv2d,
  groupNorm,
  key,
  linear,
  resnetBlock,
  upsampleNearest2x,
} from './blocks.js';
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
  /**
   * A power of two the residual stream (and every tensor a GroupNorm reads) is carried at (default 1; see
   * vaeStreamScale and streamScaled).
   */
  streamScale?: number;
  /** 2-D convolutions as com.microsoft NhwcConv (GraphOptions.nhwcConv; CUDA only, or its CPU twin) */
  nhwcConv?: boolean | 'cpu-twin';
}

/**
 * The SDXL VAE's activations overflow fp16 (over 65504; reports of 3e5 inside its decoder's up blocks). Every such
 * tensor is the residual stream or a conv output that a GroupNorm reads, so the graph can carry them all at 2^-5
 * exactly: conv_in, each resnet's conv1/conv2 and the attention's proj_out scale their weights and biases, shortcut
 * and resampling convs (fed the scaled stream) their biases, and each GroupNorm's eps takes the factor squared, which
 * leaves every GroupNorm output (and so the image) unchanged. 2^-5 moves fp16's ceiling to 2e6 in the original units;
 * weights that become subnormal (|w| < 2e-3) keep an absolute error under 1e-6 there, below fp16's rounding of
 * typical weights. Images that overflow even so decode again in fp32 (runtime/components.ts).
 */
export const FP16_STREAM_SCALE = 2 ** -5;

/**
 * The stream scale a VAE's graphs are built with: FP16_STREAM_SCALE for SDXL's in fp16, where it is needed; SD1 VAEs
 * keep the plain fp16 form measured on both GPU providers (an SD1 VAE that overflows falls back to fp32 all the same).
 */
export function vaeStreamScale(family: ModelFamily, dtype: ComputeDtype): number {
  return family === 'sdxl' && dtype === 'float16' ? FP16_STREAM_SCALE : 1;
}

export type VaeAttentionForm = 'fused' | 'plain' | 'fused-fp16' | 'plain-fp16';

const VAE_EPS = 1e-6; // ldm Normalize(): GroupNorm(32, eps=1e-6)

function vaeResnet(g: GraphBuilder, cfg: VaeConfig, p: string, x: Value, eps: number): Value {
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
      { groups: cfg.normGroups, eps },
    ),
  );
}

/** ldm AttnBlock: single-head self-attention over H*W positions; q/k/v/proj_out stored as 1x1 convs or linears. */
function vaeAttention(
  g: GraphBuilder,
  cfg: VaeConfig,
  p: string,
  x: Value,
  form: VaeAttentionForm | undefined,
  eps: number,
): Value {
  return g.scope(p, () => {
    const C = g.weightShape(key(`${p}.q`, 'weight'))[0];
    const h = groupNorm(g, `${p}.norm`, x, { groups: cfg.normGroups, eps });
    const attend = (tokens: Value) => {
      const [q, k, v] = ['q', 'k', 'v'].map((n) => linear(g, `${p}.${n}`, tokens));
      const attended =
        form === undefined ? attention(g, q, k, v, { heads: 1, headDim: C }) : singleHeadAttention(g, q, k, v, C, form);
      return linear(g, `${p}.proj_out`, attended); // [B, HW, C]
    };
    if (channelsLast(g)) {
      // [B, H, W, C] is the tokens' layout already: reshapes only, the residual add channels-last too
      const tokensOf = (n: Value) => g.op.Reshape(n, g.constInt64([0, -1, C]));
      return channelsLastOp(g, (n, xs) => g.op.Add(xs, g.op.Reshape(attend(tokensOf(n)), g.op.Shape(xs))), h, x);
    }
    const tokens = g.op.Transpose(g.op.Reshape(h, g.constInt64([0, C, -1])), { perm: [0, 2, 1] }); // [B, HW, C]
    const back = g.op.Reshape(g.op.Transpose(attend(tokens), { perm: [0, 2, 1] }), g.op.Shape(x)); // [B, C, H, W]
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

function midBlock(g: GraphBuilder, cfg: VaeConfig, p: string, x: Value, eps: number, form?: VaeAttentionForm): Value {
  x = vaeResnet(g, cfg, `${p}mid.block_1`, x, eps);
  x = vaeAttention(g, cfg, `${p}mid.attn_1`, x, form, eps);
  return vaeResnet(g, cfg, `${p}mid.block_2`, x, eps);
}

/** The modules of a decoder or encoder half whose outputs join its residual stream (see FP16_STREAM_SCALE). */
function streamModules(cfg: VaeConfig, part: 'decoder' | 'encoder'): { scaled: string[]; biasOnly: string[] } {
  const p = part === 'decoder' ? cfg.decoderPrefix : cfg.encoderPrefix;
  const levels = cfg.channelMult.length;
  const resnets = [`${p}mid.block_1`, `${p}mid.block_2`];
  const biasOnly: string[] = [];
  for (let i = 0; i < levels; i++) {
    const blocks = part === 'decoder' ? cfg.numResBlocks + 1 : cfg.numResBlocks;
    for (let j = 0; j < blocks; j++) resnets.push(`${p}${part === 'decoder' ? 'up' : 'down'}.${i}.block.${j}`);
    if (part === 'decoder' && i !== 0) biasOnly.push(`${p}up.${i}.upsample.conv`);
    if (part === 'encoder' && i !== levels - 1) biasOnly.push(`${p}down.${i}.downsample.conv`);
  }
  const scaled = [`${p}conv_in`, `${p}mid.attn_1.proj_out`, ...resnets.flatMap((r) => [`${r}.conv1`, `${r}.conv2`])];
  biasOnly.push(...resnets.map((r) => `${r}.nin_shortcut`));
  return { scaled, biasOnly };
}

/**
 * `weights` with a VAE half's residual stream carried at `scale` (FP16_STREAM_SCALE): the listed weights and biases
 * multiplied by it. Derived initializers (`key:T`) follow their tensor; a source's pre-encoded bytes are not used for
 * scaled tensors.
 */
export function streamScaled(
  weights: WeightSource,
  cfg: VaeConfig,
  part: 'decoder' | 'encoder',
  scale: number,
): WeightSource {
  if (scale === 1) return weights;
  const { scaled, biasOnly } = streamModules(cfg, part);
  const factors = new Set([
    ...scaled.flatMap((m) => [`${m}.weight`, `${m}.bias`]),
    ...biasOnly.map((m) => `${m}.bias`),
  ]);
  const isScaled = (name: string) => factors.has(name.split(':')[0]);
  return {
    shape: (n) => weights.shape(n),
    read: (n) => {
      const data = weights.read(n);
      if (!isScaled(n)) return data;
      if (weights.lowRank?.(n)) throw new Error(`VAE weight ${n}: a low-rank branch cannot be stream-scaled`);
      return data.map((v) => v * scale);
    },
    ...(weights.has ? { has: (n: string) => weights.has!(n) } : {}),
    ...(weights.lowRank ? { lowRank: (n: string) => weights.lowRank!(n) } : {}),
    ...(weights.encoded ? { encoded: (n: string) => (isScaled(n) ? undefined : weights.encoded!(n)) } : {}),
    ...(weights.changed ? { changed: weights.changed } : {}),
  };
}

/** The stream scale of a graph and the GroupNorm eps that goes with it. */
function streamOf(opts: VaeGraphOptions): { scale: number; eps: number } {
  const scale = opts.streamScale ?? 1;
  return { scale, eps: VAE_EPS * scale * scale };
}

/** Decoder graph: `latent` (already / scalingFactor) -> `image` in [-1, 1]. */
export function buildVaeDecoderGraph(cfg: VaeConfig, weights: WeightSource, opts: VaeGraphOptions = {}): GraphBuilder {
  const { scale, eps } = streamOf(opts);
  const g = new GraphBuilder({
    weights: streamScaled(weights, cfg, 'decoder', scale),
    dtype: opts.dtype ?? 'float32',
    fusedAttention: opts.fusedAttention,
    linear: opts.linear,
    fusedGroupNorm: opts.fusedGroupNorm,
    nhwcConv: opts.nhwcConv,
    name: 'vae_decoder',
  });
  const p = cfg.decoderPrefix;
  let x = g.input('latent', 'float32', ['B', cfg.latentChannels, 'h', 'w']);
  x = conv2d(g, `${cfg.prefix}post_quant_conv`, x);
  x = conv2d(g, `${p}conv_in`, x, { padding: 1 });
  x = midBlock(g, cfg, p, x, eps, opts.midAttention);
  for (let i = cfg.channelMult.length - 1; i >= 0; i--) {
    for (let j = 0; j <= cfg.numResBlocks; j++) x = vaeResnet(g, cfg, `${p}up.${i}.block.${j}`, x, eps);
    if (i !== 0) x = conv2d(g, `${p}up.${i}.upsample.conv`, upsampleNearest2x(g, x), { padding: 1 });
  }
  x = groupNorm(g, `${p}norm_out`, x, { groups: cfg.normGroups, eps, silu: true });
  g.output(conv2d(g, `${p}conv_out`, x, { padding: 1 }), 'image', 'float32', ['B', 3, 'H', 'W']);
  return g;
}

/** Encoder graph: `image` in [-1, 1] -> `mean` of the latent distribution (unscaled). */
export function buildVaeEncoderGraph(cfg: VaeConfig, weights: WeightSource, opts: VaeGraphOptions = {}): GraphBuilder {
  const { scale, eps } = streamOf(opts);
  const g = new GraphBuilder({
    weights: streamScaled(weights, cfg, 'encoder', scale),
    dtype: opts.dtype ?? 'float32',
    fusedAttention: opts.fusedAttention,
    linear: opts.linear,
    fusedGroupNorm: opts.fusedGroupNorm,
    nhwcConv: opts.nhwcConv,
    name: 'vae_encoder',
  });
  const p = cfg.encoderPrefix;
  let x = g.input('image', 'float32', ['B', 3, 'H', 'W']);
  x = conv2d(g, `${p}conv_in`, x, { padding: 1 });
  for (let i = 0; i < cfg.channelMult.length; i++) {
    for (let j = 0; j < cfg.numResBlocks; j++) x = vaeResnet(g, cfg, `${p}down.${i}.block.${j}`, x, eps);
    // ldm Downsample pads (0, 1, 0, 1) (right and bottom only), then a stride-2 conv without padding
    if (i !== cfg.channelMult.length - 1)
      x = conv2d(g, `${p}down.${i}.downsample.conv`, x, { stride: 2, padding: [0, 0, 1, 1] });
  }
  x = midBlock(g, cfg, p, x, eps, opts.midAttention);
  x = groupNorm(g, `${p}norm_out`, x, { groups: cfg.normGroups, eps, silu: true });
  x = conv2d(g, `${p}conv_out`, x, { padding: 1 });
  const moments = conv2d(g, `${cfg.prefix}quant_conv`, x); // [B, 2C, h, w] = mean ++ logvar
  const mean = g.op.Slice(moments, g.constInt64([0]), g.constInt64([cfg.latentChannels]), g.constInt64([1])); // [B, C, h, w]
  g.output(mean, 'mean', 'float32', ['B', cfg.latentChannels, 'h', 'w']);
  return g;
}
