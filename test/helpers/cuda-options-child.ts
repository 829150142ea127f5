/**
 * Child process for test/engine/runtime/cuda-options.test.ts: installs --cuda-options through the native addon in a
 * fresh process (the patch is process-wide) and reports, as one JSON line, what each step gave. Run with
 * `node --import tsx test/helpers/cuda-options-child.ts ADDON`.
 */
import { installCudaOptions, parseCudaOptions } from '../../server/engine/runtime/cuda-options.js';
import { mainOrtPackage } from '../../server/engine/runtime/cuda-ort.js';
import { GraphBuilder } from '../../server/engine/onnx/graph.js';
import { serializeModel } from '../../server/engine/onnx/serialize.js';

const addon = process.argv[2];
const pkg = mainOrtPackage()!;
const entries = parseCudaOptions('cudnn_conv_algo_search=HEURISTIC,arena_extend_strategy=kSameAsRequested,use_tf32=0');
const message = (e: unknown) => (e as Error).message.split('\n')[0];

const out: Record<string, unknown> = {};
try {
  installCudaOptions(pkg, entries, addon);
  out.beforeImport = 'installed';
} catch (e) {
  out.beforeImport = message(e);
}
const loaded = await import('onnxruntime-node');
const ort = (loaded as unknown as { default?: typeof loaded }).default ?? loaded; // default is absent under tsx
const g = new GraphBuilder({ name: 'double' });
const x = g.input('x', 'float32', [3]);
g.output(g.op.Add(x, x), 'y');
const model = serializeModel(g);
const feeds = () => ({ x: new ort.Tensor('float32', Float32Array.from([1, -2, 3.5]), [3]) });
const runCpu = async () => {
  const s = await ort.InferenceSession.create(model, { executionProviders: ['cpu'] });
  const y = (await s.run(feeds())).y.data as Float32Array;
  await s.release();
  return [...y];
};
const tryCuda = async () => {
  try {
    const s = await ort.InferenceSession.create(model, { executionProviders: [{ name: 'cuda', deviceId: 0 }] });
    await s.release();
    return 'created';
  } catch (e) {
    return message(e);
  }
};

out.cudaBefore = await tryCuda();
const installed = installCudaOptions(pkg, entries, addon);
out.release = installed.ortRelease;
out.cpuWith = await runCpu();
out.cudaWith = await tryCuda();
out.effectiveWith = installed.effective();
installCudaOptions(pkg, [], addon); // no options: the wrapper passes straight through
out.cudaWithout = await tryCuda();
out.cpuWithout = await runCpu();
console.log(JSON.stringify(out));
