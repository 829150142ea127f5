/**
 * Conversion rules of the UI -> API converter (protocol/workflow/ui-to-api.ts) checked against the prompt ComfyUI's
 * frontend would send, on small hand-made workflows: which input of a bypassed node a link passes through, a
 * primitive that holds no value, a converted widget found by its widget name, the node title in _meta, and an image
 * upload companion in widgets_values. (ui-to-api.test.ts compares two schema sources through this one converter, so
 * it cannot notice a rule that changes for both.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  MODE_BYPASS,
  uiWorkflowToPrompt,
  type ClassSchema,
  type UiNode,
  type UiWorkflow,
} from '../../protocol/workflow/ui-to-api.js';
import { uiToApi } from '../../server/workflow/convert.js';
import { createRegistry } from '../../nodes/index.js';
import type { NodeDefinition, Registry } from '../../server/executor/node-definition.js';

const SCHEMAS: Record<string, ClassSchema> = {
  Image: { displayName: 'Image source', inputs: [{ name: 'name', widget: true }] },
  Latent: { inputs: [{ name: 'size', widget: true }] },
  // a bypass candidate: two inputs of the same type, one of another
  Blend: {
    inputs: [
      { name: 'a', widget: false },
      { name: 'b', widget: false },
      { name: 'lat', widget: false },
    ],
  },
  Use: { inputs: [{ name: 'x', widget: false }] },
  Sampler: {
    inputs: [
      { name: 'seed', widget: true, controlAfterGenerate: true },
      { name: 'steps', widget: true },
    ],
  },
  LoadMask: {
    inputs: [
      { name: 'image', widget: true, imageUpload: true },
      { name: 'channel', widget: true },
    ],
  },
};
const convert = (wf: UiWorkflow) => uiWorkflowToPrompt(wf, (t) => SCHEMAS[t], { strict: true });

/** img1, img2 (IMAGE) and lat (LATENT) feed a bypassed Blend (slots a, b, lat); Use takes Blend's output `slot`. */
function bypassed(slot: number, type: string): UiWorkflow {
  const blendInputs = [
    { name: 'a', type: 'IMAGE', link: 1 },
    { name: 'b', type: 'IMAGE', link: 2 },
    { name: 'lat', type: 'LATENT', link: 3 },
  ];
  return {
    nodes: [
      { id: 1, type: 'Image', widgets_values: ['one.png'] },
      { id: 2, type: 'Image', widgets_values: ['two.png'] },
      { id: 3, type: 'Latent', widgets_values: [64] },
      { id: 4, type: 'Blend', mode: MODE_BYPASS, inputs: blendInputs },
      { id: 5, type: 'Use', inputs: [{ name: 'x', type, link: 4 }] },
    ],
    links: [
      [1, 1, 0, 4, 0, 'IMAGE'],
      [2, 2, 0, 4, 1, 'IMAGE'],
      [3, 3, 0, 4, 2, 'LATENT'],
      [4, 4, slot, 5, 0, type],
    ],
  };
}

test("a bypassed node passes through the input at the link's slot when its type fits", () => {
  assert.deepEqual(convert(bypassed(1, 'IMAGE'))['5'].inputs, { x: ['2', 0] });
  assert.deepEqual(convert(bypassed(0, 'IMAGE'))['5'].inputs, { x: ['1', 0] });
});

test('otherwise it passes through the first linked input of the same type', () => {
  // output slot 2 is a LATENT... asked for as IMAGE: slot 2 (LATENT) does not fit, the first IMAGE input does
  assert.deepEqual(convert(bypassed(2, 'IMAGE'))['5'].inputs, { x: ['1', 0] });
  // output slot 0 asked for as LATENT: slot 0 is an IMAGE, the first LATENT input is `lat`
  assert.deepEqual(convert(bypassed(0, 'LATENT'))['5'].inputs, { x: ['3', 0] });
});

function sampler(extra: Partial<UiNode>, primitive: unknown[]): UiWorkflow {
  return {
    nodes: [
      { id: 7, type: 'PrimitiveNode', outputs: [{ name: 'INT', type: 'INT', links: [9] }], widgets_values: primitive },
      { id: 8, type: 'Sampler', widgets_values: [42, 'fixed', 4], ...extra },
    ],
    links: [[9, 7, 0, 8, 0, 'INT']],
  };
}

test('a converted widget is found by its widget name even when the slot is named otherwise', () => {
  const wf = sampler({ inputs: [{ name: 'seed (shared)', type: 'INT', link: 9, widget: { name: 'seed' } }] }, [5]);
  assert.deepEqual(convert(wf)['8'].inputs, { seed: 5, steps: 4 });
});

test('a primitive holding no value leaves the widget its own value', () => {
  const wf = sampler({ inputs: [{ name: 'seed', type: 'INT', link: 9, widget: { name: 'seed' } }] }, []);
  const inputs = convert(wf)['8'].inputs;
  assert.deepEqual(inputs, { seed: 42, steps: 4 });
  assert.ok(Object.values(inputs).every((v) => v !== undefined));
});

test("_meta.title is the node's title, else the class's display name, else its type", () => {
  const p = convert({
    nodes: [
      { id: 1, type: 'Image', title: 'My picture', widgets_values: ['a.png'] },
      { id: 2, type: 'Image', widgets_values: ['b.png'] },
      { id: 3, type: 'Latent', widgets_values: [8] },
    ],
    links: [],
  });
  assert.deepEqual(
    ['1', '2', '3'].map((id) => p[id]._meta.title),
    ['My picture', 'Image source', 'Latent'],
  );
});

test('an image upload companion after the image widget is skipped', () => {
  for (const companion of ['image', 'upload', null]) {
    const p = convert({ nodes: [{ id: 1, type: 'LoadMask', widgets_values: ['m.png', companion, 'red'] }], links: [] });
    assert.deepEqual(p['1'].inputs, { image: 'm.png', channel: 'red' }, `companion ${JSON.stringify(companion)}`);
  }
  // saved without the companion
  const p = convert({ nodes: [{ id: 1, type: 'LoadMask', widgets_values: ['m.png', 'green'] }], links: [] });
  assert.deepEqual(p['1'].inputs, { image: 'm.png', channel: 'green' });
  // a short array that holds the companion but not the last widget: the companion is not taken as `channel`
  const short = convert({ nodes: [{ id: 1, type: 'LoadMask', widgets_values: ['m.png', null] }], links: [] });
  assert.deepEqual(short['1'].inputs, { image: 'm.png' });
});

test('server schemas: forceInput takes no widgets_values slot; LoadImageMask skips its upload companion', () => {
  const scale: NodeDefinition = {
    id: 'Scale',
    displayName: 'Scale',
    category: 'test',
    description: '',
    outputNode: false,
    inputs: [
      { name: 'factor', type: 'INT', options: { forceInput: true } },
      { name: 'amount', type: 'FLOAT', options: {} },
    ],
    outputs: [{ type: 'INT', name: 'INT' }],
    execute: () => ({ outputs: [0] }),
  };
  const registry = createRegistry() as Registry<unknown>;
  registry.set('Scale', scale);
  const p = uiToApi(
    {
      nodes: [
        { id: 1, type: 'Scale', inputs: [{ name: 'factor', type: 'INT', link: null }], widgets_values: [0.5] },
        { id: 2, type: 'LoadImageMask', widgets_values: ['m.png', 'upload', 'red'] },
      ],
      links: [],
    },
    registry,
  );
  assert.deepEqual(p['1'].inputs, { amount: 0.5 });
  assert.deepEqual(p['2'].inputs, { image: 'm.png', channel: 'red' });
});
