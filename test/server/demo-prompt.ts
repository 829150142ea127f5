/**
 * The demo TCD text-to-image prompt in API format (ComfyUI node ids 3..9), small enough for tests.
 * Example: demoPrompt({ seed: 2, steps: 1, prefix: 'load' })
 */
export const DEMO_CKPT = 'tcd-studio-demo-sdxl.safetensors';

export function demoPrompt(
  o: { seed?: number; steps?: number; size?: number; prefix?: string; ckpt?: string; text?: string } = {},
) {
  const size = o.size ?? 64;
  return {
    '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: o.ckpt ?? DEMO_CKPT } },
    '6': { class_type: 'CLIPTextEncode', inputs: { text: o.text ?? 'a cat on a sofa', clip: ['4', 1] } },
    '7': { class_type: 'CLIPTextEncode', inputs: { text: '', clip: ['4', 1] } },
    '5': { class_type: 'EmptyLatentImage', inputs: { width: size, height: size, batch_size: 1 } },
    '3': {
      class_type: 'TCDSampler',
      inputs: {
        model: ['4', 0],
        positive: ['6', 0],
        negative: ['7', 0],
        latent_image: ['5', 0],
        seed: o.seed ?? 1,
        steps: o.steps ?? 2,
        cfg: 1,
        eta: 0.3,
        denoise: 1,
        original_inference_steps: 50,
      },
    },
    '8': { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } },
    '9': { class_type: 'SaveImage', inputs: { images: ['8', 0], filename_prefix: o.prefix ?? 'demo' } },
  };
}
