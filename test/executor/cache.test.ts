/**
 * The output cache and what the executor keys it by (cache.ts, execute.ts), on the real executor with small nodes:
 * a node re-runs exactly when its class, constants, fingerprint (IS_CHANGED) or the signature of what feeds it
 * (including which output slot) changes; key order does not matter; least-recently-used entries beyond the limit go,
 * never the latest prompt's; and an interrupt stops the prompt before the next node and between list runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Executor } from '../../server/executor/execute.js';
import { OutputCache, signatureOf, stableStringify } from '../../server/executor/cache.js';
import { validatePrompt } from '../../server/executor/validate.js';
import type { InputSpec, NodeDefinition, Registry } from '../../server/executor/node-definition.js';
import type { Prompt } from '../../server/executor/prompt.js';
import { testNode } from './test-node.js';

interface Services {
  /** what the Source node's fingerprint reads (stands for a file's content hash) */
  version: string;
  /** called when a node runs */
  onRun?: (id: string) => void;
}

const ran: string[] = [];
const int = (name: string): InputSpec => ({ name, type: 'INT', options: { default: 0, min: 0, max: 1000 } });
const num = (name: string): InputSpec => ({ name, type: 'NUM', options: {} });

function node(
  d: Pick<NodeDefinition<Services>, 'id' | 'inputs' | 'outputs' | 'execute'> & Partial<NodeDefinition<Services>>,
): NodeDefinition<Services> {
  return testNode(d, (_args, ctx) => {
    ran.push(ctx.nodeId);
    ctx.services.onRun?.(ctx.nodeId);
  });
}

const registry: Registry<Services> = new Map(
  [
    node({
      id: 'Source', // two outputs: value and 10 * value; its fingerprint is the services' version
      inputs: [int('value')],
      outputs: [
        { type: 'NUM', name: 'ONE' },
        { type: 'NUM', name: 'TEN' },
      ],
      fingerprint: (_a, s) => s.version,
      execute: ({ value }) => ({ outputs: [value, (value as number) * 10] }),
    }),
    node({
      id: 'Add',
      inputs: [num('x'), int('a'), int('b')],
      outputs: [{ type: 'NUM', name: 'NUM' }],
      execute: ({ x, a, b }) => ({ outputs: [(x as number) + (a as number) + (b as number)] }),
    }),
    node({
      id: 'Count', // 1..count as a list
      inputs: [int('count')],
      outputs: [{ type: 'NUM', name: 'NUM', isList: true }],
      execute: ({ count }) => ({ outputs: [Array.from({ length: count as number }, (_, i) => i + 1)] }),
    }),
    node({
      id: 'Show',
      outputNode: true,
      inputs: [num('value')],
      outputs: [],
      execute: ({ value }) => ({ outputs: [], ui: { values: [value] } }),
    }),
  ].map((d) => [d.id, d]),
);

function makeRunner(cache?: OutputCache) {
  const services: Services = { version: 'v1' };
  const executor = new Executor(registry, services, cache);
  const run = async (prompt: Prompt, signal = new AbortController().signal) => {
    const v = validatePrompt(prompt, registry, services);
    if (!v.ok) throw new Error(JSON.stringify(v.body));
    ran.length = 0;
    const r = await executor.run(
      { promptId: 'p', prompt, extraData: {}, outputs: v.outputs, constants: v.constants },
      { emit: () => {}, preview: () => {}, signal },
    );
    return { status: r.status, outputs: r.outputs, ran: [...ran].sort() };
  };
  return { services, executor, run };
}

/** source -> add -> show; `slot` picks which Source output feeds Add */
const chain = (o: { value?: number; a?: number; b?: number; slot?: number } = {}): Prompt => ({
  src: { class_type: 'Source', inputs: { value: o.value ?? 1 } },
  add: { class_type: 'Add', inputs: { x: ['src', o.slot ?? 0], a: o.a ?? 0, b: o.b ?? 0 } },
  show: { class_type: 'Show', inputs: { value: ['add', 0] } },
});

test('a node re-runs when the output slot it reads changes, even though its source is cached', async () => {
  const { run } = makeRunner();
  assert.deepEqual((await run(chain({ value: 3, slot: 0 }))).outputs.show, { values: [3] });
  const r = await run(chain({ value: 3, slot: 1 }));
  assert.deepEqual(r.ran, ['add', 'show']);
  assert.deepEqual(r.outputs.show, { values: [30] });
});

test("a changed fingerprint (ComfyUI's IS_CHANGED) re-runs the node and its dependents", async () => {
  const { run, services } = makeRunner();
  await run(chain());
  assert.deepEqual((await run(chain())).ran, []);
  services.version = 'v2';
  assert.deepEqual((await run(chain())).ran, ['add', 'show', 'src']);
});

test('inputs in another key order are the same signature: everything is cached', async () => {
  const { run } = makeRunner();
  await run(chain({ a: 1, b: 2 }));
  const reordered: Prompt = {
    show: { class_type: 'Show', inputs: { value: ['add', 0] } },
    add: { class_type: 'Add', inputs: { b: 2, a: 1, x: ['src', 0] } },
    src: { class_type: 'Source', inputs: { value: 1 } },
  };
  assert.deepEqual((await run(reordered)).ran, []);
  assert.equal(
    stableStringify({ b: [1, { d: 2, c: 3 }], a: null }),
    stableStringify({ a: null, b: [1, { c: 3, d: 2 }] }),
  );
});

test('signatures of distinct inputs do not collide', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 5000; i++) seen.add(signatureOf(['Add', { a: i }, {}, null]));
  assert.equal(seen.size, 5000);
});

test('under the limit an earlier prompt stays cached: A, B, then A again runs nothing', async () => {
  const { run } = makeRunner();
  await run(chain({ value: 1 }));
  await run(chain({ value: 2 }));
  assert.deepEqual((await run(chain({ value: 1 }))).ran, []);
});

test('beyond the limit the least recently used entries go, never those of the latest prompt', async () => {
  // 3 entries per chain prompt (src, add, show); a limit of 4 keeps the latest prompt's 3 and the newest older one
  const { run, executor } = makeRunner(new OutputCache(4));
  await run(chain({ value: 1 }));
  await run(chain({ value: 2 }));
  assert.equal(executor.cache.size, 4);
  // value 1's src and add were dropped, its show (same signature once src and add are recomputed) was kept
  assert.deepEqual((await run(chain({ value: 1 }))).ran, ['add', 'src']);
  assert.equal(executor.cache.size, 4);
  // a prompt bigger than the limit keeps all of its own entries
  const small = makeRunner(new OutputCache(1));
  await small.run(chain({ value: 5 }));
  assert.equal(small.executor.cache.size, 3);
  assert.deepEqual((await small.run(chain({ value: 5 }))).ran, []);
});

test('OutputCache: get refreshes an entry, trim drops the least recently used first and skips kept ones', () => {
  const c = new OutputCache(2);
  const v = { outputs: [] };
  c.set('a', v);
  c.set('b', v);
  c.set('c', v);
  assert.ok(c.get('a'));
  c.trim(new Set());
  assert.deepEqual(
    ['a', 'b', 'c'].filter((k) => c.has(k)),
    ['a', 'c'],
  );
  // 'c' is now the least recently used, but kept
  c.set('d', v);
  c.trim(new Set(['c']));
  assert.deepEqual(
    ['a', 'c', 'd'].filter((k) => c.has(k)),
    ['c', 'd'],
  );
});

test('an interrupt while a node runs stops the prompt before the next node', async () => {
  const { run, services } = makeRunner();
  const ac = new AbortController();
  // the source ignores interruption (it never calls checkInterrupted); the executor must check before `add`
  services.onRun = (id) => {
    if (id === 'src') ac.abort();
  };
  const r = await run(chain({ value: 7 }), ac.signal);
  assert.equal(r.status, 'interrupted');
  assert.deepEqual(r.ran, ['src']);
});

test('an interrupt during a list run stops the remaining runs of that node', async () => {
  const { run, services } = makeRunner();
  const ac = new AbortController();
  let adds = 0;
  services.onRun = (id) => {
    if (id === 'add' && ++adds === 2) ac.abort();
  };
  const r = await run(
    {
      c: { class_type: 'Count', inputs: { count: 5 } },
      add: { class_type: 'Add', inputs: { x: ['c', 0], a: 0, b: 0 } },
      show: { class_type: 'Show', inputs: { value: ['add', 0] } },
    },
    ac.signal,
  );
  assert.equal(r.status, 'interrupted');
  assert.equal(adds, 2);
});
