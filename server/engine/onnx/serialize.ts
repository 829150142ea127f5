/**
 * Serialises a GraphBuilder to an ONNX ModelProto without holding a second copy of the weights: the message
 * sizes are computed from shapes first, then each initializer is read from the WeightSource, converted to the
 * compute dtype and written straight into the output (one preallocated buffer, or a file), one tensor at a time.
 * Big models put weights in a `.bin` file beside the `.onnx` (TensorProto external_data), keeping the protobuf far
 * under ORT's 2 GB limit; ORT resolves the location relative to the model file, so load those from the path.
 * Example:
 *   const bytes = serializeModel(g);                         // inline, for InferenceSession.create(bytes)
 *   writeModel(g, '/tmp/vae.onnx', { externalData: true });  // vae.onnx + vae.onnx.bin; create('/tmp/vae.onnx')
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import { numel } from '../tensor.js';
import { floatToHalfArray } from './half.js';
import { type Attrs, type GraphBuilder, type InlineTensor, type IoDef, isFloatAttr } from './graph.js';
import { AttributeType, DataType, onnxProto, TAG } from './schema.js';

const IR_VERSION = 8; // opset 17 needs IR 8
const EXTERNAL_ALIGN = 4096; // page alignment lets ORT memory-map big tensors
const SMALL_ALIGN = 64;

export interface WriteOptions {
  /** true: weights into `<model>.bin`; false: inline; 'auto' (default): external when weights exceed 1 GiB */
  externalData?: boolean | 'auto';
  /**
   * with external data: initializers already written to another data file (`location`, relative to the model, e.g. a
   * hard link to a cached graph's .bin) are referenced there, never read or written again. Only tensors of the same
   * name and byte size are taken from it.
   */
  reuse?: ReusableData;
}

/** Initializers of an existing external-data file: name -> where its bytes are. */
export interface ReusableData {
  location: string;
  tensors: Map<string, { offset: number; bytes: number }>;
}

/** The external-data placement of every initializer of a model file written with externalData (for WriteOptions.reuse). */
export function externalTensors(modelBytes: Uint8Array): Map<string, ExternalTensor> {
  const m = onnxProto.ModelProto.toObject(onnxProto.ModelProto.decode(modelBytes), { longs: Number }) as {
    graph: {
      initializer?: {
        name: string;
        dataType: number;
        dims?: number[];
        externalData?: { key: string; value: string }[];
      }[];
    };
  };
  const out = new Map<string, ExternalTensor>();
  for (const t of m.graph.initializer ?? []) {
    const kv = new Map((t.externalData ?? []).map((e) => [e.key, e.value]));
    const location = kv.get('location');
    if (location === undefined) continue;
    out.set(t.name, {
      location,
      offset: Number(kv.get('offset') ?? 0),
      bytes: Number(kv.get('length')),
      dataType: t.dataType,
      dims: t.dims ?? [],
    });
  }
  return out;
}

export interface ExternalTensor {
  location: string;
  offset: number;
  bytes: number;
  dataType: number;
  dims: number[];
}

function varintLen(n: number): number {
  let len = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}
function varint(n: number): Uint8Array {
  const out: number[] = [];
  while (n >= 128) {
    out.push((n % 128) | 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Uint8Array.from(out);
}

function attributeProto(name: string, v: Attrs[string]): Record<string, unknown> | null {
  if (v === undefined) return null;
  if (typeof v === 'string') return { name, type: AttributeType.STRING, s: Buffer.from(v, 'utf8') };
  if (Array.isArray(v) && v.length > 0 && typeof v[0] === 'string')
    return {
      name,
      type: AttributeType.STRINGS,
      strings: (v as string[]).map((s) => Buffer.from(s, 'utf8')),
    };
  if (typeof v === 'object' && 'kind' in v) return { name, type: AttributeType.TENSOR, t: tensorProto(v) };
  if (isFloatAttr(name, v)) {
    const x = typeof v === 'object' && 'value' in v ? v.value : v;
    return Array.isArray(x)
      ? { name, type: AttributeType.FLOATS, floats: x }
      : { name, type: AttributeType.FLOAT, f: x };
  }
  return Array.isArray(v) ? { name, type: AttributeType.INTS, ints: v } : { name, type: AttributeType.INT, i: v };
}

function tensorProto(t: InlineTensor): Record<string, unknown> {
  return { name: t.name, dataType: t.dataType, dims: t.dims, rawData: t.raw };
}

function valueInfo(io: IoDef): Record<string, unknown> {
  if (!io.shape) return { name: io.name, type: { tensorType: { elemType: io.elemType } } };
  const dim = io.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d }));
  return {
    name: io.name,
    type: { tensorType: { elemType: io.elemType, shape: { dim } } },
  };
}

/** The model without its weight initializers, as protobuf bytes: [ModelProto fields except graph, GraphProto fields]. */
function encodeSkeleton(g: GraphBuilder): {
  head: Uint8Array;
  graph: Uint8Array;
} {
  const graph = {
    name: g.name,
    node: g.nodes.map((n) => ({
      name: n.name,
      opType: n.opType,
      domain: n.domain,
      input: n.inputs,
      output: n.outputs,
      attribute: Object.entries(n.attrs)
        .map(([k, v]) => attributeProto(k, v))
        .filter((a) => a !== null),
    })),
    initializer: g.constants.map(tensorProto),
    input: g.inputs.map(valueInfo),
    output: g.outputs.map(valueInfo),
  };
  const model = {
    irVersion: IR_VERSION,
    producerName: 'tcd-studio',
    producerVersion: '0.1',
    opsetImport: opsetImports(g),
  };
  return {
    head: onnxProto.ModelProto.encode(onnxProto.ModelProto.fromObject(model)).finish(),
    graph: onnxProto.GraphProto.encode(onnxProto.GraphProto.fromObject(graph)).finish(),
  };
}

/** ai.onnx at the builder's opset, plus com.microsoft (version 1) when a contrib op such as MultiHeadAttention is used. */
function opsetImports(g: GraphBuilder): { domain: string; version: number }[] {
  const imports = [{ domain: '', version: g.opset }];
  if (g.nodes.some((n) => n.domain === 'com.microsoft')) imports.push({ domain: 'com.microsoft', version: 1 });
  return imports;
}

interface WeightPlan {
  name: string;
  shape: number[];
  bytes: number;
  meta: Uint8Array;
  inlineLen: number;
  offset: number;
  /** the bytes are in WriteOptions.reuse's file already */
  reused: boolean;
}

function planWeights(g: GraphBuilder, external: string | null, reuse?: ReusableData): WeightPlan[] {
  const elem = g.dtype === 'float16' ? 2 : 4;
  let offset = 0;
  return [...g.weightInits].map(([name, shape]) => {
    const bytes = numel(shape) * elem;
    const msg: Record<string, unknown> = {
      name,
      dims: shape,
      dataType: g.floatType,
    };
    const there = external && !g.weights?.changed?.has(name) ? reuse?.tensors.get(name) : undefined;
    if (there && there.bytes === bytes) {
      msg.dataLocation = 1;
      msg.externalData = [
        { key: 'location', value: reuse!.location },
        { key: 'offset', value: String(there.offset) },
        { key: 'length', value: String(bytes) },
      ];
      const meta = onnxProto.TensorProto.encode(onnxProto.TensorProto.fromObject(msg)).finish();
      return {
        name,
        shape,
        bytes,
        meta,
        inlineLen: meta.length,
        offset: there.offset,
        reused: true,
      };
    }
    if (external) {
      const align = bytes >= EXTERNAL_ALIGN ? EXTERNAL_ALIGN : SMALL_ALIGN;
      offset = Math.ceil(offset / align) * align;
      msg.dataLocation = 1;
      msg.externalData = [
        { key: 'location', value: external },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(bytes) },
      ];
    }
    const meta = onnxProto.TensorProto.encode(onnxProto.TensorProto.fromObject(msg)).finish();
    const inlineLen = external ? meta.length : meta.length + 1 + varintLen(bytes) + bytes;
    const plan = { name, shape, bytes, meta, inlineLen, offset, reused: false };
    if (external) offset += bytes;
    return plan;
  });
}

/** Reads one weight and returns its bytes in the compute dtype. */
function weightBytes(g: GraphBuilder, p: WeightPlan): Uint8Array {
  const ready = g.weights?.encoded?.(p.name);
  if (ready) {
    if (ready.length !== p.bytes) throw new Error(`weight "${p.name}" has ${ready.length} bytes, expected ${p.bytes}`);
    return ready;
  }
  const data = g.readWeight(p.name);
  if (data.length !== numel(p.shape))
    throw new Error(`weight "${p.name}" has ${data.length} values, shape [${p.shape}] needs ${numel(p.shape)}`);
  if (g.dtype === 'float16') return new Uint8Array(floatToHalfArray(data).buffer);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

interface Layout {
  head: Uint8Array;
  graph: Uint8Array;
  graphLen: number;
  total: number;
}
function layout(g: GraphBuilder, plans: WeightPlan[]): Layout {
  const { head, graph } = encodeSkeleton(g);
  let graphLen = graph.length;
  for (const p of plans) graphLen += 1 + varintLen(p.inlineLen) + p.inlineLen;
  return {
    head,
    graph,
    graphLen,
    total: head.length + 1 + varintLen(graphLen) + graphLen,
  };
}

/** Streams the model: write() gets the bytes in order; weights are read lazily, one at a time. */
function emitModel(
  g: GraphBuilder,
  plans: WeightPlan[],
  l: Layout,
  external: boolean,
  write: (b: Uint8Array) => void,
  writeExternal?: (b: Uint8Array, offset: number) => void,
): void {
  const { head, graph, graphLen } = l;
  write(head);
  write(Uint8Array.of(TAG.MODEL_GRAPH));
  write(varint(graphLen));
  write(graph);
  for (const p of plans) {
    write(Uint8Array.of(TAG.GRAPH_INITIALIZER));
    write(varint(p.inlineLen));
    write(p.meta);
    if (p.reused) continue;
    const raw = weightBytes(g, p);
    if (external) writeExternal!(raw, p.offset);
    else {
      write(Uint8Array.of(TAG.TENSOR_RAW_DATA));
      write(varint(p.bytes));
      write(raw);
    }
  }
}

/** The whole model with inline initializers, in one exactly-sized buffer (for InferenceSession.create(bytes)). */
export function serializeModel(g: GraphBuilder): Uint8Array {
  g.dropUnusedLayoutMoves();
  const plans = planWeights(g, null);
  const l = layout(g, plans);
  const total = l.total;
  if (total > 2 ** 31 - 1)
    throw new Error(`model is ${total} bytes, over protobuf's 2 GB limit: use writeModel with externalData`);
  const out = new Uint8Array(total);
  let pos = 0;
  emitModel(g, plans, l, false, (b) => {
    out.set(b, pos);
    pos += b.length;
  });
  if (pos !== total) throw new Error(`serialiser size mismatch (${pos} of ${total})`);
  return out;
}

/** Writes the model to `path` (and `path + '.bin'` with external data). Load it with InferenceSession.create(path). */
export function writeModel(
  g: GraphBuilder,
  path: string,
  opts: WriteOptions = {},
): { modelPath: string; dataPath: string | null } {
  g.dropUnusedLayoutMoves();
  const elem = g.dtype === 'float16' ? 2 : 4;
  let weightTotal = 0;
  for (const s of g.weightInits.values()) weightTotal += numel(s) * elem;
  const external =
    opts.externalData === 'auto' || opts.externalData === undefined ? weightTotal > 2 ** 30 : opts.externalData;
  const dataPath = external ? `${path}.bin` : null;
  const plans = planWeights(g, external ? basename(dataPath!) : null, opts.reuse);
  const fd = openSync(path, 'w');
  const dfd = dataPath ? openSync(dataPath, 'w') : -1;
  try {
    emitModel(
      g,
      plans,
      layout(g, plans),
      external,
      (b) => {
        writeSync(fd, b);
      },
      (b, off) => {
        writeSync(dfd, b, 0, b.length, off);
      },
    );
  } finally {
    closeSync(fd);
    if (dfd >= 0) closeSync(dfd);
  }
  return { modelPath: path, dataPath };
}

export { DataType };
