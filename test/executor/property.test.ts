/**
 * Issue 10 point 6: property-based tests (fast-check) over the prompt validator and the workflow converter.
 * Random graphs and random values never make them throw anything but a conversion error, and over HTTP the server
 * always answers 200 or a 4xx in ComfyUI's error shape, and keeps serving.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { validatePrompt, executionOrder } from '../../server/executor/validate.js';
import { uiToApi, WorkflowConversionError } from '../../server/workflow/convert.js';
import { api, assertErrorShape } from '../server/protocol-client.js';
import { startStubServer, stubRegistry, type StubServer, type StubServices } from './stub-server.js';

const registry = stubRegistry();
const services: StubServices = {
  runs: new Map(),
  dirs: { output: '/nonexistent', input: '/nonexistent', temp: '/nonexistent' },
  slowDelayMs: 0,
};
const CLASSES = [...registry.keys(), 'Reroute', 'PrimitiveNode', 'Nope', '__proto__', 'constructor', 'toString'];
const INPUT_NAMES = [
  ...new Set([...registry.values()].flatMap((d) => d.inputs.map((i) => i.name))),
  '__proto__',
  'zzz',
];
const IDS = ['1', '2', '3', '4', '5', '6', '__proto__', 'constructor', ''];

const value = fc.oneof(
  fc.integer({ min: -5, max: 2000 }),
  fc.double(),
  fc.string({ maxLength: 8 }),
  fc.boolean(),
  fc.constant(null),
  fc.tuple(fc.constantFrom(...IDS), fc.integer({ min: -1, max: 3 })),
  fc.tuple(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 2 })),
  fc.record({ __value__: fc.array(fc.integer(), { maxLength: 3 }) }),
  fc.constantFrom('fast', 'slow', 'true', 'NaN', '1e400', 'explode', ''),
  fc.anything({ maxDepth: 2 }),
);
const promptNode = fc.record(
  {
    class_type: fc.oneof(fc.constantFrom(...CLASSES), fc.anything({ maxDepth: 1 })),
    inputs: fc.oneof(
      fc.dictionary(fc.constantFrom(...INPUT_NAMES), value, { maxKeys: 6 }),
      fc.anything({ maxDepth: 1 }),
    ),
  },
  { requiredKeys: ['class_type'] },
);
const prompt = fc.oneof(
  { weight: 8, arbitrary: fc.dictionary(fc.constantFrom(...IDS), promptNode, { maxKeys: 7 }) },
  { weight: 1, arbitrary: fc.anything({ maxDepth: 3 }) },
);

function checkValidation(p: unknown): void {
  const v = validatePrompt(p, registry, services);
  if (v.ok) {
    assert.ok(v.outputs.length > 0);
    const order = executionOrder(p as never, v.outputs);
    for (const o of v.outputs) assert.ok(order.includes(o));
    // sources come before the nodes that use them
    const pos = new Map(order.map((id, i) => [id, i]));
    for (const id of order)
      for (const inp of Object.values((p as Record<string, { inputs?: Record<string, unknown> }>)[id].inputs ?? {})) {
        if (Array.isArray(inp) && inp.length === 2 && Number.isInteger(inp[1]))
          assert.ok(pos.get(String(inp[0]))! < pos.get(id)!);
      }
  } else {
    assertErrorShape(v.body);
    const t = v.body.error.type;
    assert.ok(['invalid_prompt', 'prompt_no_outputs', 'prompt_outputs_failed_validation'].includes(t), t);
    if (t === 'prompt_outputs_failed_validation') assert.ok(Object.keys(v.body.node_errors).length > 0);
  }
}

test('the validator never throws on random prompts and always answers in ComfyUI shape', () => {
  fc.assert(
    fc.property(prompt, (p) => {
      checkValidation(JSON.parse(JSON.stringify(p ?? null) ?? 'null'));
    }),
    { numRuns: 3000 },
  );
});

test('the validator on random well-typed graphs: every accepted prompt orders sources first', () => {
  // graphs over the numeric stubs only, links to lower ids (some upward, making cycles)
  const node = (i: number) =>
    fc.oneof(
      fc.record({
        class_type: fc.constant('StubLoad'),
        inputs: fc.record({ value: fc.integer({ min: -2, max: 1002 }) }),
      }),
      fc.record({
        class_type: fc.constant('StubAdd'),
        inputs: fc.record({
          a: fc.tuple(fc.constant(String((i + 5) % 7)), fc.integer({ min: 0, max: 1 })),
          b: fc.integer({ min: -1001, max: 1001 }),
        }),
      }),
      fc.record({
        class_type: fc.constant('StubSave'),
        inputs: fc.record({
          x: fc.tuple(fc.integer({ min: 0, max: 6 }).map(String), fc.constant(0)),
          filename_prefix: fc.string(),
        }),
      }),
    );
  const graph = fc
    .tuple(...Array.from({ length: 7 }, (_, i) => node(i)))
    .map((ns) => Object.fromEntries(ns.map((n, i) => [String(i), n])));
  let accepted = 0;
  fc.assert(
    fc.property(graph, (g) => {
      checkValidation(g);
      if (validatePrompt(g, registry, services).ok) accepted++;
    }),
    { numRuns: 2000 },
  );
  assert.ok(accepted > 50, `enough valid graphs were generated (${accepted})`);
});

const uiNode = fc.record(
  {
    id: fc.oneof(fc.integer({ min: 0, max: 6 }), fc.constantFrom('1', 'x')),
    type: fc.oneof(fc.constantFrom(...CLASSES), fc.anything({ maxDepth: 0 })),
    mode: fc.constantFrom(0, 2, 4, 1, undefined, 'x'),
    order: fc.option(fc.integer({ min: 0, max: 9 })),
    inputs: fc.oneof(
      fc.array(
        fc.record(
          {
            name: fc.constantFrom(...INPUT_NAMES),
            type: fc.constantFrom('NUMBER', 'TEXT', '*', 'INT'),
            link: fc.option(fc.integer({ min: 0, max: 8 })),
            widget: fc.option(fc.record({ name: fc.constantFrom(...INPUT_NAMES) }), { nil: undefined }),
          },
          { requiredKeys: ['name', 'type', 'link'] },
        ),
        { maxLength: 4 },
      ),
      fc.anything({ maxDepth: 1 }),
    ),
    outputs: fc.array(fc.record({ name: fc.string(), type: fc.constantFrom('NUMBER', 'TEXT') }), { maxLength: 2 }),
    widgets_values: fc.oneof(
      fc.array(value, { maxLength: 5 }),
      fc.dictionary(fc.constantFrom(...INPUT_NAMES), value),
      fc.anything({ maxDepth: 1 }),
    ),
  },
  { requiredKeys: ['id', 'type'] },
);
const uiLink = fc.oneof(
  fc.tuple(
    fc.integer({ min: 0, max: 8 }),
    fc.integer({ min: 0, max: 6 }),
    fc.integer({ min: -1, max: 2 }),
    fc.integer({ min: 0, max: 6 }),
    fc.integer({ min: 0, max: 3 }),
    fc.constantFrom('NUMBER', 'TEXT', '*'),
  ),
  fc.record({
    id: fc.integer({ min: 0, max: 8 }),
    origin_id: fc.integer({ min: 0, max: 6 }),
    origin_slot: fc.integer({ min: 0, max: 2 }),
    target_id: fc.integer({ min: 0, max: 6 }),
    target_slot: fc.integer({ min: 0, max: 3 }),
    type: fc.constantFrom('NUMBER', 'TEXT'),
  }),
  fc.anything({ maxDepth: 1 }),
);
const workflow = fc.record({
  nodes: fc.array(fc.oneof({ weight: 9, arbitrary: uiNode }, { weight: 1, arbitrary: fc.anything({ maxDepth: 1 }) }), {
    maxLength: 8,
  }),
  links: fc.array(uiLink, { maxLength: 10 }),
});

test('the converter on random UI workflows returns a prompt or throws WorkflowConversionError, nothing else', () => {
  let converted = 0;
  fc.assert(
    fc.property(workflow, (wf) => {
      const w = JSON.parse(JSON.stringify(wf));
      let p;
      try {
        p = uiToApi(w, registry);
      } catch (e) {
        assert.ok(e instanceof WorkflowConversionError, `${(e as Error).stack}`);
        assert.equal(typeof e.type, 'string');
        return;
      }
      converted++;
      assert.ok(p && typeof p === 'object');
      for (const n of Object.values(p)) assert.ok(registry.has(n.class_type));
      checkValidation(p);
    }),
    { numRuns: 3000 },
  );
  assert.ok(converted > 100, `enough workflows converted (${converted})`);
});

let s: StubServer;
before(async () => {
  s = await startStubServer({ execute: false });
});
after(async () => {
  await s.stop();
});

test('over HTTP: random prompts and workflows get 200 or a 4xx in ComfyUI shape; the server keeps serving', async () => {
  await fc.assert(
    fc.asyncProperty(fc.oneof(prompt, workflow), fc.boolean(), async (p, asBody) => {
      const body = asBody ? JSON.stringify({ prompt: p }) : (JSON.stringify(p) ?? 'null');
      const r = await api(s.url, 'POST', '/prompt', body);
      assert.ok(r.status === 200 || (r.status >= 400 && r.status < 500), `${r.status} ${r.text.slice(0, 300)}`);
      if (r.status !== 200) assertErrorShape(r.json);
      else assert.equal(typeof r.json.prompt_id, 'string');
      const c = await api(s.url, 'POST', '/workflow/convert', JSON.stringify(p) ?? 'null');
      assert.ok(c.status === 200 || c.status === 400, `convert ${c.status} ${c.text.slice(0, 300)}`);
      if (c.status === 400) assertErrorShape(c.json);
    }),
    { numRuns: 300 },
  );
  await api(s.url, 'POST', '/queue', { clear: true });
  assert.equal((await api(s.url, 'GET', '/object_info/StubLoad')).status, 200);
});
