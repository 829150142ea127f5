/**
 * LoRA sessions without rebuilding graphs. For a component used with any LoRA set, the worker builds one
 * "LoRA-ready" graph in which every LoRA-patchable weight is a graph input instead of an initializer, and feeds the
 * weights at run time: patched tensors for keys the LoRA set touches, the checkpoint's own tensors for the rest.
 * - a strength change or a LoRA swap only recomputes the deltas (no graph build, no session, no checkpoint read);
 * - the original tensors are read from the checkpoint once per (checkpoint, component) and kept, read-only, in
 *   `baseWeights`; patched tensors are new arrays, so LoRA-free sessions of the same checkpoint stay exact.
 * (onnxruntime-node 1.30 ignores feeds for initializers listed as graph inputs, hence real inputs, not overrides.)
 * Example (worker):
 *   const { session, weightFeeds } = await sessionWithLoras(store, { checkpoint, component: 'unet', loras, build });
 *   await runSession(session, { x, t, context, ...weightFeeds });
 */
import type ort from 'onnxruntime-node';
import type { GraphBuilder } from '../onnx/graph.js';
import { DataType } from '../onnx/schema.js';
import type { SessionStore, ComponentSpec } from '../runtime/session-store.js';
import type { Tensor } from '../tensor.js';
import { patchableKeys } from './key-map.js';
import { keyMapFor, planLoras } from './patch.js';
import { patchWithOrt } from './patcher.js';

const F32_SUFFIX = ':f32';

/**
 * Counters for tests and measurements: base tensors read from checkpoints, patch sets computed, and the last patch
 * set's cost (milliseconds, weights patched, multiply-adds of the deltas).
 */
export const loraStats = { baseReads: 0, patchSets: 0, lastPatchMs: 0, lastPatchedValues: 0, lastPatchMacs: 0 };

interface BaseWeights { id: string; tensors: Map<string, Float32Array> }
/** per (checkpoint, component): original float32 tensors of the patchable keys, read once */
const baseWeights = new Map<string, BaseWeights>();
/** per (checkpoint, component): the feeds of the LoRA set used last (a sampling loop reuses them every step) */
const lastFeeds = new Map<string, { set: string; feeds: Record<string, Tensor> }>();

/** Drops the cached base tensors and feeds (POST /free). */
export function clearLoraSessions(): void { baseWeights.clear(); lastFeeds.clear(); }

/**
 * Turns the patchable initializers of a built graph into float32 graph inputs named like the checkpoint key
 * (fp16 graphs get `<key>:f32` and a Cast to the compute dtype, so feeds are always float32).
 */
export function exposeWeights(g: GraphBuilder, patchable: ReadonlySet<string>): GraphBuilder {
  const casts: typeof g.nodes = [];
  for (const [key, shape] of [...g.weightInits]) {
    if (!patchable.has(key)) continue;
    g.weightInits.delete(key);
    if (g.floatType === DataType.FLOAT) {
      g.inputs.push({ name: key, elemType: DataType.FLOAT, shape });
    } else {
      g.inputs.push({ name: `${key}${F32_SUFFIX}`, elemType: DataType.FLOAT, shape });
      casts.push({ opType: 'Cast', name: `lora_cast/${key}`, inputs: [`${key}${F32_SUFFIX}`], outputs: [key], attrs: { to: g.floatType }, domain: '' });
    }
  }
  g.nodes.unshift(...casts);
  return g;
}

/**
 * The session for `spec` and the weight feeds its LoRA set needs ({} without LoRAs: the plain session).
 * Strength-0 entries are ignored, so they give exactly the LoRA-free model.
 */
export async function sessionWithLoras(store: SessionStore, spec: ComponentSpec): Promise<{ session: ort.InferenceSession; weightFeeds: Record<string, Tensor> }> {
  const active = spec.loras.filter((l) => l.strength !== 0);
  if (active.length === 0) return { session: await store.session({ ...spec, loras: [] }), weightFeeds: {} };
  const { file, config } = store.checkpoint(spec.checkpoint);
  const patchable = new Set(patchableKeys(keyMapFor(file, config), spec.component));
  const session = await store.session({
    ...spec, loras: [], variant: `${spec.variant ?? ''}+lora-inputs`,
    build: (w, cfg, dtype) => exposeWeights(spec.build(w, cfg, dtype), patchable),
  });
  const id = `${spec.checkpoint}|${file.size}|${spec.component}`;
  // identity of the open file object: store.checkpoint() re-opens a checkpoint that changed on disk
  let base = baseWeights.get(id);
  if (!base || base.id !== fileId(file)) { base = { id: fileId(file), tensors: new Map() }; baseWeights.set(id, base); }
  const setKey = JSON.stringify([fileId(file), active]);
  const last = lastFeeds.get(id);
  if (last && last.set === setKey) return { session, weightFeeds: last.feeds };

  const t0 = performance.now();
  const { plan } = planLoras(file, config, active, spec.component);
  const feeds: Record<string, Tensor> = {};
  let values = 0, macs = 0;
  for (const input of session.inputNames) {
    const key = input.endsWith(F32_SUFFIX) ? input.slice(0, -F32_SUFFIX.length) : input;
    if (!patchable.has(key)) continue;
    let w = base.tensors.get(key);
    if (!w) { w = file.readFloat32(key); loraStats.baseReads++; base.tensors.set(key, w); }
    const shape = file.shape(key);
    const terms = plan.get(key);
    if (terms) {
      values += w.length;
      for (const t of terms) macs += t.module.up.shape[0] * t.module.down.data.length;
    }
    feeds[input] = { shape, data: terms ? await patchWithOrt(terms, w, shape) : w };
  }
  // a patched key the graph does not take as an input would be silently lost: refuse instead
  for (const key of plan.keys()) {
    if (!(key in feeds) && !(`${key}${F32_SUFFIX}` in feeds)) throw new Error(`LoRA patches ${key}, which the ${spec.component} graph does not read as a weight input`);
  }
  loraStats.patchSets++;
  Object.assign(loraStats, { lastPatchMs: performance.now() - t0, lastPatchedValues: values, lastPatchMacs: macs });
  lastFeeds.set(id, { set: setKey, feeds });
  return { session, weightFeeds: feeds };
}

const fileIds = new WeakMap<object, string>();
let nextFileId = 0;
function fileId(file: object): string {
  let s = fileIds.get(file);
  if (!s) { s = `f${nextFileId++}`; fileIds.set(file, s); }
  return s;
}
