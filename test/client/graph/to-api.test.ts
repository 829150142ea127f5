import { test } from 'node:test';
import assert from 'node:assert/strict';
import { workflowToPrompt, queueBody } from '../../../client/graph/to-api.js';
import { defaultWorkflow } from '../../../client/graph/default-workflow.js';
import type { Workflow } from '../../../client/graph/types.js';
import { OBJECT_INFO } from './object-info.js';

test('default workflow converts to the API prompt ComfyUI would send', () => {
  const p = workflowToPrompt(defaultWorkflow(), OBJECT_INFO);
  assert.deepEqual(Object.keys(p).sort(), ['3', '4', '5', '6', '7', '8', '9']);
  assert.deepEqual(p['3'], {
    class_type: 'TCDSampler',
    inputs: {
      model: ['4', 0],
      positive: ['6', 0],
      negative: ['7', 0],
      latent_image: ['5', 0],
      seed: 42,
      steps: 4,
      cfg: 1,
      eta: 0.3,
      denoise: 1,
      original_inference_steps: 50,
    },
    _meta: { title: 'TCDSampler' },
  });
  assert.deepEqual(p['4'].inputs, { ckpt_name: 'tcd-studio-demo-sdxl.safetensors' });
  assert.deepEqual(p['5'].inputs, { width: 512, height: 512, batch_size: 1 });
  assert.deepEqual(p['6'].inputs, {
    text: (defaultWorkflow().nodes[1].widgets_values as unknown[])[0],
    clip: ['4', 1],
  });
  assert.deepEqual(p['8'].inputs, { samples: ['3', 0], vae: ['4', 2] });
  assert.deepEqual(p['9'].inputs, { images: ['8', 0], filename_prefix: 'tcd-studio' });
});

test('a seed saved without its control value still maps the following widgets', () => {
  const wf = defaultWorkflow();
  wf.nodes.find((n) => n.id === 3)!.widgets_values = [7, 4, 1, 0.3, 1, 50];
  const p = workflowToPrompt(wf, OBJECT_INFO);
  assert.equal(p['3'].inputs.seed, 7);
  assert.equal(p['3'].inputs.steps, 4);
  assert.equal(p['3'].inputs.original_inference_steps, 50);
});

/** Inserts a LoraLoader between the checkpoint and the sampler/text encoders. */
function withLora(mode: number): Workflow {
  const wf = defaultWorkflow();
  wf.nodes.push({
    id: 10,
    type: 'LoraLoader',
    pos: [0, 0],
    mode,
    inputs: [
      { name: 'model', type: 'MODEL', link: 1 },
      { name: 'clip', type: 'CLIP', link: 10 },
    ],
    outputs: [
      { name: 'MODEL', type: 'MODEL', links: [11] },
      { name: 'CLIP', type: 'CLIP', links: [12] },
    ],
    widgets_values: ['a.safetensors', 0.5, 0.7],
  });
  wf.links = wf.links.filter((l) => l[0] !== 1 && l[0] !== 2);
  wf.links.push(
    [1, 4, 0, 10, 0, 'MODEL'],
    [10, 4, 1, 10, 1, 'CLIP'],
    [11, 10, 0, 3, 0, 'MODEL'],
    [12, 10, 1, 6, 0, 'CLIP'],
  );
  wf.nodes.find((n) => n.id === 3)!.inputs![0].link = 11;
  wf.nodes.find((n) => n.id === 6)!.inputs![0].link = 12;
  return wf;
}

test('active LoRA node sits in the chain', () => {
  const p = workflowToPrompt(withLora(0), OBJECT_INFO);
  assert.deepEqual(p['10'].inputs, {
    model: ['4', 0],
    clip: ['4', 1],
    lora_name: 'a.safetensors',
    strength_model: 0.5,
    strength_clip: 0.7,
  });
  assert.deepEqual(p['3'].inputs.model, ['10', 0]);
  assert.deepEqual(p['6'].inputs.clip, ['10', 1]);
});

test('bypassed node (mode 4) passes its same-typed inputs through', () => {
  const p = workflowToPrompt(withLora(4), OBJECT_INFO);
  assert.equal(p['10'], undefined);
  assert.deepEqual(p['3'].inputs.model, ['4', 0]);
  assert.deepEqual(p['6'].inputs.clip, ['4', 1]);
});

test('muted node (mode 2) vanishes and its consumers lose the link', () => {
  const p = workflowToPrompt(withLora(2), OBJECT_INFO);
  assert.equal(p['10'], undefined);
  assert.equal('model' in p['3'].inputs, false);
  assert.equal('clip' in p['6'].inputs, false);
});

test('a widget converted to a socket takes the link, not the widget value', () => {
  const wf = defaultWorkflow();
  wf.nodes.push({
    id: 11,
    type: 'PrimitiveNode',
    pos: [0, 0],
    mode: 0,
    inputs: [],
    outputs: [{ name: 'INT', type: 'INT', links: [20] }],
    widgets_values: [1234, 'fixed'],
  });
  wf.nodes.find((n) => n.id === 3)!.inputs!.push({ name: 'seed', type: 'INT', link: 20, widget: { name: 'seed' } });
  wf.links.push([20, 11, 0, 3, 4, 'INT']);
  const p = workflowToPrompt(wf, OBJECT_INFO);
  assert.equal(p['3'].inputs.seed, 1234);
  assert.equal(p['11'], undefined);
});

test('queue body attaches the workflow for the PNG metadata', () => {
  const wf = defaultWorkflow();
  const body = queueBody(wf, OBJECT_INFO, 'abc');
  assert.equal(body.client_id, 'abc');
  assert.equal(body.extra_data.extra_pnginfo.workflow, wf);
  assert.ok(body.prompt['9']);
});
