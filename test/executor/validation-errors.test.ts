/**
 * One test per ComfyUI validation error type, through POST /prompt on the real server: status 400 and ComfyUI's
 * JSON shape `{error:{type,message,details,extra_info}, node_errors:{id:{errors,dependent_outputs,class_type}}}`.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { api, assertErrorShape } from '../server/protocol-client.js';
import { startStubServer, type StubServer } from './stub-server.js';

let s: StubServer;
before(async () => {
  s = await startStubServer({ execute: false });
});
after(async () => {
  await s.stop();
});

async function post(body: unknown) {
  const r = await api(s.url, 'POST', '/prompt', body);
  assertErrorShape(r.json);
  assert.equal(r.status, 400, JSON.stringify(r.json));
  return r.json;
}

const save = (x: unknown) => ({ class_type: 'StubSave', inputs: { x, filename_prefix: 'v' } });
const load = (value: unknown = 1) => ({ class_type: 'StubLoad', inputs: { value } });
/** A prompt whose output is valid except for node 2 (a StubCheck with the given inputs). */
const check = (inputs: Record<string, unknown>) => ({
  prompt: {
    '1': load(),
    '2': { class_type: 'StubCheck', inputs: { x: ['1', 0], f: 0.5, mode: 'fast', flag: true, ...inputs } },
    '3': save(['2', 0]),
  },
});

/** The node-level error: top type prompt_outputs_failed_validation, the item in node_errors[node]. */
async function nodeError(body: unknown, node: string) {
  const b = await post(body);
  assert.equal(b.error.type, 'prompt_outputs_failed_validation');
  assert.equal(b.error.message, 'Prompt outputs failed validation');
  assert.ok(b.node_errors[node], `node_errors has ${node}: ${JSON.stringify(b.node_errors)}`);
  assert.ok(b.node_errors[node].dependent_outputs.length > 0);
  return b.node_errors[node].errors[0];
}

test('no_prompt: a body without prompt', async () => {
  assert.equal((await post({ client_id: 'x' })).error.type, 'no_prompt');
  assert.equal((await post({ prompt: null })).error.type, 'no_prompt');
});

test('invalid_prompt: unknown class, missing class_type, prompt not an object', async () => {
  const a = await post({ prompt: { '1': { class_type: 'NoSuchNode', inputs: {} } } });
  assert.equal(a.error.type, 'invalid_prompt');
  assert.match(a.error.message, /NoSuchNode/);
  assert.deepEqual(a.node_errors, {});
  assert.equal((await post({ prompt: { '1': { inputs: {} } } })).error.type, 'invalid_prompt');
  assert.equal((await post({ prompt: [1, 2] })).error.type, 'invalid_prompt');
  assert.equal((await post({ prompt: 'text' })).error.type, 'invalid_prompt');
  assert.equal((await post({ prompt: { '1': { class_type: 'StubLoad', inputs: [1] } } })).error.type, 'invalid_prompt');
});

test('prompt_no_outputs: no output node', async () => {
  const b = await post({ prompt: { '1': load() } });
  assert.equal(b.error.type, 'prompt_no_outputs');
  assert.deepEqual(b.node_errors, {});
});

test('required_input_missing', async () => {
  const e = await nodeError(
    { prompt: { '1': load(), '2': { class_type: 'StubAdd', inputs: { b: 1 } }, '3': save(['2', 0]) } },
    '2',
  );
  assert.equal(e.type, 'required_input_missing');
  assert.equal(e.extra_info.input_name, 'a');
});

test('bad_linked_input: missing node, missing output, malformed link on a socket input', async () => {
  assert.equal((await nodeError({ prompt: { '3': save(['99', 0]) } }, '3')).type, 'bad_linked_input');
  assert.equal((await nodeError({ prompt: { '1': load(), '3': save(['1', 7]) } }, '3')).type, 'bad_linked_input');
  assert.equal((await nodeError({ prompt: { '3': save(['1', 0, 1]) } }, '3')).type, 'bad_linked_input');
  assert.equal((await nodeError({ prompt: { '3': save(5) } }, '3')).type, 'bad_linked_input');
});

test('return_type_mismatch: TEXT into a NUMBER socket', async () => {
  const e = await nodeError({ prompt: { '1': load(), '3': save(['1', 1]) } }, '3');
  assert.equal(e.type, 'return_type_mismatch');
  assert.equal(e.extra_info.received_type, 'TEXT');
});

test('type unions and * match like ComfyUI', async () => {
  const ok = await api(s.url, 'POST', '/prompt', {
    prompt: { '1': load(), '2': { class_type: 'StubAny', inputs: { anything: ['1', 1] } }, '3': save(['2', 0]) },
  });
  assert.equal(ok.status, 200, JSON.stringify(ok.json));
});

test('invalid_input_type: strings, NaN, objects where numbers belong', async () => {
  for (const b of ['abc', '', { x: 1 }, [1, 2, 3], 'NaN', 'Infinity', '1e400']) {
    const e = await nodeError(
      { prompt: { '1': load(), '2': { class_type: 'StubAdd', inputs: { a: ['1', 0], b } }, '3': save(['2', 0]) } },
      '2',
    );
    assert.equal(e.type, Array.isArray(b) && b.length !== 2 ? 'invalid_input_type' : e.type);
    assert.ok(['invalid_input_type', 'bad_linked_input'].includes(e.type), `${JSON.stringify(b)} -> ${e.type}`);
  }
  assert.equal((await nodeError(check({ flag: 'maybe' }), '2')).type, 'invalid_input_type');
  assert.equal((await nodeError(check({ mode: { a: 1 } }), '2')).type, 'invalid_input_type');
});

test('value_smaller_than_min and value_bigger_than_max', async () => {
  assert.equal(
    (await nodeError({ prompt: { '1': load(-1), '3': save(['1', 0]) } }, '1')).type,
    'value_smaller_than_min',
  );
  assert.equal(
    (await nodeError({ prompt: { '1': load(5000), '3': save(['1', 0]) } }, '1')).type,
    'value_bigger_than_max',
  );
  assert.equal((await nodeError(check({ f: 1.5 }), '2')).type, 'value_bigger_than_max');
});

test('value_not_in_list', async () => {
  const e = await nodeError(check({ mode: 'medium' }), '2');
  assert.equal(e.type, 'value_not_in_list');
  assert.match(e.details, /medium/);
});

test("custom_validation_failed: the node's validate hook refuses", async () => {
  const e = await nodeError(check({ f: 0.13 }), '2');
  assert.equal(e.type, 'custom_validation_failed');
  assert.match(e.details, /0\.13/);
});

test('exception_during_validation: the validate hook or a combo list throws', async () => {
  assert.equal((await nodeError(check({ text: 'explode' }), '2')).type, 'exception_during_validation');
  const b = await nodeError(
    { prompt: { '1': { class_type: 'StubBadCombo', inputs: { pick: 'a' } }, '3': save(['1', 0]) } },
    '1',
  );
  assert.equal(b.type, 'exception_during_validation');
});

test('prompt_outputs_failed_validation: every output failed; node_errors names dependents', async () => {
  const b = await post({ prompt: { '1': load(-5), '3': save(['1', 0]), '4': save(['1', 0]) } });
  assert.equal(b.error.type, 'prompt_outputs_failed_validation');
  assert.deepEqual(b.node_errors['1'].dependent_outputs.sort(), ['3', '4']);
  assert.equal(b.node_errors['1'].class_type, 'StubLoad');
});

test('one good output among bad ones: 200 with the failing node in node_errors (ComfyUI behaviour)', async () => {
  const r = await api(s.url, 'POST', '/prompt', {
    prompt: { '1': load(), '2': load(-5), '3': save(['1', 0]), '4': save(['2', 0]) },
  });
  assert.equal(r.status, 200);
  assert.deepEqual(r.json.node_errors['2'].dependent_outputs, ['4']);
  const q = (await api(s.url, 'GET', '/queue')).json.queue_pending.find((i: unknown[]) => i[1] === r.json.prompt_id);
  assert.deepEqual(q[4], ['3'], 'only the valid output is executed');
});

test('a dependency cycle is refused with 400', async () => {
  const b = await post({
    prompt: {
      '1': { class_type: 'StubAdd', inputs: { a: ['2', 0], b: 1 } },
      '2': { class_type: 'StubAdd', inputs: { a: ['1', 0], b: 1 } },
      '3': save(['2', 0]),
    },
  });
  assert.equal(b.error.type, 'prompt_outputs_failed_validation');
  assert.ok(Object.values(b.node_errors).some((ne: any) => ne.errors.some((e: any) => e.type === 'dependency_cycle')));
  const self = await post({
    prompt: { '1': { class_type: 'StubAdd', inputs: { a: ['1', 0], b: 1 } }, '3': save(['1', 0]) },
  });
  assert.equal(self.error.type, 'prompt_outputs_failed_validation');
});
