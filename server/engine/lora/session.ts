/**
 * LoRA sessions without rebuilding graphs. For a component used with any LoRA set, the worker builds one
 * "LoRA-ready" graph in which every LoRA-patchable weight is a graph input instead of an initializer, and feeds the
 * weights at run time: patched tensors for keys the LoRA set touches, the checkpoint's own tensors for the rest.
 * - a strength change or a LoRA swap only recomputes the deltas (no graph build, no session, no checkpoint read);
 * - the original tensors are read from the checkpoint once per (checkpoint, component) and kept, read-only, in
 *   `baseWeights`; patched tensors are new arrays, so LoRA-free sessions of the same checkpoint stay exact.
 * (onnxruntime-node 1.30 ignores feeds for initializers listed as graph inputs, hence real inputs, not overrides.)
 * On GPU providers (TCD_GPU_LORA=bake, the default there) the patched weights are baked into a graph per LoRA set
 * instead, built from the cached originals + patches: feeding them would copy every patchable weight host->GPU on
 * each run. A strength change then costs a graph build and a session (measured in server/tools/bench/README.md).
 * TCD_GPU_LORA=branch keeps the base weights and adds each LoRA as a low-rank side branch instead: its graph shares
 * the LoRA-free graph's weight file on disk, so a LoRA set costs its own bytes, not a rewritten model.
 * Example (worker):
 *   const { session, weightFeeds } = await sessionWithLoras(store, { checkpoint, component: 'unet', loras, build });
 *   await runSession(session, { x, t, context, ...weightFeeds });
 */
import type { ModelConfig } from '../model/config.js';
import type { SafetensorsFile } from '../io/safetensors.js';
import ort from 'onnxruntime-node';
import { type DerivedWeight, GraphBuilder, type NodeDef, parsePackedName, transpose2d } from '../onnx/graph.js';
import { floatToHalfArray } from '../onnx/half.js';
import { type LowRankDelta, safetensorsWeights, type WeightSource } from '../onnx/weights.js';
import type { Component, LoraRef } from '../types.js';
import { DataType } from '../onnx/schema.js';
import type { SessionStore, ComponentSpec } from '../runtime/session-store.js';
import { fileIdentity, type SharedWeights } from '../runtime/graph-cache.js';
import type { Tensor } from '../tensor.js';
import { patchableKeys } from './key-map.js';
import { keyMapFor, lowRankDelta, type PatchTerm, planLoras } from './patch.js';
import { patchWithOrt } from './patcher.js';

const F32_SUFFIX = ':f32';

/**
 * Counters for tests and measurements: base tensors read from checkpoints, patch sets computed, and the last patch
 * set's cost (milliseconds, weights patched, multiply-adds of the deltas, keys skipped as unread).
 */
export const loraStats = {
  baseReads: 0,
  patchSets: 0,
  lastPatchMs: 0,
  lastPatchedValues: 0,
  lastPatchMacs: 0,
  /** checkpoint keys the last patch set would patch but the graph does not read (skipped) */
  lastSkippedKeys: [] as string[],
};

interface BaseWeights {
  id: string;
  tensors: Map<string, Float32Array>;
}
/** per (checkpoint, component): original float32 tensors of the patchable keys, read once */
const baseWeights = new Map<string, BaseWeights>();
/** per (checkpoint, component): the feeds of the LoRA set used last (a sampling loop reuses them every step) */
const lastFeeds = new Map<string, { set: string; feeds: Record<string, Tensor> }>();

/** Drops the cached base tensors and feeds (POST /free). */
export function clearLoraSessions(): void {
  baseWeights.clear();
  lastFeeds.clear();
}

/**
 * Turns the patchable initializers of a built graph into float32 graph inputs named like the checkpoint key
 * (fp16 graphs get `<key>:f32` and a Cast to the compute dtype, so feeds are always float32).
 */
export function exposeWeights(g: GraphBuilder, patchable: ReadonlySet<string>): GraphBuilder {
  const prelude: typeof g.nodes = [];
  const exposed = new Map<string, string>(); // checkpoint key -> the value holding it in the compute dtype
  const expose = (key: string, shape: number[]): string => {
    let v = exposed.get(key);
    if (v) return v;
    if (g.floatType === DataType.FLOAT) {
      g.inputs.push({ name: key, elemType: DataType.FLOAT, shape });
      v = key;
    } else {
      g.inputs.push({ name: `${key}${F32_SUFFIX}`, elemType: DataType.FLOAT, shape });
      v = `lora_cast/${key}`;
      prelude.push({
        opType: 'Cast',
        name: v,
        inputs: [`${key}${F32_SUFFIX}`],
        outputs: [key],
        attrs: { to: g.floatType },
        domain: '',
      });
      v = key;
    }
    exposed.set(key, v);
    return v;
  };
  for (const [name, shape] of [...g.weightInits]) {
    const derived = g.derivedWeights.get(name);
    const source = derived?.source ?? name;
    if (!(derived?.parts ?? [source]).some((k) => patchable.has(k))) continue;
    g.weightInits.delete(name);
    if (!derived) {
      expose(name, shape);
      continue;
    }
    if (derived.transform === 'packHeads') {
      prelude.push(
        ...packInGraph(g, name, shape, derived, (k) => (patchable.has(k) ? expose(k, g.weightShape(k)) : null)),
      );
      continue;
    }
    const stored = expose(source, g.weightShape(source));
    if (derived.transform === 'convNhwc') {
      // a conv weight NhwcConv reads channels-last (GraphOptions.nhwcConv): feed the stored form, permute in the
      // graph. NhwcConv then gets a computed weight, which ORT's CUDA kernel reads channels-last only because the
      // conv's bias stays a constant (its weight pre-packing sees a constant input); every UNet/VAE conv has one
      const stored4 = g.weightShape(source).length === 4;
      const move = stored4
        ? { opType: 'Transpose', inputs: [stored], attrs: { perm: [0, 2, 3, 1] } }
        : { opType: 'Reshape', inputs: [stored, g.constInt64(shape, [4], 'lora_shape').name], attrs: {} };
      prelude.push({ ...move, name: `lora_nhwc/${name}`, outputs: [name], domain: '' });
      continue;
    }
    // a weight the graph reads pre-transposed (GraphOptions.linear): feed the stored form, transpose in the graph
    const flat = g.constInt64([shape[1], shape[0]], [2], 'lora_shape'); // [out, in]
    prelude.push({
      opType: 'Reshape',
      name: `lora_reshape/${name}`,
      inputs: [stored, flat.name],
      outputs: [`lora_reshape/${name}`],
      attrs: {},
      domain: '',
    });
    prelude.push({
      opType: 'Transpose',
      name: `lora_transpose/${name}`,
      inputs: [`lora_reshape/${name}`],
      outputs: [name],
      attrs: { perm: [1, 0] },
      domain: '',
    });
  }
  g.nodes.unshift(...prelude);
  return g;
}

/**
 * The nodes that compute a packed weight (GraphBuilder.weightPacked, initializer `name` of `shape` [in, width]) in the
 * graph from its parts: each fed part (`fed` gives its value; null: the part stays an initializer) [out, in] moved
 * to [in, heads, 1, head size], the parts joined on axis 2 and flattened to [in, width].
 */
function packInGraph(
  g: GraphBuilder,
  name: string,
  shape: number[],
  derived: DerivedWeight,
  fed: (key: string) => string | null,
): NodeDef[] {
  const parts = derived.parts!,
    heads = derived.heads!;
  const [inDim, width] = shape;
  const outDim = width / parts.length;
  const nodes: NodeDef[] = [];
  const add = (opType: string, id: string, inputs: string[], attrs: NodeDef['attrs'] = {}): string => {
    const out = `lora_pack/${name}/${id}`;
    nodes.push({ opType, name: out, inputs, outputs: [out], attrs, domain: '' });
    return out;
  };
  const byHead = g.constInt64([inDim, heads, 1, outDim / heads], [4], 'lora_shape').name;
  const pieces = parts.map((k, j) => {
    const flat = add('Reshape', `${j}/flat`, [fed(k) ?? g.weight(k).name, g.constInt64([outDim, inDim]).name]);
    const t = add('Transpose', `${j}/t`, [flat], { perm: [1, 0] }); // [in, out]
    return add('Reshape', `${j}/heads`, [t, byHead]); // [in, heads, 1, head size]
  });
  const joined = add('Concat', 'joined', pieces, { axis: 2 }); // [in, heads, parts, head size]
  nodes.push({
    opType: 'Reshape',
    name: `lora_pack/${name}`,
    inputs: [joined, g.constInt64([inDim, width], [2], 'lora_shape').name],
    outputs: [name],
    attrs: {},
    domain: '',
  });
  return nodes;
}

/**
 * The session for `spec` and the weight feeds its LoRA set needs ({} without LoRAs: the plain session).
 * Strength-0 entries are ignored, so they give exactly the LoRA-free model.
 */
export async function sessionWithLoras(
  store: SessionStore,
  spec: ComponentSpec,
): Promise<{ session: ort.InferenceSession; weightFeeds: Record<string, Tensor> }> {
  const active = spec.loras.filter((l) => l.strength !== 0);
  if (active.length === 0) return { session: await store.session({ ...spec, loras: [] }), weightFeeds: {} };
  const { file, config } = store.checkpoint(spec.checkpoint);
  const patchable = new Set(patchableKeys(keyMapFor(file, config), spec.component));
  const id = `${spec.checkpoint}|${file.size}|${spec.component}`;
  // identity of the open file object: store.checkpoint() re-opens a checkpoint that changed on disk
  let base = baseWeights.get(id);
  if (!base || base.id !== fileId(file)) {
    base = { id: fileId(file), tensors: new Map() };
    baseWeights.set(id, base);
  }
  const baseOf = (key: string) => {
    let w = base!.tensors.get(key);
    if (!w) {
      w = file.readFloat32(key);
      loraStats.baseReads++;
      base!.tensors.set(key, w);
    }
    return w;
  };

  if (store.loraMode === 'branch') {
    // GPU: each patched weight keeps its base tensor and gains a low-rank side branch (x @ down^T @ up^T); the graph
    // shares the LoRA-free graph's weight file, so a new LoRA set costs the LoRA's own bytes, not a rebuilt model
    const session = await store.session({
      ...spec,
      loras: active,
      variant: `${spec.variant ?? ''}+lora-branch`,
      sharesWeightsOf: { variant: spec.variant ?? '' },
      weights: async () => {
        const t0 = performance.now();
        const { plan } = planLoras(file, config, active, spec.component);
        const deltas = new Map<string, LowRankDelta>();
        let macs = 0;
        for (const [key, terms] of plan) {
          if (!patchable.has(key)) continue;
          deltas.set(key, lowRankDelta(terms, file.shape(key)));
          macs += termMacs(terms);
        }
        recordPatchSet(t0, 0, macs);
        return { ...safetensorsWeights(file), lowRank: (name) => deltas.get(name) };
      },
    });
    return { session, weightFeeds: {} };
  }

  if (store.loraMode === 'bake') {
    // GPU: feeding ~1e9 weights per run means a host->GPU copy of them every step; bake them into a graph per LoRA
    // set instead. Big graphs: the LoRA-free graph's weight file is shared, the patched tensors are computed from its
    // bytes on the device (W + up @ down in the compute dtype) and only they are written. Small (in-memory) graphs
    // are patched on the CPU from the cached originals.
    const session = await store.session({
      ...spec,
      loras: active,
      variant: `${spec.variant ?? ''}+lora-baked`,
      sharesWeightsOf: { variant: spec.variant ?? '' },
      weights: async (shared) => {
        const stored = safetensorsWeights(file);
        if (shared) return bakeFromShared(store, file, config, spec.component, active, patchable, shared);
        const patched = await patchTensors(file, config, spec.component, active, [...patchable], baseOf, true);
        return { ...stored, read: (name) => patched.get(name) ?? stored.read(name) };
      },
    });
    return { session, weightFeeds: {} };
  }

  const session = await store.session({
    ...spec,
    loras: [],
    variant: `${spec.variant ?? ''}+lora-inputs`,
    build: (w, cfg, dtype) => exposeWeights(spec.build(w, cfg, dtype), patchable),
  });
  // the LoRA files' identities too: a LoRA replaced under the same name is another set
  const setKey = JSON.stringify([fileId(file), active.map((l) => ({ ...l, id: fileIdentity(l.path) }))]);
  const last = lastFeeds.get(id);
  if (last && last.set === setKey) return { session, weightFeeds: last.feeds };

  const inputs = session.inputNames.filter((n) =>
    patchable.has(n.endsWith(F32_SUFFIX) ? n.slice(0, -F32_SUFFIX.length) : n),
  );
  const tensors = await patchTensors(
    file,
    config,
    spec.component,
    active,
    inputs.map((n) => (n.endsWith(F32_SUFFIX) ? n.slice(0, -F32_SUFFIX.length) : n)),
    baseOf,
    false,
  );
  const feeds: Record<string, Tensor> = {};
  for (const input of inputs) {
    const key = input.endsWith(F32_SUFFIX) ? input.slice(0, -F32_SUFFIX.length) : input;
    feeds[input] = { shape: file.shape(key), data: tensors.get(key)! };
  }
  lastFeeds.set(id, { set: setKey, feeds });
  return { session, weightFeeds: feeds };
}

/**
 * The patched tensors of a LoRA set for `keys` (the weights the graph takes from outside), with the originals from
 * `baseOf`; onlyPatched leaves untouched keys out. Patches of keys outside `keys` are skipped, as ComfyUI does: a
 * graph that stops early (a clip skip; SDXL's CLIP-L never runs its last layer) does not read those weights, and the
 * LoRA loader nodes report them as not loaded (inspectLora with the clip skip). Updates loraStats.
 */
async function patchTensors(
  file: SafetensorsFile,
  config: ModelConfig,
  component: Component,
  active: readonly LoraRef[],
  keys: readonly string[],
  baseOf: (key: string) => Float32Array,
  onlyPatched: boolean,
): Promise<Map<string, Float32Array>> {
  const t0 = performance.now();
  const { plan } = planLoras(file, config, active, component);
  const wanted = new Set(keys);
  loraStats.lastSkippedKeys = [...plan.keys()].filter((key) => !wanted.has(key));
  const out = new Map<string, Float32Array>();
  let values = 0,
    macs = 0;
  for (const key of keys) {
    const terms = plan.get(key);
    if (!terms && onlyPatched) continue;
    const w = baseOf(key);
    if (terms) {
      values += w.length;
      macs += termMacs(terms);
    }
    out.set(key, terms ? await patchWithOrt(terms, w, file.shape(key)) : w);
  }
  recordPatchSet(t0, values, macs);
  return out;
}

/** Multiply-adds of the terms' deltas (up @ down). */
function termMacs(terms: readonly PatchTerm[]): number {
  return terms.reduce((n, t) => n + t.module.up.shape[0] * t.module.down.data.length, 0);
}

/** loraStats for one patch set computed now (started at t0); `skipped`: plan keys the graph does not read. */
function recordPatchSet(t0: number, values: number, macs: number, skipped?: string[]): void {
  loraStats.patchSets++;
  if (skipped) loraStats.lastSkippedKeys = skipped;
  Object.assign(loraStats, { lastPatchMs: performance.now() - t0, lastPatchedValues: values, lastPatchMacs: macs });
}

/**
 * The baked tensors of a LoRA set, computed from the LoRA-free graph's own initializer bytes (stored layout `key`,
 * or `key:T` pre-transposed for MatMul linears) by one small W + A @ B graph on the store's provider: no checkpoint
 * read, no float conversion in JS. Returns a WeightSource that hands those bytes to the serialiser as they are.
 */
async function bakeFromShared(
  store: SessionStore,
  file: SafetensorsFile,
  config: ModelConfig,
  component: Component,
  active: readonly LoraRef[],
  patchable: ReadonlySet<string>,
  shared: SharedWeights,
): Promise<WeightSource> {
  const t0 = performance.now();
  const { plan } = planLoras(file, config, active, component);
  const half = shared.dtype === 'float16';
  const g = new GraphBuilder({ name: 'lora_bake', dtype: shared.dtype, fp16Io: half });
  const io = half ? 'float16' : 'float32';
  const w = g.input('w', io, ['M', 'N']);
  const a = g.input('a', io, ['M', 'R']);
  const b = g.input('b', io, ['R', 'N']);
  g.output(g.op.Add(w, g.op.MatMul(a, b)), 'out', io);
  const session = await store.utilitySession(g);
  const tensor = (data: Uint8Array | Float32Array, dims: number[]) => {
    if (data instanceof Float32Array)
      return half ? new ort.Tensor('float16', floatToHalfArray(data), dims) : new ort.Tensor('float32', data, dims);
    return half
      ? new ort.Tensor('float16', new Uint16Array(data.buffer, data.byteOffset, data.byteLength / 2), dims)
      : new ort.Tensor('float32', new Float32Array(data.buffer, data.byteOffset, data.byteLength / 4), dims);
  };
  const encoded = new Map<string, Uint8Array>();
  const skipped: string[] = [];
  let values = 0,
    macs = 0;
  // packed initializers (GraphOptions.packedAttention) by the checkpoint tensors they hold, and the deltas of theirs
  // that the LoRA set patches: each is baked whole, from its own bytes in the shared file
  const packedOf = new Map<string, string[]>();
  for (const name of shared.names()) {
    for (const part of parsePackedName(name)?.parts ?? []) packedOf.set(part, [...(packedOf.get(part) ?? []), name]);
  }
  const packedDeltas = new Map<string, Map<string, LowRankDelta>>();
  try {
    for (const [key, terms] of plan) {
      const forms = [key, `${key}:T`].filter((n) => patchable.has(key) && shared.has(n));
      const packed = patchable.has(key) ? (packedOf.get(key) ?? []) : [];
      if (forms.length === 0 && packed.length === 0) skipped.push(key);
      if (forms.length === 0 && packed.length === 0) continue;
      const shape = file.shape(key);
      const rows = shape[0],
        cols = shape.slice(1).reduce((x, y) => x * y, 1);
      const d = lowRankDelta(terms, shape); // up [rows, R] (factors in), down [R, cols]
      for (const name of packed) packedDeltas.set(name, (packedDeltas.get(name) ?? new Map()).set(key, d));
      for (const name of forms) {
        // W^T + down^T @ up^T for the pre-transposed form
        const t = name !== key;
        const [m, n] = t ? [cols, rows] : [rows, cols];
        const res = await session.run({
          w: tensor(shared.read(name), [m, n]),
          a: tensor(t ? transpose2d(d.down, d.rank, cols) : d.up, [m, d.rank]),
          b: tensor(t ? transpose2d(d.up, rows, d.rank) : d.down, [d.rank, n]),
        });
        const out = res.out.data as Uint16Array | Float32Array;
        encoded.set(name, new Uint8Array(out.buffer, out.byteOffset, out.byteLength));
        values += m * n;
        macs += m * n * d.rank;
      }
    }
    for (const [name, deltas] of packedDeltas) {
      // W + a @ b on the packed layout: a = the patched parts' down^T side by side, b = their up^T in their columns
      const { parts, heads } = parsePackedName(name)!;
      const [outDim, inDim] = file.shape(parts[0]);
      const { a, b, rank } = packedLowRank(parts, heads, deltas, outDim, inDim);
      const width = parts.length * outDim;
      const res = await session.run({
        w: tensor(shared.read(name), [inDim, width]),
        a: tensor(a, [inDim, rank]),
        b: tensor(b, [rank, width]),
      });
      const out = res.out.data as Uint16Array | Float32Array;
      encoded.set(name, new Uint8Array(out.buffer, out.byteOffset, out.byteLength));
      values += inDim * width;
      macs += inDim * width * rank;
    }
  } finally {
    await session.release();
  }
  recordPatchSet(t0, values, macs, skipped);
  return { ...safetensorsWeights(file), changed: new Set(encoded.keys()), encoded: (name) => encoded.get(name) };
}

/**
 * The low-rank update of a packed weight (GraphBuilder.weightPacked of `parts`, [in, parts x out]) from its parts'
 * deltas (up [out, r], down [r, in] each): a [in, R] holds every patched part's down^T side by side, b [R, width]
 * each one's up^T in the columns packHeads gave that part (zero elsewhere), so packed + a @ b packs the patched parts.
 */
export function packedLowRank(
  parts: readonly string[],
  heads: number,
  deltas: ReadonlyMap<string, LowRankDelta>,
  outDim: number,
  inDim: number,
): { a: Float32Array; b: Float32Array; rank: number } {
  const P = parts.length,
    H = outDim / heads,
    width = P * outDim;
  const rank = [...deltas.values()].reduce((n, d) => n + d.rank, 0);
  const a = new Float32Array(inDim * rank),
    b = new Float32Array(rank * width);
  let first = 0;
  parts.forEach((part, j) => {
    const d = deltas.get(part);
    if (!d) return;
    for (let r = 0; r < d.rank; r++) {
      for (let i = 0; i < inDim; i++) a[i * rank + first + r] = d.down[r * inDim + i];
      const row = (first + r) * width;
      for (let o = 0; o < outDim; o++) b[row + (Math.floor(o / H) * P + j) * H + (o % H)] = d.up[o * d.rank + r];
    }
    first += d.rank;
  });
  return { a, b, rank };
}

const fileIds = new WeakMap<object, string>();
let nextFileId = 0;
function fileId(file: object): string {
  let s = fileIds.get(file);
  if (!s) {
    s = `f${nextFileId++}`;
    fileIds.set(file, s);
  }
  return s;
}
