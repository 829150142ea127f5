/**
 * Moving float32 tensors between JavaScript and the provider's memory, inside the worker. onnxruntime-node gives
 * GPU-resident results as 'gpu-buffer' tensors but has no way to create one from JavaScript data, nor (in 1.30) a
 * download for them; so both directions are one-node Identity sessions whose output location says where the copy
 * lands (loopSessionOptions). Where loops keep latents on the host (cpu, cuda: latentsOnHost) tensors are plain CPU
 * tensors and no session runs.
 * Example (worker):
 *   const dev = deviceTensors(store);
 *   const ctx = await dev.upload(context);          // ort.Tensor in a GPU buffer (CPU tensor on cpu)
 *   const eps = (await unet.run({ ..., context: ctx })).eps;
 *   const host = await dev.download(eps);            // engine Tensor (Float32Array)
 */
import ort from 'onnxruntime-node';
import { GraphBuilder } from '../onnx/graph.js';
import { serializeModel } from '../onnx/serialize.js';
import type { Tensor } from '../tensor.js';
import { type ExecutionProvider, type GpuTuning, latentsOnHost, loopSessionOptions } from './providers.js';

interface StoreLike {
  ep: ExecutionProvider;
  tuning: Readonly<GpuTuning>;
}

/** Identity over float32 tensors of one rank (a graph input has a fixed rank; its dims stay symbolic). */
function identityGraph(name: string, rank: number): Uint8Array {
  const g = new GraphBuilder({ name });
  const dims = Array.from({ length: rank }, (_, i) => `d${i}`);
  const x = g.input('x', 'float32', dims);
  g.output(g.op.Identity(x), 'y', 'float32', dims);
  return serializeModel(g);
}

/** An engine Tensor from a CPU ort tensor (float32, float16 widened). */
function hostTensor(t: ort.Tensor): Tensor {
  if (t.location !== 'cpu') throw new Error(`expected a CPU tensor, got one in ${t.location}`);
  const shape = [...t.dims];
  if (t.type === 'float32') return { shape, data: t.data as Float32Array };
  return { shape, data: Float32Array.from(Array.from(t.data as ArrayLike<number | bigint>, Number)) };
}

export class DeviceTensors {
  private sessions = new Map<string, Promise<ort.InferenceSession>>();

  constructor(private store: StoreLike) {}

  private session(kind: 'upload' | 'download', rank: number): Promise<ort.InferenceSession> {
    const key = `${this.store.ep}:${kind}:${rank}`;
    let s = this.sessions.get(key);
    if (!s) {
      s = ort.InferenceSession.create(
        identityGraph(`${kind}_f32_rank${rank}`, rank),
        loopSessionOptions(this.store.ep, kind, this.store.tuning),
      );
      this.sessions.set(key, s);
      s.catch(() => this.sessions.delete(key));
    }
    return s;
  }

  /** A copy of `t` where the provider computes (GPU buffer on GPU providers; a CPU tensor on cpu). */
  async upload(t: Tensor): Promise<ort.Tensor> {
    const host = new ort.Tensor('float32', t.data, t.shape);
    if (latentsOnHost(this.store.ep)) return host;
    return (await (await this.session('upload', t.shape.length)).run({ x: host })).y;
  }

  /** A host copy of `t` (a no-op for CPU tensors); the device tensor is left to the caller to dispose. */
  async download(t: ort.Tensor): Promise<Tensor> {
    if (t.location === 'cpu') return hostTensor(t);
    const y = (await (await this.session('download', t.dims.length)).run({ x: t })).y;
    return { shape: [...t.dims], data: hostTensor(y).data };
  }

  async release(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) await (await s.catch(() => null))?.release();
  }
}

const perStore = new WeakMap<object, DeviceTensors>();

/** The worker's DeviceTensors for a session store (one set of copy sessions per store and provider). */
export function deviceTensors(store: StoreLike): DeviceTensors {
  let d = perStore.get(store);
  if (!d) {
    d = new DeviceTensors(store);
    perStore.set(store, d);
  }
  return d;
}
