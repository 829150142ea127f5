/**
 * Cheap per-step previews: a linear map from the 4 latent channels to RGB (factors fitted per family, the same
 * approximation ComfyUI's "latent2rgb" previews use), encoded as a small JPEG.
 */
import jpeg from 'jpeg-js';
import type { ModelFamily } from '../server/engine/model/config.js';

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
  return jpeg.encode({ data: rgba, width: w, height: h }, quality).data;
}
