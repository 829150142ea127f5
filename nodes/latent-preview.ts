/**
 * Per-step previews. latent2rgb: a linear map from the 4 latent channels to RGB (factors fitted per family, the same
 * approximation ComfyUI's "latent2rgb" previews use). taesd (--preview-method taesd): the family's TAESD decoder from
 * models/vae_approx (taesd_decoder.* for SD1, taesdxl_decoder.* for SDXL) decodes the preview in the engine worker,
 * as ComfyUI's TAESD previewer; without the file, latent2rgb. Both are sent as small JPEGs (at most 512 pixels).
 */
import { encodeJpeg } from '../server/storage/jpeg.js';
import type { ModelFamily } from '../server/engine/model/config.js';
import type { StepProgress } from '../server/engine/engine.js';
import type { NodeContext } from '../server/executor/node-definition.js';
import type { Tensor } from '../server/engine/tensor.js';
import type { NodeServices } from './services.js';

const MAX_PREVIEW = 512; // ComfyUI's MAX_PREVIEW_RESOLUTION

/** The TAESD decoder file for the family's previews, when --preview-method taesd and the file is present. */
export function taesdPreviewDecoder(services: NodeServices, family: ModelFamily): string | undefined {
  if (services.previewMethod !== 'taesd') return undefined;
  const prefix = family === 'sdxl' ? 'taesdxl_decoder.' : 'taesd_decoder.';
  const files = services.models.list('vae_approx').filter((f) => f.startsWith(prefix));
  const file = files.find((f) => /\.(safetensors|sft)$/i.test(f));
  return file ? services.models.resolve('vae_approx', file) : undefined;
}

/** The sampling option that asks the worker for TAESD-decoded previews ({} for latent2rgb). */
export function previewDecoderOption(services: NodeServices, family: ModelFamily): { previewDecoder?: string } {
  if (!services.previews) return {};
  const d = taesdPreviewDecoder(services, family);
  return d ? { previewDecoder: d } : {};
}

/** Sends a step's preview, whichever form the worker sent it in. */
export function sendPreview(
  ctx: NodeContext<NodeServices>,
  p: StepProgress,
  latentShape: number[],
  family: ModelFamily,
): void {
  if (p.previewImage) ctx.preview({ format: 'jpeg', bytes: imagePreviewJpeg(p.previewImage) });
  else if (p.preview) ctx.preview({ format: 'jpeg', bytes: latentPreviewJpeg(p.preview.data, latentShape, family) });
}

/**
 * JPEG of a decoded preview [1, 3, H, W] in [-1, 1]: (x + 1) / 2 clamped, to bytes by truncation (ComfyUI's
 * preview_to_image), sampled down by a whole factor to at most 512 pixels a side.
 */
export function imagePreviewJpeg(img: Tensor, quality = 80): Uint8Array {
  const [, , H, W] = img.shape;
  const f = Math.ceil(Math.max(H, W) / MAX_PREVIEW);
  const h = Math.floor(H / f),
    w = Math.floor(W / f);
  const rgba = new Uint8Array(h * w * 4);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 4;
      for (let c = 0; c < 3; c++) {
        const v = (img.data[(c * H + y * f) * W + x * f] + 1) / 2;
        rgba[o + c] = Math.floor((v < 0 ? 0 : v > 1 ? 1 : v) * 255);
      }
      rgba[o + 3] = 255;
    }
  return encodeJpeg(rgba, w, h, 4, quality);
}

const FACTORS: Record<ModelFamily, { m: number[][]; bias: number[] }> = {
  sd1: {
    m: [
      [0.3512, 0.2297, 0.3227],
      [0.325, 0.4974, 0.235],
      [-0.2829, 0.1762, 0.2721],
      [-0.212, -0.2616, -0.7177],
    ],
    bias: [0, 0, 0],
  },
  sdxl: {
    m: [
      [0.3651, 0.4232, 0.4341],
      [-0.2533, -0.0042, 0.1068],
      [0.1076, 0.1111, -0.0362],
      [-0.3165, -0.2492, -0.2188],
    ],
    bias: [0.1084, -0.0175, -0.0011],
  },
};

/** JPEG of the first batch item of a model-space latent [B, 4, h, w]. */
export function latentPreviewJpeg(
  latent: Float32Array,
  shape: number[],
  family: ModelFamily,
  quality = 80,
): Uint8Array {
  const [, c, h, w] = shape;
  const { m, bias } = FACTORS[family];
  const rgba = new Uint8Array(h * w * 4);
  for (let p = 0; p < h * w; p++) {
    for (let k = 0; k < 3; k++) {
      let v = bias[k];
      for (let ch = 0; ch < Math.min(c, 4); ch++) v += latent[ch * h * w + p] * m[ch][k];
      const byte = Math.round(((v + 1) / 2) * 255);
      rgba[p * 4 + k] = byte < 0 ? 0 : byte > 255 ? 255 : byte;
    }
    rgba[p * 4 + 3] = 255;
  }
  return encodeJpeg(rgba, w, h, 4, quality);
}
