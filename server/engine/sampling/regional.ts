/**
 * ComfyUI's calc_cond_batch for one side of guidance with regional conditioning: each entry predicts on its region of
 * the latent (a crop), weighted by its mult map (strength, mask, faded area edges); the predictions are summed and
 * divided by the summed weights (1e-37 where nothing applies, which leaves 0 there, as ComfyUI).
 * Example: const d = regionalDenoiser([{ region, d: entryDenoiser }], [1, 4, 64, 64]); const x0 = await d(x, sigma);
 */
import type { Denoiser } from './noise.js';

/** An entry's region in latent cells and its weight map [B, C, h, w] over that region. */
export interface Region {
  h: number;
  w: number;
  y: number;
  x: number;
  mult: Float32Array;
}

export function regionalDenoiser(parts: { region: Region; d: Denoiser }[], shape: number[]): Denoiser {
  const [B, C, H, W] = shape;
  return async (x, sigma) => {
    const out = new Float32Array(x.length),
      count = new Float32Array(x.length).fill(1e-37);
    for (const { region: r, d } of parts) {
      const crop = new Float32Array(B * C * r.h * r.w);
      for (let p = 0; p < B * C; p++)
        for (let y = 0; y < r.h; y++) {
          crop.set(x.subarray((p * H + y + r.y) * W + r.x, (p * H + y + r.y) * W + r.x + r.w), (p * r.h + y) * r.w);
        }
      const den = await d(crop, sigma);
      for (let p = 0; p < B * C; p++)
        for (let y = 0; y < r.h; y++)
          for (let xx = 0; xx < r.w; xx++) {
            const i = (p * r.h + y) * r.w + xx,
              o = (p * H + y + r.y) * W + r.x + xx;
            out[o] += den[i] * r.mult[i];
            count[o] += r.mult[i];
          }
    }
    for (let i = 0; i < out.length; i++) out[i] /= count[i];
    return out;
  };
}
