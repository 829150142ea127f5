/** UI -> API: a widget input linked from a PrimitiveNode takes its value; linked from a muted node, the widget's own. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { uiToApi, type UiWorkflow } from '../../server/workflow/convert.js';
import { createRegistry } from '../../nodes/index.js';

function workflow(primitiveMode: number): UiWorkflow {
  return {
    nodes: [
      {
        id: 1,
        type: 'PrimitiveNode',
        mode: primitiveMode,
        outputs: [{ name: 'INT', type: 'INT', links: [1] }],
        widgets_values: [777, 'fixed'],
      },
      { id: 2, type: 'SamplerTCD', mode: 0, inputs: [], widgets_values: [0.3] },
      {
        id: 3,
        type: 'KSampler',
        mode: 0,
        inputs: [{ name: 'seed', type: 'INT', link: 1, widget: { name: 'seed' } }],
        widgets_values: [42, 'randomize', 4, 1, 'tcd', 'normal', 1],
      },
    ],
    links: [[1, 1, 0, 3, 0, 'INT']],
  };
}

test('a seed driven by a PrimitiveNode takes the primitive value', () => {
  const p = uiToApi(workflow(0), createRegistry());
  assert.equal(p['3'].inputs.seed, 777);
  assert.equal(p['3'].inputs.steps, 4);
  assert.equal(p['3'].inputs.sampler_name, 'tcd');
});

test('a seed whose driving node is muted keeps the widget value', () => {
  const p = uiToApi(workflow(2), createRegistry());
  assert.equal(p['3'].inputs.seed, 42);
  assert.equal(p['3'].inputs.denoise, 1);
});
