/**
 * Upscale models with ComfyUI's names and semantics (comfy_extras/nodes_upscale_model.py): UpscaleModelLoader reads
 * an ESRGAN-family file from models/upscale_models (the header is checked at validation, so an unknown architecture
 * or a corrupted file is a 400 before anything runs); ImageUpscaleWithModel runs it over the image in tiles of 512
 * pixels overlapping by 32, blended with ComfyUI's feathered mask, one progress step per tile, then clamps to [0, 1].
 * ComfyUI halves the tile (down to 128) when the GPU runs out of memory; here a tile's memory is known before it runs
 * and a 512 tile of the models this runs fits any device, so there is no retry.
 */
import { statSync } from 'node:fs';
import { SafetensorsFile } from '../server/engine/io/safetensors.js';
import { detectEsrgan, type EsrganConfig } from '../server/engine/model/esrgan.js';
import { safetensorsWeights } from '../server/engine/onnx/weights.js';
import { tiledScale } from '../server/engine/ops/tiled-scale.js';
import { defineNode, t } from './define.js';
import { toNCHW, toNHWC } from './image-ops.js';
import type { UpscaleModelValue } from './types.js';

const TILE = 512;
const OVERLAP = 32;
const MODULE = 'comfy_extras.nodes_upscale_model';

/** The model's configuration, or why the file cannot be used (header only: no weights are read). */
export function inspectUpscaleModel(path: string): { config: EsrganConfig } | { problem: string } {
  if (!/\.(safetensors|sft)$/i.test(path))
    return { problem: 'only .safetensors upscale models can be loaded (pickled .pth/.pt/.ckpt files are not read)' };
  let file: SafetensorsFile | undefined;
  try {
    file = SafetensorsFile.open(path);
    const config = detectEsrgan(safetensorsWeights(file), file.keys());
    if (config.inChannels !== 3 || config.outChannels !== 3)
      return { problem: `the model maps ${config.inChannels} to ${config.outChannels} channels; images are RGB` };
    return { config };
  } catch (e) {
    return { problem: (e as Error).message };
  } finally {
    file?.close();
  }
}

export const UpscaleModelLoader = defineNode({
  id: 'UpscaleModelLoader',
  displayName: 'Load Upscale Model',
  category: 'loaders',
  module: MODULE,
  description: 'Loads an ESRGAN / Real-ESRGAN (RRDBNet) upscale model from models/upscale_models.',
  inputs: [t.combo('model_name', (s) => s.models.list('upscale_models'))],
  outputs: [t.out('UPSCALE_MODEL')],
  fingerprint: ({ model_name }, s) => {
    const st = statSync(s.models.resolve('upscale_models', model_name));
    return `${st.size}:${st.mtimeMs}`;
  },
  validate: ({ model_name }, s) => {
    const r = inspectUpscaleModel(s.models.resolve('upscale_models', model_name));
    return 'problem' in r ? `model_name: ${r.problem}` : true;
  },
  execute: ({ model_name }, ctx) => {
    const path = ctx.services.models.resolve('upscale_models', model_name);
    const r = inspectUpscaleModel(path);
    if ('problem' in r) throw new Error(`model_name: ${r.problem}`);
    const c = r.config;
    ctx.log(`upscale model ${model_name}: RRDBNet x${c.scale}, ${c.features} features, ${c.blocks} blocks`);
    const value: UpscaleModelValue = { ref: { path }, scale: c.scale };
    return { outputs: [value] };
  },
});

export const ImageUpscaleWithModel = defineNode({
  id: 'ImageUpscaleWithModel',
  displayName: 'Upscale Image (using Model)',
  category: 'image/upscaling',
  module: MODULE,
  description: 'Upscales images with an upscale model, in overlapping 512-pixel tiles.',
  inputs: [t.socket('UPSCALE_MODEL', 'upscale_model'), t.socket('IMAGE', 'image')],
  outputs: [t.out('IMAGE')],
  execute: async ({ upscale_model, image }, ctx) => {
    const channels = image.shape[3];
    if (channels !== 3) throw new Error(`image: the upscale model takes RGB images, this one has ${channels} channels`);
    const engine = ctx.services.engine();
    const out = await tiledScale(
      toNCHW(image),
      (tile) => {
        ctx.checkInterrupted();
        return engine.upscaleImage(upscale_model.ref, tile);
      },
      { tile: TILE, overlap: OVERLAP, scale: upscale_model.scale, onTile: (done, total) => ctx.progress(done, total) },
    );
    for (let i = 0; i < out.data.length; i++) out.data[i] = Math.min(1, Math.max(0, out.data[i]));
    return { outputs: [toNHWC(out)] };
  },
});
