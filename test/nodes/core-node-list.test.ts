/**
 * Issue 16's node list: every core node that the SD1/SDXL workflows people share use (ComfyUI's names), and the
 * ComfyUI-TCD custom node's, is registered and described in object_info with ComfyUI's shape (input / output /
 * output_name / name / category / output_node). Each node's semantics are tested in its own file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRegistry } from '../../nodes/index.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { objectInfoFor } from '../../server/executor/object-info.js';
import { ModelFolders } from '../../server/storage/model-folders.js';

const ISSUE_16_NODES = [
  // loaders and model patches
  ['VAELoader', 'CLIPSetLastLayer', 'HypernetworkLoader', 'UpscaleModelLoader', 'ImageUpscaleWithModel'],
  ['ControlNetLoader', 'DiffControlNetLoader', 'ControlNetApply', 'ControlNetApplyAdvanced'],
  ['ModelMergeSimple', 'ModelMergeAdd', 'ModelMergeSubtract', 'CLIPMergeSimple', 'CheckpointSave'],
  ['ModelSamplingDiscrete', 'RescaleCFG', 'SDTurboScheduler', 'KSamplerAdvanced'],
  // latent and image
  ['LatentUpscale', 'LatentUpscaleBy', 'ImageScale', 'ImageScaleBy', 'LatentComposite', 'LatentBlend'],
  ['RepeatLatentBatch', 'LatentFromBatch', 'RebatchLatents', 'SaveLatent', 'LoadLatent'],
  ['PreviewImage', 'ImageInvert', 'ImageBatch', 'EmptyImage'],
  // conditioning and inpainting
  ['ConditioningCombine', 'ConditioningSetArea', 'ConditioningSetAreaPercentage', 'ConditioningSetMask'],
  ['ConditioningZeroOut', 'ConditioningAverage', 'ConditioningConcat'],
  ['VAEEncodeForInpaint', 'SetLatentNoiseMask', 'ImagePadForOutpaint', 'LoadImageMask', 'InpaintModelConditioning'],
  // the ComfyUI-TCD custom node, with SamplerCustom
  ['TCDModelSamplingDiscrete', 'SamplerCustom', 'SamplerTCD'],
].flat();

test("every node of issue 16's list is registered, with object_info in ComfyUI's shape", () => {
  const registry = createRegistry();
  const root = mkdtempSync(join(tmpdir(), 'tcd-node-list-'));
  const services = { dirs: { input: join(root, 'input') }, models: new ModelFolders(join(root, 'models')) };
  const missing = ISSUE_16_NODES.filter((id) => !registry.has(id));
  assert.deepEqual(missing, []);
  for (const id of ISSUE_16_NODES) {
    const info = objectInfoFor(registry.get(id)!, services) as Record<string, unknown>;
    for (const key of ['input', 'output', 'output_name', 'name', 'category', 'output_node'])
      assert.ok(key in info, `${id}: object_info has ${key}`);
    assert.equal(info.name, id);
  }
  // RebatchLatents runs over lists, as ComfyUI reports it
  const rebatch = objectInfoFor(registry.get('RebatchLatents')!, services) as { output_is_list: boolean[] };
  assert.deepEqual(rebatch.output_is_list, [true]);
  rmSync(root, { recursive: true, force: true });
});
