/**
 * The SD1 / SDXL UNet (ldm/sgm openaimodel.UNetModel, = diffusers UNet2DConditionModel) as an ONNX graph.
 * Initializers are named exactly as the checkpoint keys (`model.diffusion_model.*`); every size comes from the
 * UNetConfig or from weight shapes, so one builder serves both families and any width.
 *
 * Graph I/O (float32; names are dynamic dims):
 *   x [B, C, H, W], t [B] (float timesteps), context [B, S, contextDim] (S = 77 * chunks)
 *   ADM models only: text_embeds [B, pooled], time_ids [B, 6] = [orig_h, orig_w, crop_top, crop_left, target_h, target_w]
 *   -> eps [B, outChannels, H, W]
 * H and W must be multiples of 2^(levels - 1) in latent pixels (8 for SD1, 4 for SDXL), as in ldm.
 *
 * Example:
 *   const file = SafetensorsFile.open(ckpt);
 *   const g = buildUNetGraph(detectCheckpoint(file).unet, safetensorsWeights(file));
 *   const s = await createSession(serializeModel(g));
 *   const { eps } = await runSession(s, { x, t, context });
 */
import type { UNetConfig } from './config.js';
import { conv2d, groupNorm, resnetBlock, silu, upsampleNearest2x } from './blocks.js';
import { GraphBuilder, type LinearForm, type Value } from '../onnx/graph.js';
import type { ComputeDtype } from '../types.js';
import type { WeightSource } from '../onnx/weights.js';
import { admEmbedding, float32Input, timeEmbedding } from './unet-embed.js';
import { spatialTransformer } from './unet-transformer.js';

export interface UNetBuildOptions {
  /** compute dtype: 'float32' (CPU, exact) or 'float16' (GPU); graph I/O stays float32 unless fp16Io */
  dtype?: ComputeDtype;
  fp16Io?: boolean;
  /** fused com.microsoft MultiHeadAttention in the transformer blocks (GPU graphs; see GraphOptions) */
  fusedAttention?: boolean;
  /** com.microsoft SkipLayerNormalization and Gelu in the transformer blocks (GraphOptions.fusedBlocks) */
  fusedBlocks?: boolean;
  /** how linears multiply (GraphOptions.linear; GPU graphs only) */
  linear?: LinearForm;
  /** graph name stored in the model */
  name?: string;
}

/** ResBlock GroupNorm eps (torch default); the SpatialTransformer's own norm uses 1e-6 */
const RES_NORM_EPS = 1e-5;

/** Everything the per-block builders need. */
interface Ctx {
  g: GraphBuilder;
  cfg: UNetConfig;
  emb: Value;
  context: Value;
}

/** ldm ResBlock at module path p: in_layers (GN, SiLU, conv), emb_layers (SiLU, Linear), out_layers, skip. */
function resBlock(c: Ctx, p: string, x: Value): Value {
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
function resAndAttention(c: Ctx, p: string, x: Value, depth: number): Value {
  const h = resBlock(c, `${p}.0`, x);
  return depth > 0 ? spatialTransformer(c.g, c.cfg, `${p}.1`, h, c.context, depth) : h;
}

/**
 * Builds the UNet graph. Returns the GraphBuilder; serialise it with serializeModel / writeModel.
 * Example: const g = buildUNetGraph(cfg.unet, weights, { dtype: 'float16' }); writeModel(g, '/tmp/unet.onnx');
 */
export function buildUNetGraph(cfg: UNetConfig, weights: WeightSource, opts: UNetBuildOptions = {}): GraphBuilder {
  const levels = cfg.channelMult.length;
  if (cfg.transformerDepth.length !== levels)
    throw new Error(`transformerDepth has ${cfg.transformerDepth.length} levels, channelMult ${levels}`);
  const g = new GraphBuilder({
    weights,
    dtype: opts.dtype ?? 'float32',
    fp16Io: opts.fp16Io,
    fusedAttention: opts.fusedAttention,
    linear: opts.linear,
    fusedBlocks: opts.fusedBlocks,
    name: opts.name ?? 'unet',
  });
  const p = cfg.prefix;

  const x = g.input('x', 'float32', ['B', cfg.inChannels, 'H', 'W']);
  const t = float32Input(g, 't', ['B']); // stays float32 for the sinusoids
  const context = g.input('context', 'float32', ['B', 'S', cfg.contextDim]);
  let emb = timeEmbedding(g, cfg, t); // [B, timeEmbedDim]
  if (cfg.adm) {
    const textEmbeds = g.input('text_embeds', 'float32', ['B', cfg.adm.pooledChannels]);
    const timeIds = float32Input(g, 'time_ids', ['B', 6]);
    emb = g.op.Add(emb, admEmbedding(g, cfg, textEmbeds, timeIds)); // [B, timeEmbedDim]
  }
  const c: Ctx = { g, cfg, emb, context };

  // input_blocks: conv_in, then per level numResBlocks x (ResBlock [+ attention]), then a stride-2 Downsample
  let h = conv2d(g, `${p}input_blocks.0.0`, x, { padding: 1 }); // [B, mc, H, W]
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
    h = spatialTransformer(g, cfg, `${p}middle_block.${mid++}`, h, context, cfg.transformerDepthMiddle);
  h = resBlock(c, `${p}middle_block.${mid++}`, h);

  // output_blocks: per level (deepest first) numResBlocks + 1 x (concat skip, ResBlock [+ attention]),
  // the last of each level but the top one followed by nearest x2 + conv
  block = 0;
  for (let level = levels - 1; level >= 0; level--) {
    const depth = cfg.transformerDepth[level];
    for (let r = 0; r <= cfg.numResBlocks; r++) {
      const bp = `${p}output_blocks.${block++}`;
      const skip = skips.pop();
      if (!skip) throw new Error('UNet skip stack ran out: config and block layout disagree');
      h = resAndAttention(c, bp, g.op.Concat([h, skip], { axis: 1 }), depth); // concat: [B, C + Cskip, H, W]
      if (level > 0 && r === cfg.numResBlocks) {
        const up = `${bp}.${depth > 0 ? 2 : 1}.conv`;
        h = g.scope(up, () => conv2d(g, up, upsampleNearest2x(g, h), { padding: 1 })); // [B, C, 2H, 2W]
      }
    }
  }
  if (skips.length !== 0) throw new Error(`UNet left ${skips.length} skips unused: config and block layout disagree`);

  // out: GroupNorm, SiLU, conv 3x3
  const out = conv2d(
    g,
    `${p}out.2`,
    silu(g, groupNorm(g, `${p}out.0`, h, { groups: cfg.normGroups, eps: RES_NORM_EPS })),
    { padding: 1 },
  );
  g.output(out, 'eps', 'float32', ['B', cfg.outChannels, 'H', 'W']);
  return g;
}
