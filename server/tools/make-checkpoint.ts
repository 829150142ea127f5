/**
 * Deterministic random checkpoints in the exact single-file layout of a ModelConfig: for benchmarks at real size
 * (SD1.5, SDXL) and for the bundled demo model. Weights ~ N(0,1)/sqrt(fan_in), drawn by the polar method from a
 * seeded xoshiro128** stream per tensor (each tensor depends only on the seed and its name); norm weights 1, biases 0,
 * so the networks give finite, well-scaled outputs. Written through the streaming writer, one tensor in memory at a time.
 * Example: await makeCheckpoint({ config: presetConfig('demo'), out: 'demo.safetensors', seed: 1, dtype: 'F16' });
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { ModelConfig, TextEncoderConfig } from '../engine/model/config.js';
import { checkpointKeys, type KeyShape } from '../engine/model/checkpoint-layout.js';
import { writeSafetensors, type WritableDtype } from '../engine/io/safetensors-writer.js';
import { SafetensorsFile } from '../engine/io/safetensors.js';
import { detectCheckpoint } from '../engine/model/detect.js';

export type PresetName = 'sd15' | 'sdxl' | 'demo' | 'sd15-inpaint' | 'sdxl-inpaint' | 'tiny-sd1-inpaint';
export const PRESETS: readonly PresetName[] = [
  'sd15',
  'sdxl',
  'demo',
  'sd15-inpaint',
  'sdxl-inpaint',
  'tiny-sd1-inpaint',
];
export const DEMO_CHECKPOINT_NAME = 'tcd-studio-demo-sdxl.safetensors';
export const DEMO_SEED = 20240507;

function hfClip(prefix: string, width: number, layers: number, intermediate = 4 * width): TextEncoderConfig {
  return {
    prefix,
    naming: 'hf',
    width,
    layers,
    heads: width / 64,
    intermediate,
    vocab: 49408,
    maxPositions: 77,
    activation: 'quick_gelu',
    projectionDim: null,
    padToken: 49407,
    layerNormEps: 1e-5,
  };
}
function openClip(
  prefix: string,
  width: number,
  layers: number,
  projectionDim: number,
  intermediate = 4 * width,
): TextEncoderConfig {
  return {
    prefix,
    naming: 'openclip',
    width,
    layers,
    heads: width / 64,
    intermediate,
    vocab: 49408,
    maxPositions: 77,
    activation: 'gelu',
    projectionDim,
    padToken: 0,
    layerNormEps: 1e-5,
  };
}
const vae = (baseChannels: number, channelMult: number[], numResBlocks: number, scalingFactor: number) => ({
  encoderPrefix: 'first_stage_model.encoder.',
  decoderPrefix: 'first_stage_model.decoder.',
  prefix: 'first_stage_model.',
  latentChannels: 4,
  baseChannels,
  channelMult,
  numResBlocks,
  scalingFactor,
  normGroups: 32,
});

/** SDXL-family config from a few sizes: SGM key layout, 64 channels per head, linear proj, ADM = pooled + 6 time ids. */
function sdxlFamily(o: {
  l: [number, number];
  g: [number, number, number];
  mc: number;
  mult: number[];
  depth: number[];
  mid: number;
  res: number;
  timeIds: number;
  vae: ReturnType<typeof vae>;
}): ModelConfig {
  const [gWidth, gLayers, proj] = o.g;
  return {
    family: 'sdxl',
    textEncoders: [
      hfClip('conditioner.embedders.0.transformer.', o.l[0], o.l[1]),
      openClip('conditioner.embedders.1.model.', gWidth, gLayers, proj),
    ],
    unet: {
      prefix: 'model.diffusion_model.',
      inChannels: 4,
      outChannels: 4,
      modelChannels: o.mc,
      channelMult: o.mult,
      numResBlocks: o.res,
      transformerDepth: o.depth,
      transformerDepthMiddle: o.mid,
      contextDim: o.l[0] + gWidth,
      numHeads: null,
      headChannels: 64,
      linearProjection: true,
      timeEmbedDim: 4 * o.mc,
      adm: { inChannels: proj + 6 * o.timeIds, pooledChannels: proj, timeIdChannels: o.timeIds },
      normGroups: 32,
    },
    vae: o.vae,
    defaultClipSkip: -2,
    predictionType: 'epsilon',
  };
}

/**
 * An inpainting variant of a config: the UNet's first conv reads 9 channels (the noisy latent, then the mask and the
 * masked image's latent: sd-v1-5-inpainting and SDXL inpainting 0.1), everything else unchanged.
 */
function inpaintVariant(cfg: ModelConfig): ModelConfig {
  return { ...cfg, unet: { ...cfg.unet, inChannels: cfg.unet.outChannels + 1 + cfg.vae.latentChannels } };
}

/**
 * Built-in configs: 'sd15' and 'sdxl' are the released architectures (same keys and shapes as the real files);
 * 'demo' is a small SDXL-family model (~14M parameters, < 30 MB in fp16) that runs 512x512 in seconds on a CPU.
 * '*-inpaint' are their 9-channel inpainting versions; 'tiny-sd1-inpaint' is a very small SD1-layout inpainting
 * model for tests (the test/data/inpaint references were made from it with seed 16).
 */
export function presetConfig(name: PresetName): ModelConfig {
  switch (name) {
    case 'sd15-inpaint':
      return inpaintVariant(presetConfig('sd15'));
    case 'sdxl-inpaint':
      return inpaintVariant(presetConfig('sdxl'));
    case 'tiny-sd1-inpaint':
      return inpaintVariant({
        family: 'sd1',
        textEncoders: [hfClip('cond_stage_model.transformer.', 64, 2)],
        unet: {
          prefix: 'model.diffusion_model.',
          inChannels: 4,
          outChannels: 4,
          modelChannels: 32,
          channelMult: [1, 2],
          numResBlocks: 1,
          transformerDepth: [1, 1],
          transformerDepthMiddle: 1,
          contextDim: 64,
          numHeads: 8,
          headChannels: null,
          linearProjection: false,
          timeEmbedDim: 128,
          adm: null,
          normGroups: 32,
        },
        vae: vae(32, [1, 1, 2, 2], 1, 0.18215),
        defaultClipSkip: -1,
        predictionType: 'epsilon',
      });
    case 'sd15':
      return {
        family: 'sd1',
        textEncoders: [hfClip('cond_stage_model.transformer.', 768, 12)],
        unet: {
          prefix: 'model.diffusion_model.',
          inChannels: 4,
          outChannels: 4,
          modelChannels: 320,
          channelMult: [1, 2, 4, 4],
          numResBlocks: 2,
          transformerDepth: [1, 1, 1, 0],
          transformerDepthMiddle: 1,
          contextDim: 768,
          numHeads: 8,
          headChannels: null,
          linearProjection: false,
          timeEmbedDim: 1280,
          adm: null,
          normGroups: 32,
        },
        vae: vae(128, [1, 2, 4, 4], 2, 0.18215),
        defaultClipSkip: -1,
        predictionType: 'epsilon',
      };
    case 'sdxl':
      return sdxlFamily({
        l: [768, 12],
        g: [1280, 32, 1280],
        mc: 320,
        mult: [1, 2, 4],
        depth: [0, 2, 10],
        mid: 10,
        res: 2,
        timeIds: 256,
        vae: vae(128, [1, 2, 4, 4], 2, 0.13025),
      });
    // attention only at levels with >= 64 channels (64 channels per head); one VAE res block per level keeps the
    // 512x512 decode cheap while keeping every block type of the real model
    case 'demo':
      return sdxlFamily({
        l: [64, 2],
        g: [128, 2, 128],
        mc: 32,
        mult: [1, 2, 2],
        depth: [0, 1, 1],
        mid: 1,
        res: 2,
        timeIds: 32,
        vae: vae(32, [1, 1, 2, 2], 1, 0.13025),
      });
    default:
      throw new Error(`unknown preset "${name as string}" (expected one of ${PRESETS.join(', ')})`);
  }
}

/** How a tensor is initialised, from its name and shape. */
export function initRule(k: KeyShape): { kind: 'zeros' | 'ones' } | { kind: 'normal'; std: number } {
  if (k.name.endsWith('.bias') || k.name.endsWith('in_proj_bias')) return { kind: 'zeros' };
  if (k.shape.length === 1) return { kind: 'ones' }; // every rank-1 weight in these layouts is a norm scale
  // OpenCLIP text_projection is applied as x @ P, so its input dimension is the first
  const fanIn = k.name.endsWith('text_projection') ? k.shape[0] : k.shape.slice(1).reduce((a, b) => a * b, 1);
  return { kind: 'normal', std: 1 / Math.sqrt(fanIn) };
}

/** 32-bit mix of the seed (any safe integer) and the tensor name: each tensor gets its own independent stream. */
function streamSeed(seed: number, name: string): Uint32Array {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ Math.floor(seed / 2 ** 32), 0x01000193);
  const s = new Uint32Array(4);
  for (let i = 0; i < 4; i++) {
    // splitmix32 expands the hash into the xoshiro state
    h = (h + 0x9e3779b9) | 0;
    let z = h;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    s[i] = z ^ (z >>> 16);
  }
  if (!(s[0] | s[1] | s[2] | s[3])) s[0] = 1;
  return s;
}

/**
 * out[i] = std * N(0,1): xoshiro128** uniforms through Marsaglia's polar method (exact normals, no trigonometry).
 * The generator is inlined in the loop: this runs over billions of values for real-size checkpoints.
 */
export function fillNormal(out: Float32Array, std: number, seed: number, name: string): void {
  const st = streamSeed(seed, name);
  let a = st[0],
    b = st[1],
    c = st[2],
    d = st[3];
  const INV31 = 2 ** -31;
  for (let i = 0; i < out.length;) {
    // two uniforms in [-1, 1)
    let r = Math.imul(rotl(Math.imul(b, 5), 7), 9);
    let t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = rotl(d, 11);
    const x = r * INV31; // r is a signed 32-bit int here
    r = Math.imul(rotl(Math.imul(b, 5), 7), 9);
    t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = rotl(d, 11);
    const y = r * INV31;
    const s = x * x + y * y;
    if (s >= 1 || s === 0) continue;
    const f = std * Math.sqrt((-2 * Math.log(s)) / s);
    out[i++] = x * f;
    if (i < out.length) out[i++] = y * f;
  }
}
function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

export interface MakeCheckpointOptions {
  config: ModelConfig;
  out: string;
  seed: number;
  dtype?: WritableDtype;
  /** called after each tensor with bytes of tensor data written so far and in total */
  onProgress?: (doneBytes: number, totalBytes: number, tensor: string) => void;
}

/** Writes the random checkpoint (atomically); resolves to its size in bytes and tensor count. */
export async function makeCheckpoint(
  opts: MakeCheckpointOptions,
): Promise<{ path: string; bytes: number; tensors: number; params: number }> {
  const { config, out, seed } = opts;
  const dtype = opts.dtype ?? 'F16';
  if (!Number.isSafeInteger(seed) || seed < 0)
    throw new Error(`make-checkpoint: seed must be a non-negative integer, got ${seed}`);
  const keys = checkpointKeys(config);
  const width = dtype === 'F32' ? 4 : 2;
  const numel = (s: number[]) => s.reduce((x, y) => x * y, 1);
  const params = keys.reduce((s, k) => s + numel(k.shape), 0);
  let done = 0;
  const entries = keys.map((k) => ({
    name: k.name,
    dtype,
    shape: k.shape,
    data: () => {
      const v = new Float32Array(numel(k.shape));
      const rule = initRule(k);
      if (rule.kind === 'ones') v.fill(1);
      else if (rule.kind === 'normal') fillNormal(v, rule.std, seed, k.name);
      done += v.length * width;
      opts.onProgress?.(done, params * width, k.name);
      return v;
    },
  }));
  const metadata = {
    format: 'pt',
    'tcd_studio.generator': 'make-checkpoint',
    'tcd_studio.family': config.family,
    'tcd_studio.seed': String(seed),
  };
  const bytes = await writeSafetensors(out, entries, metadata);
  return { path: out, bytes, tensors: keys.length, params };
}

const demoInFlight = new Map<string, Promise<string>>();

/**
 * models/checkpoints/tcd-studio-demo-sdxl.safetensors, written on first use; resolves to its path. A file that is
 * not this demo model (unreadable, another layout or seed) is regenerated; concurrent callers share one write.
 */
export function ensureDemoCheckpoint(modelsDir: string): Promise<string> {
  const dir = join(modelsDir, 'checkpoints');
  const path = join(dir, DEMO_CHECKPOINT_NAME);
  if (isDemoCheckpoint(path)) return Promise.resolve(path);
  let p = demoInFlight.get(path);
  if (!p) {
    mkdirSync(dir, { recursive: true });
    p = makeCheckpoint({ config: presetConfig('demo'), out: path, seed: DEMO_SEED, dtype: 'F16' })
      .then(() => path)
      .finally(() => demoInFlight.delete(path));
    demoInFlight.set(path, p);
  }
  return p;
}

function isDemoCheckpoint(path: string): boolean {
  if (!existsSync(path)) return false;
  try {
    const f = SafetensorsFile.open(path);
    try {
      return (
        f.metadata['tcd_studio.seed'] === String(DEMO_SEED) &&
        isDeepStrictEqual(detectCheckpoint(f), presetConfig('demo'))
      );
    } finally {
      f.close();
    }
  } catch {
    return false;
  }
}

/** `tcd-studio make-checkpoint --arch sdxl --out x.safetensors [--seed N] [--dtype F16]`, progress on stderr. */
export async function makeCheckpointCommand(args: {
  arch: string;
  out: string;
  seed?: number;
  dtype?: string;
}): Promise<string> {
  if (!PRESETS.includes(args.arch as PresetName))
    throw new Error(`make-checkpoint: unknown --arch "${args.arch}" (expected ${PRESETS.join(', ')})`);
  const dtype = (args.dtype ?? 'F16').toUpperCase();
  if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16')
    throw new Error(`make-checkpoint: unknown --dtype "${args.dtype}" (expected F32, F16 or BF16)`);
  const t0 = Date.now();
  let lastPct = -1;
  const res = await makeCheckpoint({
    config: presetConfig(args.arch as PresetName),
    out: args.out,
    seed: args.seed ?? 0,
    dtype,
    onProgress: (done, total) => {
      const pct = Math.floor((100 * done) / total);
      // a terminal gets one updating line; a log gets a line every 10%
      const tty = process.stderr.isTTY;
      if (pct >= lastPct + (tty ? 1 : 10) || done === total) {
        lastPct = pct;
        process.stderr.write(
          `${tty ? '\r' : ''}make-checkpoint ${args.arch}: ${pct}% (${(done / 2 ** 20).toFixed(0)} / ${(total / 2 ** 20).toFixed(0)} MiB)${tty ? '' : '\n'}`,
        );
      }
    },
  });
  process.stderr.write(
    `${process.stderr.isTTY ? '\n' : ''}wrote ${res.path}: ${res.tensors} tensors, ${(res.params / 1e6).toFixed(1)}M parameters, ${(res.bytes / 2 ** 20).toFixed(1)} MiB ${dtype} in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`,
  );
  return res.path;
}
