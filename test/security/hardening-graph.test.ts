/**
 * Issue 18 finding 4: prompts and UI workflows shaped to make validation or conversion super-linear used to hold the
 * event loop for tens of seconds. Each attack now gets its answer quickly while a queued prompt completes, and a
 * prompt over the node limit is refused outright.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnStubServer, quick, queueWitness, assertAliveAndWhole, type ChildServer } from './child-harness.js';
import { MAX_PROMPT_NODES, MAX_DEPENDENT_OUTPUTS } from '../../server/executor/validate.js';

let s: ChildServer;
before(async () => {
  s = await spawnStubServer();
});
after(async () => {
  await s.stop();
});

/** A chain of `n` StubAdd nodes over a failing StubLoad, with a StubSave output on every chain node. */
function failingChain(n: number): Record<string, unknown> {
  const p: Record<string, unknown> = { l: { class_type: 'StubLoad', inputs: { value: -5 } } };
  for (let i = 0; i < n; i++) {
    p[`a${i}`] = { class_type: 'StubAdd', inputs: { a: [i === 0 ? 'l' : `a${i - 1}`, 0], b: 1 } };
    p[`s${i}`] = { class_type: 'StubSave', inputs: { x: [`a${i}`, 0], filename_prefix: 'x' } };
  }
  return p;
}

test('finding 4: 6,000 failing outputs over a 6,000-node chain get their 400 within seconds', async () => {
  const witness = await queueWitness(s.url);
  const r = await quick(s.url, 'POST', '/prompt', { prompt: failingChain(6000) }, {}, 5000);
  assert.equal(r.status, 400);
  assert.equal(r.json.error.type, 'prompt_outputs_failed_validation');
  const root = r.json.node_errors.l;
  assert.equal(root.errors[0].type, 'value_smaller_than_min');
  assert.equal(root.dependent_outputs.length, MAX_DEPENDENT_OUTPUTS, 'listed up to the cap');
  assert.deepEqual(root.dependent_outputs.slice(0, 3), ['s0', 's1', 's2'], 'in prompt order');
  await assertAliveAndWhole(s, witness);
});

test('finding 4: every chain node failing (6,000 error nodes) still answers within seconds', async () => {
  const p = failingChain(6000) as Record<string, { inputs: Record<string, unknown> }>;
  for (let i = 0; i < 6000; i++) p[`a${i}`].inputs.b = 'not a number';
  const witness = await queueWitness(s.url);
  const r = await quick(s.url, 'POST', '/prompt', { prompt: p }, {}, 8000);
  assert.equal(r.status, 400);
  assert.equal(Object.keys(r.json.node_errors).length, 6001);
  assert.deepEqual(r.json.node_errors.a5999.dependent_outputs, ['s5999']);
  await assertAliveAndWhole(s, witness);
});

/** UI workflow: StubLoad -> `reroutes` Reroutes -> `consumers` StubAdd nodes all fed by the last Reroute. */
function rerouteWorkflow(reroutes: number, consumers: number) {
  const nodes: unknown[] = [
    {
      id: 1,
      type: 'StubLoad',
      inputs: [],
      outputs: [{ name: 'NUMBER', type: 'NUMBER', links: [1] }],
      widgets_values: [1],
    },
  ];
  const links: unknown[] = [[1, 1, 0, 2, 0, 'NUMBER']];
  for (let i = 0; i < reroutes; i++) {
    const id = 2 + i;
    nodes.push({
      id,
      type: 'Reroute',
      inputs: [{ name: '', type: '*', link: 1 + i }],
      outputs: [{ name: '', type: 'NUMBER', links: [2 + i] }],
    });
    if (i < reroutes - 1) links.push([2 + i, id, 0, id + 1, 0, 'NUMBER']);
  }
  const last = 1 + reroutes;
  for (let j = 0; j < consumers; j++) {
    const id = 10_000_000 + j,
      link = 5_000_000 + j;
    nodes.push({
      id,
      type: 'StubAdd',
      inputs: [{ name: 'a', type: 'NUMBER', link }],
      outputs: [],
      widgets_values: [2],
    });
    links.push([link, last, 0, id, 0, 'NUMBER']);
  }
  return { nodes, links, version: 0.4 };
}

test('finding 4: a 3,000-Reroute chain feeding 15,000 inputs converts within seconds', async () => {
  const witness = await queueWitness(s.url);
  const r = await quick(s.url, 'POST', '/workflow/convert', rerouteWorkflow(3000, 15000), {}, 5000);
  assert.equal(r.status, 200, r.text.slice(0, 300));
  assert.equal(Object.keys(r.json.prompt).length, 15001);
  assert.deepEqual(r.json.prompt['10014999'].inputs.a, ['1', 0], 'resolved through all 3,000 reroutes');
  await assertAliveAndWhole(s, witness);
});

test('finding 4: more nodes than the limit is a 400 naming the limit, for prompts and UI workflows', async () => {
  const witness = await queueWitness(s.url);
  const big: Record<string, unknown> = {};
  for (let i = 0; i <= MAX_PROMPT_NODES; i++) big[i] = { class_type: 'StubLoad', inputs: { value: 1 } };
  const r = await quick(s.url, 'POST', '/prompt', { prompt: big }, {}, 5000);
  assert.equal(r.status, 400);
  assert.match(r.json.error.message, new RegExp(`at most ${MAX_PROMPT_NODES}`));
  const ui = rerouteWorkflow(10, MAX_PROMPT_NODES);
  const c = await quick(s.url, 'POST', '/workflow/convert', ui, {}, 5000);
  assert.equal(c.status, 400);
  assert.match(c.json.error.message, new RegExp(`at most ${MAX_PROMPT_NODES}`));
  await assertAliveAndWhole(s, witness);
});
