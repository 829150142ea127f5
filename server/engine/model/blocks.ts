/**
 * Network building blocks on the ONNX GraphBuilder, named by checkpoint module paths (`p` = module key prefix,
 * e.g. 'first_stage_model.decoder.conv_in'; its tensors are `${p}.weight` / `${p}.bias`).
 * The semantics follow torch: GroupNorm/LayerNorm eps inside the sqrt, biased variance, GELU with erf.
 * Example:
 *   const h = conv2d(g, 'first_stage_model.decoder.conv_in', z, { padding: 1 });
 *   const n = groupNorm(g, 'first_stage_model.decoder.norm_out', h, { groups: 32, silu: true });
 */
import { type Attrs, FloatAttr, type GraphBuilder, type Value } from '../onnx/graph.js';

/** `${p}.${leaf}` with or without a trailing dot in p */
export function key(p: string, leaf: string): string {
  return p.endsWith('.') ? p + leaf : `${p}.${leaf}`;
}
function moduleName(p: string): string {
  return p.replace(/\.$/, '');
}

/** torch.nn.Linear: x [..., in] -> [..., out]. Accepts a weight stored as [out, in] or as a 1x1 conv [out, in, 1, 1]. */
export function linear(g: GraphBuilder, p: string, x: Value): Value {
  return g.scope(moduleName(p), () =>
    linearKeys(g, key(p, 'weight'), g.hasWeight(key(p, 'bias')) ? key(p, 'bias') : null, x),
  );
}

/** Linear from explicit tensor names (OpenCLIP's fused attn.in_proj_weight / in_proj_bias). */
export function linearKeys(g: GraphBuilder, weightKey: string, biasKey: string | null, x: Value): Value {
  const [outDim, inDim] = g.weightShape(weightKey);
  const bias = biasKey ? g.weight(biasKey) : null;
  if (g.linear === 'matmul') {
    // GPU form: MatMul by W pre-transposed at build time ([in, out]) broadcasts over leading axes, no reshapes
    const y = g.op.MatMul(x, g.weightTransposed(weightKey)); // [..., out]
    return withLowRank(g, weightKey, x, bias ? g.op.Add(y, bias) : y);
  }
  const flat = g.op.Reshape(x, g.constInt64([-1, inDim])); // [N, in]
  let y: Value;
  if (g.linear === 'gemm') {
    y = g.op.Gemm(flat, g.weightTransposed(weightKey), bias); // [N, out]
  } else {
    let w = g.weight(weightKey);
    if (g.weightShape(weightKey).length === 4) w = g.op.Reshape(w, g.constInt64([outDim, inDim])); // [out, in]
    // Gemm with transB reads W as stored: a MatMul(x, Transpose(W)) would make ORT constant-fold a transposed copy
    // of every weight at session load (17 s for OpenCLIP-G's 2.8 GB here)
    y = g.op.Gemm(flat, w, bias, { transB: 1 }); // [N, out]
  }
  const outShape = g.op.Concat([g.op.Shape(x, { end: -1 }), g.constInt64([outDim])], { axis: 0 });
  return withLowRank(g, weightKey, x, g.op.Reshape(y, outShape)); // [..., out]
}

/**
 * The MatMul form of linear() without its bias add (LoRA branch included): x [..., in] -> [..., out], for a fused
 * operator that adds the bias itself. Returns the bias apart (null when the layer has none).
 */
export function linearWithoutBias(g: GraphBuilder, p: string, x: Value): { y: Value; bias: Value | null } {
  return g.scope(moduleName(p), () => {
    const weightKey = key(p, 'weight');
    const y = withLowRank(g, weightKey, x, g.op.MatMul(x, g.weightTransposed(weightKey)));
    return { y, bias: g.hasWeight(key(p, 'bias')) ? g.weight(key(p, 'bias')) : null };
  });
}

/** y + (x @ down^T) @ up^T when the WeightSource gives weightKey a low-rank branch (a LoRA kept unmerged). */
function withLowRank(g: GraphBuilder, weightKey: string, x: Value, y: Value): Value {
  const lr = g.lowRank(weightKey, 'linear');
  return lr ? g.scope('lowrank', () => g.op.Add(y, g.op.MatMul(g.op.MatMul(x, lr.down), lr.up))) : y;
}

export interface ConvOptions {
  stride?: number;
  /** symmetric padding, or [top, left, bottom, right] (VAE downsample: [0, 0, 1, 1]) */
  padding?: number | [number, number, number, number];
}

/** torch.nn.Conv2d on [B, C, H, W]; kernel size from the weight. A 2-D [out, in] weight is treated as a 1x1 conv. */
export function conv2d(g: GraphBuilder, p: string, x: Value, opts: ConvOptions = {}): Value {
  return g.scope(moduleName(p), () => {
    const shape = g.weightShape(key(p, 'weight'));
    const kh = shape.length === 4 ? shape[2] : 1,
      kw = shape.length === 4 ? shape[3] : 1;
    const pad = opts.padding ?? 0;
    const [t, l, b, r] = typeof pad === 'number' ? [pad, pad, pad, pad] : pad;
    const s = opts.stride ?? 1;
    const bias = g.hasWeight(key(p, 'bias')) ? g.weight(key(p, 'bias')) : null;
    const conv = { kernel_shape: [kh, kw], pads: [t, l, b, r], strides: [s, s] };
    let y: Value;
    if (g.nhwcConv) y = nhwcConv(g, key(p, 'weight'), x, bias, conv);
    else {
      let w = g.weight(key(p, 'weight'));
      if (shape.length === 2) w = g.op.Reshape(w, g.constInt64([shape[0], shape[1], 1, 1])); // [out, in, 1, 1]
      y = g.op.Conv(x, w, bias, conv);
    }
    // a LoRA kept unmerged: down is a conv of the same kernel and stride (to `rank` channels), up a 1x1 conv
    const lr = g.lowRank(key(p, 'weight'), 'conv');
    if (!lr) return y;
    return g.scope('lowrank', () =>
      g.op.Add(y, g.op.Conv(g.op.Conv(x, lr.down, null, conv), lr.up, null, { kernel_shape: [1, 1] })),
    );
  });
}

/**
 * conv2d's CUDA form (GraphOptions.nhwcConv): x [B, C, H, W] moved channels-last, com.microsoft NhwcConv on the
 * weight stored [out, kh, kw, in], the result moved back; the moves cancel against a neighbour's (transposeOf), e.g.
 * the channels-last GroupNorm before it. ORT's CUDA kernel reads the weight channels-last when it is a constant.
 */
function nhwcConv(g: GraphBuilder, weightKey: string, x: Value, bias: Value | null, conv: Attrs): Value {
  const xs = g.transposeOf(x, NHWC); // [B, H, W, C]
  const w = g.weightNhwc(weightKey); // [out, kh, kw, in]
  let y: Value; // [B, H', W', out]
  if (g.nhwcConv === 'cpu-twin') {
    // the form with ONNX Conv in NhwcConv's place: its own Transposes (not cancelled), the weight moved back in-graph
    const back = { perm: [0, 3, 1, 2] };
    const inner = g.op.Conv(g.op.Transpose(xs, back), g.op.Transpose(w, back), bias, conv);
    y = g.op.Transpose(inner, { perm: [0, 2, 3, 1] });
  } else {
    y = g.node('NhwcConv', [xs, w, bias], conv, 1, 'com.microsoft')[0];
  }
  return g.transposeOf(y, NCHW); // [B, out, H', W']
}

export interface NormOptions {
  groups: number;
  eps?: number;
}

/**
 * torch.nn.GroupNorm on [B, C, ...], then SiLU when opts.silu: reshape to [B, G, -1], InstanceNormalization (per-group
 * mean/var, no affine), reshape back, then the per-channel affine. (ONNX GroupNormalization-18 has per-group affine and
 * is deprecated; the InstanceNormalization form runs on every EP.) With g.fusedGroupNorm (CUDA, 4-D input) it is one
 * com.microsoft GroupNorm node in channels-last between two Transposes, the SiLU fused in.
 */
export function groupNorm(g: GraphBuilder, p: string, x: Value, opts: NormOptions & { silu?: boolean }): Value {
  return g.scope(moduleName(p), () => {
    const G = opts.groups;
    const channels = g.weightShape(key(p, 'weight'))[0];
    // the CPU twin of the NhwcConv form takes the channels-last GroupNorm's place at any width (its wiring is the test)
    const twin = g.nhwcConv === 'cpu-twin';
    if (g.fusedGroupNorm && g.weights && (twin || fusableGroupNorm(channels, G))) {
      const nhwc = g.transposeOf(x, NHWC); // [B, H, W, C]
      let y: Value;
      if (twin) {
        const inner = instanceNormGroupNorm(g, p, g.op.Transpose(nhwc, { perm: [0, 3, 1, 2] }), channels, opts);
        y = g.op.Transpose(inner, { perm: [0, 2, 3, 1] });
      } else {
        // gamma and beta are float32 whatever the compute dtype (the CUDA kernel reads them so)
        const gamma = g.constFloat32(g.weights.read(key(p, 'weight')), [channels], 'gamma');
        const beta = g.constFloat32(g.weights.read(key(p, 'bias')), [channels], 'beta');
        [y] = g.node(
          'GroupNorm',
          [nhwc, gamma, beta],
          { groups: G, epsilon: new FloatAttr(opts.eps ?? 1e-5), activation: opts.silu ? 1 : 0, channels_last: 1 },
          1,
          'com.microsoft',
        );
      }
      return g.transposeOf(y, NCHW); // [B, C, H, W]
    }
    return instanceNormGroupNorm(g, p, x, channels, opts);
  });
}

/** GroupNorm (+ SiLU) on [B, C, H, W] as Reshape / InstanceNormalization / Reshape and the per-channel affine. */
function instanceNormGroupNorm(
  g: GraphBuilder,
  p: string,
  x: Value,
  channels: number,
  opts: NormOptions & { silu?: boolean },
): Value {
  const G = opts.groups;
  const grouped = g.op.Reshape(x, g.constInt64([0, G, -1])); // [B, G, C/G * H * W]
  const ones = g.constFloat(new Array(G).fill(1), [G], 'ones');
  const zeros = g.constFloat(new Array(G).fill(0), [G], 'zeros');
  const normed = g.op.InstanceNormalization(grouped, ones, zeros, { epsilon: opts.eps ?? 1e-5 });
  const back = g.op.Reshape(normed, g.op.Shape(x)); // [B, C, H, W]
  const y = affineChannels(g, p, back, channels);
  return opts.silu ? silu(g, y) : y;
}

/**
 * What ONNX Runtime's CUDA GroupNorm kernel takes: 32 groups of an even number of channels, in the channel counts its
 * block sizes divide (every SD1/SDXL UNet and VAE width); anything else keeps the InstanceNormalization form.
 */
function fusableGroupNorm(channels: number, groups: number): boolean {
  return groups === 32 && [128, 256, 320, 512, 640, 960, 1280, 1920, 2560].includes(channels);
}

/** y = x * gamma[c] + beta[c] on [B, C, H, W] (channel axis 1). */
function affineChannels(g: GraphBuilder, p: string, x: Value, channels: number): Value {
  const perChannel = g.constInt64([channels, 1, 1]);
  const gamma = g.op.Reshape(g.weight(key(p, 'weight')), perChannel); // [C, 1, 1]
  const beta = g.op.Reshape(g.weight(key(p, 'bias')), perChannel); // [C, 1, 1]
  return g.op.Add(g.op.Mul(x, gamma), beta);
}

/** torch.nn.LayerNorm over the last axis. */
export function layerNorm(g: GraphBuilder, p: string, x: Value, eps = 1e-5): Value {
  return g.scope(moduleName(p), () =>
    g.op.LayerNormalization(x, g.weight(key(p, 'weight')), g.weight(key(p, 'bias')), { axis: -1, epsilon: eps }),
  );
}

export function silu(g: GraphBuilder, x: Value): Value {
  return g.op.Mul(x, g.op.Sigmoid(x));
}

/** exact GELU: 0.5 x (1 + erf(x / sqrt 2)) */
export function gelu(g: GraphBuilder, x: Value): Value {
  const e = g.op.Erf(g.op.Mul(x, g.scalar(Math.SQRT1_2)));
  return g.op.Mul(g.op.Mul(x, g.scalar(0.5)), g.op.Add(e, g.scalar(1)));
}

/** CLIP's quick_gelu: x * sigmoid(1.702 x) */
export function quickGelu(g: GraphBuilder, x: Value): Value {
  return g.op.Mul(x, g.op.Sigmoid(g.op.Mul(x, g.scalar(1.702))));
}

export function activation(g: GraphBuilder, name: 'gelu' | 'quick_gelu' | 'silu', x: Value): Value {
  return name === 'gelu' ? gelu(g, x) : name === 'quick_gelu' ? quickGelu(g, x) : silu(g, x);
}

export interface AttentionOptions {
  heads: number;
  headDim: number;
  causal?: boolean;
}

/**
 * Multi-head scaled dot-product attention: q [B, Tq, heads*headDim], k/v [B, Tk, heads*headDim] -> [B, Tq, heads*headDim].
 * softmax(q k^T / sqrt(headDim) + mask) v, with an upper-triangular -inf mask when causal.
 */
export function attention(g: GraphBuilder, q: Value, k: Value, v: Value, opts: AttentionOptions): Value {
  return g.scope('attn', () => {
    const { heads, headDim } = opts;
    if (g.fusedAttention && !opts.causal) {
      // onnxruntime's fused kernel takes [B, T, heads*headDim] as is and splits heads itself
      return g.node(
        'MultiHeadAttention',
        [q, k, v],
        { num_heads: heads, scale: new FloatAttr(headDim ** -0.5) },
        1,
        'com.microsoft',
      )[0]; // [B, Tq, C]
    }
    const split = g.constInt64([0, 0, heads, headDim]);
    // scale q and k by d^-1/4 each before the product so fp16 scores cannot overflow
    const s = g.scalar(headDim ** -0.25);
    const qh = g.op.Transpose(g.op.Reshape(g.op.Mul(q, s), split), { perm: [0, 2, 1, 3] }); // [B, h, Tq, d]
    const kt = g.op.Transpose(g.op.Reshape(g.op.Mul(k, s), split), { perm: [0, 2, 3, 1] }); // [B, h, d, Tk]
    const vh = g.op.Transpose(g.op.Reshape(v, split), { perm: [0, 2, 1, 3] }); // [B, h, Tk, d]
    let scores = g.op.MatMul(qh, kt); // [B, h, Tq, Tk]
    if (opts.causal) scores = g.op.Add(scores, causalMask(g, q));
    const probs = g.op.Softmax(scores, { axis: -1 });
    const o = g.op.Transpose(g.op.MatMul(probs, vh), { perm: [0, 2, 1, 3] }); // [B, Tq, h, d]
    return g.op.Reshape(o, g.constInt64([0, 0, heads * headDim])); // [B, Tq, C]
  });
}

/** [T, T] with -inf above the diagonal, 0 elsewhere; T from x [B, T, C]. */
function causalMask(g: GraphBuilder, x: Value): Value {
  const t = g.op.Shape(x, { start: 1, end: 2 }); // [T]
  const full = g.op.ConstantOfShape(g.op.Concat([t, t], { axis: 0 }), {
    value: g.tensorAttr([-Infinity], 'float', [1]),
  });
  return g.op.Trilu(full, g.constInt64([1], []), { upper: 1 });
}

/** nearest-neighbour x2 upsampling on [B, C, H, W] (torch F.interpolate(scale_factor=2, mode='nearest')) */
export function upsampleNearest2x(g: GraphBuilder, x: Value): Value {
  const resize = (v: Value, scales: number[]) =>
    g.op.Resize(v, g.constFloat32(scales), {
      mode: 'nearest',
      coordinate_transformation_mode: 'asymmetric',
      nearest_mode: 'floor',
    });
  return channelsLast(g) ? channelsLastOp(g, (v) => resize(v, [1, 2, 2, 1]), x) : resize(x, [1, 1, 2, 2]);
}

/**
 * Nearest x2 upsampling of x [B, C, h, w], cut to the height and width of `like` [B, C', H, W] (H <= 2h, W <= 2w):
 * ComfyUI's Upsample to the skip it meets (F.interpolate(size=...), nearest). A latent whose size halves to an odd
 * number gives a skip one short of 2h; for it, 2x then cut picks the same rows as torch's floor(i * h / H). On even
 * sizes the cut keeps everything.
 */
export function upsampleNearest2xLike(g: GraphBuilder, x: Value, like: Value): Value {
  const cut = (v: Value, l: Value, hAxis: number) =>
    g.op.Slice(
      v,
      g.constInt64([0, 0]),
      g.op.Shape(l, { start: hAxis, end: hAxis + 2 }),
      g.constInt64([hAxis, hAxis + 1]),
    );
  const resize = (v: Value, scales: number[]) =>
    g.op.Resize(v, g.constFloat32(scales), {
      mode: 'nearest',
      coordinate_transformation_mode: 'asymmetric',
      nearest_mode: 'floor',
    });
  // channels-last: `like` is read in the layout the concat that follows moves it to anyway
  return channelsLast(g)
    ? channelsLastOp(g, (v, l) => cut(resize(v, [1, 2, 2, 1]), l, 1), x, like)
    : cut(resize(x, [1, 1, 2, 2]), like, 2);
}

export interface ResnetNames {
  norm1: string;
  conv1: string;
  norm2: string;
  conv2: string;
  /** 1x1 conv on the skip path when channels change (absent weights = identity skip) */
  shortcut?: string;
  /** Linear projecting the time embedding (UNet only) */
  embProj?: string;
}

/**
 * ResNet block: x + conv2(silu(norm2(conv1(silu(norm1(x))) + proj(silu(temb))))); the skip uses a 1x1 conv when
 * its weights exist. temb [B, E] is broadcast over H, W.
 */
export function resnetBlock(g: GraphBuilder, n: ResnetNames, x: Value, opts: NormOptions & { temb?: Value }): Value {
  let h = conv2d(g, n.conv1, groupNorm(g, n.norm1, x, { ...opts, silu: true }), { padding: 1 });
  if (opts.temb && n.embProj) {
    const e = linear(g, n.embProj, silu(g, opts.temb)); // [B, C]
    // channels-last: the add happens between conv1 and norm2 without moving h ([B, 1, 1, C] broadcast)
    h = channelsLast(g)
      ? g.transposeOf(g.op.Add(g.transposeOf(h, NHWC), g.op.Unsqueeze(e, g.constInt64([1, 2]))), NCHW)
      : g.op.Add(h, g.op.Unsqueeze(e, g.constInt64([2, 3]))); // [B, C, 1, 1]
  }
  h = conv2d(g, n.conv2, groupNorm(g, n.norm2, h, { ...opts, silu: true }), { padding: 1 });
  const skip = n.shortcut && g.hasWeight(key(n.shortcut, 'weight')) ? conv2d(g, n.shortcut, x) : x;
  return channelsLastOp(g, (a, b) => g.op.Add(a, b), skip, h);
}

/** perms between [B, C, H, W] and [B, H, W, C] */
export const NHWC = [0, 2, 3, 1];
export const NCHW = [0, 3, 1, 2];

/**
 * Whether graph builders keep activations channels-last between layout-moving operators (the NhwcConv form): then
 * elementwise ops, concats and resizes between them run on [B, H, W, C] (channelsLastOp), so that the moves
 * (transposeOf) cancel and consecutive ResBlocks, transformers and convs meet with no Transposes between them.
 */
export function channelsLast(g: GraphBuilder): boolean {
  return g.nhwcConv !== false;
}

/**
 * op on [B, C, H, W] values, run channels-last when channelsLast(g) (op then sees [B, H, W, C]: a channel-axis
 * argument must be picked by the caller); the result is [B, C, H, W] either way.
 */
export function channelsLastOp(g: GraphBuilder, op: (...xs: Value[]) => Value, ...xs: Value[]): Value {
  if (!channelsLast(g)) return op(...xs);
  return g.transposeOf(op(...xs.map((x) => g.transposeOf(x, NHWC))), NCHW);
}
