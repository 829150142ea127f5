/**
 * VAEEncodeForInpaint, ComfyUI's way: the mask is resized (bilinear) to the image, both are cropped to multiples of
 * 8 (centred), masked pixels (mask rounded) become grey 0.5 before encoding, and the latent's noise_mask is the
 * rounded mask grown by `grow_mask_by` pixels (a box filter, clamped), so samplers repaint it seamlessly.
 */
import { defineNode, t } from './define.js';
import { interpolate } from '../server/engine/ops/resize.js';
import type { Tensor } from '../server/engine/tensor.js';
import type { LatentValue } from './types.js';

/** torch.round: half to even */
const roundEven = (v: number) => {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
};

/** conv2d of a 0/1 mask [B, H, W] with a g x g box, padding ceil((g - 1) / 2), clamped to 0..1, first H x W */
function grow(mask: Float32Array, b: number, h: number, w: number, g: number): Float32Array {
  const pad = Math.ceil((g - 1) / 2),
    out = new Float32Array(mask.length);
  for (let i = 0; i < b; i++)
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        let s = 0;
        for (let ky = 0; ky < g && s < 1; ky++) {
          const yy = y + ky - pad;
          if (yy < 0 || yy >= h) continue;
          for (let kx = 0; kx < g; kx++) {
            const xx = x + kx - pad;
            if (xx >= 0 && xx < w && mask[(i * h + yy) * w + xx] > 0) {
              s = 1;
              break;
            }
          }
        }
        out[(i * h + y) * w + x] = s;
      }
  return out;
}

export const VAEEncodeForInpaint = defineNode({
  id: 'VAEEncodeForInpaint',
  displayName: 'VAE Encode (for Inpainting)',
  category: 'latent/inpaint',
  description:
    "Encodes the image with the masked area greyed out and attaches the (grown) mask as the latent's noise mask.",
  inputs: [
    t.socket('IMAGE', 'pixels'),
    t.socket('VAE', 'vae'),
    t.socket('MASK', 'mask'),
    t.int('grow_mask_by', { default: 6, min: 0, max: 64, step: 1 }),
  ],
  outputs: [t.out('LATENT')],
  execute: async ({ pixels, vae, mask, grow_mask_by }, ctx) => {
    const [B, H0, W0, C] = pixels.shape;
    const [mh, mw] = mask.shape.slice(-2),
      mb = mask.data.length / (mh * mw);
    if (mb !== 1 && mb !== B) throw new Error(`mask has a batch of ${mb}, pixels ${B}`);
    const H = Math.floor(H0 / 8) * 8,
      W = Math.floor(W0 / 8) * 8;
    if (H === 0 || W === 0) throw new Error(`pixels ${W0}x${H0} is smaller than 8 pixels`);
    const oy = Math.floor((H0 % 8) / 2),
      ox = Math.floor((W0 % 8) / 2);
    const full =
      mh === H0 && mw === W0
        ? mask.data
        : interpolate({ shape: [mb, 1, mh, mw], data: mask.data }, H0, W0, 'bilinear').data;
    const m = new Float32Array(mb * H * W);
    for (let i = 0; i < mb; i++)
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) m[(i * H + y) * W + x] = roundEven(full[(i * H0 + y + oy) * W0 + x + ox]);
    const noiseMask = grow_mask_by === 0 ? m : grow(m, mb, H, W, grow_mask_by);
    const engine = ctx.services.engine();
    let out: Float32Array | null = null,
      lshape: number[] = [];
    for (let i = 0; i < B; i++) {
      ctx.checkInterrupted();
      const mi = (mb === 1 ? 0 : i) * H * W;
      // [H, W, C] in [0, 1], grey where masked -> [1, 3, H, W] in [-1, 1]
      const x = new Float32Array(3 * H * W);
      for (let y = 0; y < H; y++)
        for (let xx = 0; xx < W; xx++)
          for (let ch = 0; ch < 3; ch++) {
            const keep = 1 - m[mi + y * W + xx];
            const v = (pixels.data[((i * H0 + y + oy) * W0 + xx + ox) * C + ch] - 0.5) * keep + 0.5;
            x[ch * H * W + y * W + xx] = v * 2 - 1;
          }
      const lat = await engine.vaeEncode(vae.ref, { shape: [1, 3, H, W], data: x });
      lshape = lat.shape;
      out ??= new Float32Array(B * lat.data.length);
      out.set(lat.data, i * lat.data.length);
    }
    const noise_mask: Tensor = { shape: [mb, 1, H, W], data: noiseMask };
    const latent: LatentValue = { samples: { shape: [B, ...lshape.slice(1)], data: out! }, noise_mask };
    return { outputs: [latent] };
  },
});
