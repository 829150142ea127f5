/**
 * Correctness of a GPU provider against the reference fixtures, runnable where the test runner is not (the device
 * machine has production modules only): components of sd1_tiny (text encoder, UNet, VAE decode against
 * sd1_tiny_cases) and whole pipelines through the real nodes and executor (the sd1 runs of pipelines.safetensors:
 * TCDSampler; comfy_ksampler.safetensors: KSampler). Prints one JSON report: per check the max |diff| against the
 * reference and the fixture rule (components 1e-4 x max(1, max|ref|) at fp32; pixels within 2 levels on 99.9%, none
 * over 4), so fp16 error is reported as measured rather than hidden.
 * Pipelines with a LoRA (pipelines.safetensors' sdxl_tcd_lora) run through LoraLoaderModelOnly when the fixture
 * folder has their files. --external-data-min-mb 0 puts every graph on disk, as real-size ones are, so a LoRA is
 * baked on the device from the shared weight file (lora/session.ts) even for the tiny fixtures. The GPU knobs come
 * from the environment as for the bench (e.g. TCD_CUDA_GRAPH=1 checks the CUDA graph path).
 * Usage: node dist/server/tools/bench/fixture-check.js --fixtures DIR --ep cuda [--external-data-min-mb N] [--out FILE]
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createRegistry } from '../../../nodes/index.js';
import { defineNode, t } from '../../../nodes/define.js';
import { Engine } from '../../engine/engine.js';
import { SafetensorsFile } from '../../engine/io/safetensors.js';
import type { Tensor } from '../../engine/tensor.js';
import { Executor } from '../../executor/execute.js';
import type { Prompt } from '../../executor/prompt.js';
import { validatePrompt } from '../../executor/validate.js';
import { makeServices } from '../../host.js';
import { ModelFolders } from '../../storage/model-folders.js';
import { gpuTuningOf, settingsFromEnv } from '../../settings.js';

/** The GPU knobs of the environment (TCD_CUDA_GRAPH, TCD_GPU_*, ...: server/settings.ts), as bench.ts reads them. */
const envTuning = () => gpuTuningOf(settingsFromEnv(process.env));

const maxAbs = (a: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
};
function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** The fixtures' pixel rule on [B,H,W,3] in 0..1 against [B,3,H,W] in [-1,1]. */
function pixels(ours: Float32Array, ref: Float32Array, shape: number[]) {
  const [b, , h, w] = shape;
  let over2 = 0,
    maxDiff = 0;
  for (let i = 0; i < b; i++)
    for (let c = 0; c < 3; c++)
      for (let p = 0; p < h * w; p++) {
        const r = Math.min(1, Math.max(0, (ref[(i * 3 + c) * h * w + p] + 1) / 2)) * 255;
        const g = Math.round(Math.min(1, Math.max(0, ours[(i * h * w + p) * 3 + c])) * 255);
        const d = Math.abs(g - r);
        if (d > 2) over2++;
        maxDiff = Math.max(maxDiff, d);
      }
  const fractionOver2 = over2 / (b * 3 * h * w);
  return { fractionOver2, maxDiff, pass: fractionOver2 <= 0.001 && maxDiff <= 4 };
}

interface Check {
  name: string;
  maxDiff: number;
  tolerance?: number;
  pass: boolean;
  [k: string]: unknown;
}

async function components(engine: Engine, fixtures: string): Promise<Check[]> {
  const ckpt = join(fixtures, 'sd1_tiny.safetensors');
  if (!existsSync(ckpt)) return []; // a folder with only the sdxl fixtures: pipelines only
  const cases = SafetensorsFile.open(join(fixtures, 'sd1_tiny_cases.safetensors'));
  const out: Check[] = [];
  const check = (name: string, got: ArrayLike<number>, ref: Float32Array) => {
    const d = maxAbsDiff(got, ref),
      tol = 1e-4 * Math.max(1, maxAbs(ref));
    out.push({ name, maxDiff: d, tolerance: tol, relToMax: d / Math.max(1e-12, maxAbs(ref)), pass: d <= tol });
  };
  try {
    const x = cases.readTensor('unet/x'),
      ctx = cases.readTensor('unet/context');
    const eps = await engine.unet({ checkpoint: ckpt, loras: [] }, x, cases.readFloat32('unet/t'), ctx);
    check('sd1 unet eps', eps.data, cases.readFloat32('unet/out'));
    const dec = await engine.vaeDecode({ checkpoint: ckpt }, cases.readTensor('vae/z'));
    check('sd1 vae decode', dec.data, cases.readFloat32('vae/decoded'));
  } finally {
    cases.close();
  }
  return out;
}

interface Run {
  checkpoint: string;
  lora?: string;
  strength_model?: number;
  prompt: string;
  negative: string;
  width: number;
  height: number;
  steps: number;
  seed: number;
  batch_size: number;
  cfg: number;
}

async function pipelines(ep: string, fixtures: string, externalDataMinMB?: number): Promise<Check[]> {
  const root = mkdtempSync(join(tmpdir(), 'tcd-fixture-check-'));
  const dirs = {
    models: join(root, 'models'),
    output: join(root, 'output'),
    input: join(root, 'input'),
    temp: join(root, 'temp'),
    data: join(root, 'data'),
  };
  for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true });
  symlinkSync(fixtures, join(dirs.models, 'checkpoints'));
  symlinkSync(fixtures, join(dirs.models, 'loras'));
  const captured = new Map<string, unknown>();
  const registry = createRegistry();
  registry.set(
    'CaptureIMAGE',
    defineNode({
      id: 'CaptureIMAGE',
      category: 'testing',
      outputNode: true,
      inputs: [t.socket('IMAGE', 'value')],
      outputs: [],
      execute: ({ value }, ctx) => {
        captured.set(ctx.nodeId, value);
        return { outputs: [] };
      },
    }),
  );
  const services = makeServices(
    new ModelFolders(dirs.models),
    { output: dirs.output, input: dirs.input, temp: dirs.temp },
    { ep, dataDir: dirs.data, log: (l) => console.error(l), externalDataMinMB, tuning: envTuning() },
    false,
  );
  const executor = new Executor(registry, services);
  const out: Check[] = [];
  let n = 0;
  const run = async (name: string, r: Run, sampler: Record<string, unknown>, refImage: Tensor) => {
    const lora: Prompt = r.lora
      ? {
          lora: {
            class_type: 'LoraLoaderModelOnly',
            inputs: { model: ['ckpt', 0], lora_name: r.lora, strength_model: r.strength_model ?? 1 },
          },
        }
      : {};
    const prompt: Prompt = {
      ...lora,
      ckpt: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: r.checkpoint } },
      pos: { class_type: 'CLIPTextEncode', inputs: { text: r.prompt, clip: ['ckpt', 1] } },
      neg: { class_type: 'CLIPTextEncode', inputs: { text: r.negative, clip: ['ckpt', 1] } },
      empty: { class_type: 'EmptyLatentImage', inputs: { width: r.width, height: r.height, batch_size: r.batch_size } },
      s: sampler as unknown as Prompt[string],
      decode: { class_type: 'VAEDecode', inputs: { samples: ['s', 0], vae: ['ckpt', 2] } },
      image_out: { class_type: 'CaptureIMAGE', inputs: { value: ['decode', 0] } },
    };
    const v = validatePrompt(prompt, registry, services);
    if (!v.ok) throw new Error(`${name}: prompt invalid: ${JSON.stringify(v.body)}`);
    const t0 = performance.now();
    const res = await executor.run(
      { promptId: `p${n++}`, prompt, extraData: {}, outputs: v.outputs, constants: v.constants },
      { emit: () => {}, preview: () => {}, signal: new AbortController().signal },
    );
    const img = captured.get('image_out') as Tensor | undefined;
    if (res.status !== 'success' || !img) {
      out.push({ name, maxDiff: Infinity, pass: false, status: res.status });
      return;
    }
    const p = pixels(img.data, refImage.data, refImage.shape);
    out.push({ name, ...p, ms: Math.round(performance.now() - t0) });
  };
  try {
    const manifest = JSON.parse(readFileSync(join(fixtures, 'manifest.json'), 'utf8'));
    const refs = SafetensorsFile.open(join(fixtures, 'pipelines.safetensors'));
    for (const [name, r] of Object.entries(
      manifest.cases.pipelines.runs as Record<string, Run & { eta: number; lora?: string }>,
    )) {
      if (!existsSync(join(fixtures, r.checkpoint)) || (r.lora && !existsSync(join(fixtures, r.lora)))) continue;
      await run(
        `pipeline ${name}`,
        r,
        {
          class_type: 'TCDSampler',
          inputs: {
            model: r.lora ? ['lora', 0] : ['ckpt', 0],
            positive: ['pos', 0],
            negative: ['neg', 0],
            latent_image: ['empty', 0],
            seed: r.seed,
            steps: r.steps,
            cfg: r.cfg,
            eta: r.eta,
            denoise: 1,
            original_inference_steps: 50,
          },
        },
        refs.readTensor(`${name}/image`),
      );
    }
    refs.close();
    if (!existsSync(join(fixtures, 'comfy_ksampler.json'))) return out;
    const ks = JSON.parse(readFileSync(join(fixtures, 'comfy_ksampler.json'), 'utf8'));
    const ksRefs = SafetensorsFile.open(join(fixtures, 'comfy_ksampler.safetensors'));
    for (const [name, r] of Object.entries(
      ks.runs as Record<string, Run & { sampler_name: string; scheduler: string; denoise: number }>,
    )) {
      await run(
        `KSampler ${name}`,
        r,
        {
          class_type: 'KSampler',
          inputs: {
            model: ['ckpt', 0],
            seed: r.seed,
            steps: r.steps,
            cfg: r.cfg,
            sampler_name: r.sampler_name,
            scheduler: r.scheduler,
            positive: ['pos', 0],
            negative: ['neg', 0],
            latent_image: ['empty', 0],
            denoise: r.denoise,
          },
        },
        ksRefs.readTensor(`${name}/image`),
      );
    }
    ksRefs.close();
  } finally {
    await services.engine().close();
    rmSync(root, { recursive: true, force: true });
  }
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      fixtures: { type: 'string' },
      ep: { type: 'string', default: 'cuda' },
      out: { type: 'string' },
      'external-data-min-mb': { type: 'string' },
    },
  });
  const minMB = values['external-data-min-mb'];
  const externalDataMinMB = minMB === undefined ? undefined : Number(minMB);
  if (!values.fixtures) throw new Error('usage: fixture-check --fixtures DIR --ep cuda|webgpu|cpu [--out FILE]');
  const fixtures = resolve(values.fixtures);
  const cacheDir = mkdtempSync(join(tmpdir(), 'tcd-fixture-cache-'));
  const engine = new Engine({
    ep: values.ep,
    cacheDir,
    log: (l) => console.error(l),
    externalDataMinMB,
    tuning: envTuning(),
  });
  let report: Record<string, unknown>;
  try {
    const comps = await components(engine, fixtures);
    const stats = await engine.stats();
    await engine.close();
    const pipes = await pipelines(values.ep!, fixtures, externalDataMinMB);
    report = { ep: stats.ep, ortVersion: stats.ortVersion, components: comps, pipelines: pipes };
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
  const text = JSON.stringify(report, null, 1);
  if (values.out) writeFileSync(values.out, text);
  console.log(text);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
