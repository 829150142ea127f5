/**
 * ComfyUI's list execution in the executor, with small test nodes: a node downstream of a list output runs once per
 * item (widgets repeat; a shorter list repeats its last item), its outputs gather as lists, an output node's UI
 * outputs are concatenated into one `executed` event, an INPUT_IS_LIST node runs once with whole lists (widgets as
 * lists of one), a list output of an INPUT_IS_LIST node feeds the next node item by item, cached lists are reused,
 * and object_info reports is_input_list / output_is_list like ComfyUI.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Executor } from '../../server/executor/execute.js';
import { validatePrompt } from '../../server/executor/validate.js';
import type { InputSpec, NodeDefinition, Registry } from '../../server/executor/node-definition.js';
import { testNode } from './test-node.js';
import { objectInfoFor } from '../../server/executor/object-info.js';
import type { Prompt } from '../../server/executor/prompt.js';
import type { ServerEvent } from '../../protocol/events.js';

const calls: { node: string; args: Record<string, unknown> }[] = [];
const num = (name: string): InputSpec => ({ name, type: 'NUM', options: {} });
const int = (name: string): InputSpec => ({ name, type: 'INT', options: { default: 1, min: 0, max: 100, step: 1 } });

function node(d: Partial<NodeDefinition> & Pick<NodeDefinition, 'id' | 'inputs' | 'outputs'>): NodeDefinition {
  return testNode(d, (args) => calls.push({ node: d.id, args }));
}

const registry: Registry = new Map(
  [
    node({
      id: 'Count', // 1..count as a list
      inputs: [int('count')],
      outputs: [{ type: 'NUM', name: 'NUM', isList: true }],
      execute: ({ count }) => ({ outputs: [Array.from({ length: count as number }, (_, i) => i + 1)] }),
    }),
    node({
      id: 'Scale',
      inputs: [num('x'), int('factor')],
      outputs: [{ type: 'NUM', name: 'NUM' }],
      execute: ({ x, factor }) => ({ outputs: [(x as number) * (factor as number)] }),
    }),
    node({
      id: 'Pair',
      inputs: [num('a'), num('b')],
      outputs: [{ type: 'NUM', name: 'NUM' }],
      execute: ({ a, b }) => ({ outputs: [(a as number) * 100 + (b as number)] }),
    }),
    node({
      id: 'Sum', // INPUT_IS_LIST: one run, whole lists
      inputIsList: true,
      inputs: [num('x'), int('add')],
      outputs: [{ type: 'NUM', name: 'NUM' }],
      execute: ({ x, add }) => ({
        outputs: [(x as number[]).reduce((s, v) => s + v, 0) + (add as number[]).reduce((s, v) => s + v, 0)],
      }),
    }),
    node({
      id: 'Chunk', // INPUT_IS_LIST and OUTPUT_IS_LIST: regroups the list into sums of `size` items
      inputIsList: true,
      inputs: [num('x'), int('size')],
      outputs: [{ type: 'NUM', name: 'NUM', isList: true }],
      execute: ({ x, size }) => {
        const xs = x as number[],
          n = (size as number[])[0];
        const out: number[] = [];
        for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n).reduce((s, v) => s + v, 0));
        return { outputs: [out] };
      },
    }),
    node({
      id: 'Show',
      outputNode: true,
      inputs: [num('value')],
      outputs: [],
      execute: ({ value }) => ({ outputs: [], ui: { values: [value], text: [`v=${value}`] } }),
    }),
  ].map((d) => [d.id, d]),
);

const executor = new Executor(registry, {});

async function run(prompt: Prompt) {
  const v = validatePrompt(prompt, registry, {});
  if (!v.ok) throw new Error(JSON.stringify(v.body));
  calls.length = 0;
  const events: ServerEvent[] = [];
  const r = await executor.run(
    { promptId: 'p', prompt, extraData: {}, outputs: v.outputs, constants: v.constants },
    { emit: (e) => events.push(e), preview: () => {}, signal: new AbortController().signal },
  );
  const err = events.find((e) => e.type === 'execution_error');
  if (err) throw new Error(JSON.stringify(err.data));
  return { r, events, calls: [...calls] };
}

const runsOf = (c: { node: string }[], id: string) => c.filter((x) => x.node === id).length;

test('a node after a list output runs once per item; an output node gets its UI merged in one event', async () => {
  const {
    r,
    events,
    calls: c,
  } = await run({
    c: { class_type: 'Count', inputs: { count: 3 } },
    s: { class_type: 'Scale', inputs: { x: ['c', 0], factor: 10 } },
    o: { class_type: 'Show', inputs: { value: ['s', 0] } },
  });
  assert.equal(runsOf(c, 'Count'), 1);
  assert.equal(runsOf(c, 'Scale'), 3);
  assert.deepEqual(
    c.filter((x) => x.node === 'Scale').map((x) => x.args),
    [1, 2, 3].map((x) => ({ x, factor: 10 })),
  );
  assert.equal(runsOf(c, 'Show'), 3);
  assert.deepEqual(r.outputs.o, { values: [10, 20, 30], text: ['v=10', 'v=20', 'v=30'] });
  const executed = events.filter((e) => e.type === 'executed');
  assert.equal(executed.length, 1);
  assert.deepEqual((executed[0].data as { output: unknown }).output, r.outputs.o);
  assert.equal(events.filter((e) => e.type === 'executing' && (e.data as { node: string }).node === 's').length, 1);

  // the same prompt again: every list comes from the cache, nothing runs, the merged UI is reported again
  const again = await run({
    c: { class_type: 'Count', inputs: { count: 3 } },
    s: { class_type: 'Scale', inputs: { x: ['c', 0], factor: 10 } },
    o: { class_type: 'Show', inputs: { value: ['s', 0] } },
  });
  assert.equal(again.calls.length, 0);
  assert.deepEqual(again.r.outputs.o, { values: [10, 20, 30], text: ['v=10', 'v=20', 'v=30'] });
});

test('lists of different lengths: the longest sets the runs, a shorter list repeats its last item', async () => {
  const { r } = await run({
    a: { class_type: 'Count', inputs: { count: 3 } },
    b: { class_type: 'Count', inputs: { count: 2 } },
    p: { class_type: 'Pair', inputs: { a: ['a', 0], b: ['b', 0] } },
    o: { class_type: 'Show', inputs: { value: ['p', 0] } },
  });
  assert.deepEqual(r.outputs.o.values, [101, 202, 302]);
});

test('an INPUT_IS_LIST node runs once with whole lists; widgets arrive as lists of one', async () => {
  const { r, calls: c } = await run({
    c: { class_type: 'Count', inputs: { count: 4 } },
    s: { class_type: 'Sum', inputs: { x: ['c', 0], add: 5 } },
    o: { class_type: 'Show', inputs: { value: ['s', 0] } },
  });
  assert.deepEqual(c.find((x) => x.node === 'Sum')!.args, { x: [1, 2, 3, 4], add: [5] });
  assert.deepEqual(r.outputs.o.values, [15]);
  // a plain (non-list) output feeds an INPUT_IS_LIST node as a list of one
  const one = await run({
    s1: { class_type: 'Scale', inputs: { x: ['c', 0], factor: 2 } },
    c: { class_type: 'Count', inputs: { count: 1 } },
    s: { class_type: 'Sum', inputs: { x: ['s1', 0], add: 0 } },
    o: { class_type: 'Show', inputs: { value: ['s', 0] } },
  });
  assert.deepEqual(one.r.outputs.o.values, [2]);
});

test('a list output of an INPUT_IS_LIST node is mapped over downstream, item by item', async () => {
  const { r, calls: c } = await run({
    c: { class_type: 'Count', inputs: { count: 5 } },
    k: { class_type: 'Chunk', inputs: { x: ['c', 0], size: 2 } },
    s: { class_type: 'Scale', inputs: { x: ['k', 0], factor: 1 } },
    o: { class_type: 'Show', inputs: { value: ['s', 0] } },
  });
  assert.equal(runsOf(c, 'Chunk'), 1);
  assert.equal(runsOf(c, 'Scale'), 3);
  assert.deepEqual(r.outputs.o.values, [3, 7, 5]);
});

test('an empty list input fails naming the input', async () => {
  await assert.rejects(
    run({
      c: { class_type: 'Count', inputs: { count: 0 } },
      s: { class_type: 'Scale', inputs: { x: ['c', 0], factor: 1 } },
      o: { class_type: 'Show', inputs: { value: ['s', 0] } },
    }),
    /input \\"x\\" received an empty list/,
  );
});

test('object_info reports is_input_list and output_is_list as ComfyUI does', () => {
  const sum = objectInfoFor(registry.get('Sum')!) as Record<string, unknown>;
  const count = objectInfoFor(registry.get('Count')!) as Record<string, unknown>;
  assert.equal(sum.is_input_list, true);
  assert.deepEqual(sum.output_is_list, [false]);
  assert.equal(count.is_input_list, false);
  assert.deepEqual(count.output_is_list, [true]);
  // ComfyUI's key order: input, input_order, is_input_list, output, output_is_list, ...
  assert.deepEqual(Object.keys(sum).slice(0, 5), ['input', 'input_order', 'is_input_list', 'output', 'output_is_list']);
});
