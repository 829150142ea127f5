/**
 * A UNet session whose inputs and outputs stay bound at fixed device addresses (native/ort-cuda graph_session.c), so
 * that ONNX Runtime's CUDA provider can capture each shape's run as a CUDA graph and replay it (`--cuda-graph`):
 * one launch per step instead of one per kernel (a CUDA step is launch-bound: ~2600 nodes for SDXL). onnxruntime-node
 * cannot bind CUDA memory, so the addon creates and runs these sessions through the C API of the libonnxruntime
 * onnxruntime-node loaded. On the CPU provider the same path runs with host memory (the tests' twin).
 *
 * It stands in for an ort.InferenceSession where the engine runs a UNet or a ControlNet (`run(feeds, fetches)`); the
 * outputs' shapes come from each input shape's first run.
 * Example:
 *   const s = BoundSession.create(path, { ep: 'cuda', deviceId: 0, cudaOptions: [], cudaGraph: true, logId: 'unet',
 *     ortPackageDir, addonPath });
 *   const { eps } = await s.run(feeds, ['eps']);
 */
import ort from 'onnxruntime-node';
import { type CudaOptionEntries, libonnxruntimeOf, loadOrtCudaAddon, optionsText } from './cuda-options.js';

type Handle = object;
interface GraphAddon {
  createSession(
    lib: string,
    model: string | Uint8Array,
    ep: 'cuda' | 'cpu',
    deviceId: number,
    options: string,
    cudaGraph: boolean,
    logId: string,
    logSeverity: number,
  ): Handle;
  sessionIO(h: Handle): { inputs: string[]; outputs: string[] };
  /** every output, in the session's order */
  run(
    h: Handle,
    inNames: string[],
    inTypes: number[],
    inDims: number[][],
    inData: ArrayBufferView[],
  ): { name: string; type: number; dims: number[]; data: ArrayBuffer }[];
  releaseSession(h: Handle): void;
}

export interface BoundSessionOptions {
  ep: 'cuda' | 'cpu';
  deviceId: number;
  cudaOptions: CudaOptionEntries;
  /** capture a CUDA graph per input shape (cuda only) */
  cudaGraph: boolean;
  logId: string;
  /** ONNX Runtime's log level in use in this process (logSeverityOf; default 3, errors only) */
  logSeverity?: 0 | 1 | 2 | 3;
  /** the onnxruntime-node package this process runs (its libonnxruntime is the one the addon calls) */
  ortPackageDir: string;
  addonPath: string;
  /** where the session says it dropped CUDA graphs (default: nowhere) */
  log?: (line: string) => void;
}

/** ONNX element type numbers of the tensor types the addon copies. */
const ELEMENT_TYPE: Partial<Record<ort.Tensor.Type, number>> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
};
const TENSOR_TYPE = new Map(Object.entries(ELEMENT_TYPE).map(([k, v]) => [v, k as ort.Tensor.Type]));

function typedArrayOf(type: ort.Tensor.Type, buffer: ArrayBuffer): ort.Tensor.DataType {
  switch (type) {
    case 'float32':
      return new Float32Array(buffer);
    case 'float16':
      return new Uint16Array(buffer);
    case 'int32':
      return new Int32Array(buffer);
    case 'int64':
      return new BigInt64Array(buffer);
    case 'int8':
      return new Int8Array(buffer);
    default:
      return new Uint8Array(buffer);
  }
}

export class BoundSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  private handle: Handle | null;
  /** graphs dropped after a failed run (the session then runs on with fixed bindings only) */
  private graphDropped = false;

  private constructor(
    private addon: GraphAddon,
    handle: Handle,
    private model: string | Uint8Array,
    private o: BoundSessionOptions,
  ) {
    this.handle = handle;
    const io = addon.sessionIO(handle);
    this.inputNames = io.inputs;
    this.outputNames = io.outputs;
  }

  /**
   * Creates the session from a model file (external data beside it) or bytes. Throws with what to do on failure. With
   * cudaGraph, a session the provider will not capture (e.g. a node that must copy to the host) is made again without
   * CUDA graphs, saying why (options.log).
   */
  static create(model: string | Uint8Array, o: BoundSessionOptions): BoundSession {
    const addon = loadOrtCudaAddon<GraphAddon>(o.addonPath, '--cuda-graph');
    try {
      return new BoundSession(addon, openSession(addon, model, o), model, o);
    } catch (e) {
      if (!o.cudaGraph) throw e;
      o.log?.(`engine: ${o.logId}: no CUDA graphs (${firstLine(e)}); fixed bindings only`);
      const without = { ...o, cudaGraph: false };
      return new BoundSession(addon, openSession(addon, model, without), model, without);
    }
  }

  /**
   * Runs with `feeds` (host tensors) and returns the outputs named in `fetches` (default all) as host tensors. A run
   * that fails while ONNX Runtime may be capturing a CUDA graph is tried once more on a session without graphs (a
   * capture the provider could not make), saying why. Runs must not overlap (they are synchronous), and outputs are
   * copied out before the next run: a later shape's bindings may share addresses with an earlier graph's scratch.
   */
  async run(
    feeds: Record<string, ort.Tensor>,
    fetches: readonly string[] = this.outputNames,
  ): Promise<Record<string, ort.Tensor>> {
    try {
      return this.runOnce(feeds, fetches);
    } catch (e) {
      // only a failure in a run where ONNX Runtime may capture (the addon tags those), not of the arguments or of a
      // later run (out of memory, say), which graphs did not cause
      const captureFailure = /^ONNX Runtime run \(graph capture\)/.test((e as Error).message);
      if (!captureFailure || !this.o.cudaGraph || this.graphDropped || !this.handle) throw e;
      this.graphDropped = true;
      this.o.log?.(`engine: ${this.o.logId}: a run with CUDA graphs failed (${firstLine(e)}); going on without them`);
      this.addon.releaseSession(this.handle);
      this.handle = null;
      this.o = { ...this.o, cudaGraph: false };
      this.handle = openSession(this.addon, this.model, this.o);
      return this.runOnce(feeds, fetches);
    }
  }

  private runOnce(feeds: Record<string, ort.Tensor>, fetches: readonly string[]): Record<string, ort.Tensor> {
    if (!this.handle) throw new Error('this session was released');
    for (const n of fetches) if (!this.outputNames.includes(n)) throw new Error(`the session has no output ${n}`);
    const names = Object.keys(feeds);
    const outputs = this.addon.run(
      this.handle,
      names,
      names.map((n) => elementType(feeds[n].type, n)),
      names.map((n) => [...feeds[n].dims]),
      names.map((n) => {
        const t = feeds[n];
        if (t.location !== 'cpu') throw new Error(`input ${n} must be a host tensor, is on ${t.location}`);
        return t.data as ArrayBufferView;
      }),
    );
    const result: Record<string, ort.Tensor> = {};
    for (const o of outputs) {
      if (!fetches.includes(o.name)) continue;
      const type = TENSOR_TYPE.get(o.type);
      if (!type) throw new Error(`output ${o.name} has element type ${o.type}`);
      result[o.name] = new ort.Tensor(type, typedArrayOf(type, o.data), o.dims);
    }
    return result;
  }

  /** Whether runs may capture and replay CUDA graphs (false after a fallback). */
  get cudaGraph(): boolean {
    return this.o.cudaGraph;
  }

  /** The ort.InferenceSession method profiling calls; these sessions are not profiled. */
  endProfiling(): void {}

  async release(): Promise<void> {
    if (this.handle) this.addon.releaseSession(this.handle);
    this.handle = null;
  }
}

function openSession(addon: GraphAddon, model: string | Uint8Array, o: BoundSessionOptions): Handle {
  const lib = libonnxruntimeOf(o.ortPackageDir, '--cuda-graph');
  const severity = o.logSeverity ?? 3;
  return addon.createSession(lib, model, o.ep, o.deviceId, optionsText(o.cudaOptions), o.cudaGraph, o.logId, severity);
}

/** An error's first line, at most 300 characters: what a log line or a probe's reason quotes. */
export const firstLine = (e: unknown) => (e as Error).message.split('\n')[0].slice(0, 300);

function elementType(type: ort.Tensor.Type, name: string): number {
  const n = ELEMENT_TYPE[type];
  if (n === undefined) throw new Error(`tensor ${name} has type ${type}, which a bound session does not copy`);
  return n;
}
