/**
 * Inpainting nodes, ComfyUI's way. Both resize the mask (bilinear) to the image, crop both to multiples of 8
 * (centred) and grey out (0.5) the masked pixels (mask rounded) before encoding.
 *  - VAEEncodeForInpaint: the latent of the greyed image; its noise_mask is the rounded mask grown by
 *    `grow_mask_by` pixels (a box filter, clamped), so samplers repaint it seamlessly.
 *  - InpaintModelConditioning: the latent of the original image (noise_mask = the resized mask, unless
 *    noise_mask is off); both conditionings carry the greyed image's latent and the mask, which 9-channel inpainting
 *    UNets read on every step (nodes/inpaint-concat.ts) and plain models ignore.
 */
import { defineNode, t } from './define.js';
import { interpolate } from '../server/engine/ops/resize.js';
import type { Tensor } from '../server/engine/tensor.js';
import type { Engine } from '../server/engine/engine.js';
import type { Conditioning, LatentValue, VaeValue } from './types.js';

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
    const c = cropWithMask(pixels, mask);
    const { B, H, W, mb } = c;
    const m = c.mask.map(roundEven);
    const noiseMask = grow_mask_by === 0 ? m : grow(m, mb, H, W, grow_mask_by);
    const C = pixels.shape[3];
    const samples = await encodeEach(
      ctx.services.engine(),
      vae,
      B,
      H,
      W,
      (i, y, x, ch) => {
        const keep = 1 - m[((mb === 1 ? 0 : i) * H + y) * W + x];
        return (pixels.data[((i * c.H0 + y + c.oy) * c.W0 + x + c.ox) * C + ch] - 0.5) * keep + 0.5;
      },
      () => ctx.checkInterrupted(),
    );
    const noise_mask: Tensor = { shape: [mb, 1, H, W], data: noiseMask };
    const latent: LatentValue = { samples, noise_mask };
    return { outputs: [latent] };
  },
});

/** The image cropped to multiples of 8 (centred, as ComfyUI) and the mask resized to the image, then cropped. */
function cropWithMask(pixels: Tensor, mask: Tensor) {
  const [B, H0, W0] = pixels.shape;
  const [mh, mw] = mask.shape.slice(-2),
    mb = mask.data.length / (mh * mw);
  // ComfyUI multiplies the pixels by the mask: a batch other than 1 or the image's cannot broadcast
  if (mb !== 1 && mb !== B) throw new Error(`mask has a batch of ${mb}, pixels ${B} (they must match, or mask 1)`);
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
      m.set(full.subarray((i * H0 + y + oy) * W0 + ox, (i * H0 + y + oy) * W0 + ox + W), (i * H + y) * W);
  return { B, H0, W0, H, W, oy, ox, mb, mask: m };
}

/**
 * VAE-encodes each image of the cropped batch; `pixel(i, y, x, ch)` gives its value in [0, 1]. VAE space out.
 */
async function encodeEach(
  engine: Engine,
  vae: VaeValue,
  B: number,
  H: number,
  W: number,
  pixel: (i: number, y: number, x: number, ch: number) => number,
  checkInterrupted: () => void,
): Promise<Tensor> {
  let out: Float32Array | null = null,
    lshape: number[] = [];
  for (let i = 0; i < B; i++) {
    checkInterrupted();
    const x = new Float32Array(3 * H * W);
    for (let ch = 0; ch < 3; ch++)
      for (let y = 0; y < H; y++) for (let xx = 0; xx < W; xx++) x[(ch * H + y) * W + xx] = pixel(i, y, xx, ch) * 2 - 1;
    const lat = await engine.vaeEncode(vae.ref, { shape: [1, 3, H, W], data: x });
    lshape = lat.shape;
    out ??= new Float32Array(B * lat.data.length);
    out.set(lat.data, i * lat.data.length);
  }
  return { shape: [B, ...lshape.slice(1)], data: out! };
}

/** The pixels InpaintModelConditioning encodes for the concat: masked ones (rounded mask) grey. [B, H, W, 3] */
export function maskedPixels(pixels: Tensor, mask: Tensor): { pixels: Tensor; mask: Tensor } {
  const c = cropWithMask(pixels, mask);
  const C = pixels.shape[3];
  const out = new Float32Array(c.B * c.H * c.W * 3);
  for (let i = 0; i < c.B; i++) {
    const mi = (c.mb === 1 ? 0 : i) * c.H * c.W;
    for (let y = 0; y < c.H; y++)
      for (let x = 0; x < c.W; x++) {
        const keep = 1 - roundEven(c.mask[mi + y * c.W + x]);
        for (let ch = 0; ch < 3; ch++) {
          const v = pixels.data[((i * c.H0 + y + c.oy) * c.W0 + x + c.ox) * C + ch];
          out[((i * c.H + y) * c.W + x) * 3 + ch] = (v - 0.5) * keep + 0.5;
        }
      }
  }
  return { pixels: { shape: [c.B, c.H, c.W, 3], data: out }, mask: { shape: [c.mb, 1, c.H, c.W], data: c.mask } };
}

export const InpaintModelConditioning = defineNode({
  id: 'InpaintModelConditioning',
  displayName: 'InpaintModelConditioning',
  category: 'conditioning/inpaint',
  description:
    'Conditioning for inpainting models: the masked image and the mask ride on both conditionings (9-channel ' +
    'inpainting UNets read them), the latent is the original image with the mask as its noise mask.',
  inputs: [
    t.socket('CONDITIONING', 'positive'),
    t.socket('CONDITIONING', 'negative'),
    t.socket('VAE', 'vae'),
    t.socket('IMAGE', 'pixels'),
    t.socket('MASK', 'mask'),
    t.boolean('noise_mask', {
      default: true,
      tooltip:
        'Add a noise mask to the latent so sampling will only happen within the mask. Might improve results or ' +
        'completely break things depending on the model.',
    }),
  ],
  outputs: [t.out('CONDITIONING', 'positive'), t.out('CONDITIONING', 'negative'), t.out('LATENT', 'latent')],
  execute: async ({ positive, negative, vae, pixels, mask, noise_mask }, ctx) => {
    const masked = maskedPixels(pixels, mask);
    const [B, H, W] = masked.pixels.shape;
    const engine = ctx.services.engine();
    const check = () => ctx.checkInterrupted();
    const concatLatent = await encodeEach(
      engine,
      vae,
      B,
      H,
      W,
      (i, y, x, ch) => masked.pixels.data[((i * H + y) * W + x) * 3 + ch],
      check,
    );
    // the original image, cropped the same way (ComfyUI's VAE.encode crops to multiples of 8, centred)
    const [, H0, W0, C] = pixels.shape;
    const oy = Math.floor((H0 % 8) / 2),
      ox = Math.floor((W0 % 8) / 2);
    const samples = await encodeEach(
      engine,
      vae,
      B,
      H,
      W,
      (i, y, x, ch) => pixels.data[((i * H0 + y + oy) * W0 + x + ox) * C + ch],
      check,
    );
    const withConcat = (c: Conditioning): Conditioning =>
      c.map((e) => ({ ...e, concatLatent, concatMask: masked.mask }));
    const latent: LatentValue = { samples, ...(noise_mask ? { noise_mask: masked.mask } : {}) };
    return { outputs: [withConcat(positive), withConcat(negative), latent] };
  },
});
