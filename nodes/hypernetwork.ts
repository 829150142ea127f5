/**
 * ComfyUI's HypernetworkLoader (comfy_extras/nodes_hypernetwork.py): a hypernetwork from models/hypernetworks on
 * the model's attentions at `strength` (engine/model/hypernetwork.ts has the semantics). The UNet graph gets a
 * hypernetwork variant; models without one keep their graphs. Files: ComfyUI's .pt (read by a restricted unpickler
 * that only rebuilds tensors: nothing in the file runs) or .safetensors (layout in hypernetwork.ts); a file that is
 * neither is refused before anything runs.
 */
import { statSync } from 'node:fs';
import { basename } from 'node:path';
import { SafetensorsFile } from '../server/engine/io/safetensors.js';
import {
  type HypernetworkSource,
  openHypernetworkSource,
  readHypernetwork,
} from '../server/engine/model/hypernetwork.js';
import { defineNode, t } from './define.js';

/** Why a hypernetwork file cannot be used, from its content; undefined when it can. */
function hypernetworkProblem(path: string): string | undefined {
  let source: HypernetworkSource | undefined;
  try {
    source = openHypernetworkSource(path);
    readHypernetwork(source, 1);
    return undefined;
  } catch (e) {
    return `${basename(path)} is not a hypernetwork tcd-studio can read: ${(e as Error).message}`;
  } finally {
    if (source instanceof SafetensorsFile) source.close();
  }
}

export const HypernetworkLoader = defineNode({
  id: 'HypernetworkLoader',
  displayName: 'HypernetworkLoader',
  category: 'loaders',
  module: 'comfy_extras.nodes_hypernetwork',
  description:
    "Applies a hypernetwork (models/hypernetworks, .pt or .safetensors) to the model's attention keys and values.",
  inputs: [
    t.socket('MODEL', 'model'),
    t.combo('hypernetwork_name', (s) => s.models.list('hypernetworks')),
    t.float('strength', { default: 1.0, min: -10.0, max: 10.0, step: 0.01 }),
  ],
  outputs: [t.out('MODEL')],
  fingerprint: ({ hypernetwork_name }, s) => {
    const st = statSync(s.models.resolve('hypernetworks', hypernetwork_name));
    return `${st.size}:${st.mtimeMs}`;
  },
  validate: ({ hypernetwork_name }, s) => {
    const problem = hypernetworkProblem(s.models.resolve('hypernetworks', hypernetwork_name));
    return problem ? `hypernetwork_name: ${problem}` : true;
  },
  execute: ({ model, hypernetwork_name, strength }, ctx) => {
    if (strength === 0) return { outputs: [model] }; // k + mlp(k) * 0 = k: no graph variant needed
    const path = ctx.services.models.resolve('hypernetworks', hypernetwork_name);
    const hypernetworks = [...(model.ref.hypernetworks ?? []), { path, strength }];
    return { outputs: [{ ...model, ref: { ...model.ref, hypernetworks } }] };
  },
});
