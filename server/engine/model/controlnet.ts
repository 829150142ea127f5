/**
 * The SD1 / SDXL ControlNet (ldm cldm.ControlNet) as an ONNX graph: the UNet's encoder half (input_blocks and
 * middle_block, built by unet.ts's own blocks) with the hint image embedded by input_hint_block and added after
 * conv_in, and a 1x1 "zero conv" on every input block's output and on the middle block's output.
 * Weights are read under ldm names without a prefix (`input_blocks.1.0.in_layers.0.weight`, `input_hint_block.0.weight`,
 * `zero_convs.3.0.weight`, `middle_block_out.0.weight`); controlnet-file.ts serves any published layout that way.
 *
 * Graph I/O (float32): x [B, C, H, W], hint [B, hintChannels, 8H, 8W] (the image in [0, 1], channels first),
 * t [B], context [B, S, contextDim] (+ SDXL text_embeds, time_ids as the UNet)
 *   -> control_0 .. control_{n-1} (one per UNet skip, input block order), control_middle:
 * exactly the residual inputs of the UNet's controlled variant (unet.ts controlResidualNames), unscaled.
 * Example:
 *   const g = buildControlNetGraph(cfg, weights);
 *   const out = await runSession(await createSession(serializeModel(g)), { x, hint, t, context });
 */
import type { UNetConfig } from './config.js';
import { channelsLastOp, conv2d, silu } from './blocks.js';
import { GraphBuilder, type Value } from '../onnx/graph.js';
import type { WeightSource } from '../onnx/weights.js';
import {
  controlResidualNames,
  unetConditioning,
  unetEncoder,
  unetFamilyBuilder,
  unetSkipChannels,
  type UNetBuildOptions,
} from './unet.js';

export interface ControlNetConfig {
  /** the encoder's config, prefix '' (outChannels is unused) */
  unet: UNetConfig;
  /** input channels of the hint image (3 for RGB hints) */
  hintChannels: number;
  /** conv layers of input_hint_block (8 in every published ControlNet: 3 stride-2 convs make the 8x reduction) */
  hintConvs: number;
}

/**
 * input_hint_block: conv, SiLU, conv, SiLU, ... conv (no SiLU after the last); conv j sits at index 2j. Every
 * even-numbered conv but the first and the last has stride 2 (cldm: 16, 16, 32s2, 32, 96s2, 96, 256s2, out).
 */
function hintEmbedding(g: GraphBuilder, cfg: ControlNetConfig, hint: Value): Value {
  return g.scope('input_hint_block', () => {
    let h = hint;
    const last = cfg.hintConvs - 1;
    for (let j = 0; j <= last; j++) {
      const stride = j > 0 && j < last && j % 2 === 0 ? 2 : 1;
      h = conv2d(g, `input_hint_block.${2 * j}`, h, { stride, padding: 1 });
      if (j < last) h = channelsLastOp(g, (v) => silu(g, v), h); // between two convs: no layout moves
    }
    return h; // [B, modelChannels, H, W]
  });
}

export function buildControlNetGraph(
  cfg: ControlNetConfig,
  weights: WeightSource,
  opts: Omit<UNetBuildOptions, 'controlInputs'> = {},
): GraphBuilder {
  const u = cfg.unet;
  const g = unetFamilyBuilder(weights, opts, 'controlnet');
  const x = g.input('x', 'float32', ['B', u.inChannels, 'H', 'W']);
  const hint = g.input('hint', 'float32', ['B', cfg.hintChannels, 'HH', 'HW']);
  const c = unetConditioning(g, u);
  const guided = hintEmbedding(g, cfg, hint);
  const { h, skips } = unetEncoder(c, x, (h0) => g.op.Add(h0, guided));
  const names = controlResidualNames(u);
  const ch = unetSkipChannels(u);
  skips.forEach((s, i) => {
    const out = conv2d(g, `zero_convs.${i}.0`, s);
    const level = Math.floor(i / (u.numResBlocks + 1));
    g.output(out, names.skips[i], 'float32', ['B', ch.skips[i], `H${level}`, `W${level}`]);
  });
  const last = u.channelMult.length - 1;
  g.output(conv2d(g, 'middle_block_out.0', h), names.middle, 'float32', ['B', ch.middle, `H${last}`, `W${last}`]);
  return g;
}
