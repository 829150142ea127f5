/**
 * UNet conditioning embeddings: the sinusoidal timestep embedding, the time MLP (time_embed.0/2) and the SDXL ADM
 * input (label_emb: pooled text + sinusoidal time ids). Sinusoids are computed in float32 even in an fp16 graph,
 * as diffusers does (a timestep of 999 has an fp16 ulp of 0.5), and cast to the compute dtype afterwards.
 * Example: const emb = timeEmbedding(g, cfg, tRaw); // [B, timeEmbedDim]
 */
import type { UNetConfig } from './config.js';
import { linear, silu } from './blocks.js';
import { type GraphBuilder, Value } from '../onnx/graph.js';
import { DataType } from '../onnx/schema.js';

/**
 * Frequencies exp(-ln(10000) * i / half), i < half, rounded the way torch computes them in float32
 * (diffusers get_timestep_embedding with downscale_freq_shift 0 = ldm timestep_embedding).
 */
export function sinusoidFrequencies(channels: number): Float32Array {
  if (channels % 2 !== 0) throw new Error(`sinusoidal embedding needs an even channel count, got ${channels}`);
  const half = channels / 2;
  const f = Math.fround;
  const negLog = f(-Math.log(10000));
  return Float32Array.from({ length: half }, (_, i) => f(Math.exp(f(f(negLog * i) / half))));
}

/**
 * A float graph input as a float32 value, bypassing the builder's automatic cast to fp16
 * (only the sinusoid arguments need this; everything else runs in the compute dtype).
 */
export function float32Input(g: GraphBuilder, name: string, shape: (number | string)[]): Value {
  g.input(name, 'float32', shape);
  const io = g.inputs.find((i) => i.name === name)!;
  const raw = new Value(name); // the graph input itself, before any cast
  return io.elemType === DataType.FLOAT ? raw : g.op.Cast(raw, { to: DataType.FLOAT });
}

/** cat(cos(v * f), sin(v * f)) on a new last axis: v [...] float32 -> [..., channels] in the compute dtype. */
function sinusoidalEmbedding(g: GraphBuilder, v: Value, channels: number): Value {
  const freqs = g.constFloat32(sinusoidFrequencies(channels), [channels / 2], 'freqs');
  const args = g.op.Mul(g.op.Unsqueeze(v, g.constInt64([-1])), freqs); // [..., half]
  const emb = g.op.Concat([g.op.Cos(args), g.op.Sin(args)], { axis: -1 }); // [..., channels], cos first
  return g.floatType === DataType.FLOAT ? emb : g.op.Cast(emb, { to: g.floatType });
}

/** time_embed: Linear, SiLU, Linear on the sinusoidal embedding of t [B] (float32) -> [B, timeEmbedDim]. */
export function timeEmbedding(g: GraphBuilder, cfg: UNetConfig, t: Value): Value {
  const p = `${cfg.prefix}time_embed`;
  return g.scope(p, () => {
    const sin = sinusoidalEmbedding(g, t, cfg.modelChannels); // [B, modelChannels]
    return linear(g, `${p}.2`, silu(g, linear(g, `${p}.0`, sin)));
  });
}

/**
 * SDXL ADM conditioning: label_emb (Linear, SiLU, Linear) on concat(pooled [B, P], time-id embedding [B, 6 * T]),
 * each of the 6 time ids (float32 [B, 6]) embedded with T channels (cos first) and flattened in id order.
 */
export function admEmbedding(g: GraphBuilder, cfg: UNetConfig, textEmbeds: Value, timeIds: Value): Value {
  const adm = cfg.adm;
  if (!adm) throw new Error('admEmbedding called for a UNet without label_emb');
  const p = `${cfg.prefix}label_emb.0`;
  return g.scope(p, () => {
    const ids = sinusoidalEmbedding(g, timeIds, adm.timeIdChannels); // [B, 6, T]
    const flat = g.op.Reshape(ids, g.constInt64([0, -1])); // [B, 6 * T]
    const y = g.op.Concat([textEmbeds, flat], { axis: 1 }); // [B, P + 6 * T]
    return linear(g, `${p}.2`, silu(g, linear(g, `${p}.0`, y)));
  });
}
