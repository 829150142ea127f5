/**
 * The floor under one UNet call on a provider: a trivial graph with the UNet's I/O (latent in, context in, latent
 * out, float32 on the CPU side), timed per session.run. What keeping latents and conditioning on the GPU between
 * steps (issue 8 point 1: gpu-buffer outputs fed back) could save per step is at most this.
 *   node dist/server/tools/bench/io-overhead.js --ep webgpu [--latent 64] [--context 77x768] [--runs 20]
 * Example: node dist/server/tools/bench/io-overhead.js --ep webgpu --latent 128 --context 77x2048
 */
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { GraphBuilder } from '../../engine/onnx/graph.js';
import { serializeModel } from '../../engine/onnx/serialize.js';
import { type ExecutionProvider, sessionOptionsFor } from '../../engine/runtime/providers.js';

/** eps = x * 2 + mean(context): every input is read, the output has the latent's shape. */
export function ioGraph(channels: number): GraphBuilder {
  const g = new GraphBuilder({ name: 'io_overhead', dtype: 'float16' });
  const x = g.input('x', 'float32', [1, channels, 'H', 'W']);
  const c = g.input('context', 'float32', [1, 'S', 'C']);
  const m = g.op.ReduceMean(c, { axes: [1, 2], keepdims: 0 }); // [1]
  g.output(g.op.Add(g.op.Mul(x, g.scalar(2)), m), 'eps', 'float32');
  return g;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      ep: { type: 'string', default: 'webgpu' },
      latent: { type: 'string', default: '64' },
      context: { type: 'string', default: '77x768' },
      runs: { type: 'string', default: '20' },
    },
  });
  const side = Number(values.latent),
    [S, C] = values.context!.split('x').map(Number),
    runs = Number(values.runs);
  const ep = values.ep as ExecutionProvider;
  const session = await ort.InferenceSession.create(serializeModel(ioGraph(4)), sessionOptionsFor(ep, 'unet', 'sd1'));
  const feeds = {
    x: new ort.Tensor('float32', new Float32Array(4 * side * side).fill(0.5), [1, 4, side, side]),
    context: new ort.Tensor('float32', new Float32Array(S * C).fill(0.25), [1, S, C]),
  };
  const times: number[] = [];
  for (let i = 0; i <= runs; i++) {
    const t0 = performance.now();
    await session.run(feeds);
    times.push(performance.now() - t0);
  }
  const warm = times.slice(1).sort((a, b) => a - b);
  console.log(
    JSON.stringify({
      ep,
      latent: [1, 4, side, side],
      context: [1, S, C],
      coldMs: times[0],
      medianMs: warm[Math.floor(warm.length / 2)],
      minMs: warm[0],
    }),
  );
  await session.release();
}

if (process.argv[1] && /io-overhead\.(js|ts)$/.test(process.argv[1])) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}
