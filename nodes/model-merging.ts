/**
 * ComfyUI's model merging nodes (comfy_extras/nodes_model_merging.py): ModelMergeSimple (UNet weights model1 * ratio
 * + model2 * (1 - ratio)), ModelMergeAdd (model1 + model2), ModelMergeSubtract ((model1 - model2) * multiplier) and
 * CLIPMergeSimple (the text encoders, like Simple). The merge is a descriptor on MODEL/CLIP; the engine merges the
 * weights when it builds the graph. The second input must be a plain checkpoint of the same family and sizes.
 */
import { defineNode, t } from './define.js';
import type { MergeRef } from '../server/engine/types.js';
import type { ClipValue, ModelValue } from './types.js';

function merged(model1: ModelValue, model2: ModelValue, kind: MergeRef['kind'], ratio: number): ModelValue {
  if (model2.ref.loras.length || model2.ref.merges?.length)
    throw new Error(
      'model2 carries LoRAs or merges of its own, which merging does not apply yet: merge plain checkpoints',
    );
  if (
    model1.config.family !== model2.config.family ||
    JSON.stringify(model1.config.unet) !== JSON.stringify(model2.config.unet)
  ) {
    throw new Error(
      `model2 (${model2.config.family.toUpperCase()}) does not have model1's (${model1.config.family.toUpperCase()}) UNet layout: merging needs the same family and sizes`,
    );
  }
  return {
    ...model1,
    ref: {
      ...model1.ref,
      merges: [
        ...(model1.ref.merges ?? []),
        { path: model2.ref.checkpoint, kind, ratio, afterLoras: model1.ref.loras.length },
      ],
    },
  };
}

const models = [t.socket('MODEL', 'model1'), t.socket('MODEL', 'model2')] as const;
const category = 'advanced/model_merging',
  module = 'comfy_extras.nodes_model_merging';

export const ModelMergeSimple = defineNode({
  id: 'ModelMergeSimple',
  displayName: 'ModelMergeSimple',
  category,
  module,
  description: 'UNet weights: model1 * ratio + model2 * (1 - ratio).',
  inputs: [...models, t.float('ratio', { default: 1.0, min: 0, max: 1, step: 0.01 })],
  outputs: [t.out('MODEL')],
  execute: ({ model1, model2, ratio }) => ({ outputs: [merged(model1, model2, 'simple', ratio)] }),
});

export const ModelMergeAdd = defineNode({
  id: 'ModelMergeAdd',
  displayName: 'ModelMergeAdd',
  category,
  module,
  description: 'UNet weights: model1 + model2.',
  inputs: [...models],
  outputs: [t.out('MODEL')],
  execute: ({ model1, model2 }) => ({ outputs: [merged(model1, model2, 'add', 1)] }),
});

export const ModelMergeSubtract = defineNode({
  id: 'ModelMergeSubtract',
  displayName: 'ModelMergeSubtract',
  category,
  module,
  description: 'UNet weights: (model1 - model2) * multiplier.',
  inputs: [...models, t.float('multiplier', { default: 1.0, min: -10, max: 10, step: 0.01 })],
  outputs: [t.out('MODEL')],
  execute: ({ model1, model2, multiplier }) => ({ outputs: [merged(model1, model2, 'subtract', multiplier)] }),
});

export const CLIPMergeSimple = defineNode({
  id: 'CLIPMergeSimple',
  displayName: 'CLIPMergeSimple',
  category,
  module,
  description: 'Text-encoder weights: clip1 * ratio + clip2 * (1 - ratio) (position ids and logit scale kept).',
  inputs: [
    t.socket('CLIP', 'clip1'),
    t.socket('CLIP', 'clip2'),
    t.float('ratio', { default: 1.0, min: 0, max: 1, step: 0.01 }),
  ],
  outputs: [t.out('CLIP')],
  execute: ({ clip1, clip2, ratio }) => {
    if (clip2.ref.loras.length || clip2.ref.merges?.length)
      throw new Error(
        'clip2 carries LoRAs or merges of its own, which merging does not apply yet: merge plain checkpoints',
      );
    if (JSON.stringify(clip1.config.textEncoders) !== JSON.stringify(clip2.config.textEncoders)) {
      throw new Error(
        `clip2 (${clip2.config.family.toUpperCase()}) does not have clip1's (${clip1.config.family.toUpperCase()}) text encoders: merging needs the same family and sizes`,
      );
    }
    const clip: ClipValue = {
      ...clip1,
      ref: {
        ...clip1.ref,
        merges: [
          ...(clip1.ref.merges ?? []),
          { path: clip2.ref.checkpoint, kind: 'simple', ratio, afterLoras: clip1.ref.loras.length },
        ],
      },
    };
    return { outputs: [clip] };
  },
});
