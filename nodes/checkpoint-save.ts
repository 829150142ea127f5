/**
 * ComfyUI's CheckpointSave (comfy_extras/nodes_model_merging.py): model + CLIP + VAE, with their merges and LoRAs
 * applied, written as one single-file checkpoint `{prefix}_{counter:05}_.safetensors` in the output folder, in the
 * key layout the weights came from, with ComfyUI's metadata (modelspec for SDXL, predict_key, prompt, workflow).
 */
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { resolveInside } from '../server/storage/safe-path.js';
import { defineNode, t } from './define.js';
import type { ModelValue } from './types.js';

/**
 * ComfyUI's save-path counter: one more than the highest `{stem}_NNNNN` among the folder's files, whatever their
 * extension (a PNG of the same prefix counts too, as in get_save_image_path).
 */
export function nextSaveCounter(dir: string, stem: string): number {
  if (!existsSync(dir)) return 1;
  let max = 0;
  for (const name of readdirSync(dir)) {
    if (!name.startsWith(`${stem}_`)) continue;
    const digits = /^(\d+)/.exec(name.slice(stem.length + 1));
    if (digits) max = Math.max(max, Number(digits[1]));
  }
  return max + 1;
}

const upper = (s: string) => s.toUpperCase();

function metadataFor(model: ModelValue, stem: string, counter: number, prompt: unknown, extra: unknown) {
  const meta: Record<string, string> = {};
  if (model.config.family === 'sdxl') {
    meta['modelspec.architecture'] = 'stable-diffusion-xl-v1-base';
    meta['modelspec.sai_model_spec'] = '1.0.0';
    meta['modelspec.implementation'] = 'sgm';
    meta['modelspec.title'] = `${stem} ${counter}`;
  }
  // the checkpoint's own model type, as ComfyUI (ModelSamplingDiscrete does not change it)
  meta['modelspec.predict_key'] = model.config.predictionType === 'v_prediction' ? 'v' : 'epsilon';
  meta.prompt = JSON.stringify(prompt);
  if (extra && typeof extra === 'object') for (const [k, v] of Object.entries(extra)) meta[k] = JSON.stringify(v);
  return meta;
}

export const CheckpointSave = defineNode({
  id: 'CheckpointSave',
  displayName: 'Save Checkpoint',
  category: 'advanced/model_merging',
  module: 'comfy_extras.nodes_model_merging',
  outputNode: true,
  description:
    'Saves model, CLIP and VAE (merges and LoRAs applied) as one .safetensors checkpoint in the output folder.',
  inputs: [
    t.socket('MODEL', 'model'),
    t.socket('CLIP', 'clip'),
    t.socket('VAE', 'vae'),
    t.string('filename_prefix', { default: 'checkpoints/ComfyUI' }),
  ],
  hidden: { prompt: 'PROMPT', extra_pnginfo: 'EXTRA_PNGINFO' },
  outputs: [],
  execute: async ({ model, clip, vae, filename_prefix }, ctx) => {
    if (clip.config.family !== model.config.family)
      throw new Error(
        `clip: a ${upper(clip.config.family)} CLIP cannot go in a ${upper(model.config.family)} checkpoint`,
      );
    // a TAESD VAE (VAELoader's taesd / taesdxl) has no AutoencoderKL weights to write
    if (!vae.config) throw new Error('vae: a TAESD VAE cannot be saved into a checkpoint');
    if (vae.config.vae.latentChannels !== model.config.vae.latentChannels)
      throw new Error(`vae: its ${vae.config.vae.latentChannels}-channel latents do not fit the model`);
    const sub = dirname(filename_prefix) === '.' ? '' : dirname(filename_prefix);
    const stem = filename_prefix.slice(sub ? sub.length + 1 : 0) || 'ComfyUI';
    const dir = resolveInside(ctx.services.dirs.output, sub);
    mkdirSync(dir, { recursive: true });
    const counter = nextSaveCounter(dir, stem);
    const filename = `${stem}_${String(counter).padStart(5, '0')}_.safetensors`;
    const markers = model.config.predictionType === 'v_prediction' ? ['v_pred'] : [];
    if (markers.length && model.sampling?.zsnr) markers.push('ztsnr');
    await ctx.services.engine().saveCheckpoint({
      model: model.ref,
      clip: clip.ref,
      vae: vae.ref,
      path: join(dir, filename),
      metadata: metadataFor(model, stem, counter, ctx.prompt, ctx.extraData.extra_pnginfo),
      markers,
    });
    ctx.log(`saved ${join(sub, filename)}`);
    return { outputs: [] };
  },
});
