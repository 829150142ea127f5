/** Loader nodes: CheckpointLoaderSimple, VAELoader, LoraLoader, LoraLoaderModelOnly, CLIPSetLastLayer. */
import { statSync } from 'node:fs';
import { basename } from 'node:path';
import { inspectLora } from '../server/engine/lora/inspect.js';
import { SafetensorsFile } from '../server/engine/io/safetensors.js';
import { detectModelFile } from '../server/engine/model/detect.js';
import { defineNode, t } from './define.js';
import type { ClipValue, ModelValue, VaeValue } from './types.js';
import type { NodeServices } from './services.js';
import { taesdFiles, taesdNames, taesdProblem } from './taesd-files.js';

export const CheckpointLoaderSimple = defineNode({
  id: 'CheckpointLoaderSimple',
  displayName: 'Load Checkpoint',
  category: 'loaders',
  description:
    'Loads an SD1.5 or SDXL single-file checkpoint from models/checkpoints: its UNet, text encoders and VAE.',
  inputs: [t.combo('ckpt_name', (s) => s.models.list('checkpoints'), { tooltip: 'The checkpoint (model) to load.' })],
  outputs: [
    t.out('MODEL', 'MODEL', 'The model used for denoising latents.'),
    t.out('CLIP', 'CLIP', 'The text encoders.'),
    t.out('VAE', 'VAE', 'The VAE, between images and latents.'),
  ],
  // a replaced file re-runs the loader
  fingerprint: ({ ckpt_name }, s) => {
    const st = statSync(s.models.resolve('checkpoints', ckpt_name));
    return `${st.size}:${st.mtimeMs}`;
  },
  // the family (from the header) lets samplers refuse a ControlNet of another family before anything runs
  staticFacts: ({ ckpt_name }, s) => [{ family: checkpointFamily(s.models.resolve('checkpoints', ckpt_name)) }],
  execute: ({ ckpt_name }, ctx) => {
    const path = ctx.services.models.resolve('checkpoints', ckpt_name);
    const { config } = ctx.services.engine().inspect(path);
    const model: ModelValue = { ref: { checkpoint: path, loras: [] }, config };
    const clip: ClipValue = { ref: { checkpoint: path, loras: [], clipSkip: config.defaultClipSkip }, config };
    const vae: VaeValue = { ref: { checkpoint: path }, config };
    return { outputs: [model, clip, vae] };
  },
});

const families = new Map<string, { key: string; family: string }>();
/** A checkpoint's family from its header, memoised per size and mtime (validation asks on every prompt). */
function checkpointFamily(path: string): string {
  const st = statSync(path);
  const key = `${st.size}:${st.mtimeMs}`;
  const hit = families.get(path);
  if (hit?.key === key) return hit.family;
  const file = SafetensorsFile.open(path);
  try {
    const family = detectModelFile(file).family;
    families.set(path, { key, family });
    return family;
  } finally {
    file.close();
  }
}

/** Why a models/vae file cannot be used, from its header; undefined when it can. */
function vaeFileProblem(path: string): string | undefined {
  let file: SafetensorsFile | undefined;
  try {
    file = SafetensorsFile.open(path);
    detectModelFile(file);
    return undefined;
  } catch (e) {
    // a file with no VAE weights at all (a LoRA, an upscaler in the wrong folder): say that, not why it is no checkpoint
    const vaeKeys = file?.keys().some((k) => /^(first_stage_model\.|vae\.)?(encoder|decoder)\./.test(k));
    if (file && !vaeKeys)
      return `${basename(path)} is not a VAE: it has no encoder.* / decoder.* weights (nor a checkpoint's first_stage_model.*)`;
    return (e as Error).message;
  } finally {
    file?.close();
  }
}

export const VAELoader = defineNode({
  id: 'VAELoader',
  displayName: 'Load VAE',
  category: 'loaders',
  description:
    "Loads a separate VAE (models/vae, single-file layout), e.g. SDXL's fp16-fix VAE, to decode and encode with instead of the checkpoint's; taesd / taesdxl when their files are in models/vae_approx.",
  inputs: [t.combo('vae_name', (s) => [...s.models.list('vae'), ...taesdNames(s.models)])],
  outputs: [t.out('VAE')],
  fingerprint: ({ vae_name }, s) => {
    const taesd = taesdFiles(s.models, vae_name);
    const paths = taesd ? [taesd.encoder, taesd.decoder] : [s.models.resolve('vae', vae_name)];
    return paths.map((p) => `${statSync(p).size}:${statSync(p).mtimeMs}`).join('|');
  },
  validate: ({ vae_name }, s) => {
    const taesd = taesdFiles(s.models, vae_name);
    const problem = taesd ? taesdProblem(taesd) : vaeFileProblem(s.models.resolve('vae', vae_name));
    return problem ? `vae_name: ${problem}` : true;
  },
  execute: ({ vae_name }, ctx) => {
    const taesd = taesdFiles(ctx.services.models, vae_name);
    if (taesd) {
      const vae: VaeValue = { ref: { checkpoint: taesd.decoder, taesd } };
      return { outputs: [vae] };
    }
    const path = ctx.services.models.resolve('vae', vae_name);
    const { config } = ctx.services.engine().inspect(path);
    const vae: VaeValue = { ref: { checkpoint: path }, config };
    return { outputs: [vae] };
  },
});

const strength = (name: string, tooltip: string) =>
  t.float(name, { default: 1.0, min: -100, max: 100, step: 0.01, tooltip });

function withLora<T extends { ref: { loras: { path: string; strength: number }[] } }>(
  v: T,
  path: string,
  s: number,
): T {
  if (s === 0) return v; // strength 0 leaves the model untouched
  return { ...v, ref: { ...v.ref, loras: [...v.ref.loras, { path, strength: s }] } };
}

/**
 * Checks a LoRA against the checkpoint (headers only) before any weights move: another family is an error here, at
 * the loader; keys that patch nothing are logged one per line ("lora key not loaded: ...", as ComfyUI does) and
 * summarised in the node's UI output. Text-encoder weights the CLIP's clip skip never reads count as not loaded.
 */
function loraReport(
  checkpoint: string,
  config: ModelValue['config'],
  path: string,
  applies: { model: boolean; clip: boolean },
  log: (m: string) => void,
  clipSkip?: number,
): string {
  const r = inspectLora(checkpoint, config, path, clipSkip ?? config.defaultClipSkip);
  for (const k of r.unmatched) log(`lora key not loaded: ${k}`);
  const parts = [`${r.lora}: ${applies.model ? r.unet : 0} UNet modules`];
  if (applies.clip) parts.push(`${r.textEncoders} text-encoder modules`);
  else if (r.textEncoders > 0) parts.push(`${r.textEncoders} text-encoder modules not applied (model only)`);
  parts.push(
    `${r.unmatched.length} keys not loaded${r.unmatched.length ? ` (${r.unmatched.slice(0, 5).join(', ')}${r.unmatched.length > 5 ? ', ...' : ''})` : ''}`,
  );
  const line = parts.join(', ');
  log(line);
  return line;
}

/** A LoRA file replaced under the same name re-runs its loader (and what follows), as a replaced checkpoint does. */
const loraFingerprint = ({ lora_name }: { lora_name: string }, s: NodeServices) => {
  const st = statSync(s.models.resolve('loras', lora_name));
  return `${st.size}:${st.mtimeMs}`;
};

export const LoraLoader = defineNode({
  id: 'LoraLoader',
  displayName: 'Load LoRA',
  category: 'loaders',
  description:
    'Applies a LoRA (kohya, diffusers or PEFT format) to the model and text encoders. Chain several to stack them.',
  inputs: [
    t.socket('MODEL', 'model', { tooltip: 'The diffusion model the LoRA will be applied to.' }),
    t.socket('CLIP', 'clip', { tooltip: 'The CLIP model the LoRA will be applied to.' }),
    t.combo('lora_name', (s) => s.models.list('loras'), { tooltip: 'The name of the LoRA.' }),
    strength('strength_model', 'How strongly to modify the diffusion model. This value can be negative.'),
    strength('strength_clip', 'How strongly to modify the CLIP model. This value can be negative.'),
  ],
  outputs: [t.out('MODEL'), t.out('CLIP')],
  fingerprint: loraFingerprint,
  execute: ({ model, clip, lora_name, strength_model, strength_clip }, ctx) => {
    const path = ctx.services.models.resolve('loras', lora_name);
    const m = model,
      c = clip,
      sm = strength_model,
      sc = strength_clip;
    const text: string[] = [];
    if (sm !== 0)
      text.push(
        loraReport(
          m.ref.checkpoint,
          m.config,
          path,
          { model: true, clip: sc !== 0 && c.ref.checkpoint === m.ref.checkpoint },
          (l) => ctx.log(l),
          c.ref.clipSkip,
        ),
      );
    if (sc !== 0 && (sm === 0 || c.ref.checkpoint !== m.ref.checkpoint))
      text.push(
        loraReport(c.ref.checkpoint, c.config, path, { model: false, clip: true }, (l) => ctx.log(l), c.ref.clipSkip),
      );
    return { outputs: [withLora(m, path, sm), withLora(c, path, sc)], ...(text.length ? { ui: { text } } : {}) };
  },
});

export const LoraLoaderModelOnly = defineNode({
  id: 'LoraLoaderModelOnly',
  displayName: 'Load LoRA (model only)',
  category: 'loaders',
  description: 'Applies a LoRA to the diffusion model only (TCD LoRAs need nothing else).',
  inputs: [
    t.socket('MODEL', 'model'),
    t.combo('lora_name', (s) => s.models.list('loras')),
    strength('strength_model', 'How strongly to modify the diffusion model. This value can be negative.'),
  ],
  outputs: [t.out('MODEL')],
  fingerprint: loraFingerprint,
  execute: ({ model, lora_name, strength_model }, ctx) => {
    const path = ctx.services.models.resolve('loras', lora_name);
    const m = model,
      sm = strength_model;
    const text =
      sm !== 0 ? [loraReport(m.ref.checkpoint, m.config, path, { model: true, clip: false }, (l) => ctx.log(l))] : [];
    return { outputs: [withLora(m, path, sm)], ...(text.length ? { ui: { text } } : {}) };
  },
});

export const CLIPSetLastLayer = defineNode({
  id: 'CLIPSetLastLayer',
  displayName: 'CLIP Set Last Layer',
  category: 'conditioning',
  description: 'Uses the hidden state of an earlier text-encoder layer (-1 = last, -2 = penultimate, "clip skip").',
  inputs: [t.socket('CLIP', 'clip'), t.int('stop_at_clip_layer', { default: -1, min: -24, max: -1, step: 1 })],
  outputs: [t.out('CLIP')],
  execute: ({ clip, stop_at_clip_layer }) => {
    return { outputs: [{ ...clip, ref: { ...clip.ref, clipSkip: stop_at_clip_layer } }] };
  },
});
