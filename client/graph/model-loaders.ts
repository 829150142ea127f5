// Which node loads a model file of a given folder (dragging a model from the library onto the canvas).
import type { ObjectInfo } from './types.js';
import { describeInputs } from './widget-spec.js';

/** ComfyUI's usual loader per folder; other folders fall back to any loader whose list holds the file. */
const PREFERRED: Record<string, string[]> = {
  checkpoints: ['CheckpointLoaderSimple'],
  loras: ['LoraLoader', 'LoraLoaderModelOnly'],
  vae: ['VAELoader'],
  controlnet: ['ControlNetLoader'],
  upscale_models: ['UpscaleModelLoader'],
  clip: ['CLIPLoader'],
  unet: ['UNETLoader'],
  diffusion_models: ['UNETLoader'],
  clip_vision: ['CLIPVisionLoader'],
  style_models: ['StyleModelLoader'],
};

/**
 * The loader class and its file input for `file` in `folder`, or null when no node loads it.
 * @example loaderFor('loras', 'x.safetensors', info) // { type: 'LoraLoader', input: 'lora_name' }
 */
export function loaderFor(folder: string, file: string, info: ObjectInfo): { type: string; input: string } | null {
  const fileInput = (type: string, needFile: boolean) => {
    const cls = info[type];
    if (!cls) return undefined;
    return describeInputs(cls).find(
      (d) =>
        d.widget?.kind === 'combo' && /_name$/.test(d.name) && (!needFile || (d.widget.options ?? []).includes(file)),
    )?.name;
  };
  for (const type of PREFERRED[folder] ?? []) {
    const input = fileInput(type, false);
    if (input) return { type, input };
  }
  for (const type of Object.keys(info)) {
    if (!/loader/i.test(`${info[type].category ?? ''} ${type}`)) continue;
    const input = fileInput(type, true);
    if (input) return { type, input };
  }
  return null;
}
