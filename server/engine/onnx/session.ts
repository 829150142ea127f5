/**
 * Thin onnxruntime-node wrapper: create a session from built bytes or a written model path, run it with
 * engine Tensors (float32) and int64 id arrays.
 * Example:
 *   const s = await createSession(serializeModel(g));          // or createSession('/tmp/unet.onnx') for external data
 *   const { out } = await runSession(s, { x: tensor([1, 4, 8, 8]) });
 */
import ort from 'onnxruntime-node';
import type { Tensor } from '../tensor.js';

export type Session = ort.InferenceSession;
export interface SessionOptions {
  executionProviders?: string[];
  intraOpNumThreads?: number;
}

/** Feeds: float32 Tensors, or int64 ids as { shape, ids: BigInt64Array | number[] }. */
export type Feed = Tensor | { shape: number[]; ids: BigInt64Array | number[] | Int32Array; type?: 'int64' | 'int32' };

export async function createSession(model: Uint8Array | string, opts: SessionOptions = {}): Promise<Session> {
  const so: ort.InferenceSession.SessionOptions = {
    executionProviders: opts.executionProviders ?? ['cpu'],
    graphOptimizationLevel: 'all',
    ...(opts.intraOpNumThreads ? { intraOpNumThreads: opts.intraOpNumThreads } : {}),
  };
  return typeof model === 'string' ? ort.InferenceSession.create(model, so) : ort.InferenceSession.create(model, so);
}

/** Feeds as ort tensors (ort tensors, e.g. GPU-resident ones, pass through). */
export function toOrtFeeds(feeds: Record<string, Feed | ort.Tensor>): Record<string, ort.Tensor> {
  const out: Record<string, ort.Tensor> = {};
  for (const [k, v] of Object.entries(feeds)) out[k] = v instanceof ort.Tensor ? v : toOrt(v as Feed);
  return out;
}

function toOrt(f: Feed): ort.Tensor {
  if ('data' in f) return new ort.Tensor('float32', f.data, f.shape);
  if (f.type === 'int32') return new ort.Tensor('int32', Int32Array.from(f.ids as ArrayLike<number>), f.shape);
  const ids =
    f.ids instanceof BigInt64Array
      ? f.ids
      : BigInt64Array.from(Array.from(f.ids as ArrayLike<number>, (x) => BigInt(x)));
  return new ort.Tensor('int64', ids, f.shape);
}

/** Runs the session; float outputs come back as engine Tensors (fp16 outputs are widened). */
export async function runSession(s: Session, feeds: Record<string, Feed>): Promise<Record<string, Tensor>> {
  const ortFeeds: Record<string, ort.Tensor> = {};
  for (const [k, v] of Object.entries(feeds)) ortFeeds[k] = toOrt(v);
  const res = await s.run(ortFeeds);
  const out: Record<string, Tensor> = {};
  for (const [k, t] of Object.entries(res)) {
    const shape = [...t.dims];
    if (t.type === 'float32') out[k] = { shape, data: t.data as Float32Array };
    else if (t.type === 'float16') {
      const d = t.data as unknown as ArrayLike<number>;
      out[k] = { shape, data: d instanceof Uint16Array ? halfBitsToFloat(d) : Float32Array.from(d) };
    } else out[k] = { shape, data: Float32Array.from(Array.from(t.data as ArrayLike<number | bigint>, Number)) };
  }
  return out;
}

function halfBitsToFloat(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i],
      s = h & 0x8000 ? -1 : 1,
      e = (h >> 10) & 0x1f,
      m = h & 0x3ff;
    out[i] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return out;
}
