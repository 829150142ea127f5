/** The node registry: every node family, one definition each. Adding a node is adding it to its family file. */
import type { Registry } from '../server/executor/node-definition.js';
import type { NodeServices } from './services.js';
import * as loaders from './loaders.js';
import * as conditioning from './conditioning.js';
import * as latent from './latent.js';
import * as sampling from './sampling.js';
import * as modelSampling from './model-sampling.js';
import * as image from './image.js';
import * as inpaint from './inpaint.js';
import * as modelMerging from './model-merging.js';
import * as checkpointSave from './checkpoint-save.js';
import * as rebatch from './rebatch.js';
import * as hypernetwork from './hypernetwork.js';
import * as latentOps from './latent-ops.js';
import * as imageOps from './image-ops.js';
import * as conditioningOps from './conditioning-ops.js';
import * as saveImageWebsocket from './save-image-websocket.js';
import * as vaeDecodeTiled from './vae-decode-tiled.js';
import * as controlnet from './controlnet.js';
import * as upscaleModel from './upscale-model.js';

type Def = Registry<NodeServices> extends Map<string, infer D> ? D : never;

function isDefinition(v: unknown): v is Def {
  return !!v && typeof v === 'object' && typeof (v as Def).id === 'string' && typeof (v as Def).execute === 'function';
}

export function createRegistry(): Registry<NodeServices> {
  const reg: Registry<NodeServices> = new Map();
  for (const family of [
    loaders,
    conditioning,
    conditioningOps,
    latent,
    latentOps,
    sampling,
    modelSampling,
    image,
    imageOps,
    inpaint,
    modelMerging,
    checkpointSave,
    rebatch,
    hypernetwork,
    saveImageWebsocket,
    vaeDecodeTiled,
    controlnet,
    upscaleModel,
  ]) {
    for (const v of Object.values(family))
      if (isDefinition(v)) {
        if (reg.has(v.id)) throw new Error(`two node definitions named ${v.id}`);
        reg.set(v.id, v);
      }
  }
  return reg;
}
