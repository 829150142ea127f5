/**
 * ComfyUI's HypernetworkLoader (comfy_extras/nodes_hypernetwork.py): a hypernetwork from models/hypernetworks on
 * the model's attentions at `strength` (engine/model/hypernetwork.ts has the semantics). The UNet graph gets a
 * hypernetwork variant; models without one keep their graphs. Files are .safetensors (see hypernetwork.ts for the
 * layout); pickled .pt files are refused before anything runs: tcd-studio does not execute pickles.
 */
import { statSync } from 'node:fs';
import { extname } from 'node:path';
import { SafetensorsFile } from '../server/engine/io/safetensors.js';
import { readHypernetwork } from '../server/engine/model/hypernetwork.js';
import { defineNode, t } from './define.js';

/** Why a hypernetwork file cannot be used, from its header; undefined when it can. */
function hypernetworkProblem(path: string): string | undefined {
  const ext = extname(path).toLowerCase();
  if (ext !== '.safetensors' && ext !== '.sft')
    return (
      `${ext || 'this'} hypernetworks are pickles, which tcd-studio does not load: convert it to .safetensors ` +
      '(tensors "{width}.{0|1}.{layer}.weight|bias", options such as activation_func and is_layer_norm as metadata)'
    );
  let file: SafetensorsFile | undefined;
  try {
    file = SafetensorsFile.open(path);
    readHypernetwork(file, 1);
    return undefined;
  } catch (e) {
    return `not a hypernetwork tcd-studio can read: ${(e as Error).message}`;
  } finally {
    file?.close();
  }
}

export const HypernetworkLoader = defineNode({
  id: 'HypernetworkLoader',
  displayName: 'HypernetworkLoader',
  category: 'loaders',
  module: 'comfy_extras.nodes_hypernetwork',
  description: "Applies a hypernetwork (models/hypernetworks, .safetensors) to the model's attention keys and values.",
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
