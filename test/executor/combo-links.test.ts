/**
 * Links into a COMBO input, as ComfyUI's validate_inputs judges them (validate_node_input on the output's type and
 * the input's choice list): a STRING output is a return_type_mismatch naming the input, the received type and the
 * linked node, since its text may be no choice at all; an output typed COMBO or '*' is taken, as is a constant choice.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validatePrompt } from '../../server/executor/validate.js';
import type { Registry } from '../../server/executor/node-definition.js';
import type { Prompt } from '../../server/executor/prompt.js';
import { testNode } from './test-node.js';

const registry: Registry = new Map(
  [
    testNode({ id: 'Text', inputs: [], outputs: [{ type: 'STRING', name: 'STRING' }] }),
    testNode({ id: 'Picker', inputs: [], outputs: [{ type: 'COMBO', name: 'COMBO' }] }),
    testNode({ id: 'Anything', inputs: [], outputs: [{ type: '*', name: '*' }] }),
    testNode({
      id: 'Sampler',
      outputNode: true,
      inputs: [{ name: 'sampler_name', type: 'COMBO', options: {}, choices: ['euler', 'tcd'] }],
      outputs: [],
    }),
  ].map((d) => [d.id, d]),
);

/** Node s (a Sampler) with sampler_name set to `value`, fed by node src of class `source`. */
const prompt = (source: string, value: unknown = ['src', 0]): Prompt => ({
  src: { class_type: source, inputs: {} },
  s: { class_type: 'Sampler', inputs: { sampler_name: value } },
});

test('a STRING output linked into a COMBO input is a return_type_mismatch naming input, type and linked node', () => {
  const v = validatePrompt(prompt('Text'), registry, {});
  assert.ok(!v.ok, 'ComfyUI refuses STRING -> COMBO at validation');
  assert.equal(v.body.error.type, 'prompt_outputs_failed_validation');
  const node = v.body.node_errors.s;
  assert.equal(node.class_type, 'Sampler');
  assert.deepEqual(node.dependent_outputs, ['s']);
  assert.equal(node.errors.length, 1);
  const [e] = node.errors;
  assert.equal(e.type, 'return_type_mismatch');
  assert.equal(e.message, 'Return type mismatch between linked nodes');
  assert.match(e.details, /^sampler_name, received_type\(STRING\) mismatch input_type\(COMBO\)$/);
  assert.equal(e.extra_info.input_name, 'sampler_name');
  assert.equal(e.extra_info.received_type, 'STRING');
  assert.deepEqual(e.extra_info.linked_node, ['src', 0]);
});

test("an output typed COMBO or '*' is accepted into a COMBO input, as is a constant choice", () => {
  for (const source of ['Picker', 'Anything']) {
    const v = validatePrompt(prompt(source), registry, {});
    assert.ok(v.ok, `${source}: ${JSON.stringify(!v.ok && v.body)}`);
  }
  const constant = validatePrompt(prompt('Text', 'tcd'), registry, {});
  assert.ok(constant.ok, JSON.stringify(!constant.ok && constant.body));
  assert.equal(constant.constants.get('s')!.sampler_name, 'tcd');
});
