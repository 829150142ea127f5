// A hand-written object_info subset in ComfyUI's shape, for converter tests (the server's real one is tested in the browser tests).
import type { ObjectInfo } from '../../../client/graph/types.js';

const node = (name: string, required: Record<string, unknown>, output: string[], extra: Record<string, unknown> = {}) =>
  ({
    name,
    display_name: name,
    category: 'test',
    input: { required },
    input_order: { required: Object.keys(required) },
    output,
    output_name: output,
    output_is_list: output.map(() => false),
    output_node: false,
    ...extra,
  }) as ObjectInfo[string];

export const OBJECT_INFO: ObjectInfo = {
  CheckpointLoaderSimple: node(
    'CheckpointLoaderSimple',
    { ckpt_name: [['tcd-studio-demo-sdxl.safetensors', 'other.safetensors']] },
    ['MODEL', 'CLIP', 'VAE'],
  ),
  CLIPTextEncode: node('CLIPTextEncode', { text: ['STRING', { multiline: true }], clip: ['CLIP'] }, ['CONDITIONING']),
  EmptyLatentImage: node(
    'EmptyLatentImage',
    {
      width: ['INT', { default: 512, min: 16, max: 16384, step: 8 }],
      height: ['INT', { default: 512, min: 16, max: 16384, step: 8 }],
      batch_size: ['INT', { default: 1, min: 1, max: 4096 }],
    },
    ['LATENT'],
  ),
  TCDSampler: node(
    'TCDSampler',
    {
      model: ['MODEL'],
      positive: ['CONDITIONING'],
      negative: ['CONDITIONING'],
      latent_image: ['LATENT'],
      seed: ['INT', { default: 0, min: 0, max: 0xffffffffffffffff, control_after_generate: true }],
      steps: ['INT', { default: 4, min: 1, max: 50 }],
      cfg: ['FLOAT', { default: 1, min: 0, max: 100, step: 0.1 }],
      eta: ['FLOAT', { default: 0.3, min: 0, max: 1, step: 0.01 }],
      denoise: ['FLOAT', { default: 1, min: 0, max: 1, step: 0.01 }],
      original_inference_steps: ['INT', { default: 50, min: 1, max: 1000 }],
    },
    ['LATENT'],
  ),
  VAEDecode: node('VAEDecode', { samples: ['LATENT'], vae: ['VAE'] }, ['IMAGE']),
  SaveImage: node('SaveImage', { images: ['IMAGE'], filename_prefix: ['STRING', { default: 'ComfyUI' }] }, [], {
    output_node: true,
  }),
  LoraLoader: node(
    'LoraLoader',
    {
      model: ['MODEL'],
      clip: ['CLIP'],
      lora_name: [['a.safetensors']],
      strength_model: ['FLOAT', { default: 1, min: -100, max: 100, step: 0.01 }],
      strength_clip: ['FLOAT', { default: 1, min: -100, max: 100, step: 0.01 }],
    },
    ['MODEL', 'CLIP'],
  ),
};
