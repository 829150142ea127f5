/**
 * The protocol as a ComfyUI client sees it (issue 2 point 8), against the real server on a real port with stub
 * nodes: queue over HTTP, follow the websocket to `executing {node:null}`, read history, download from /view;
 * caching, interrupt, failing nodes, event replay, every route at /X and /api/X.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PNG } from 'pngjs';
import { api, WsClient, waitHistory, sleep } from './protocol-client.js';
import { startStubServer, chainPrompt, type StubServer } from '../executor/stub-server.js';

let s: StubServer;
before(async () => {
  s = await startStubServer();
});
after(async () => {
  await s.stop();
});

const num = (v: unknown) => typeof v === 'number' && Number.isFinite(v);

test('a prompt runs with ComfyUI event order and shapes, then history and /view', async () => {
  const ws = await WsClient.connect(s.url, 'flow');
  const first = ws.messages[0];
  assert.equal(first.type, 'status');
  assert.equal(first.data.sid, 'flow');
  assert.equal(typeof first.data.status.exec_info.queue_remaining, 'number');

  const r = await api(s.url, 'POST', '/prompt', { prompt: chainPrompt({ steps: 3 }), client_id: 'flow' });
  assert.equal(r.status, 200);
  assert.equal(typeof r.json.prompt_id, 'string');
  assert.equal(typeof r.json.number, 'number');
  assert.deepEqual(r.json.node_errors, {});
  const id = r.json.prompt_id;
  const evs = await ws.untilDone(id);
  // progress_state (ComfyUI's per-node snapshot, issue 15) follows each node event; its order is tested with it
  assert.ok(evs.some((e) => e.type === 'progress_state'));
  const types = evs.map((e) => e.type).filter((t) => t !== 'progress_state');
  assert.deepEqual(types, [
    'execution_start',
    'execution_cached',
    'executing',
    'executing',
    'executing',
    'progress',
    'progress',
    'progress',
    'executing',
    'executed',
    'execution_success',
    'executing',
  ]);
  assert.ok(num(evs[0].data.timestamp) && evs[0].data.timestamp > 1e12, 'timestamps in ms');
  assert.deepEqual(evs[1].data.nodes, []);
  assert.deepEqual(
    evs.filter((e) => e.type === 'executing').map((e) => e.data.node),
    ['1', '2', '3', '4', null],
  );
  for (const e of evs.filter((e) => e.type === 'executing' && e.data.node))
    assert.equal(e.data.display_node, e.data.node);
  assert.deepEqual(
    evs.filter((e) => e.type === 'progress').map((e) => [e.data.value, e.data.max, e.data.node]),
    [
      [1, 3, '3'],
      [2, 3, '3'],
      [3, 3, '3'],
    ],
  );
  const executed = evs.find((e) => e.type === 'executed')!;
  assert.equal(executed.data.node, '4');
  assert.equal(executed.data.display_node, '4');
  const img = executed.data.output.images[0];
  assert.deepEqual(Object.keys(img).sort(), ['filename', 'subfolder', 'type']);
  assert.equal(img.type, 'output');
  // seq on logged events, increasing
  const seqs = evs.filter((e) => e.type !== 'progress' && e.type !== 'progress_state').map((e) => e.seq!);
  assert.ok(
    seqs.every((q, i) => i === 0 || q > seqs[i - 1]),
    `seq increases: ${seqs}`,
  );
  // a status broadcast happened after the queue changed
  assert.ok(ws.messages.filter((m) => m.type === 'status').length >= 2);

  const h = (await api(s.url, 'GET', `/history/${id}`)).json;
  assert.deepEqual(Object.keys(h), [id]);
  const e = h[id];
  assert.equal(e.prompt[1], id);
  assert.deepEqual(e.prompt[4], ['4']);
  assert.equal(e.prompt[3].client_id, 'flow');
  assert.deepEqual(e.outputs['4'].images, [img]);
  assert.equal(e.status.status_str, 'success');
  assert.equal(e.status.completed, true);
  assert.deepEqual(
    e.status.messages.map((m: [string, unknown]) => m[0]),
    ['execution_start', 'execution_cached', 'execution_success'],
  );
  assert.deepEqual(e.meta['4'], { node_id: '4', display_node: '4', parent_node: null, real_node_id: '4' });
  assert.deepEqual((await api(s.url, 'GET', '/history/nope')).json, {});

  const v = await api(s.url, 'GET', `/view?filename=${encodeURIComponent(img.filename)}&type=output&subfolder=`);
  assert.equal(v.status, 200);
  assert.equal(v.headers.get('content-type'), 'image/png');
  const png = PNG.sync.read(v.bytes);
  assert.equal(png.width, 2);
  assert.equal(png.data[0], (1 + 2 + 5) & 255, 'pixel encodes load(1)+2+seed(5)');
  ws.close();
});

test('a new seed re-runs the slow node and what follows, never the loader; reused nodes are in execution_cached', async () => {
  const ws = await WsClient.connect(s.url, 'cache');
  const runs = () => Object.fromEntries(s.services.runs);
  const q = async (seed: number, b = 2) => {
    const id = (
      await api(s.url, 'POST', '/prompt', { prompt: chainPrompt({ seed, b, prefix: 'cache' }), client_id: 'cache' })
    ).json.prompt_id;
    return ws.untilDone(id);
  };
  await q(100);
  const before = runs();
  const evs = await q(101);
  const after = runs();
  assert.deepEqual(evs.find((e) => e.type === 'execution_cached')!.data.nodes, ['1', '2']);
  assert.deepEqual(
    evs.filter((e) => e.type === 'executing' && e.data.node).map((e) => e.data.node),
    ['3', '4'],
  );
  assert.equal(after.StubLoad, before.StubLoad);
  assert.equal(after.StubAdd, before.StubAdd);
  assert.equal(after.StubSlow, before.StubSlow + 1);
  assert.equal(after.StubSave, before.StubSave + 1);
  // the same prompt again: everything cached; the output node's UI is re-sent in `executed`
  const again = await q(101);
  assert.deepEqual(again.find((e) => e.type === 'execution_cached')!.data.nodes, ['1', '2', '3', '4']);
  assert.ok(again.some((e) => e.type === 'executed' && e.data.node === '4'));
  assert.equal(runs().StubSlow, after.StubSlow);
  // changing a constant upstream invalidates its descendants only
  const changed = await q(101, 3);
  assert.deepEqual(changed.find((e) => e.type === 'execution_cached')!.data.nodes, ['1']);
  ws.close();
});

test('POST /interrupt with another prompt_id leaves the running prompt alone; with its id it stops it', async () => {
  const ws = await WsClient.connect(s.url, 'intr');
  const id = (
    await api(s.url, 'POST', '/prompt', {
      prompt: chainPrompt({ seed: 7, steps: 40, prefix: 'intr' }),
      client_id: 'intr',
    })
  ).json.prompt_id;
  await ws.waitFor((m) => m.type === 'progress' && m.data.prompt_id === id);
  assert.equal((await api(s.url, 'POST', '/interrupt', { prompt_id: 'some-other-prompt' })).status, 200);
  const p0 = ws.forPrompt(id).filter((e) => e.type === 'progress').length;
  await sleep(150);
  assert.ok(
    ws.forPrompt(id).filter((e) => e.type === 'progress').length > p0,
    'still progressing after a foreign interrupt',
  );
  assert.equal((await api(s.url, 'POST', '/interrupt', { prompt_id: id })).status, 200);
  const evs = await ws.untilDone(id);
  const intr = evs.find((e) => e.type === 'execution_interrupted')!;
  assert.ok(intr, 'execution_interrupted sent');
  assert.equal(intr.data.node_id, '3');
  assert.equal(intr.data.node_type, 'StubSlow');
  assert.ok(Array.isArray(intr.data.executed));
  assert.ok(num(intr.data.timestamp));
  assert.ok(evs.filter((e) => e.type === 'progress').length < 40, 'stopped before the end');
  assert.equal(evs.at(-1)!.type, 'executing');
  assert.equal(evs.at(-1)!.data.node, null);
  const h = await waitHistory(s.url, id);
  assert.equal(h.status.status_str, 'error');
  assert.ok(h.status.messages.some((m: [string]) => m[0] === 'execution_interrupted'));
  // POST /interrupt without a body interrupts whatever runs
  const id2 = (
    await api(s.url, 'POST', '/prompt', {
      prompt: chainPrompt({ seed: 8, steps: 40, prefix: 'intr' }),
      client_id: 'intr',
    })
  ).json.prompt_id;
  await ws.waitFor((m) => m.type === 'progress' && m.data.prompt_id === id2);
  await api(s.url, 'POST', '/interrupt');
  assert.ok((await ws.untilDone(id2)).some((e) => e.type === 'execution_interrupted'));
  ws.close();
});

test('a node that throws fails only its prompt, with execution_error in ComfyUI shape', async () => {
  const ws = await WsClient.connect(s.url, 'err');
  const prompt = {
    '1': { class_type: 'StubLoad', inputs: { value: 9 } },
    '2': { class_type: 'StubThrow', inputs: { x: ['1', 0] } },
    '3': { class_type: 'StubSave', inputs: { x: ['2', 0], filename_prefix: 'err' } },
  };
  const bad = (await api(s.url, 'POST', '/prompt', { prompt, client_id: 'err' })).json.prompt_id;
  const good = (
    await api(s.url, 'POST', '/prompt', { prompt: chainPrompt({ seed: 9, prefix: 'after' }), client_id: 'err' })
  ).json.prompt_id;
  const evs = await ws.untilDone(bad);
  const err = evs.find((e) => e.type === 'execution_error')!;
  for (const k of [
    'prompt_id',
    'node_id',
    'node_type',
    'executed',
    'exception_message',
    'exception_type',
    'traceback',
    'current_inputs',
    'current_outputs',
    'timestamp',
  ])
    assert.ok(k in err.data, k);
  assert.equal(err.data.node_id, '2');
  assert.equal(err.data.node_type, 'StubThrow');
  assert.equal(err.data.exception_message, 'stub failure on purpose');
  assert.equal(err.data.exception_type, 'RangeError');
  assert.deepEqual(err.data.executed, ['1']);
  assert.ok(!evs.some((e) => e.type === 'execution_success'));
  assert.ok(
    (await ws.untilDone(good)).some((e) => e.type === 'execution_success'),
    'the next prompt still runs',
  );
  assert.equal((await waitHistory(s.url, bad)).status.status_str, 'error');
  ws.close();
});

test('events missed while disconnected are replayed with ?since=seq, in order, only for that client', async () => {
  const ws = await WsClient.connect(s.url, 'replay');
  const id1 = (
    await api(s.url, 'POST', '/prompt', { prompt: chainPrompt({ seed: 11, prefix: 'rp' }), client_id: 'replay' })
  ).json.prompt_id;
  const seen = await ws.untilDone(id1);
  const lastSeq = seen.at(-1)!.seq!;
  ws.close();
  await sleep(50);
  // while nobody listens: one prompt for this client, one for another client
  const id2 = (
    await api(s.url, 'POST', '/prompt', { prompt: chainPrompt({ seed: 12, prefix: 'rp' }), client_id: 'replay' })
  ).json.prompt_id;
  const other = (
    await api(s.url, 'POST', '/prompt', { prompt: chainPrompt({ seed: 13, prefix: 'rp' }), client_id: 'someone-else' })
  ).json.prompt_id;
  await waitHistory(s.url, id2);
  await waitHistory(s.url, other);
  const back = await WsClient.connect(s.url, 'replay', { since: lastSeq });
  await back.waitFor((m) => m.type === 'executing' && m.data.node === null && m.data.prompt_id === id2);
  const replayed = back.messages.filter((m) => m.seq !== undefined && m.type !== 'status');
  assert.ok(replayed.every((m) => m.seq! > lastSeq));
  assert.ok(!back.messages.some((m) => m.data?.prompt_id === other), 'no events of another client');
  assert.ok(!back.messages.some((m) => m.data?.prompt_id === id1), 'nothing already seen');
  assert.deepEqual(
    replayed.map((m) => m.type),
    ['execution_start', 'execution_cached', 'executing', 'executing', 'executed', 'execution_success', 'executing'],
  );
  assert.ok(replayed.every((m, i) => i === 0 || m.seq! > replayed[i - 1].seq!));
  back.close();
});

test('GET /history honours max_items and offset', async () => {
  const all = (await api(s.url, 'GET', '/history')).json;
  const ids = Object.keys(all);
  assert.ok(ids.length >= 5);
  // ComfyUI: max_items alone = the most recent ones (still oldest first); offset counts from the oldest
  assert.deepEqual(Object.keys((await api(s.url, 'GET', '/history?max_items=2')).json), ids.slice(-2));
  assert.deepEqual(Object.keys((await api(s.url, 'GET', '/history?max_items=2&offset=-1')).json), ids.slice(-2));
  assert.deepEqual(Object.keys((await api(s.url, 'GET', '/history?max_items=2&offset=0')).json), ids.slice(0, 2));
  assert.deepEqual(Object.keys((await api(s.url, 'GET', '/history?max_items=2&offset=1')).json), ids.slice(1, 3));
  assert.deepEqual(Object.keys((await api(s.url, 'GET', `/history?max_items=${ids.length + 5}`)).json), ids);
  assert.deepEqual(Object.keys((await api(s.url, 'GET', '/history?offset=2')).json), ids.slice(2));
  assert.deepEqual(Object.keys((await api(s.url, 'GET', `/history?offset=${ids.length}`)).json), []);
});

test('every route answers at /X and at /api/X', async () => {
  const gets = [
    '/prompt',
    '/queue',
    '/history',
    '/object_info',
    '/object_info/StubLoad',
    '/system_stats',
    '/features',
    '/models',
    '/models/checkpoints',
    '/embeddings',
    '/workflows',
  ];
  for (const p of gets) {
    const a = await api(s.url, 'GET', p),
      b = await api(s.url, 'GET', `/api${p}`);
    assert.equal(a.status, 200, p);
    assert.equal(b.status, 200, `/api${p}`);
    if (p !== '/system_stats') assert.deepEqual(a.json, b.json, p);
  }
  const posts: [string, unknown][] = [
    ['/queue', { clear: true }],
    ['/interrupt', {}],
    ['/history', { delete: ['nothing'] }],
    ['/free', { unload_models: true }],
    ['/workflow/convert', { nodes: [], links: [] }],
  ];
  for (const [p, body] of posts) {
    assert.equal((await api(s.url, 'POST', p, body)).status, 200, p);
    assert.equal((await api(s.url, 'POST', `/api${p}`, body)).status, 200, `/api${p}`);
  }
  const r = await api(s.url, 'POST', '/api/prompt', { prompt: chainPrompt({ seed: 77, prefix: 'api' }) });
  assert.equal(r.status, 200);
  await waitHistory(s.url, r.json.prompt_id);
  const ws = await WsClient.connect(s.url, 'apiws', { path: '/api/ws' });
  ws.close();
  // shapes of the info routes
  const oi = (await api(s.url, 'GET', '/object_info/StubSlow')).json.StubSlow;
  assert.deepEqual(oi.input.required.seed[0], 'INT');
  assert.equal(oi.input.required.seed[1].control_after_generate, true);
  assert.deepEqual(oi.input_order.required, ['x', 'seed', 'steps']);
  assert.deepEqual(oi.output, ['NUMBER']);
  assert.deepEqual((await api(s.url, 'GET', '/object_info/NoSuchNode')).json, {});
  const combo = (await api(s.url, 'GET', '/object_info/StubCheck')).json.StubCheck.input.required.mode;
  assert.deepEqual(combo[0], ['fast', 'slow']);
  assert.equal((await api(s.url, 'GET', '/models/not_a_folder')).status, 404);
  const stats = (await api(s.url, 'GET', '/system_stats')).json;
  assert.ok(stats.system.ram_total > 0 && Array.isArray(stats.devices) && stats.devices[0].name);
  const feat = (await api(s.url, 'GET', '/features')).json;
  assert.equal(typeof feat.supports_preview_metadata, 'boolean');
  assert.equal(typeof feat.max_upload_size, 'number');
  const q = (await api(s.url, 'GET', '/queue')).json;
  assert.ok(Array.isArray(q.queue_running) && Array.isArray(q.queue_pending));
});

test('GET /queue lists pending items as [number, id, prompt, extra_data, outputs]; POST /queue deletes pending ones', async () => {
  const ws = await WsClient.connect(s.url, 'q');
  const blocker = (
    await api(s.url, 'POST', '/prompt', { prompt: chainPrompt({ seed: 500, steps: 30, prefix: 'q' }), client_id: 'q' })
  ).json.prompt_id;
  await ws.waitFor((m) => m.type === 'progress' && m.data.prompt_id === blocker);
  const p1 = (await api(s.url, 'POST', '/prompt', { prompt: chainPrompt({ seed: 501, prefix: 'q' }), client_id: 'q' }))
    .json.prompt_id;
  const p2 = (
    await api(s.url, 'POST', '/prompt', {
      prompt: chainPrompt({ seed: 502, prefix: 'q' }),
      client_id: 'q',
      extra_data: { note: 1 },
    })
  ).json.prompt_id;
  const q = (await api(s.url, 'GET', '/queue')).json;
  assert.equal(q.queue_running[0][1], blocker);
  assert.deepEqual(
    q.queue_pending.map((i: unknown[]) => i[1]),
    [p1, p2],
  );
  const item = q.queue_pending[1];
  assert.equal(typeof item[0], 'number');
  assert.equal(item[2]['3'].class_type, 'StubSlow');
  assert.equal(item[3].note, 1);
  assert.deepEqual(item[4], ['4']);
  assert.equal((await api(s.url, 'GET', '/prompt')).json.exec_info.queue_remaining, 3);
  await api(s.url, 'POST', '/queue', { delete: [p1] });
  assert.deepEqual(
    (await api(s.url, 'GET', '/queue')).json.queue_pending.map((i: unknown[]) => i[1]),
    [p2],
  );
  await api(s.url, 'POST', '/interrupt', { prompt_id: blocker });
  await ws.untilDone(p2);
  assert.deepEqual((await api(s.url, 'GET', `/history/${p1}`)).json, {}, 'deleted prompt never ran');
  ws.close();
});
