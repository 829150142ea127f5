/** Loader nodes: CheckpointLoaderSimple, LoraLoader, LoraLoaderModelOnly, CLIPSetLastLayer. */
import { statSync } from 'node:fs';
import { defineNode, t } from './define.js';
import type { ClipValue, ModelValue, VaeValue } from './types.js';

export const CheckpointLoaderSimple = defineNode({
  id: 'CheckpointLoaderSimple', displayName: 'Load Checkpoint', category: 'loaders',
  description: 'Loads an SD1.5 or SDXL single-file checkpoint from models/checkpoints: its UNet, text encoders and VAE.',
  inputs: [t.combo('ckpt_name', (s) => s.models.list('checkpoints'), { tooltip: 'The checkpoint (model) to load.' })],
  outputs: [t.out('MODEL', 'MODEL', 'The model used for denoising latents.'), t.out('CLIP', 'CLIP', 'The text encoders.'), t.out('VAE', 'VAE', 'The VAE, between images and latents.')],
  // a replaced file re-runs the loader
  fingerprint: ({ ckpt_name }, s) => { const st = statSync(s.models.resolve('checkpoints', String(ckpt_name))); return `${st.size}:${st.mtimeMs}`; },
  execute: ({ ckpt_name }, ctx) => {
    const path = ctx.services.models.resolve('checkpoints', String(ckpt_name));
    const { config } = ctx.services.engine().inspect(path);
    const model: ModelValue = { ref: { checkpoint: path, loras: [] }, config };
    const clip: ClipValue = { ref: { checkpoint: path, loras: [], clipSkip: config.defaultClipSkip }, config };
    const vae: VaeValue = { ref: { checkpoint: path }, config };
    return { outputs: [model, clip, vae] };
  },
});

const strength = (name: string, tooltip: string) => t.float(name, { default: 1.0, min: -100, max: 100, step: 0.01, tooltip });

function withLora<T extends { ref: { loras: { path: string; strength: number }[] } }>(v: T, path: string, s: number): T {
  if (s === 0) return v; // strength 0 leaves the model untouched
  return { ...v, ref: { ...v.ref, loras: [...v.ref.loras, { path, strength: s }] } };
}

export const LoraLoader = defineNode({
  id: 'LoraLoader', displayName: 'Load LoRA', category: 'loaders',
  description: 'Applies a LoRA (kohya, diffusers or PEFT format) to the model and text encoders. Chain several to stack them.',
  inputs: [
    t.socket('MODEL', 'model', { tooltip: 'The diffusion model the LoRA will be applied to.' }),
    t.socket('CLIP', 'clip', { tooltip: 'The CLIP model the LoRA will be applied to.' }),
    t.combo('lora_name', (s) => s.models.list('loras'), { tooltip: 'The name of the LoRA.' }),
    strength('strength_model', 'How strongly to modify the diffusion model. This value can be negative.'),
    strength('strength_clip', 'How strongly to modify the CLIP model. This value can be negative.'),
  ],
  outputs: [t.out('MODEL'), t.out('CLIP')],
  execute: ({ model, clip, lora_name, strength_model, strength_clip }, ctx) => {
    const path = ctx.services.models.resolve('loras', String(lora_name));
    return { outputs: [withLora(model as ModelValue, path, Number(strength_model)), withLora(clip as ClipValue, path, Number(strength_clip))] };
  },
});

export const LoraLoaderModelOnly = defineNode({
  id: 'LoraLoaderModelOnly', displayName: 'Load LoRA (model only)', category: 'loaders',
  description: 'Applies a LoRA to the diffusion model only (TCD LoRAs need nothing else).',
  inputs: [
    t.socket('MODEL', 'model'),
    t.combo('lora_name', (s) => s.models.list('loras')),
    strength('strength_model', 'How strongly to modify the diffusion model. This value can be negative.'),
  ],
  outputs: [t.out('MODEL')],
  execute: ({ model, lora_name, strength_model }, ctx) => {
    const path = ctx.services.models.resolve('loras', String(lora_name));
    return { outputs: [withLora(model as ModelValue, path, Number(strength_model))] };
  },
});

export const CLIPSetLastLayer = defineNode({
  id: 'CLIPSetLastLayer', displayName: 'CLIP Set Last Layer', category: 'conditioning',
  description: 'Uses the hidden state of an earlier text-encoder layer (-1 = last, -2 = penultimate, "clip skip").',
  inputs: [t.socket('CLIP', 'clip'), t.int('stop_at_clip_layer', { default: -1, min: -24, max: -1, step: 1 })],
  outputs: [t.out('CLIP')],
  execute: ({ clip, stop_at_clip_layer }) => {
    const c = clip as ClipValue;
    return { outputs: [{ ...c, ref: { ...c.ref, clipSkip: Number(stop_at_clip_layer) } }] };
  },
});
