/**
 * Fast patching for the worker: W + factor * (up @ down) as one ONNX Runtime Gemm on the CPU (multithreaded
 * float32 GEMM), instead of the plain-JS loop of patch.ts (which stays the float64 reference). A real SDXL LoRA
 * patches ~2.5e9 weights at rank 32-64, i.e. 1e11 multiply-adds: seconds here, minutes in single-threaded JS.
 * Example:
 *   const patched = await patchWithOrt(plan.get(key)!, base, shape); // base is only read
 */
import ort from 'onnxruntime-node';
import { GraphBuilder } from '../onnx/graph.js';
import { serializeModel } from '../onnx/serialize.js';
import type { PatchTerm } from './patch.js';

let patcher: Promise<ort.InferenceSession> | null = null;

/** out = up @ down + w as one Gemm (beta = 1 accumulates into w); w [M, N], up [M, R] (already scaled), down [R, N]. */
function patcherSession(): Promise<ort.InferenceSession> {
  if (!patcher) {
    const g = new GraphBuilder({ name: 'lora_patcher' });
    const w = g.input('w', 'float32', ['M', 'N']);
    const up = g.input('up', 'float32', ['M', 'R']);
    const down = g.input('down', 'float32', ['R', 'N']);
    const [y] = g.node('Gemm', [up, down, w], { alpha: 1, beta: 1 });
    g.output(y, 'out');
    patcher = ort.InferenceSession.create(serializeModel(g), {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'all',
    });
  }
  return patcher;
}

/** base + every term's delta, as a new Float32Array, computed by ORT in float32 (base is only read). */
export async function patchWithOrt(
  terms: readonly PatchTerm[],
  base: Float32Array,
  shape: readonly number[],
): Promise<Float32Array> {
  const session = await patcherSession();
  const cols = shape.slice(1).reduce((a, b) => a * b, 1); // W viewed as [rows, in * kh * kw]
  let out: Float32Array | null = null; // our own copy once the first term is applied
  for (const t of terms) {
    const [r0, r1] = t.target.rows ?? [0, shape[0]];
    const rows = r1 - r0,
      rank = t.module.rank;
    const current = out ?? base;
    const upScaled = t.module.up.data.map((v) => v * t.factor); // [rows, rank], small
    const res = await session.run({
      w: new ort.Tensor('float32', current.subarray(r0 * cols, r1 * cols), [rows, cols]),
      up: new ort.Tensor('float32', upScaled, [rows, rank]),
      down: new ort.Tensor('float32', t.module.down.data, [rank, cols]),
    });
    const patched = res.out.data as Float32Array;
    if (rows === shape[0]) out = patched;
    else {
      out ??= Float32Array.from(base);
      out.set(patched, r0 * cols);
    }
  }
  return out ?? Float32Array.from(base);
}
