/**
 * runPrompt, the one way a prompt runs (embedded queue, each device, farm worker, CLI run): validate once (or take the
 * caller's validation), execute, produce the history entry. Real nodes, real engine, the demo checkpoint.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRegistry } from '../../nodes/index.js';
import { Executor } from '../../server/executor/execute.js';
import { validatePrompt } from '../../server/executor/validate.js';
import { ensureDemoCheckpoint } from '../../server/tools/make-checkpoint.js';
import { runPrompt } from '../../server/queue/run-prompt.js';
import type { QueueItem } from '../../server/queue/store.js';
import type { ServerEvent } from '../../protocol/events.js';
import { ModelFolders } from '../../server/storage/model-folders.js';
import { makeServices } from '../../server/host.js';
import type { NodeServices } from '../../nodes/services.js';
import { tempDirs } from '../cli/run-cli.js';
import { demoPrompt } from './demo-prompt.js';

let dirs: ReturnType<typeof tempDirs>, services: NodeServices, executor: Executor<NodeServices>;
before(async () => {
  dirs = tempDirs('tcd-run-prompt-');
  await ensureDemoCheckpoint(dirs.models);
  services = makeServices(
    new ModelFolders(dirs.models),
    { output: dirs.output, input: dirs.input, temp: dirs.temp },
    { ep: 'cpu', dataDir: dirs.data, log: () => {} },
    false,
  );
  executor = new Executor(createRegistry(), services);
});
after(async () => {
  await services.engine().close();
});

const item = (prompt: Record<string, unknown>, id: string, outputs: string[] = []): QueueItem => ({
  number: 7,
  promptId: id,
  prompt,
  extraData: { note: 'x' },
  outputs,
  clientId: 'c1',
});
const hooks = (events: ServerEvent[]) => ({
  emit: (e: ServerEvent) => {
    events.push(e);
  },
  preview: () => {},
  signal: new AbortController().signal,
});

test('a valid prompt runs and yields its history entry', async () => {
  const events: ServerEvent[] = [];
  const r = await runPrompt(executor, item(demoPrompt({ prefix: 'rp' }), 'ok-1'), hooks(events));
  assert.equal(r.status, 'success');
  assert.deepEqual(r.result!.executed.sort(), ['3', '4', '5', '6', '7', '8', '9']);
  assert.deepEqual(r.entry.prompt.slice(0, 2), [7, 'ok-1']);
  assert.deepEqual(r.entry.prompt[3], { note: 'x', client_id: 'c1' });
  assert.equal(r.entry.status.status_str, 'success');
  assert.equal(r.entry.status.completed, true);
  assert.deepEqual(Object.keys(r.entry.outputs), ['9']);
  assert.match((r.entry.outputs['9'].images as { filename: string }[])[0].filename, /^rp_\d+_\.png$/);
  assert.equal(events[0].type, 'execution_start');
  const last = events.at(-1)!;
  assert.ok(last.type === 'executing' && last.data.node === null);
});

test('an invalid prompt runs nothing: execution_error and executing null, an error entry', async () => {
  const events: ServerEvent[] = [];
  const r = await runPrompt(executor, item(demoPrompt({ ckpt: 'missing.safetensors' }), 'bad-1'), hooks(events));
  assert.equal(r.status, 'error');
  assert.equal(r.result, null);
  assert.deepEqual(
    events.map((e) => e.type),
    ['execution_error', 'executing'],
  );
  const err = events[0].data as {
    node_id: string;
    node_type: string;
    exception_message: string;
    exception_type: string;
    prompt_id: string;
  };
  assert.equal(err.prompt_id, 'bad-1');
  assert.equal(err.node_id, '4', 'names the node whose input failed');
  assert.equal(err.node_type, 'CheckpointLoaderSimple', 'and its class');
  assert.match(err.exception_message, /Prompt outputs failed validation/);
  assert.equal(r.entry.status.status_str, 'error');
  assert.deepEqual(r.entry.status.messages, [['execution_error', err]]);
  // a caller may word the error its own way (the farm worker names itself)
  const mine = await runPrompt(executor, item(demoPrompt({ ckpt: 'missing.safetensors' }), 'bad-2'), hooks([]), {
    describeInvalid: (v, it) => ({
      prompt_id: it.promptId,
      node_id: '',
      node_type: '',
      executed: [],
      exception_message: `here: ${v.body.error.type}`,
      exception_type: 'Mine',
      traceback: [],
      current_inputs: {},
      current_outputs: {},
      timestamp: 0,
    }),
  });
  assert.deepEqual(mine.entry.status.messages[0][1], {
    prompt_id: 'bad-2',
    node_id: '',
    node_type: '',
    executed: [],
    exception_message: 'here: prompt_outputs_failed_validation',
    exception_type: 'Mine',
    traceback: [],
    current_inputs: {},
    current_outputs: {},
    timestamp: 0,
  });
});

test("with the caller's validation it does not validate again: that validation's outputs are what run", async () => {
  const prompt = {
    ...demoPrompt({ prefix: 'one' }),
    '10': { class_type: 'SaveImage', inputs: { images: ['8', 0], filename_prefix: 'two' } },
  };
  const v = validatePrompt(prompt, executor.registry, services, ['10']);
  assert.ok(v.ok);
  // item.outputs [] would mean "every output" if runPrompt validated the item itself
  const r = await runPrompt(executor, item(prompt, 'given-1'), hooks([]), { valid: v });
  assert.equal(r.status, 'success');
  assert.deepEqual(Object.keys(r.entry.outputs), ['10']);
  const again = await runPrompt(executor, item(prompt, 'own-1'), hooks([]));
  assert.deepEqual(Object.keys(again.entry.outputs).sort(), ['10', '9']);
});
