/**
 * One benchmark: a TCD text-to-image generation through the real Engine (worker thread, session cache, graph cache),
 * timed part by part. The first pass loads everything (cold: graph build or cache reuse, session creation, first
 * run, which on WebGPU includes shader compilation); then `images` warm passes each time text encoding, every UNet
 * step and the VAE decode, and the whole image. The TCD loop runs in the engine worker (latents kept on the GPU;
 * per-step time = the interval between its progress reports) or, with loop 'js', as one engine.unet call per step
 * (timed around the call). session.run times inside the worker are reported beside them, and the worker loop's phases
 * (set-up, per step yield / UNet / step graph / report, end) from the worker's timeline.
 * Example:
 *   const report = await runBench({ arch: 'sd15', size: 512, steps: 4, ep: 'webgpu' });
 *   console.log(JSON.stringify(report, null, 2));
 */
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Engine, type EngineOptions, type RuntimeStats } from '../../engine/engine.js';
import type { WorkerInit } from '../../engine/runtime/protocol.js';
import { timelineAfter, type TimelineEntry } from '../../engine/runtime/timeline.js';
import { makeCheckpoint, presetConfig, type PresetName } from '../make-checkpoint.js';
import { TorchGenerator } from '../../engine/rng.js';
import { sampleTcd, tcdInitialLatent, tcdTimesteps } from '../../engine/sampling/tcd.js';
import type { Tensor } from '../../engine/tensor.js';
import { GpuMemoryProbe } from './gpu-memory.js';
import { makeRandomLora } from './make-lora.js';

export interface BenchOptions {
  arch: PresetName;
  /** image side in pixels (multiple of 8 x the UNet's downsampling: 64 for SD1, 32 for SDXL) */
  size: number;
  steps: number;
  ep: string;
  /** a checkpoint to use; default: a seeded random one of the arch's real size in the temp folder */
  checkpoint?: string;
  /** warm images to time (default 2) */
  images?: number;
  /** where graphs are cached between runs; default <tmp>/tcd-bench/onnx-cache */
  cacheDir?: string;
  prompt?: string;
  /** run the UNet with a LoRA: a file (strength 1), or a seeded random kohya LoRA of this rank made once in the temp folder */
  lora?: string;
  loraRank?: number;
  /**
   * 'worker' (default): the whole TCD loop in the engine worker, latents kept on the GPU (what TCDSampler runs);
   * 'js': the JS loop with one engine.unet call per step (what the k-samplers run; every step round-trips the latent)
   */
  loop?: 'worker' | 'js';
  /** GPU index (CUDA deviceId; WebGPU through the Vulkan device-select layer) */
  device?: number;
  /** classifier-free guidance scale (worker loop only): above 1 every step is one batch-2 UNet call with the empty
   *  prompt as the negative (encoded once, before the timed images); default 1 */
  cfg?: number;
  /** GPU tuning knobs (bench.ts fills them from the TCD_GPU_* settings); recorded in the report */
  tuning?: EngineOptions['tuning'];
  log?: (line: string) => void;
}

/**
 * One warm image. loopMs: the whole sampling loop (GPU work finished: the final latent is on the CPU); unetStepMs:
 * per step as the main thread sees it (worker loop: between progress reports, which on a GPU run ahead of the GPU
 * and bunch up at the end; js loop: around each engine.unet call).
 */
export interface PhaseTimes {
  textEncodeMs: number;
  loopMs: number;
  unetStepMs: number[];
  unetStepInWorkerMs: number[];
  /** the worker loop's phases summed over the image (null for the js loop): see LoopPhases */
  loopPhasesMs: LoopPhases | null;
  vaeDecodeMs: number;
  totalMs: number;
}

/**
 * Where loopMs goes, from the worker's timeline (tcd-loop.ts phaseMarks): per phase name (setup, yield, unet, step,
 * progress, end) the sum over the loop in ms; inWorker, their total (the loop's whole time in the worker);
 * outsideWorker = loopMs - inWorker (the call's and the result's messages, the main thread's turn); unetInSession,
 * the UNet's session.run total (the unet phase less it: feeds and output handling).
 */
export type LoopPhases = Record<string, number>;

export interface BenchReport {
  arch: PresetName;
  size: number;
  steps: number;
  epRequested: string;
  ep: string;
  loop: 'worker' | 'js';
  /** classifier-free guidance scale of the timed images (above 1: batch-2 UNet calls) */
  cfg: number;
  checkpoint: string;
  checkpointCreatedS: number | null;
  lora: { path: string; createdS: number | null } | null;
  /** per component: graph build + serialise (or cache reuse) and session creation, from the worker */
  loads: RuntimeStats['loadTimings'];
  /** loraFirstUseMs: with a LoRA, its first UNet call after the plain UNet had loaded */
  cold: { textEncodeMs: number; unetFirstCallMs: number; vaeDecodeMs: number; loraFirstUseMs?: number };
  images: PhaseTimes[];
  /** the last decoded image in four numbers (compare graph forms run on one seed) */
  lastImage: { mean: number; meanAbs: number; min: number; max: number } | null;
  /** medians over the warm images; unetStepMs is the loop's time per step (loopMs / steps) */
  summary: {
    unetStepMs: number;
    unetStepInWorkerMs: number;
    /** per LoopPhases key, the median over the warm images (null for the js loop) */
    loopPhasesMs: LoopPhases | null;
    textEncodeMs: number;
    vaeDecodeMs: number;
    secondsPerImage: number;
    modelLoadS: number;
    sessionCreateS: number;
  };
  memory: {
    peakRssMiB: number;
    gpuBaselineMiB: number | null;
    gpuPeakMiB: number | null;
    gpuPeakAboveBaselineMiB: number | null;
    /** GPU memory used above the baseline right after the cold first call of each (null without nvidia-smi) */
    afterPhaseMiB: { text: number | null; unet: number | null; vae: number | null };
  };
  node: string;
  tuning: WorkerInit['tuning'];
  /**
   * the engine's log lines during the run (first 100): the provider chosen and why, the CUDA provider options in
   * effect, whether CUDA graphs were used or dropped and why, so a report says what actually ran
   */
  engineLog: string[];
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

/** The default checkpoint: <tmp>/tcd-bench/<arch>.safetensors, created once per machine (seed 1, F16). */
export async function benchCheckpoint(
  arch: PresetName,
  log: (l: string) => void,
): Promise<{ path: string; createdS: number | null }> {
  const dir = join(tmpdir(), 'tcd-bench');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${arch}.safetensors`);
  if (existsSync(path)) return { path, createdS: null };
  log(`bench: writing a random ${arch} checkpoint to ${path}`);
  const t0 = performance.now();
  await makeCheckpoint({ config: presetConfig(arch), out: path, seed: 1, dtype: 'F16' });
  return { path, createdS: round((performance.now() - t0) / 1000, 2) };
}

/** <tmp>/tcd-bench/<arch>-lora<rank>.safetensors: a random kohya LoRA over the UNet (make-lora.ts), made once. */
async function benchLora(
  arch: PresetName,
  rank: number,
  log: (l: string) => void,
): Promise<{ path: string; createdS: number | null }> {
  const path = join(tmpdir(), 'tcd-bench', `${arch}-lora${rank}.safetensors`);
  if (existsSync(path)) return { path, createdS: null };
  const t0 = performance.now();
  const made = await makeRandomLora({ arch, rank, out: path });
  log(
    `bench: wrote a random rank-${rank} LoRA (${made.modules} UNet modules, ${(made.params / 1e6).toFixed(1)}M params) to ${path}`,
  );
  return { path, createdS: round((performance.now() - t0) / 1000, 2) };
}

export async function runBench(o: BenchOptions): Promise<BenchReport> {
  const log = o.log ?? ((l: string) => console.error(l));
  const { arch, size, steps } = o;
  const loop = o.loop ?? 'worker';
  const cfg = o.cfg ?? 1;
  if (!(cfg >= 1)) throw new Error(`--cfg must be a number >= 1, got ${o.cfg}`);
  if (cfg !== 1 && loop !== 'worker') throw new Error('--cfg above 1 is timed with the worker loop only');
  const granularity = arch === 'sd15' ? 64 : 32;
  if (!Number.isInteger(size) || size <= 0 || size % granularity !== 0)
    throw new Error(`--size must be a positive multiple of ${granularity} for ${arch}, got ${size}`);
  const ckpt = o.checkpoint ? { path: resolve(o.checkpoint), createdS: null } : await benchCheckpoint(arch, log);
  const engineLog: string[] = [];
  const engine = new Engine({
    ep: o.ep,
    cacheDir: o.cacheDir ?? join(tmpdir(), 'tcd-bench', 'onnx-cache'),
    log: (line) => {
      if (engineLog.length < 100) engineLog.push(line);
      log(line);
    },
    tuning: o.tuning,
    ...(o.device !== undefined ? { device: o.device } : {}),
  });
  const gpu = await GpuMemoryProbe.start(250);
  try {
    const { config } = engine.inspect(ckpt.path);
    const lora = o.lora
      ? { path: resolve(o.lora), createdS: null }
      : o.loraRank
        ? await benchLora(arch, o.loraRank, log)
        : null;
    const model = { checkpoint: ckpt.path, loras: lora ? [{ path: lora.path, strength: 1 }] : [] };
    const clip = { checkpoint: ckpt.path, loras: [] };
    const prompt = o.prompt ?? 'a photograph of an astronaut riding a horse, highly detailed';
    const latentShape = [1, config.unet.inChannels, size / 8, size / 8];
    const timesteps = tcdTimesteps(steps);
    const clock = async <T>(fn: () => Promise<T>): Promise<[T, number]> => {
      const t0 = performance.now();
      const v = await fn();
      return [v, performance.now() - t0];
    };
    const extraFor = (pooled: Tensor | null) =>
      config.unet.adm && pooled
        ? { textEmbeds: pooled, timeIds: { shape: [1, 6], data: Float32Array.of(size, size, 0, 0, size, size) } }
        : undefined;

    /** a sampling loop's conditioning branch from an encoded prompt */
    const branchOf = (c: { context: Tensor; pooled: Tensor | null }) => {
      const extra = extraFor(c.pooled);
      return { context: c.context, ...(extra ? { extra } : {}) };
    };

    // cold: each component loads on first use
    log(`bench: ${arch} ${size}x${size}, ${steps} steps, ep ${o.ep}: loading`);
    const [text, textCold] = await clock(() => engine.encodeText(clip, prompt));
    const textMiB = gpu.aboveBaseline(await gpu.now());
    const negative = cfg !== 1 ? branchOf(await engine.encodeText(clip, '')) : null;
    const x0: Tensor = { shape: latentShape, data: tcdInitialLatent(new TorchGenerator(0), latentShape) };
    const unetCall = (m: typeof model) =>
      engine.unet(m, x0, Float32Array.of(timesteps[0]), text.context, extraFor(text.pooled));
    // with a LoRA: the plain UNet loads first (a server that has run without it), then the first call with the
    // LoRA set is what a user waits for when they add it (loraFirstUseMs)
    const [, unetCold] = await clock(() => unetCall(lora ? { ...model, loras: [] } : model));
    const [, loraFirstUse] = lora ? await clock(() => unetCall(model)) : [null, null];
    const unetMiB = gpu.aboveBaseline(await gpu.now());
    const [, vaeCold] = await clock(() => engine.vaeDecode({ checkpoint: ckpt.path }, x0));
    const vaeMiB = gpu.aboveBaseline(await gpu.now());

    const images: PhaseTimes[] = [];
    let lastImage: ReturnType<typeof summarize> | null = null;
    for (let i = 0; i < (o.images ?? 2); i++) {
      const before = await engine.stats();
      const gen = new TorchGenerator(i + 1);
      const t0 = performance.now();
      const [cond, textMs] = await clock(() => engine.encodeText(clip, prompt));
      const stepMs: number[] = [];
      const x = tcdInitialLatent(gen, latentShape);
      const loopStart = performance.now();
      let latent: Float32Array;
      if (loop === 'worker') {
        // per step: time between the loop's progress reports (UNet + step graph; the GPU is synchronised only at the end)
        const noises = timesteps.slice(1).map(() => gen.randn(latentShape));
        let last = performance.now();
        latent = (
          await engine.sampleTcd(
            {
              model,
              x: { shape: latentShape, data: x },
              timesteps,
              eta: 0.3,
              noises,
              cfg,
              positive: branchOf(cond),
              ...(negative ? { negative } : {}),
            },
            {
              onStep: () => {
                const now = performance.now();
                stepMs.push(now - last);
                last = now;
              },
            },
          )
        ).data;
      } else {
        latent = await sampleTcd({
          x,
          timesteps,
          eta: 0.3,
          noise: gen,
          shape: latentShape,
          denoise: async (xs, t) => {
            const [eps, ms] = await clock(() =>
              engine.unet(
                model,
                { shape: latentShape, data: xs },
                Float32Array.of(t),
                cond.context,
                extraFor(cond.pooled),
              ),
            );
            stepMs.push(ms);
            return eps.data;
          },
        });
      }
      const loopMs = performance.now() - loopStart;
      const z = { shape: latentShape, data: latent.map((v) => v / config.vae.scalingFactor) };
      const [image, vaeMs] = await clock(() => engine.vaeDecode({ checkpoint: ckpt.path }, z));
      const totalMs = performance.now() - t0;
      if (!image.data.every(Number.isFinite))
        throw new Error('bench: the decoded image has non-finite values (fp16 overflow?)');
      lastImage = summarize(image.data);
      const added = timelineAfter(before, await engine.stats());
      const inWorker = added.filter((r) => r.component === 'unet').map((r) => r.ms);
      images.push({
        textEncodeMs: round(textMs),
        loopMs: round(loopMs),
        unetStepMs: stepMs.map((v) => round(v)),
        unetStepInWorkerMs: inWorker.map((v) => round(v)),
        loopPhasesMs: loop === 'worker' ? loopPhases(added, loopMs) : null,
        vaeDecodeMs: round(vaeMs),
        totalMs: round(totalMs),
      });
      const phases = images.at(-1)!.loopPhasesMs;
      log(
        `bench: image ${i + 1}: ${round(totalMs / 1000, 2)} s (loop ${round(loopMs)} ms = ${round(loopMs / steps)} ms/step; reports ${stepMs.map((v) => round(v)).join(', ')} ms)` +
          (phases
            ? `; loop phases ${Object.entries(phases)
                .map(([k, v]) => `${k} ${v}`)
                .join(', ')} ms`
            : ''),
      );
    }

    const stats = await engine.stats();
    const mem = await gpu.stop();
    const allInWorker = images.flatMap((im) => im.unetStepInWorkerMs);
    return {
      arch,
      size,
      steps,
      epRequested: o.ep,
      ep: stats.ep,
      loop,
      cfg,
      checkpoint: ckpt.path,
      checkpointCreatedS: ckpt.createdS,
      lora,
      loads: stats.loadTimings.map((l) => ({ ...l, graphMs: round(l.graphMs), sessionMs: round(l.sessionMs) })),
      cold: {
        textEncodeMs: round(textCold),
        unetFirstCallMs: round(unetCold),
        vaeDecodeMs: round(vaeCold),
        ...(loraFirstUse !== null ? { loraFirstUseMs: round(loraFirstUse) } : {}),
      },
      images,
      lastImage,
      summary: {
        unetStepMs: round(median(images.map((im) => im.loopMs / steps)), 2),
        unetStepInWorkerMs: round(median(allInWorker), 2),
        loopPhasesMs: loop === 'worker' ? medianPhases(images.map((im) => im.loopPhasesMs!)) : null,
        textEncodeMs: round(median(images.map((im) => im.textEncodeMs))),
        vaeDecodeMs: round(median(images.map((im) => im.vaeDecodeMs))),
        secondsPerImage: round(median(images.map((im) => im.totalMs)) / 1000, 3),
        modelLoadS: round(stats.loadTimings.reduce((a, l) => a + l.graphMs, 0) / 1000, 2),
        sessionCreateS: round(stats.loadTimings.reduce((a, l) => a + l.sessionMs, 0) / 1000, 2),
      },
      memory: {
        peakRssMiB: round(process.resourceUsage().maxRSS / 1024),
        gpuBaselineMiB: mem.baselineMiB,
        gpuPeakMiB: mem.peakMiB,
        gpuPeakAboveBaselineMiB: mem.peakAboveBaselineMiB,
        afterPhaseMiB: { text: textMiB, unet: unetMiB, vae: vaeMiB },
      },
      node: process.version,
      tuning: engine.settings.tuning,
      engineLog,
    };
  } finally {
    await gpu.stop();
    await engine.free(); // releases sessions (and writes ORT profiles when TCD_ORT_PROFILE_DIR is set)
    await engine.close();
  }
}

/** One image's LoopPhases from the timeline entries its run added (see LoopPhases). */
export function loopPhases(entries: TimelineEntry[], loopMs: number): LoopPhases {
  const out: LoopPhases = {};
  let inWorker = 0,
    unetInSession = 0;
  for (const e of entries) {
    if (e.component === 'unet') unetInSession += e.ms;
    if (!e.component.startsWith('tcd_')) continue;
    const name = e.component.slice('tcd_'.length);
    out[name] = (out[name] ?? 0) + e.ms;
    inWorker += e.ms;
  }
  for (const k of Object.keys(out)) out[k] = round(out[k], 2);
  return {
    ...out,
    inWorker: round(inWorker, 2),
    outsideWorker: round(loopMs - inWorker, 2),
    unetInSession: round(unetInSession, 2),
  };
}

function medianPhases(per: LoopPhases[]): LoopPhases {
  const keys = [...new Set(per.flatMap((p) => Object.keys(p)))];
  return Object.fromEntries(keys.map((k) => [k, round(median(per.map((p) => p[k] ?? 0)), 2)]));
}

/** A decoded image in four numbers: two runs of one seed on two graph forms should agree to fp16 rounding. */
function summarize(a: Float32Array): { mean: number; meanAbs: number; min: number; max: number } {
  let sum = 0,
    abs = 0,
    min = Infinity,
    max = -Infinity;
  for (const v of a) {
    sum += v;
    abs += Math.abs(v);
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { mean: sum / a.length, meanAbs: abs / a.length, min, max };
}
