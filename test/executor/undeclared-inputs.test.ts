/**
 * Inputs a node's class does not declare are never looked at by validation (as in ComfyUI), so a link there must not
 * change what runs. Before the fix, such a link to a missing node passed POST /prompt and then broke the run outside
 * any node: the client got execution_start and nothing after it (no execution_error, no `executing null`); one back
 * into the graph reordered execution and failed a node with a TypeError. Real server, real websocket (stub nodes).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { api, WsClient, waitHistory } from '../server/protocol-client.js';
import { startStubServer, type StubServer } from './stub-server.js';

let s: StubServer;
before(async () => {
  s = await startStubServer();
});
after(async () => {
  await s.stop();
});

/** load(value) -> add(load, 1) -> save: the output holds value + 1 */
function prompt(value: number, extra: { load?: Record<string, unknown>; add?: Record<string, unknown> }) {
  return {
    '1': { class_type: 'StubLoad', inputs: { value, ...extra.load } },
    '2': { class_type: 'StubAdd', inputs: { a: ['1', 0], b: 1, ...extra.add } },
    '3': { class_type: 'StubSave', inputs: { x: ['2', 0], filename_prefix: `u${value}` } },
  };
}

async function runToEnd(ws: WsClient, body: Record<string, unknown>) {
  const r = await api(s.url, 'POST', '/prompt', { prompt: body, client_id: 'undeclared' });
  assert.equal(r.status, 200, r.text);
  const id = r.json.prompt_id as string;
  // the client must get its terminal events, whatever happened
  const events = await ws.untilDone(id, 20000);
  const history = await waitHistory(s.url, id);
  return { id, events, history };
}

test('a link in an undeclared input (missing node, or a loop back into the graph) changes nothing', async () => {
  const ws = await WsClient.connect(s.url, 'undeclared');
  try {
    const cases: [string, number, Parameters<typeof prompt>[1]][] = [
      ['link to a node that does not exist', 3, { add: { stray: ['99', 0] } }],
      ['link from the loader back to its own consumer', 4, { load: { stray: ['2', 0] } }],
      ['link from the loader to the output node', 5, { load: { stray: ['3', 0] } }],
    ];
    for (const [what, value, extra] of cases) {
      const { events, history } = await runToEnd(ws, prompt(value, extra));
      const types = events.map((e) => e.type);
      assert.ok(types.includes('execution_success'), `${what}: ${JSON.stringify(events.slice(-3))}`);
      assert.ok(!types.includes('execution_error'), what);
      assert.equal(history.status.status_str, 'success', what);
      assert.equal(history.outputs['3'].images.length, 1, what);
      // the stub save reports the value it got: value + 1
      const saved = events.find((e) => e.type === 'executed' && e.data.node === '3');
      assert.equal(saved?.data.output.value[0], value + 1, what);
    }
  } finally {
    ws.close();
  }
});
