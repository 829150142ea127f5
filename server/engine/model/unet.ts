/**
 * The SD1 / SDXL UNet (ldm/sgm openaimodel.UNetModel, = diffusers UNet2DConditionModel) as an ONNX graph.
 * Initializers are named exactly as the checkpoint keys (`model.diffusion_model.*`); every size comes from the
 * UNetConfig or from weight shapes, so one builder serves both families and any width.
 *
 * Graph I/O (float32; names are dynamic dims):
 *   x [B, C, H, W], t [B] (float timesteps), context [B, S, contextDim] (S = 77 * chunks)
 *   ADM models only: text_embeds [B, pooled], time_ids [B, 6] = [orig_h, orig_w, crop_top, crop_left, target_h, target_w]
 *   inpainting models only (inChannels > outChannels, e.g. 9): x [B, outChannels, H, W] plus
 *     c_concat [B, inChannels - outChannels, H, W] (the mask, then the masked image's latent), joined on channels
 *     after x as ComfyUI's apply_model does (x is scaled for the model, c_concat is not)
 *   -> eps [B, outChannels, H, W]
 * H and W must be multiples of 2^(levels - 1) in latent pixels (8 for SD1, 4 for SDXL), as in ldm.
 *
 * Example:
 *   const file = SafetensorsFile.open(ckpt);
 *   const g = buildUNetGraph(detectCheckpoint(file).unet, safetensorsWeights(file));
 *   const s = await createSession(serializeModel(g));
 *   const { eps } = await runSession(s, { x, t, context });
 */
import { concatChannels, type UNetConfig } from './config.js';
import { channelsLast, channelsLastOp, conv2d, groupNorm, resnetBlock, upsampleNearest2xLike } from './blocks.js';
import { GraphBuilder, type LinearForm, type Value } from '../onnx/graph.js';
import type { ComputeDtype } from '../types.js';
import type { WeightSource } from '../onnx/weights.js';
import { admEmbedding, float32Input, timeEmbedding } from './unet-embed.js';
import { spatialTransformer, type AttentionHypernets } from './unet-transformer.js';
import { type Hypernetwork, hypernetworkKV, withHypernetworkWeights } from './hypernetwork.js';

export interface UNetBuildOptions {
  /** compute dtype: 'float32' (CPU, exact) or 'float16' (GPU); graph I/O stays float32 unless fp16Io */
  dtype?: ComputeDtype;
  fp16Io?: boolean;
  /** fused com.microsoft MultiHeadAttention in the transformer blocks (GPU graphs; see GraphOptions) */
  fusedAttention?: boolean;
  /** com.microsoft SkipLayerNormalization and Gelu in the transformer blocks (GraphOptions.fusedBlocks) */
  fusedBlocks?: boolean;
  /** com.microsoft GroupNorm with fused SiLU (GraphOptions.fusedGroupNorm; CUDA only) */
  fusedGroupNorm?: boolean;
  /** com.microsoft BiasSplitGelu in the feed-forwards (GraphOptions.fusedGeglu; CUDA only) */
  fusedGeglu?: boolean;
  /** 2-D convolutions as com.microsoft NhwcConv (GraphOptions.nhwcConv; CUDA only, or its CPU twin) */
  nhwcConv?: boolean | 'cpu-twin';
  /** packed q/k/v projections into MultiHeadAttention (GraphOptions.packedAttention; CUDA only, or its CPU twin) */
  packedAttention?: boolean | 'cpu-twin';
  /** how linears multiply (GraphOptions.linear; GPU graphs only) */
  linear?: LinearForm;
  /** graph name stored in the model */
  name?: string;
  /** ControlNet residual inputs (controlResidualNames); only for models run with a ControlNet */
  controlInputs?: boolean;
  /** hypernetworks on the attentions' key/value inputs (hypernetwork.ts); only for models that have them */
  hypernetworks?: readonly Hypernetwork[];
}

/** ResBlock GroupNorm eps (torch default); the SpatialTransformer's own norm uses 1e-6 */
const RES_NORM_EPS = 1e-5;

/** Everything the per-block builders need. */
export interface UNetCtx {
  g: GraphBuilder;
  cfg: UNetConfig;
  emb: Value;
  context: Value;
  hyper?: AttentionHypernets;
}

/** ldm ResBlock at module path p: in_layers (GN, SiLU, conv), emb_layers (SiLU, Linear), out_layers, skip. */
function resBlock(c: UNetCtx, p: string, x: Value): Value {
  return resnetBlock(
    c.g,
    {
      norm1: `${p}.in_layers.0`,
      conv1: `${p}.in_layers.2`,
      embProj: `${p}.emb_layers.1`,
      norm2: `${p}.out_layers.0`,
      conv2: `${p}.out_layers.3`,
      shortcut: `${p}.skip_connection`,
    },
    x,
    { groups: c.cfg.normGroups, eps: RES_NORM_EPS, temb: c.emb },
  );
}

/** ResBlock, then a SpatialTransformer at `${p}.1` when the level has attention. */
function resAndAttention(c: UNetCtx, p: string, x: Value, depth: number): Value {
  const h = resBlock(c, `${p}.0`, x);
  return depth > 0 ? spatialTransformer(c.g, c.cfg, `${p}.1`, h, c.context, depth, c.hyper) : h;
}

/** Graph inputs t, context (+ SDXL text_embeds, time_ids) and the embedding every ResBlock takes. */
export function unetConditioning(g: GraphBuilder, cfg: UNetConfig): UNetCtx {
  const t = float32Input(g, 't', ['B']); // stays float32 for the sinusoids
  const context = g.input('context', 'float32', ['B', 'S', cfg.contextDim]);
  let emb = timeEmbedding(g, cfg, t); // [B, timeEmbedDim]
  if (cfg.adm) {
    const textEmbeds = g.input('text_embeds', 'float32', ['B', cfg.adm.pooledChannels]);
    const timeIds = float32Input(g, 'time_ids', ['B', 6]);
    emb = g.op.Add(emb, admEmbedding(g, cfg, textEmbeds, timeIds)); // [B, timeEmbedDim]
  }
  return { g, cfg, emb, context };
}

/**
 * The encoder half, shared with the ControlNet: input_blocks (conv_in, then per level numResBlocks x (ResBlock
 * [+ attention]) and a stride-2 Downsample) and middle_block. `afterConvIn` may add to conv_in's output (the
 * ControlNet's hint). Returns the middle block's output and the skips (every input block's output, in order).
 */
export function unetEncoder(c: UNetCtx, x: Value, afterConvIn?: (h: Value) => Value): { h: Value; skips: Value[] } {
  const { g, cfg } = c;
  const p = cfg.prefix;
  const levels = cfg.channelMult.length;
  let h = conv2d(g, `${p}input_blocks.0.0`, x, { padding: 1 }); // [B, mc, H, W]
  if (afterConvIn) h = afterConvIn(h);
  const skips: Value[] = [h];
  let block = 1;
  for (let level = 0; level < levels; level++) {
    for (let r = 0; r < cfg.numResBlocks; r++) {
      h = resAndAttention(c, `${p}input_blocks.${block++}`, h, cfg.transformerDepth[level]);
      skips.push(h);
    }
    if (level < levels - 1) {
      h = conv2d(g, `${p}input_blocks.${block++}.0.op`, h, { stride: 2, padding: 1 }); // [B, C, H/2, W/2]
      skips.push(h);
    }
  }
  // middle_block: ResBlock, SpatialTransformer (when depth > 0), ResBlock
  let mid = 0;
  h = resBlock(c, `${p}middle_block.${mid++}`, h);
  if (cfg.transformerDepthMiddle > 0)
    h = spatialTransformer(g, cfg, `${p}middle_block.${mid++}`, h, c.context, cfg.transformerDepthMiddle, c.hyper);
  h = resBlock(c, `${p}middle_block.${mid++}`, h);
  return { h, skips };
}

/** Channels of each skip (input block output) and of the middle block, from the config. */
export function unetSkipChannels(cfg: UNetConfig): { skips: number[]; middle: number } {
  const skips = [cfg.modelChannels];
  for (let level = 0; level < cfg.channelMult.length; level++) {
    const ch = cfg.modelChannels * cfg.channelMult[level];
    for (let r = 0; r < cfg.numResBlocks; r++) skips.push(ch);
    if (level < cfg.channelMult.length - 1) skips.push(ch);
  }
  return { skips, middle: cfg.modelChannels * cfg.channelMult[cfg.channelMult.length - 1] };
}

/** Names of the ControlNet residuals: one per skip (input block order), then the middle one. */
export function controlResidualNames(cfg: UNetConfig): { skips: string[]; middle: string } {
  return {
    skips: unetSkipChannels(cfg).skips.map((_, i) => `control_${i}`),
    middle: 'control_middle',
  };
}

/** float32 graph inputs for the residuals, shaped like the activations they add to (spatial dims per level). */
function controlResidualInputs(g: GraphBuilder, cfg: UNetConfig, skips: Value[]): { skips: Value[]; middle: Value } {
  const names = controlResidualNames(cfg);
  const ch = unetSkipChannels(cfg);
  if (names.skips.length !== skips.length) throw new Error('UNet skip count disagrees with its config');
  // skip i sits at level floor(i / (numResBlocks + 1)): conv_in and the level's res blocks, then its downsample
  const inputs = names.skips.map((name, i) => {
    const level = Math.floor(i / (cfg.numResBlocks + 1));
    return g.input(name, 'float32', ['B', ch.skips[i], `H${level}`, `W${level}`]);
  });
  const last = cfg.channelMult.length - 1;
  const middle = g.input(names.middle, 'float32', ['B', ch.middle, `H${last}`, `W${last}`]);
  return { skips: inputs, middle };
}

/** A GraphBuilder with the UNet build options' dtype and graph forms (the UNet and the ControlNet share them). */
export function unetFamilyBuilder(weights: WeightSource, opts: UNetBuildOptions, name: string): GraphBuilder {
  return new GraphBuilder({
    weights,
    dtype: opts.dtype ?? 'float32',
    fp16Io: opts.fp16Io,
    fusedAttention: opts.fusedAttention,
    linear: opts.linear,
    fusedBlocks: opts.fusedBlocks,
    fusedGroupNorm: opts.fusedGroupNorm,
    fusedGeglu: opts.fusedGeglu,
    nhwcConv: opts.nhwcConv,
    packedAttention: opts.packedAttention,
    name: opts.name ?? name,
  });
}

/**
 * Builds the UNet graph. Returns the GraphBuilder; serialise it with serializeModel / writeModel.
 * Example: const g = buildUNetGraph(cfg.unet, weights, { dtype: 'float16' }); writeModel(g, '/tmp/unet.onnx');
 */
export function buildUNetGraph(cfg: UNetConfig, weights: WeightSource, opts: UNetBuildOptions = {}): GraphBuilder {
  const levels = cfg.channelMult.length;
  if (cfg.transformerDepth.length !== levels)
    throw new Error(`transformerDepth has ${cfg.transformerDepth.length} levels, channelMult ${levels}`);
  const nets = opts.hypernetworks ?? [];
  const g = unetFamilyBuilder(nets.length ? withHypernetworkWeights(weights, nets) : weights, opts, 'unet');
  const p = cfg.prefix;

  const extra = concatChannels(cfg);
  const xIn = g.input('x', 'float32', ['B', cfg.inChannels - extra, 'H', 'W']);
  const x = extra > 0 ? g.op.Concat([xIn, g.input('c_concat', 'float32', ['B', extra, 'H', 'W'])], { axis: 1 }) : xIn;
  const c = unetConditioning(g, cfg);
  if (nets.length) c.hyper = { nets, context: hypernetworkKV(g, nets, c.context, cfg.contextDim) };
  const enc = unetEncoder(c, x);
  let h = enc.h;
  const skips = enc.skips;
  // ControlNet residuals (ComfyUI's apply_control): the middle one after the middle block, one per skip when it is
  // popped for the output blocks. Only the controlled variant has these inputs, so plain graphs stay as they were.
  const control = opts.controlInputs ? controlResidualInputs(g, cfg, skips) : null;
  if (control) h = g.op.Add(h, control.middle);

  // output_blocks: per level (deepest first) numResBlocks + 1 x (concat skip, ResBlock [+ attention]),
  // the last of each level but the top one followed by nearest x2 + conv
  let block = 0;
  for (let level = levels - 1; level >= 0; level--) {
    const depth = cfg.transformerDepth[level];
    for (let r = 0; r <= cfg.numResBlocks; r++) {
      const bp = `${p}output_blocks.${block++}`;
      let skip = skips.pop();
      if (!skip) throw new Error('UNet skip stack ran out: config and block layout disagree');
      if (control) skip = g.op.Add(skip, control.skips[skips.length]);
      // concat: [B, C + Cskip, H, W] (channels-last: on axis 3)
      const cat = channelsLastOp(g, (a, b) => g.op.Concat([a, b], { axis: channelsLast(g) ? 3 : 1 }), h, skip);
      h = resAndAttention(c, bp, cat, depth);
      if (level > 0 && r === cfg.numResBlocks) {
        const up = `${bp}.${depth > 0 ? 2 : 1}.conv`;
        // [B, C, 2H, 2W], cut to the next skip's size (odd sizes, as ComfyUI's Upsample to output_shape)
        const next = skips[skips.length - 1];
        h = g.scope(up, () => conv2d(g, up, upsampleNearest2xLike(g, h, next), { padding: 1 }));
      }
    }
  }
  if (skips.length !== 0) throw new Error(`UNet left ${skips.length} skips unused: config and block layout disagree`);

  // out: GroupNorm, SiLU, conv 3x3
  const out = conv2d(
    g,
    `${p}out.2`,
    groupNorm(g, `${p}out.0`, h, { groups: cfg.normGroups, eps: RES_NORM_EPS, silu: true }),
    { padding: 1 },
  );
  g.output(out, 'eps', 'float32', ['B', cfg.outChannels, 'H', 'W']);
  return g;
}
