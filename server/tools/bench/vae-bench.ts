/**
 * VAE decoder forms on one provider, without a checkpoint file: the real-size decoder of a preset (random seeded
 * weights, generated lazily while the graph is serialised) is built once per form (compute dtype x mid-block
 * attention x linear form) and its decode timed. Prints one JSON report (progress on stderr).
 *   node dist/server/tools/bench/vae-bench.js --arch sdxl --size 1024 --ep webgpu [--runs 3] [--forms fp32:fused,fp32:plain,...]
 * A form is `<dtype>:<attention>[:<linear>]`, dtype fp32|fp16, attention fused|plain|fused-fp16|plain-fp16, linear
 * gemm-transb|matmul|gemm.
 * Example: node dist/server/tools/bench/vae-bench.js --arch sdxl --size 1024 --ep webgpu --forms fp32:fused,fp32:plain
 */
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { checkpointKeys } from '../../engine/model/checkpoint-layout.js';
import { fillNormal, initRule, presetConfig, type PresetName } from '../make-checkpoint.js';
import type { LinearForm } from '../../engine/onnx/graph.js';
import { serializeModel } from '../../engine/onnx/serialize.js';
import type { WeightSource } from '../../engine/onnx/weights.js';
import { DEFAULT_GPU_TUNING, type ExecutionProvider, sessionOptionsFor } from '../../engine/runtime/providers.js';
import { buildVaeDecoderGraph, vaeStreamScale, type VaeAttentionForm } from '../../engine/model/vae.js';

export interface VaeForm {
  dtype: 'float32' | 'float16';
  attention: VaeAttentionForm;
  linear: LinearForm;
}

export function parseForm(s: string): VaeForm {
  const [d, attention = 'fused', linear = 'gemm-transb'] = s.split(':');
  if (d !== 'fp32' && d !== 'fp16') throw new Error(`form "${s}": dtype must be fp32 or fp16`);
  if (!['fused', 'plain', 'fused-fp16', 'plain-fp16'].includes(attention))
    throw new Error(`form "${s}": bad attention "${attention}"`);
  if (!['gemm-transb', 'matmul', 'gemm'].includes(linear)) throw new Error(`form "${s}": bad linear "${linear}"`);
  return {
    dtype: d === 'fp32' ? 'float32' : 'float16',
    attention: attention as VaeAttentionForm,
    linear: linear as LinearForm,
  };
}

/** Seeded random weights of a preset, generated on read (nothing held in memory). */
export function randomWeights(arch: PresetName, seed = 1): WeightSource {
  const shapes = new Map(checkpointKeys(presetConfig(arch)).map((k) => [k.name, k.shape]));
  const shape = (n: string) => {
    const s = shapes.get(n);
    if (!s) throw new Error(`no key ${n}`);
    return [...s];
  };
  return {
    shape,
    has: (n) => shapes.has(n),
    read: (n) => {
      const s = shape(n),
        a = new Float32Array(s.reduce((x, y) => x * y, 1)),
        rule = initRule({ name: n, shape: s });
      if (rule.kind === 'ones') a.fill(1);
      else if (rule.kind === 'normal') fillNormal(a, rule.std, seed, n);
      return a;
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      arch: { type: 'string', default: 'sdxl' },
      size: { type: 'string', default: '1024' },
      ep: { type: 'string', default: 'webgpu' },
      runs: { type: 'string', default: '3' },
      forms: { type: 'string', default: 'fp32:fused,fp32:plain,fp32:fused-fp16,fp32:plain-fp16' },
    },
  });
  const arch = values.arch as PresetName,
    size = Number(values.size),
    ep = values.ep as ExecutionProvider;
  const cfg = presetConfig(arch);
  const weights = randomWeights(arch);
  const latent = new Float32Array(cfg.vae.latentChannels * (size / 8) ** 2);
  for (let i = 0; i < latent.length; i++) latent[i] = Math.sin(i * 0.37);
  const results: Record<string, unknown>[] = [];
  for (const spec of values.forms!.split(',')) {
    const form = parseForm(spec);
    const t0 = performance.now();
    try {
      const bytes = serializeModel(
        buildVaeDecoderGraph(cfg.vae, weights, {
          dtype: form.dtype,
          streamScale: vaeStreamScale(cfg.family, form.dtype),
          fusedAttention: true,
          linear: form.linear,
          midAttention: form.attention,
        }),
      );
      const t1 = performance.now();
      const session = await ort.InferenceSession.create(
        bytes,
        sessionOptionsFor(ep, 'vae_decoder', cfg.family, DEFAULT_GPU_TUNING),
      );
      const t2 = performance.now();
      const feeds = { latent: new ort.Tensor('float32', latent, [1, cfg.vae.latentChannels, size / 8, size / 8]) };
      const times: number[] = [];
      let finite = true;
      for (let r = 0; r <= Number(values.runs); r++) {
        const s = performance.now();
        const out = await session.run(feeds);
        times.push(performance.now() - s);
        const img = out.image.data as Float32Array;
        finite = finite && img.every(Number.isFinite);
      }
      await session.release();
      const warm = times.slice(1).sort((a, b) => a - b);
      const r = {
        form: spec,
        buildMs: Math.round(t1 - t0),
        sessionMs: Math.round(t2 - t1),
        coldMs: Math.round(times[0]),
        warmMs: warm.map((v) => Math.round(v * 10) / 10),
        medianMs: Math.round(warm[Math.floor((warm.length - 1) / 2)] * 10) / 10,
        finite,
      };
      console.error(`vae-bench: ${JSON.stringify(r)}`);
      results.push(r);
    } catch (e) {
      console.error(`vae-bench: ${spec} failed: ${(e as Error).message.split('\n')[0]}`);
      results.push({ form: spec, error: (e as Error).message.split('\n')[0].slice(0, 400) });
    }
  }
  console.log(JSON.stringify({ arch, size, ep, results }, null, 2));
}

if (process.argv[1] && /vae-bench\.(js|ts)$/.test(process.argv[1])) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}
