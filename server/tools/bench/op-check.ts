/**
 * What the operator checks (nhwc-conv-check, packed-attention-check) share: onnxruntime-node for the provider (the
 * pinned CUDA copy for cuda), a session per hand-built graph (optionally writing ORT's optimized model), the op
 * counts of such a model file, and seeded normal draws.
 * Example: const rt = opCheckRuntime('cuda'); const s = await rt.session(graph, '/tmp/opt.onnx'); opCounts('/tmp/opt.onnx');
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as Ort from 'onnxruntime-node';
import type { GraphBuilder } from '../../engine/onnx/graph.js';
import { serializeModel } from '../../engine/onnx/serialize.js';
import { onnxProto } from '../../engine/onnx/schema.js';
import { cudaOrtPackage } from '../../engine/runtime/cuda-ort.js';
import { PROJECT_ROOT } from '../../host.js';

export function opCheckRuntime(ep: string) {
  const ortPackage = ep === 'cuda' ? cudaOrtPackage(PROJECT_ROOT) : null;
  const ort = createRequire(import.meta.url)(ortPackage ?? 'onnxruntime-node') as typeof Ort;
  const providers = ep === 'cuda' ? [{ name: 'cuda', deviceId: 0 }] : ['cpu'];
  return {
    ort,
    ortPackage,
    session: (g: GraphBuilder, optimizedPath?: string) =>
      ort.InferenceSession.create(serializeModel(g), {
        executionProviders: providers as Ort.InferenceSession.ExecutionProviderConfig[],
        graphOptimizationLevel: 'all',
        logSeverityLevel: 3,
        ...(optimizedPath ? { optimizedModelFilePath: optimizedPath } : {}),
      }),
  };
}

/** op type (domain-qualified) -> count in a model file (ORT's optimized model) */
export function opCounts(path: string): Record<string, number> {
  const m = onnxProto.ModelProto.toObject(onnxProto.ModelProto.decode(readFileSync(path)), { longs: Number }) as {
    graph: { node?: { opType: string; domain?: string }[] };
  };
  const counts: Record<string, number> = {};
  for (const n of m.graph.node ?? []) {
    const k = `${n.domain ? `${n.domain}.` : ''}${n.opType}`;
    counts[k] = (counts[k] ?? 0) + 1;
  }
  return counts;
}

/** `n` seeded draws of N(0, scale^2) (Box-Muller over an LCG) */
export function randn(n: number, scale: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  return Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()) * scale);
}

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
