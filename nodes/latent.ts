/** Latent nodes: EmptyLatentImage, VAEDecode, VAEEncode. */
import { freemem, totalmem } from 'node:os';
import { defineNode, t } from './define.js';
import type { Tensor } from '../server/engine/tensor.js';
import type { LatentValue } from './types.js';
import { admittedTile, decodeTiled } from './vae-decode-tiled.js';

/** Bytes a latent and the decoded image need at the least (float32); refused before allocation when absurd. */
export function latentMemoryEstimate(width: number, height: number, batch: number): number {
  const latent = batch * 4 * Math.ceil(height / 8) * Math.ceil(width / 8) * 4;
  const image = batch * 3 * height * width * 4;
  return latent + image;
}

const GiB = 1024 ** 3;

export const EmptyLatentImage = defineNode({
  id: 'EmptyLatentImage',
  displayName: 'Empty Latent Image',
  category: 'latent',
  description: 'Creates a batch of empty latents to be denoised by a sampler.',
  inputs: [
    t.int('width', {
      default: 512,
      min: 16,
      max: 16384,
      step: 8,
      tooltip: 'The width of the latent images in pixels.',
    }),
    t.int('height', {
      default: 512,
      min: 16,
      max: 16384,
      step: 8,
      tooltip: 'The height of the latent images in pixels.',
    }),
    t.int('batch_size', { default: 1, min: 1, max: 4096, tooltip: 'The number of latent images in the batch.' }),
  ],
  outputs: [t.out('LATENT', 'LATENT', 'The empty latent image batch.')],
  validate: ({ width, height, batch_size }) => {
    const need = latentMemoryEstimate(width, height, batch_size);
    const limit = Math.min(totalmem() / 2, Math.max(freemem(), 2 * GiB));
    if (need > limit)
      return `a ${width}x${height} batch of ${batch_size} needs at least ${(need / GiB).toFixed(1)} GiB for its latents and images; this machine allows ${(limit / GiB).toFixed(1)} GiB`;
    return true;
  },
  staticFacts: ({ width, height }) => [{ cells: { w: Math.floor(width / 8), h: Math.floor(height / 8) } }],
  execute: ({ width, height, batch_size }) => {
    const shape = [batch_size, 4, Math.floor(height / 8), Math.floor(width / 8)];
    const samples: Tensor = { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) };
    const latent: LatentValue = { samples };
    return { outputs: [latent] };
  },
});

export const VAEDecode = defineNode({
  id: 'VAEDecode',
  displayName: 'VAE Decode',
  category: 'latent',
  description: 'Decodes latent images back into pixel space images.',
  inputs: [
    t.socket('LATENT', 'samples', { tooltip: 'The latent to be decoded.' }),
    t.socket('VAE', 'vae', { tooltip: 'The VAE model used for decoding the latent.' }),
  ],
  outputs: [t.out('IMAGE', 'IMAGE', 'The decoded image.')],
  execute: async ({ samples, vae }, ctx) => {
    const lat = samples.samples;
    const [b, c, h, w] = lat.shape;
    const engine = ctx.services.engine();
    // too large to decode whole within the engine's memory: decode in tiles instead of failing
    if (!engine.fitsVae(vae.ref, 'vae_decode', h, w, 1)) {
      const tile = admittedTile(engine, vae, 512);
      ctx.log(`decoding ${w * 8}x${h * 8} in ${tile}px tiles: a whole decode would not fit in memory`);
      return {
        outputs: [await decodeTiled(engine, vae, lat, tile, 64, (d, n) => ctx.progress(d, n), ctx.checkInterrupted)],
      };
    }
    const per = c * h * w;
    let out: Float32Array | null = null;
    let H = 0,
      W = 0;
    // one image at a time keeps peak memory flat for big batches
    for (let i = 0; i < b; i++) {
      ctx.checkInterrupted();
      const img = await ctx.services
        .engine()
        .vaeDecode(vae.ref, { shape: [1, c, h, w], data: lat.data.slice(i * per, (i + 1) * per) });
      [, , H, W] = img.shape;
      out ??= new Float32Array(b * H * W * 3);
      // [1, 3, H, W] in [-1, 1] -> [H, W, 3] in [0, 1]
      const base = i * H * W * 3;
      for (let ch = 0; ch < 3; ch++)
        for (let p = 0; p < H * W; p++) {
          const v = (img.data[ch * H * W + p] + 1) / 2;
          out[base + p * 3 + ch] = v < 0 ? 0 : v > 1 ? 1 : v;
        }
      if (b > 1) ctx.progress(i + 1, b);
    }
    return { outputs: [{ shape: [b, H, W, 3], data: out ?? new Float32Array(0) }] };
  },
});

export const VAEEncode = defineNode({
  id: 'VAEEncode',
  displayName: 'VAE Encode',
  category: 'latent',
  description: 'Encodes images into latents (the mean of the VAE posterior). Sizes are cropped to multiples of 8.',
  inputs: [t.socket('IMAGE', 'pixels'), t.socket('VAE', 'vae')],
  outputs: [t.out('LATENT')],
  execute: async ({ pixels, vae }, ctx) => {
    const img = pixels;
    const [b, h0, w0, c] = img.shape;
    const h = Math.floor(h0 / 8) * 8,
      w = Math.floor(w0 / 8) * 8;
    if (h === 0 || w === 0) throw new Error(`image ${w0}x${h0} is smaller than 8 pixels`);
    const oy = Math.floor((h0 - h) / 2),
      ox = Math.floor((w0 - w) / 2);
    let out: Float32Array | null = null;
    let lshape: number[] = [];
    for (let i = 0; i < b; i++) {
      ctx.checkInterrupted();
      // [H, W, C] in [0,1] -> [1, 3, H, W] in [-1, 1]
      const x = new Float32Array(3 * h * w);
      for (let y = 0; y < h; y++)
        for (let xx = 0; xx < w; xx++)
          for (let ch = 0; ch < 3; ch++) {
            x[ch * h * w + y * w + xx] = img.data[((i * h0 + y + oy) * w0 + xx + ox) * c + ch] * 2 - 1;
          }
      const lat = await ctx.services.engine().vaeEncode(vae.ref, { shape: [1, 3, h, w], data: x });
      lshape = lat.shape;
      out ??= new Float32Array(b * lat.data.length);
      out.set(lat.data, i * lat.data.length);
    }
    const latent: LatentValue = { samples: { shape: [b, ...lshape.slice(1)], data: out! } };
    return { outputs: [latent] };
  },
});
