/**
 * The patch itself: W' = W + sum over LoRAs of strength * (alpha/rank) * (up.flatten(1) @ down.flatten(1)).reshape(W.shape),
 * accumulated in float64 per row and stored as float32, into a new array (the base weight is never written).
 * Several LoRAs stack by summing their deltas; strength 0 contributes nothing; negative strengths subtract.
 * Example:
 *   const plan = planLoras(ckpt, config, [{ path: lora, strength: 0.8 }], 'unet');
 *   const patched = applyPlan(plan.get(key)!, base, shape); // base stays unchanged
 */
import { basename } from 'node:path';
import type { ModelConfig } from '../model/config.js';
import type { Component } from '../types.js';
import type { LowRankDelta } from '../onnx/weights.js';
import { type LoraFile, type LoraModule, loadLora } from './format.js';
import { type LoraTarget, loraKeyMap } from './key-map.js';
import { type LoraMatch, matchLora } from './match.js';

/** What a checkpoint offers the matcher: its keys and their shapes (a SafetensorsFile fits). */
export interface CheckpointKeys {
  keys(): string[];
  has(key: string): boolean;
  shape(key: string): number[];
}

export interface LoraUse {
  path: string;
  strength: number;
}

/** One module's contribution to one weight. */
export interface PatchTerm {
  module: LoraModule;
  target: LoraTarget;
  factor: number;
}

const keyMaps = new WeakMap<object, Map<string, LoraTarget>>();
/** The alias map of a checkpoint, memoised per checkpoint object. */
export function keyMapFor(ckpt: CheckpointKeys, config: ModelConfig): Map<string, LoraTarget> {
  let m = keyMaps.get(ckpt);
  if (!m) {
    m = loraKeyMap(config, (k) => (ckpt.has(k) ? ckpt.shape(k) : undefined), ckpt.keys());
    keyMaps.set(ckpt, m);
  }
  return m;
}

/** Matches one parsed LoRA against the checkpoint (throws LoraMismatchError for another family). */
export function matchLoraFile(lora: LoraFile, ckpt: CheckpointKeys, config: ModelConfig): LoraMatch {
  const modules = [...lora.modules.values()].map((m) => ({
    name: m.name,
    keys: m.keys,
    down: m.down.shape,
    up: m.up.shape,
  }));
  return matchLora(basename(lora.path), modules, lora.unparsed, config, keyMapFor(ckpt, config), (k) =>
    ckpt.has(k) ? ckpt.shape(k) : undefined,
  );
}

/**
 * checkpoint key -> the terms patching it, for one component and a LoRA list (in order). Unmatched keys are
 * returned per LoRA for reporting.
 */
export function planLoras(
  ckpt: CheckpointKeys,
  config: ModelConfig,
  loras: readonly LoraUse[],
  component: Component,
): { plan: Map<string, PatchTerm[]>; unmatched: Map<string, string[]> } {
  const plan = new Map<string, PatchTerm[]>();
  const unmatched = new Map<string, string[]>();
  for (const use of loras) {
    const lora = loadLora(use.path);
    const match = matchLoraFile(lora, ckpt, config);
    unmatched.set(use.path, match.unmatched);
    if (use.strength === 0) continue;
    for (const { module, target } of match.matched) {
      if (target.component !== component) continue;
      const m = lora.modules.get(module)!;
      const factor = use.strength * (m.alpha === null ? 1 : m.alpha / m.rank);
      const terms = plan.get(target.key) ?? [];
      terms.push({ module: m, target, factor });
      plan.set(target.key, terms);
    }
  }
  return { plan, unmatched };
}

/**
 * The terms of one weight as a single low-rank delta (onnx/weights.ts LowRankDelta) for a graph that applies LoRAs
 * as side branches: the terms' ranks side by side, each term's factor folded into its up, its rows of a fused weight
 * (OpenCLIP's q/k/v) placed and the others zero. Same delta as applyTerms, without touching W.
 */
export function lowRankDelta(terms: readonly PatchTerm[], shape: readonly number[]): LowRankDelta {
  const outDim = shape[0];
  const cols = shape.slice(1).reduce((a, b) => a * b, 1);
  const rank = terms.reduce((n, t) => n + t.module.rank, 0);
  const up = new Float32Array(outDim * rank);
  const down = new Float32Array(rank * cols);
  let k0 = 0;
  for (const t of terms) {
    const r = t.module.rank;
    const [r0, r1] = t.target.rows ?? [0, outDim];
    const u = t.module.up.data,
      d = t.module.down.data;
    if (d.length !== r * cols)
      throw new Error(`LoRA ${t.module.name}: down has ${d.length} values, expected ${r}x${cols}`);
    for (let row = r0; row < r1; row++)
      for (let k = 0; k < r; k++) up[row * rank + k0 + k] = u[(row - r0) * r + k] * t.factor;
    down.set(d, k0 * cols);
    k0 += r;
  }
  return { up, down, rank };
}

/** base + every term's delta, as a new Float32Array (base is only read). */
export function applyTerms(terms: readonly PatchTerm[], base: Float32Array, shape: readonly number[]): Float32Array {
  const out = Float32Array.from(base);
  const cols = shape.slice(1).reduce((a, b) => a * b, 1); // W viewed as [rows, in * kh * kw]
  const acc = new Float64Array(cols);
  // rows of W each term touches: all of them, or its slice of a fused q/k/v weight
  const rowsOf = (t: PatchTerm) => t.target.rows ?? [0, shape[0]];
  const touched = new Set<number>();
  for (const t of terms) for (let r = rowsOf(t)[0]; r < rowsOf(t)[1]; r++) touched.add(r);
  for (const row of touched) {
    acc.fill(0);
    for (const t of terms) {
      const [r0, r1] = rowsOf(t);
      if (row < r0 || row >= r1) continue;
      const rank = t.module.rank,
        up = t.module.up.data,
        down = t.module.down.data;
      const o = row - r0;
      // delta[o, c] = factor * sum_k up[o, k] * down[k, c]; down.flatten(1) is [rank, cols]
      for (let k = 0; k < rank; k++) {
        const u = up[o * rank + k] * t.factor;
        if (u === 0) continue;
        const d = k * cols;
        for (let c = 0; c < cols; c++) acc[c] += u * down[d + c];
      }
    }
    const w = row * cols;
    for (let c = 0; c < cols; c++) out[w + c] += acc[c];
  }
  return out;
}
