/**
 * ONNX graph builder: typed ops that return values, scopes that prefix value names with module paths, and
 * initializers named exactly as checkpoint keys (read lazily from a WeightSource when the model is serialised).
 * Example:
 *   const g = new GraphBuilder({ weights, dtype: 'float32' });
 *   const x = g.input('x', 'float32', ['B', 4, 'H', 'W']);
 *   const y = g.scope('first_stage_model.decoder.conv_in', () =>
 *     g.op.Conv(x, g.weight('first_stage_model.decoder.conv_in.weight'), g.weight('first_stage_model.decoder.conv_in.bias'), { pads: [1, 1, 1, 1] }));
 *   g.output(y, 'out');
 *   const bytes = serializeModel(g); // serialize.ts
 */
import type { ComputeDtype } from '../types.js';
import type { WeightSource } from './weights.js';
import { DataType, type DataTypeId } from './schema.js';
import { Ops } from './ops.js';
import { floatToHalfArray } from './half.js';

export type Dim = number | string;
export type IoType = 'float32' | 'float16' | 'int64' | 'int32' | 'bool';
const IO_TYPE: Record<IoType, DataTypeId> = {
  float32: DataType.FLOAT,
  float16: DataType.FLOAT16,
  int64: DataType.INT64,
  int32: DataType.INT32,
  bool: DataType.BOOL,
};

/** Marks a number attribute as FLOAT when its name is not in FLOAT_ATTRS. */
export class FloatAttr {
  constructor(readonly value: number | number[]) {}
}
export type AttrValue = number | number[] | string | string[] | FloatAttr | InlineTensor;
export type Attrs = Record<string, AttrValue | undefined>;
/** attribute names that ONNX defines as float; every other numeric attribute is written as int */
const FLOAT_ATTRS = new Set([
  'epsilon',
  'alpha',
  'beta',
  'gamma',
  'momentum',
  'cubic_coeff_a',
  'extrapolation_value',
  'lambd',
  'bias',
  'scale',
  'value_float',
]);

/** A named value in the graph; ops take and return these. */
export class Value {
  constructor(readonly name: string) {}
}

/** An inline tensor (constant initializer or tensor attribute), already in its stored byte layout. */
export interface InlineTensor {
  kind: 'tensor';
  name: string;
  dataType: DataTypeId;
  dims: number[];
  raw: Uint8Array;
}
export interface NodeDef {
  opType: string;
  name: string;
  inputs: string[];
  outputs: string[];
  attrs: Attrs;
  domain: string;
}
export interface IoDef {
  name: string;
  elemType: DataTypeId;
  shape: Dim[] | null;
}

export interface GraphOptions {
  weights?: WeightSource;
  /** 'float16': weights and float constants stored as fp16 (GPU); graph float I/O stays float32 unless fp16Io */
  dtype?: ComputeDtype;
  fp16Io?: boolean;
  name?: string;
  /** default opset of the ai.onnx domain (17: LayerNormalization, all the ops blocks.ts uses) */
  opset?: number;
  /**
   * GPU graphs: blocks.attention emits onnxruntime's fused com.microsoft MultiHeadAttention for non-causal attention
   * instead of MatMul/Softmax/MatMul (one kernel, no [B, h, T, T] scores in memory). The CPU EP implements it too,
   * so the fused graph is testable against the fixtures without a GPU.
   */
  fusedAttention?: boolean;
  /**
   * How blocks.linear multiplies by a [out, in] weight: 'gemm-transb' (default; Gemm reads W as stored, the CPU
   * form), 'matmul' (MatMul by W transposed at build time to [in, out], bias as a separate Add) or 'gemm' (Gemm by
   * the pre-transposed W, bias fused). The pre-transposed forms are GPU experiments (server/tools/bench/README.md).
   */
  linear?: LinearForm;
  /**
   * GPU graphs (an experiment for CUDA, whose warm steps are bound by launching one kernel per node): transformer
   * blocks use com.microsoft SkipLayerNormalization (residual add + LayerNorm in one node) and com.microsoft Gelu
   * (erf GELU in one node instead of five). The CPU EP implements both, so the form is checked against the fixtures.
   */
  fusedBlocks?: boolean;
  /**
   * CUDA graphs: GroupNorm (and a SiLU after it) as one com.microsoft GroupNorm node, channels-last between two
   * Transposes, instead of Reshape / InstanceNormalization / Reshape / Mul / Add [/ Sigmoid / Mul]. CUDA-only
   * operator (the CPU EP lacks it): checked on the device against the fixtures (fixture-check.js).
   */
  fusedGroupNorm?: boolean;
  /**
   * CUDA graphs: the GEGLU feed-forward's bias add, split and GELU gate as one com.microsoft BiasSplitGelu node
   * (MatMul linears, widths the kernel takes). CUDA-only operator: checked on the device.
   */
  fusedGeglu?: boolean;
  /**
   * CUDA graphs: 2-D convolutions as com.microsoft NhwcConv (channels-last input and output, weight stored
   * [out, kh, kw, in] at serialisation) between Transposes that cancel against their neighbours' at build time
   * (transposeOf). 'cpu-twin': the same graph with ONNX Conv in place of NhwcConv (Transposes around it, the weight
   * moved back in the graph), so everything of the form but the operator itself runs on the CPU EP.
   */
  nhwcConv?: boolean | 'cpu-twin';
  /**
   * CUDA graphs, with fusedAttention and MatMul linears: the transformer attentions' projections from one input as
   * one MatMul by a packed weight (self-attention q, k, v; cross-attention k, v), whose result com.microsoft
   * MultiHeadAttention reads as packed QKV [B, S, N, 3, H] or packed KV [B, L, N, 2, H]. 'cpu-twin': the same
   * MatMul, its result split back into q, k, v before the unpacked MultiHeadAttention (the CPU EP implements no
   * packed format), so the packed weights' layout is checked on the CPU.
   */
  packedAttention?: boolean | 'cpu-twin';
}

export type LinearForm = 'gemm-transb' | 'matmul' | 'gemm';

/** An initializer computed at serialisation time from a checkpoint tensor (e.g. a transposed copy). */
export interface DerivedWeight {
  source: string;
  /**
   * transpose2d: [out, in] stored -> [in, out]; convNhwc: a conv weight [out, in, kh, kw] (or [out, in]) ->
   * [out, kh, kw, in]; lowRankDown / lowRankUp: a part of source's LowRankDelta; packHeads: the [out, in] tensors
   * `parts` (source is the first) side by side per head, [in, heads x parts x head size] (weightPacked)
   */
  transform: 'transpose2d' | 'convNhwc' | 'lowRankDown' | 'lowRankUp' | 'packHeads';
  /** packHeads: the checkpoint tensors packed, in order, and the head count they are interleaved by */
  parts?: readonly string[];
  heads?: number;
}

/** The initializer name of the packed weight of `parts` by `heads` heads (weightPacked); parsePackedName undoes it. */
export function packedWeightName(parts: readonly string[], heads: number): string {
  return `${parts.join('+')}:heads${heads}`;
}

/** The parts and head count of a packedWeightName, or null for any other initializer name. */
export function parsePackedName(name: string): { parts: string[]; heads: number } | null {
  const m = /^(.+\+.+):heads(\d+)$/.exec(name);
  return m ? { parts: m[1].split('+'), heads: Number(m[2]) } : null;
}

/** The graph values of a weight's low-rank branch (GraphBuilder.lowRank). */
export interface LowRankValues {
  rank: number;
  /** linear: down^T [in, rank]; conv: down [rank, in, kh, kw] */
  down: Value;
  /** linear: up^T [rank, out]; conv: up [out, rank, 1, 1] */
  up: Value;
}

export class GraphBuilder {
  readonly weights: WeightSource | undefined;
  readonly dtype: ComputeDtype;
  readonly fp16Io: boolean;
  readonly name: string;
  readonly opset: number;
  readonly fusedAttention: boolean;
  readonly linear: LinearForm;
  readonly fusedBlocks: boolean;
  readonly fusedGroupNorm: boolean;
  readonly fusedGeglu: boolean;
  readonly nhwcConv: boolean | 'cpu-twin';
  readonly packedAttention: boolean | 'cpu-twin';
  /** initializers that are not checkpoint tensors as stored but computed from one (name -> how) */
  readonly derivedWeights = new Map<string, DerivedWeight>();
  /** ONNX element type of float compute values (for Cast 'to' and constants) */
  readonly floatType: DataTypeId;
  readonly op: Ops;
  readonly nodes: NodeDef[] = [];
  readonly inputs: IoDef[] = [];
  readonly outputs: IoDef[] = [];
  readonly constants: InlineTensor[] = [];
  /** checkpoint keys used as initializers, in first-use order, with their shapes */
  readonly weightInits = new Map<string, number[]>();
  private scopes: string[] = [];
  private counter = 0;
  private names = new Set<string>();
  /** transposeOf's nodes: output name -> input name and perm (what a later inverse Transpose cancels against) */
  private layoutMoves = new Map<string, { input: string; perm: number[] }>();
  /** transposeOf's results by `${input}|${perm}`, so one value is moved to a layout once */
  private layoutMemo = new Map<string, string>();

  constructor(opts: GraphOptions = {}) {
    this.weights = opts.weights;
    this.dtype = opts.dtype ?? 'float32';
    this.fp16Io = opts.fp16Io ?? false;
    this.name = opts.name ?? 'tcd_graph';
    this.opset = opts.opset ?? 17;
    this.fusedAttention = opts.fusedAttention ?? false;
    this.linear = opts.linear ?? 'gemm-transb';
    this.fusedBlocks = opts.fusedBlocks ?? false;
    this.fusedGroupNorm = opts.fusedGroupNorm ?? false;
    this.fusedGeglu = opts.fusedGeglu ?? false;
    this.nhwcConv = opts.nhwcConv ?? false;
    this.packedAttention = opts.packedAttention ?? false;
    this.floatType = this.dtype === 'float16' ? DataType.FLOAT16 : DataType.FLOAT;
    this.op = new Ops(this);
  }

  /** Runs fn with value/node names prefixed by `name` (a module path such as 'model.diffusion_model.input_blocks.1.0'). */
  scope<T>(name: string, fn: () => T): T {
    this.scopes.push(name.replace(/\.$/, ''));
    try {
      return fn();
    } finally {
      this.scopes.pop();
    }
  }

  /** A fresh unique name under the current scope. */
  uniqueName(hint: string): string {
    const base = this.scopes.length ? `${this.scopes.join('/')}/${hint}` : hint;
    let n = base;
    while (this.names.has(n)) n = `${base}_${++this.counter}`;
    this.names.add(n);
    return n;
  }

  /** Declares a graph input. Float inputs are cast to the compute dtype unless the I/O is fp16 already. */
  input(name: string, type: IoType, shape: Dim[]): Value {
    if (this.names.has(name)) throw new Error(`graph input "${name}" declared twice`);
    this.names.add(name);
    const isFloat = type === 'float32' || type === 'float16';
    const ioType = isFloat ? (this.dtype === 'float16' && this.fp16Io ? 'float16' : type) : type;
    this.inputs.push({ name, elemType: IO_TYPE[ioType], shape });
    const v = new Value(name);
    if (isFloat && IO_TYPE[ioType] !== this.floatType) return this.op.Cast(v, { to: this.floatType });
    return v;
  }

  /** Declares a graph output named `name`; float outputs are returned as float32 (or fp16 with fp16Io). Shape optional. */
  output(v: Value, name: string, type: IoType = 'float32', shape: Dim[] | null = null): void {
    const isFloat = type === 'float32' || type === 'float16';
    const ioType = isFloat ? (this.dtype === 'float16' && this.fp16Io ? 'float16' : type) : type;
    const elemType = IO_TYPE[ioType];
    if (this.names.has(name)) throw new Error(`graph output "${name}" clashes with an existing value`);
    this.names.add(name);
    const op = isFloat && elemType !== this.floatType ? 'Cast' : 'Identity';
    this.nodes.push({
      opType: op,
      name: `output/${name}`,
      inputs: [v.name],
      outputs: [name],
      attrs: op === 'Cast' ? { to: elemType } : {},
      domain: '',
    });
    this.outputs.push({ name, elemType, shape });
  }

  hasWeight(key: string): boolean {
    if (!this.weights) return false;
    if (this.weights.has) return this.weights.has(key);
    try {
      this.weights.shape(key);
      return true;
    } catch {
      return false;
    }
  }

  weightShape(key: string): number[] {
    if (!this.weights) throw new Error('graph has no WeightSource');
    return this.weights.shape(key);
  }

  /** The checkpoint tensor `key` as an initializer of the same name (stored in the compute dtype). */
  weight(key: string): Value {
    if (!this.weightInits.has(key)) {
      const shape = this.weightShape(key);
      this.weightInits.set(key, shape);
      this.names.add(key);
    }
    return new Value(key);
  }

  /**
   * The checkpoint tensor `key` ([out, in] or a 1x1 conv [out, in, 1, 1]) transposed to [in, out], as an initializer
   * named `${key}:T` written transposed at serialisation (no Transpose node, nothing for ORT to fold at load).
   */
  weightTransposed(key: string): Value {
    const name = `${key}:T`;
    if (!this.weightInits.has(name)) {
      const [outDim, inDim] = this.weightShape(key);
      this.weightInits.set(name, [inDim, outDim]);
      this.derivedWeights.set(name, { source: key, transform: 'transpose2d' });
      this.names.add(name);
    }
    return new Value(name);
  }

  /**
   * The conv weight `key` ([out, in, kh, kw], or [out, in] for a 1x1 conv) in the channels-last layout NhwcConv reads
   * ([out, kh, kw, in]), as an initializer `${key}:nhwc` written permuted at serialisation (no node, nothing to fold).
   */
  weightNhwc(key: string): Value {
    const name = `${key}:nhwc`;
    if (!this.weightInits.has(name)) {
      const [outDim, inDim, kh = 1, kw = 1] = this.weightShape(key);
      this.weightInits.set(name, [outDim, kh, kw, inDim]);
      this.derivedWeights.set(name, { source: key, transform: 'convNhwc' });
      this.names.add(name);
    }
    return new Value(name);
  }

  /**
   * The [out, in] checkpoint tensors `parts` (the same shape; out = heads x head size) as one MatMul weight
   * [in, heads x parts x head size] whose columns go head by head, each head's columns part after part: x times it,
   * reshaped to [..., heads, parts, head size], is every part's projection split into heads (MultiHeadAttention's
   * packed QKV / KV layouts), with no copy. Written at serialisation as an initializer named packedWeightName.
   */
  weightPacked(parts: readonly string[], heads: number): Value {
    const name = packedWeightName(parts, heads);
    if (!this.weightInits.has(name)) {
      const shapes = parts.map((k) => this.weightShape(k));
      const [outDim, inDim] = shapes[0];
      for (const [i, s] of shapes.entries()) {
        if (s[0] !== outDim || s.slice(1).reduce((a, b) => a * b, 1) !== inDim)
          throw new Error(`weightPacked: "${parts[i]}" is [${s}], "${parts[0]}" is [${shapes[0]}]`);
      }
      if (outDim % heads !== 0) throw new Error(`weightPacked: ${outDim} outputs do not split into ${heads} heads`);
      this.weightInits.set(name, [inDim, parts.length * outDim]);
      this.derivedWeights.set(name, { source: parts[0], transform: 'packHeads', parts, heads });
      this.names.add(name);
    }
    return new Value(name);
  }

  /** Whether the WeightSource gives `key` a low-rank branch (lowRank without making its initializers). */
  hasLowRank(key: string): boolean {
    return this.weights?.lowRank?.(key) !== undefined;
  }

  /**
   * Transpose x by perm, cancelling at build time: when x is itself the output of a transposeOf whose perm this one
   * undoes, its input comes back with no node; the same (x, perm) twice gives one node. Meant for layout moves around
   * channels-last operators (NHWC GroupNorm, NhwcConv) so that consecutive ones meet without Transposes between them;
   * the moves nothing reads any more are dropped by dropUnusedLayoutMoves (the serialisers call it).
   */
  transposeOf(x: Value, perm: number[]): Value {
    const prev = this.layoutMoves.get(x.name);
    if (prev && prev.perm.every((p, i) => perm[p] === i)) return new Value(prev.input);
    const memo = `${x.name}|${perm.join(',')}`;
    const seen = this.layoutMemo.get(memo);
    if (seen) return new Value(seen);
    const y = this.op.Transpose(x, { perm });
    this.layoutMoves.set(y.name, { input: x.name, perm });
    this.layoutMemo.set(memo, y.name);
    return y;
  }

  /** Removes transposeOf nodes whose output no node and no graph output reads (left behind by cancellations). */
  dropUnusedLayoutMoves(): void {
    for (;;) {
      const read = new Set<string>([...this.outputs.map((o) => o.name), ...this.nodes.flatMap((n) => n.inputs)]);
      const before = this.nodes.length;
      for (let i = this.nodes.length - 1; i >= 0; i--) {
        const n = this.nodes[i];
        if (this.layoutMoves.has(n.outputs[0]) && !read.has(n.outputs[0])) this.nodes.splice(i, 1);
      }
      if (this.nodes.length === before) return;
    }
  }

  /**
   * The low-rank branch the WeightSource asks for on checkpoint tensor `key` (null when none), as two initializers
   * `${key}:lr_down` / `${key}:lr_up` in the layout the `form` multiplies by: 'linear' (MatMul by down^T then up^T)
   * or 'conv' (Conv by down with the base conv's kernel, then a 1x1 Conv by up).
   */
  lowRank(key: string, form: 'linear' | 'conv'): LowRankValues | null {
    const delta = this.weights?.lowRank?.(key);
    if (!delta) return null;
    const shape = this.weightShape(key);
    const outDim = shape[0],
      inDim = shape.slice(1).reduce((a, b) => a * b, 1);
    const r = delta.rank;
    const downName = `${key}:lr_down`,
      upName = `${key}:lr_up`;
    if (!this.weightInits.has(downName)) {
      const downShape = form === 'linear' ? [inDim, r] : shape.length === 4 ? [r, ...shape.slice(1)] : [r, inDim, 1, 1];
      this.weightInits.set(downName, downShape);
      this.derivedWeights.set(downName, { source: key, transform: 'lowRankDown' });
      this.weightInits.set(upName, form === 'linear' ? [r, outDim] : [outDim, r, 1, 1]);
      this.derivedWeights.set(upName, { source: key, transform: 'lowRankUp' });
      this.names.add(downName).add(upName);
    }
    return { rank: r, down: new Value(downName), up: new Value(upName) };
  }

  /** The float32 values of initializer `name` (a checkpoint tensor, or one derived from it). */
  readWeight(name: string): Float32Array {
    if (!this.weights) throw new Error('graph has no WeightSource');
    const d = this.derivedWeights.get(name);
    if (!d) return this.weights.read(name);
    const shape = this.weightShape(d.source);
    const outDim = shape[0],
      inDim = shape.slice(1).reduce((a, b) => a * b, 1);
    if (d.transform === 'transpose2d') return transpose2d(this.weights.read(d.source), outDim, inDim);
    if (d.transform === 'packHeads') {
      const parts = d.parts!.map((k) => this.weights!.read(k));
      return packHeads(parts, outDim, inDim, d.heads!);
    }
    if (d.transform === 'convNhwc') {
      const [, inCh, kh = 1, kw = 1] = shape;
      return channelsLastPerOut(this.weights.read(d.source), outDim, inCh, kh * kw);
    }
    const delta = this.weights.lowRank?.(d.source);
    if (!delta) throw new Error(`low-rank branch of "${d.source}" is gone from the WeightSource`);
    const linearForm = this.weightInits.get(name)!.length === 2;
    if (d.transform === 'lowRankUp') return linearForm ? transpose2d(delta.up, outDim, delta.rank) : delta.up;
    return linearForm ? transpose2d(delta.down, delta.rank, inDim) : delta.down;
  }

  /** A float constant in the compute dtype. */
  constFloat(data: ArrayLike<number>, dims: number[] = [data.length], hint = 'const'): Value {
    const f32 = Float32Array.from(data);
    const raw =
      this.floatType === DataType.FLOAT16 ? new Uint8Array(floatToHalfArray(f32).buffer) : new Uint8Array(f32.buffer);
    return this.addConstant(hint, this.floatType, dims, raw);
  }

  /** A float32 constant regardless of the compute dtype (Resize scales and other float32-only inputs). */
  constFloat32(data: ArrayLike<number>, dims: number[] = [data.length], hint = 'f32'): Value {
    return this.addConstant(hint, DataType.FLOAT, dims, new Uint8Array(Float32Array.from(data).buffer));
  }

  /** A float scalar constant (rank 0) in the compute dtype. */
  scalar(x: number, hint = 'scalar'): Value {
    return this.constFloat([x], [], hint);
  }

  /** An int64 constant (shapes, axes, indices). */
  constInt64(data: ArrayLike<number>, dims: number[] = [data.length], hint = 'ints'): Value {
    const v = BigInt64Array.from(Array.from(data, (x) => BigInt(x)));
    return this.addConstant(hint, DataType.INT64, dims, new Uint8Array(v.buffer));
  }

  /** A tensor for node attributes (e.g. ConstantOfShape's value): float in compute dtype unless int64 asked. */
  tensorAttr(data: ArrayLike<number>, type: 'float' | 'int64' = 'float', dims: number[] = [data.length]): InlineTensor {
    if (type === 'int64') {
      return {
        kind: 'tensor',
        name: '',
        dataType: DataType.INT64,
        dims,
        raw: new Uint8Array(BigInt64Array.from(Array.from(data, (x) => BigInt(x))).buffer),
      };
    }
    const f32 = Float32Array.from(data);
    const raw =
      this.floatType === DataType.FLOAT16 ? new Uint8Array(floatToHalfArray(f32).buffer) : new Uint8Array(f32.buffer);
    return { kind: 'tensor', name: '', dataType: this.floatType, dims, raw };
  }

  private addConstant(hint: string, dataType: DataTypeId, dims: number[], raw: Uint8Array): Value {
    const name = this.uniqueName(hint);
    this.constants.push({ kind: 'tensor', name, dataType, dims, raw });
    return new Value(name);
  }

  /** Adds a node; `null` inputs become empty names (ONNX optional inputs). */
  node(opType: string, inputs: (Value | null | undefined)[], attrs: Attrs = {}, nOutputs = 1, domain = ''): Value[] {
    const name = this.uniqueName(opType);
    const outputs = Array.from({ length: nOutputs }, (_, i) => (nOutputs === 1 ? name : `${name}:${i}`));
    for (const o of outputs) this.names.add(o);
    // trim trailing absent optional inputs
    const ins = inputs.map((v) => (v ? v.name : ''));
    while (ins.length && ins[ins.length - 1] === '') ins.pop();
    this.nodes.push({ opType, name, inputs: ins, outputs, attrs, domain });
    return outputs.map((o) => new Value(o));
  }
}

/** [rows, cols] row-major -> [cols, rows] row-major. */
export function transpose2d(a: Float32Array, rows: number, cols: number): Float32Array {
  if (a.length !== rows * cols) throw new Error(`transpose2d: ${a.length} values for [${rows}, ${cols}]`);
  const out = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) {
    const row = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = a[row + c];
  }
  return out;
}

/**
 * [out, in] row-major tensors (out = heads x headDim) -> [in, heads x parts x headDim] row-major: column
 * (n x parts + j) x headDim + h of row i is parts[j][n x headDim + h][i] (GraphBuilder.weightPacked).
 */
export function packHeads(parts: readonly Float32Array[], outDim: number, inDim: number, heads: number): Float32Array {
  const P = parts.length,
    H = outDim / heads,
    width = P * outDim;
  const out = new Float32Array(inDim * width);
  parts.forEach((w, j) => {
    if (w.length !== outDim * inDim) throw new Error(`packHeads: ${w.length} values for [${outDim}, ${inDim}]`);
    for (let o = 0; o < outDim; o++) {
      const col = (Math.floor(o / H) * P + j) * H + (o % H);
      const row = o * inDim;
      for (let i = 0; i < inDim; i++) out[i * width + col] = w[row + i];
    }
  });
  return out;
}

/** [out, in, k] row-major -> [out, k, in] row-major (a conv weight [out, in, kh, kw] with k = kh * kw). */
export function channelsLastPerOut(a: Float32Array, outDim: number, inDim: number, k: number): Float32Array {
  if (a.length !== outDim * inDim * k)
    throw new Error(`channelsLast: ${a.length} values for [${outDim}, ${inDim}, ${k}]`);
  const out = new Float32Array(a.length);
  const per = inDim * k;
  for (let o = 0; o < outDim; o++) {
    const base = o * per;
    for (let c = 0; c < inDim; c++) for (let s = 0; s < k; s++) out[base + s * inDim + c] = a[base + c * k + s];
  }
  return out;
}

export function isFloatAttr(name: string, v: AttrValue): boolean {
  return v instanceof FloatAttr || (FLOAT_ATTRS.has(name) && (typeof v === 'number' || Array.isArray(v)));
}
