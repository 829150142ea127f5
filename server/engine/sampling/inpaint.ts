/**
 * ComfyUI's KSamplerX0Inpaint around a denoiser: where the denoise mask is 0 the model sees the original latent noised
 * to the current sigma and its prediction is replaced by the original latent, so only the masked region changes.
 * `withUncond` (cfg_pp samplers) is wrapped the same way. All arrays have the latent's size (mask already resized
 * and repeated over channels and batch).
 * Example: const d = inpaintDenoiser(inner, mask, latent, noise); const x0 = await d(x, sigma);
 */
import type { CfgDenoiser } from './model-sampling.js';
import type { Denoiser } from './noise.js';

export function inpaintDenoiser(
  inner: Denoiser,
  mask: Float32Array,
  latent: Float32Array,
  noise: Float32Array,
): Denoiser {
  const blend = (x: Float32Array, keep: (i: number) => number) =>
    x.map((v, i) => v * mask[i] + keep(i) * (1 - mask[i]));
  const wrapped: Denoiser = async (x, sigma) =>
    blend(
      await inner(
        blend(x, (i) => latent[i] + noise[i] * sigma),
        sigma,
      ),
      (i) => latent[i],
    );
  const cfg = (inner as Partial<CfgDenoiser>).withUncond;
  if (!cfg) return wrapped;
  return Object.assign(wrapped, {
    withUncond: async (x: Float32Array, sigma: number) => {
      const r = await cfg(
        blend(x, (i) => latent[i] + noise[i] * sigma),
        sigma,
      );
      return { denoised: blend(r.denoised, (i) => latent[i]), uncond: r.uncond };
    },
  });
}
