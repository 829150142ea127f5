/**
 * The one UI -> API converter (protocol/workflow/ui-to-api.ts) gives the same prompt whether its schema comes from the
 * server's node definitions (what uiToApi uses) or from the server's own /object_info JSON (what the editor uses),
 * on every workflow in workflows/ and on variants of them (each node muted or bypassed, each widget driven by a
 * primitive, a reroute on each link); plus the rules where the two former converters used to differ.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createRegistry } from '../../nodes/index.js';
import { objectInfo } from '../../server/executor/object-info.js';
import { makeServices } from '../../server/host.js';
import { ModelFolders } from '../../server/storage/model-folders.js';
import { schemaFromDefinition, uiToApi } from '../../server/workflow/convert.js';
import {
  uiWorkflowToPrompt,
  WorkflowConversionError,
  type SchemaLookup,
  type UiWorkflow,
} from '../../protocol/workflow/ui-to-api.js';
import { schemaFromObjectInfo, workflowToPrompt } from '../../client/graph/to-api.js';
import type { ObjectInfo, Workflow } from '../../client/graph/types.js';
import { PROJECT, tempDirs } from '../cli/run-cli.js';

const registry = createRegistry();
const dirs = tempDirs('tcd-ui-to-api-');
after(() => rmSync(dirs.root, { recursive: true, force: true }));
const services = makeServices(
  new ModelFolders(dirs.models),
  { output: dirs.output, input: dirs.input, temp: dirs.temp },
  { dataDir: dirs.data, log: () => {} },
  false,
);
/** GET /object_info as the client receives it. */
const info = JSON.parse(JSON.stringify(objectInfo(registry, services))) as ObjectInfo;
const fromDefinitions: SchemaLookup = (t) => {
  const d = registry.get(t);
  return d && schemaFromDefinition(d);
};
const fromObjectInfo = schemaFromObjectInfo(info);

const files = readdirSync(join(PROJECT, 'workflows'))
  .filter((f) => f.endsWith('.json'))
  .sort();
const load = (f: string) => JSON.parse(readFileSync(join(PROJECT, 'workflows', f), 'utf8')) as UiWorkflow;

/** The workflow itself and variants that exercise mute, bypass, reroutes and converted widgets. */
function variants(f: string): [string, UiWorkflow][] {
  const wf = load(f);
  const out: [string, UiWorkflow][] = [[f, wf]];
  for (const n of wf.nodes)
    for (const mode of [2, 4]) {
      const w = structuredClone(wf);
      w.nodes.find((x) => x.id === n.id)!.mode = mode;
      out.push([`${f}: node ${n.id} mode ${mode}`, w]);
    }
  for (const l of wf.links as number[][]) {
    const w = structuredClone(wf);
    w.nodes.push({
      id: 900,
      type: 'Reroute',
      inputs: [{ name: '', type: '*', link: 901 }],
      outputs: [{ name: '', type: String(l[5]), links: [l[0]] }],
    });
    const link = (w.links as (number | string)[][]).find((x) => x[0] === l[0])!;
    w.links.push([901, link[1] as number, link[2] as number, 900, 0, String(l[5])]);
    link[1] = 900;
    link[2] = 0;
    out.push([`${f}: reroute on link ${l[0]}`, w]);
  }
  for (const n of wf.nodes)
    for (const input of fromDefinitions(n.type)?.inputs ?? []) {
      if (!input.widget) continue;
      const w = structuredClone(wf);
      const node = w.nodes.find((x) => x.id === n.id)!;
      w.nodes.push({
        id: 950,
        type: 'PrimitiveNode',
        outputs: [{ name: 'x', type: '*', links: [951] }],
        widgets_values: [input.name.includes('seed') ? 1234 : 'from-primitive', 'fixed'],
      });
      (node.inputs ??= []).push({ name: input.name, type: '*', link: 951, widget: { name: input.name } });
      w.links.push([951, 950, 0, n.id as number, node.inputs.length - 1, '*']);
      out.push([`${f}: node ${n.id} ${input.name} from a primitive`, w]);
    }
  return out;
}

test('workflows/ is not empty and every object_info class is one of the definitions', () => {
  assert.ok(files.length >= 5, files.join());
  assert.deepEqual(Object.keys(info).sort(), [...registry.keys()].sort());
});

for (const f of files) {
  test(`${f}: definitions and /object_info give the same prompt, strict and lenient, on ${variants(f).length} variants`, () => {
    for (const [name, wf] of variants(f)) {
      const defs = uiWorkflowToPrompt(structuredClone(wf), fromDefinitions, { strict: true });
      assert.deepEqual(uiWorkflowToPrompt(structuredClone(wf), fromObjectInfo, { strict: true }), defs, name);
      assert.deepEqual(uiWorkflowToPrompt(structuredClone(wf), fromObjectInfo, { strict: false }), defs, name);
      // the adapters the server and the editor call are the same function over those schemas
      assert.deepEqual(uiToApi(structuredClone(wf), registry), defs, name);
      assert.deepEqual(workflowToPrompt(structuredClone(wf) as unknown as Workflow, info), defs, name);
      // and there is something to compare: every active real node is in the prompt
      const active = wf.nodes.filter((n) => registry.has(n.type) && n.mode !== 2 && n.mode !== 4);
      assert.deepEqual(Object.keys(defs).sort(), active.map((n) => String(n.id)).sort(), name);
    }
  });
}

test('the comparison notices a schema that reads widgets_values differently', () => {
  const wf = load('tcd-sdxl-txt2img.json');
  const noControl: SchemaLookup = (t) => {
    const s = fromDefinitions(t);
    return s && { ...s, inputs: s.inputs.map((i) => ({ ...i, controlAfterGenerate: false })) };
  };
  assert.notDeepEqual(
    uiWorkflowToPrompt(wf, noControl, { strict: true }),
    uiWorkflowToPrompt(wf, fromDefinitions, { strict: true }),
  );
});

// Small graphs over one made-up class, for the rules the two former converters did not share.
const schema: SchemaLookup = (t) =>
  t === 'Take'
    ? {
        displayName: 'Take',
        inputs: [
          { name: 'x', widget: false },
          { name: 'n', widget: true, controlAfterGenerate: true },
          { name: 'k', widget: true },
        ],
      }
    : undefined;
const take = (inputs: UiWorkflow['nodes'][number]['inputs'], extra = {}) => ({
  id: 2,
  type: 'Take',
  inputs,
  widgets_values: [5, 'fixed', 'kk'],
  ...extra,
});

test('a loop through reroutes throws when strict and drops the link when lenient; a long chain resolves', () => {
  const loop: UiWorkflow = {
    nodes: [
      { id: 10, type: 'Reroute', inputs: [{ name: '', type: '*', link: 2 }] },
      { id: 11, type: 'Reroute', inputs: [{ name: '', type: '*', link: 1 }] },
      take([{ name: 'x', type: 'A', link: 1 }]),
    ],
    links: [
      [1, 10, 0, 11, 0, '*'],
      [2, 11, 0, 10, 0, '*'],
    ],
  };
  assert.throws(
    () => uiWorkflowToPrompt(loop, schema, { strict: true }),
    (e) => e instanceof WorkflowConversionError && e.type === 'dependency_cycle',
  );
  assert.deepEqual(uiWorkflowToPrompt(loop, schema, { strict: false })['2'].inputs, { n: 5, k: 'kk' });
  // 100 reroutes in a row: no loop, so no error (the server used to stop at 64)
  const chain: UiWorkflow = {
    nodes: [{ id: 1, type: 'Src' }, take([{ name: 'x', type: 'A', link: 100 }])],
    links: [[0, 1, 3, 1000, 0, 'A']],
  };
  for (let i = 0; i < 100; i++) {
    chain.nodes.push({ id: 1000 + i, type: 'Reroute', inputs: [{ name: '', type: '*', link: i }] });
    chain.links.push([i + 1, 1000 + i, 0, i === 99 ? 2 : 1001 + i, 0, 'A']);
  }
  assert.deepEqual(
    uiWorkflowToPrompt(chain, (t) => (t === 'Src' ? { inputs: [] } : schema(t)), { strict: true })['2'].inputs.x,
    ['1', 3],
  );
});

test('a primitive array value is wrapped, a bypassed node passes a "*" link through, strict refuses unknown classes', () => {
  const wf: UiWorkflow = {
    nodes: [
      { id: 1, type: 'PrimitiveNode', widgets_values: [[1, 2]] },
      { id: 3, type: 'Src' },
      { id: 4, type: 'Mid', mode: 4, inputs: [{ name: 'in', type: 'A', link: 3 }] },
      take([
        { name: 'x', type: 'A', link: 4 },
        { name: 'k', type: 'STRING', link: 1, widget: { name: 'k' } },
        { name: 'dyn', type: 'B', link: 3 },
      ]),
    ],
    links: [
      [1, 1, 0, 2, 1, '*'],
      [3, 3, 0, 4, 0, 'A'],
      [4, 4, 0, 2, 0, '*'],
    ],
  };
  const lookup: SchemaLookup = (t) => (t === 'Src' ? { inputs: [] } : schema(t));
  const strict = uiWorkflowToPrompt(structuredClone(wf), lookup, { strict: true });
  assert.deepEqual(strict['2'], {
    class_type: 'Take',
    inputs: { x: ['3', 0], n: 5, k: { __value__: [1, 2] } },
    _meta: { title: 'Take' },
  });
  // lenient: the undeclared linked input travels so the server can judge it
  assert.deepEqual(uiWorkflowToPrompt(structuredClone(wf), lookup, { strict: false })['2'].inputs.dyn, ['3', 0]);
  assert.throws(
    () => uiWorkflowToPrompt(structuredClone(wf), schema, { strict: true }),
    (e) => e instanceof WorkflowConversionError && /Src/.test(e.message),
  );
  assert.deepEqual(uiWorkflowToPrompt(structuredClone(wf), schema, { strict: false })['3'], {
    class_type: 'Src',
    inputs: {},
    _meta: { title: 'Src' },
  });
});
