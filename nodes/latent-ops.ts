/**
 * Latent operations without a model, with ComfyUI's semantics: LatentUpscale / LatentUpscaleBy (hires fix),
 * LatentComposite, LatentBlend, RepeatLatentBatch, LatentFromBatch, SetLatentNoiseMask, SaveLatent / LoadLatent.
 * Latents stay in VAE space ([B, C, h, w]); x/y/width/height inputs are in pixels (8 per latent cell).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { defineNode, t } from './define.js';
import type { Tensor } from '../server/engine/tensor.js';
import { LATENT_UPSCALE_METHODS, commonUpscale, roundHalfEven } from '../server/engine/ops/resize.js';
import { SafetensorsFile } from '../server/engine/io/safetensors.js';
import { writeSafetensors } from '../server/engine/io/safetensors-writer.js';
import { resolveInside } from '../server/storage/safe-path.js';
import type { LatentValue } from './types.js';

const MAX_RESOLUTION = 16384;
const f = Math.fround;
const samplesIn = t.socket('LATENT', 'samples');
const methodIn = t.combo('upscale_method', [...LATENT_UPSCALE_METHODS]);

export const LatentUpscale = defineNode({
  id: 'LatentUpscale',
  displayName: 'Upscale Latent',
  category: 'latent',
  description: 'Resizes latents to a size in pixels (0 keeps the aspect ratio from the other side; at least 64).',
  inputs: [
    samplesIn,
    methodIn,
    t.int('width', { default: 512, min: 0, max: MAX_RESOLUTION, step: 8 }),
    t.int('height', { default: 512, min: 0, max: MAX_RESOLUTION, step: 8 }),
    t.combo('crop', ['disabled', 'center']),
  ],
  outputs: [t.out('LATENT')],
  staticFacts: () => [{}], // a new size: the input's size facts do not carry over
  execute: ({ samples, upscale_method, width, height, crop }) => {
    if (width === 0 && height === 0) return { outputs: [samples] };
    const [, , h, w] = samples.samples.shape;
    if (width === 0) {
      height = Math.max(64, height);
      width = Math.max(64, roundHalfEven((w * height) / h));
    } else if (height === 0) {
      width = Math.max(64, width);
      height = Math.max(64, roundHalfEven((h * width) / w));
    } else {
      width = Math.max(64, width);
      height = Math.max(64, height);
    }
    const out = commonUpscale(samples.samples, Math.floor(width / 8), Math.floor(height / 8), upscale_method, crop);
    return { outputs: [{ ...samples, samples: out }] };
  },
});

export const LatentUpscaleBy = defineNode({
  id: 'LatentUpscaleBy',
  displayName: 'Upscale Latent By',
  category: 'latent',
  description: 'Resizes latents by a factor.',
  inputs: [samplesIn, methodIn, t.float('scale_by', { default: 1.5, min: 0.01, max: 8.0, step: 0.01 })],
  outputs: [t.out('LATENT')],
  staticFacts: () => [{}], // a new size
  execute: ({ samples, upscale_method, scale_by }) => {
    const [, , h, w] = samples.samples.shape;
    const width = roundHalfEven(w * scale_by),
      height = roundHalfEven(h * scale_by);
    if (width < 1 || height < 1) throw new Error(`scale_by ${scale_by} makes a ${w}x${h} latent empty`);
    return {
      outputs: [{ ...samples, samples: commonUpscale(samples.samples, width, height, upscale_method, 'disabled') }],
    };
  },
});

/** `from` broadcast to `batch` items ([1, ...] repeats; other sizes must match) */
function batchOf(from: Tensor, batch: number, what: string): (b: number) => number {
  if (from.shape[0] !== batch && from.shape[0] !== 1)
    throw new Error(`${what} has a batch of ${from.shape[0]}, the target ${batch}`);
  return (b) => (from.shape[0] === 1 ? 0 : b);
}

export const LatentComposite = defineNode({
  id: 'LatentComposite',
  displayName: 'Latent Composite',
  category: 'latent',
  description: 'Pastes samples_from into samples_to at (x, y) pixels, optionally feathering the pasted edges.',
  inputs: [
    t.socket('LATENT', 'samples_to'),
    t.socket('LATENT', 'samples_from'),
    t.int('x', { default: 0, min: 0, max: MAX_RESOLUTION, step: 8 }),
    t.int('y', { default: 0, min: 0, max: MAX_RESOLUTION, step: 8 }),
    t.int('feather', { default: 0, min: 0, max: MAX_RESOLUTION, step: 8 }),
  ],
  outputs: [t.out('LATENT')],
  execute: ({ samples_to, samples_from, x, y, feather }) => {
    const to = samples_to.samples,
      from = samples_from.samples;
    const [B, C, H, W] = to.shape,
      [, fc, fh0, fw0] = from.shape;
    if (fc !== C) throw new Error(`samples_from has ${fc} channels, samples_to ${C}`);
    const cx = Math.floor(x / 8),
      cy = Math.floor(y / 8),
      fe = Math.floor(feather / 8);
    // the pasted block: samples_from cut to what fits
    const fh = Math.max(0, Math.min(fh0, H - cy)),
      fw = Math.max(0, Math.min(fw0, W - cx));
    const fromB = batchOf(from, B, 'samples_from');
    const mask = new Float32Array(fh * fw).fill(1);
    for (let k = 0; k < fe; k++) {
      const v = f((1 / fe) * (k + 1));
      const row = (r: number) => {
        for (let j = 0; j < fw; j++) mask[r * fw + j] = f(mask[r * fw + j] * v);
      };
      const col = (c: number) => {
        for (let i = 0; i < fh; i++) mask[i * fw + c] = f(mask[i * fw + c] * v);
      };
      if (cy !== 0 && k < fh) row(k);
      if (cy + fh < H && fh - 1 - k >= 0) row(fh - 1 - k);
      if (cx !== 0 && k < fw) col(k);
      if (cx + fw < W && fw - 1 - k >= 0) col(fw - 1 - k);
    }
    const out = to.data.slice();
    for (let b = 0; b < B; b++)
      for (let c = 0; c < C; c++)
        for (let i = 0; i < fh; i++)
          for (let j = 0; j < fw; j++) {
            const src = from.data[((fromB(b) * C + c) * fh0 + i) * fw0 + j],
              at = ((b * C + c) * H + cy + i) * W + cx + j;
            out[at] = fe === 0 ? src : f(f(src * mask[i * fw + j]) + f(out[at] * f(1 - mask[i * fw + j])));
          }
    return { outputs: [{ ...samples_to, samples: { shape: [...to.shape], data: out } }] };
  },
});

export const LatentBlend = defineNode({
  id: 'LatentBlend',
  displayName: 'Latent Blend',
  category: '_for_testing',
  description:
    'samples1 * blend_factor + samples2 * (1 - blend_factor); samples2 is resized (bicubic, centre crop) when sizes differ.',
  inputs: [
    t.socket('LATENT', 'samples1'),
    t.socket('LATENT', 'samples2'),
    t.float('blend_factor', { default: 0.5, min: 0, max: 1, step: 0.01 }),
  ],
  outputs: [t.out('LATENT')],
  execute: ({ samples1, samples2, blend_factor }) => {
    const a = samples1.samples;
    let b = samples2.samples;
    if (a.shape.join() !== b.shape.join()) {
      if (a.shape[0] !== b.shape[0] || a.shape[1] !== b.shape[1])
        throw new Error(`samples2 [${b.shape}] cannot blend into samples1 [${a.shape}]: batch and channels must match`);
      b = commonUpscale(b, a.shape[3], a.shape[2], 'bicubic', 'center');
    }
    const k = f(blend_factor),
      k2 = f(1 - blend_factor),
      out = new Float32Array(a.data.length);
    for (let i = 0; i < out.length; i++) out[i] = f(f(a.data[i] * k) + f(b.data[i] * k2));
    return { outputs: [{ ...samples1, samples: { shape: [...a.shape], data: out } }] };
  },
});

function repeatRows(x: Tensor, times: number): Tensor {
  const data = new Float32Array(x.data.length * times);
  for (let i = 0; i < times; i++) data.set(x.data, i * x.data.length);
  return { shape: [x.shape[0] * times, ...x.shape.slice(1)], data };
}

function sliceBatch(x: Tensor, from: number, length: number): Tensor {
  const per = x.data.length / x.shape[0];
  return { shape: [length, ...x.shape.slice(1)], data: x.data.slice(from * per, (from + length) * per) };
}

export const RepeatLatentBatch = defineNode({
  id: 'RepeatLatentBatch',
  displayName: 'Repeat Latent Batch',
  category: 'latent/batch',
  description: 'Repeats the whole latent batch `amount` times.',
  inputs: [samplesIn, t.int('amount', { default: 1, min: 1, max: 64 })],
  outputs: [t.out('LATENT')],
  execute: ({ samples, amount }) => {
    const s: LatentValue = { ...samples, samples: repeatRows(samples.samples, amount) };
    if (samples.noise_mask && samples.noise_mask.shape[0] > 1) s.noise_mask = repeatRows(samples.noise_mask, amount);
    if (samples.batch_index) {
      const bi = samples.batch_index,
        offset = Math.max(...bi) - Math.min(...bi) + 1;
      s.batch_index = [...bi];
      for (let i = 1; i < amount; i++) for (const x of bi) s.batch_index.push(x + i * offset);
    }
    return { outputs: [s] };
  },
});

export const LatentFromBatch = defineNode({
  id: 'LatentFromBatch',
  displayName: 'Latent From Batch',
  category: 'latent/batch',
  description: "Takes `length` items from `batch_index` on; they keep their seeds' noise (batch_index).",
  inputs: [
    samplesIn,
    t.int('batch_index', { default: 0, min: 0, max: 63 }),
    t.int('length', { default: 1, min: 1, max: 64 }),
  ],
  outputs: [t.out('LATENT')],
  execute: ({ samples, batch_index, length }) => {
    const n = samples.samples.shape[0];
    const from = Math.min(n - 1, batch_index),
      len = Math.min(n - from, length);
    const s: LatentValue = { ...samples, samples: sliceBatch(samples.samples, from, len) };
    const masks = samples.noise_mask;
    if (masks) {
      if (masks.shape[0] === 1) s.noise_mask = masks;
      else {
        const full = masks.shape[0] < n ? sliceBatch(repeatRows(masks, Math.ceil(n / masks.shape[0])), 0, n) : masks;
        s.noise_mask = sliceBatch(full, from, Math.min(len, full.shape[0] - from));
      }
    }
    s.batch_index = samples.batch_index
      ? samples.batch_index.slice(from, from + len)
      : Array.from({ length: len }, (_, i) => from + i);
    return { outputs: [s] };
  },
});

export const SetLatentNoiseMask = defineNode({
  id: 'SetLatentNoiseMask',
  displayName: 'Set Latent Noise Mask',
  category: 'latent/inpaint',
  description: 'Attaches a mask: samplers change the latent only where the mask is 1 (inpainting on a normal model).',
  inputs: [samplesIn, t.socket('MASK', 'mask')],
  outputs: [t.out('LATENT')],
  execute: ({ samples, mask }) => {
    const [h, w] = mask.shape.slice(-2);
    return { outputs: [{ ...samples, noise_mask: { shape: [mask.data.length / (h * w), 1, h, w], data: mask.data } }] };
  },
});

/** Next free counter for `{stem}_{counter:05}_.{ext}`, like ComfyUI's get_save_image_path. */
function nextCounter(dir: string, stem: string, ext: string): number {
  if (!existsSync(dir)) return 1;
  const re = new RegExp(`^${stem.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}_(\\d{5,})_\\.${ext}$`);
  let max = 0;
  for (const name of readdirSync(dir)) {
    const m = re.exec(name);
    if (m) max = Math.max(max, Number(m[1]));
  }
  return max + 1;
}

export const SaveLatent = defineNode({
  id: 'SaveLatent',
  displayName: 'SaveLatent',
  category: '_for_testing',
  outputNode: true,
  description:
    'Saves latents as a .latent file (safetensors: latent_tensor, latent_format_version_0; prompt in the metadata).',
  inputs: [samplesIn, t.string('filename_prefix', { default: 'latents/ComfyUI' })],
  hidden: { prompt: 'PROMPT', extra_pnginfo: 'EXTRA_PNGINFO' },
  outputs: [],
  execute: async ({ samples, filename_prefix }, ctx) => {
    const sub = dirname(filename_prefix) === '.' ? '' : dirname(filename_prefix);
    const stem = filename_prefix.slice(sub ? sub.length + 1 : 0) || 'ComfyUI';
    const dir = resolveInside(ctx.services.dirs.output, sub);
    mkdirSync(dir, { recursive: true });
    const filename = `${stem}_${String(nextCounter(dir, stem, 'latent')).padStart(5, '0')}_.latent`;
    const metadata: Record<string, string> = { prompt: JSON.stringify(ctx.prompt) };
    const info = ctx.extraData.extra_pnginfo;
    if (info && typeof info === 'object') for (const [k, v] of Object.entries(info)) metadata[k] = JSON.stringify(v);
    const x = samples.samples;
    await writeSafetensors(
      join(dir, filename),
      [
        { name: 'latent_tensor', dtype: 'F32', shape: [...x.shape], data: () => x.data },
        { name: 'latent_format_version_0', dtype: 'F32', shape: [0], data: () => new Float32Array(0) },
      ],
      metadata,
    );
    return { outputs: [], ui: { latents: [{ filename, subfolder: sub, type: 'output' }] } };
  },
});

const latentFiles = (dir: string) =>
  existsSync(dir)
    ? readdirSync(dir)
        .filter((n) => n.endsWith('.latent'))
        .sort()
    : [];

export const LoadLatent = defineNode({
  id: 'LoadLatent',
  displayName: 'LoadLatent',
  category: '_for_testing',
  description:
    'Loads a .latent file from the input folder (files without latent_format_version_0 are divided by 0.18215, as ComfyUI does).',
  inputs: [t.combo('latent', (s) => latentFiles(s.dirs.input))],
  outputs: [t.out('LATENT')],
  fingerprint: ({ latent }, s) =>
    createHash('sha256')
      .update(readFileSync(resolveInside(s.dirs.input, latent)))
      .digest('hex'),
  execute: ({ latent }, ctx) => {
    const file = SafetensorsFile.open(resolveInside(ctx.services.dirs.input, latent));
    try {
      if (!file.has('latent_tensor')) throw new Error(`${latent} has no latent_tensor`);
      const data = file.readFloat32('latent_tensor');
      if (!file.has('latent_format_version_0'))
        for (let i = 0; i < data.length; i++) data[i] = f(data[i] * f(1 / 0.18215));
      const out: LatentValue = { samples: { shape: file.shape('latent_tensor'), data } };
      return { outputs: [out] };
    } finally {
      file.close();
    }
  },
});
