/**
 * What validatePrompt hands the executor and where it draws the line, checked on its result directly: INT constants
 * are truncated like ComfyUI's int(value), FLOAT ones are kept, the strings "true"/"false" read as the booleans they
 * name, STRING takes text, numbers and booleans only, a link to the output index just past a node's last output is
 * a bad_linked_input naming node and input, dependent_outputs has no repeats, and a node id __proto__ is refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validatePrompt } from '../../server/executor/validate.js';
import type { Registry } from '../../server/executor/node-definition.js';
import type { Prompt } from '../../server/executor/prompt.js';
import { testNode } from './test-node.js';

const registry: Registry = new Map(
  [
    testNode({
      id: 'Pair', // two outputs, indices 0 and 1
      inputs: [
        { name: 'count', type: 'INT', options: { min: -10, max: 10 } },
        { name: 'scale', type: 'FLOAT', options: { min: -10, max: 10 } },
        { name: 'flag', type: 'BOOLEAN', options: {} },
        { name: 'label', type: 'STRING', options: {}, optional: true },
      ],
      outputs: [
        { type: 'NUM', name: 'A' },
        { type: 'NUM', name: 'B' },
      ],
    }),
    testNode({ id: 'Show', outputNode: true, inputs: [{ name: 'value', type: 'NUM', options: {} }], outputs: [] }),
    testNode({
      id: 'Join',
      inputs: [
        { name: 'a', type: 'NUM', options: {} },
        { name: 'b', type: 'NUM', options: {} },
      ],
      outputs: [{ type: 'NUM', name: 'NUM' }],
    }),
  ].map((d) => [d.id, d]),
);

const prompt = (pair: Record<string, unknown>, slot = 0): Prompt => ({
  p: { class_type: 'Pair', inputs: { count: 1, scale: 1, flag: true, ...pair } },
  s: { class_type: 'Show', inputs: { value: ['p', slot] } },
});

function constantsOf(pair: Record<string, unknown>) {
  const v = validatePrompt(prompt(pair), registry, {});
  assert.ok(v.ok, JSON.stringify(!v.ok && v.body));
  return v.constants.get('p')!;
}

test('INT constants are truncated like int(): 2.9 -> 2, -2.9 -> -2, "7" -> 7; FLOAT keeps its fraction', () => {
  assert.deepEqual(constantsOf({ count: 2.9, scale: 2.9 }), { count: 2, scale: 2.9, flag: true });
  assert.equal(constantsOf({ count: -2.9 }).count, -2);
  assert.equal(constantsOf({ count: '7' }).count, 7);
});

test('BOOLEAN: true/false and the strings "true"/"false" read as those booleans', () => {
  assert.equal(constantsOf({ flag: false }).flag, false);
  assert.equal(constantsOf({ flag: 'false' }).flag, false);
  assert.equal(constantsOf({ flag: 'true' }).flag, true);
});

test('STRING: numbers and booleans become their text; objects are invalid_input_type naming the input', () => {
  assert.equal(constantsOf({ label: 5 }).label, '5');
  assert.equal(constantsOf({ label: false }).label, 'false');
  const v = validatePrompt(prompt({ label: { text: 'x' } }), registry, {});
  assert.ok(!v.ok);
  const err = v.body.node_errors.p.errors[0];
  assert.deepEqual([err.type, err.extra_info.input_name], ['invalid_input_type', 'label']);
});

test('a link to the output index one past the last is bad_linked_input on that node and input', () => {
  assert.ok(validatePrompt(prompt({}, 1), registry, {}).ok, 'index 1 of 2 outputs is fine');
  const v = validatePrompt(prompt({}, 2), registry, {});
  assert.ok(!v.ok);
  const err = v.body.node_errors.s.errors[0];
  assert.equal(err.type, 'bad_linked_input');
  assert.equal(err.details, 'value');
  assert.match(err.message, /node p \(Pair\) has no output 2/);
});

test('an output reached twice from a failing node (a diamond) is listed once in dependent_outputs', () => {
  const v = validatePrompt(
    {
      p: { class_type: 'Pair', inputs: { count: 99, scale: 1, flag: true } },
      j: { class_type: 'Join', inputs: { a: ['p', 0], b: ['p', 1] } },
      s: { class_type: 'Show', inputs: { value: ['j', 0] } },
    },
    registry,
    {},
  );
  assert.ok(!v.ok);
  assert.deepEqual(v.body.node_errors.p.dependent_outputs, ['s']);
  assert.equal(v.body.node_errors.p.errors[0].type, 'value_bigger_than_max');
});

test('a node id "__proto__" is refused as invalid_prompt, not run under a key that vanishes from maps', () => {
  const p = JSON.parse(
    '{"__proto__": {"class_type": "Show", "inputs": {"value": ["1", 0]}}, "1": {"class_type": "Pair"}}',
  );
  const v = validatePrompt(p, registry, {});
  assert.ok(!v.ok);
  assert.equal(v.body.error.type, 'invalid_prompt');
  assert.equal(v.body.error.extra_info.node_id, '__proto__');
});
