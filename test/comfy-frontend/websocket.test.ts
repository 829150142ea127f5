/**
 * Issue 15 points 2 and 3 on the websocket: the server answers a client's feature_flags with its own, sends
 * progress_state as ComfyUI does, never a message type ComfyUI's frontend lacks, and SaveImageWebsocket sends PNG
 * frames to the prompt's client only (real nodes: LoadImage -> SaveImageWebsocket, no model needed).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { api, WsClient } from '../server/protocol-client.js';
import { startStubServer, chainPrompt, type StubServer } from '../executor/stub-server.js';
import { startServer, type RunningServer } from '../../server/app/server.js';
import { createRegistry } from '../../nodes/index.js';
import { makeServices } from '../../server/host.js';
import type { NodeServices } from '../../nodes/services.js';
import { decodePng, encodePng } from '../../server/storage/png.js';
import { parsePreviewMethod, previewSetting } from '../../server/preview-method.js';

/** Every text message type ComfyUI's frontend 1.45 handles (its api.ts switch); anything else makes it throw. */
const COMFY_TYPES = new Set([
  'status',
  'executing',
  'execution_start',
  'execution_error',
  'execution_interrupted',
  'execution_cached',
  'execution_success',
  'progress',
  'progress_state',
  'executed',
  'graphChanged',
  'promptQueued',
  'logs',
  'b_preview',
  'notification',
  'feature_flags',
]);

const stubs: StubServer[] = [];
const stops: (() => Promise<void>)[] = [];
after(async () => {
  for (const s of stubs) await s.stop();
  for (const f of stops) await f();
});

test('feature_flags is answered with the server flags; progress_state follows each node; only ComfyUI message types', async () => {
  const s = await startStubServer({ maxUploadBytes: 12345, slowDelayMs: 5 });
  stubs.push(s);
  const ws = await WsClient.connect(s.url, 'ff');
  ws.ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true, max_upload_size: 1 } }));
  const flags = await ws.waitFor((m) => m.type === 'feature_flags');
  assert.equal(flags.data.supports_preview_metadata, true);
  assert.equal(flags.data.max_upload_size, 12345);
  assert.deepEqual(flags.data, (await api(s.url, 'GET', '/features')).json, 'the same flags as GET /features');
  const id = (await api(s.url, 'POST', '/prompt', { prompt: chainPrompt({ steps: 3 }), client_id: 'ff' })).json
    .prompt_id;
  const events = await ws.untilDone(id);
  const states = events.filter((m) => m.type === 'progress_state').map((m) => m.data);
  assert.ok(states.length >= 6, `${states.length} progress_state events`);
  for (const st of states) {
    assert.equal(st.prompt_id, id);
    for (const [nid, n] of Object.entries(st.nodes) as [string, any][]) {
      assert.deepEqual(Object.keys(n).sort(), [
        'display_node_id',
        'max',
        'node_id',
        'parent_node_id',
        'prompt_id',
        'real_node_id',
        'state',
        'value',
      ]);
      assert.equal(n.node_id, nid);
    }
  }
  // the slow node reports its steps, then every node is finished
  const slow = states.filter((st) => st.nodes['3']?.state === 'running').map((st) => st.nodes['3'].value);
  assert.deepEqual(slow, [0, 1, 2, 3]);
  const last = states[states.length - 1].nodes;
  assert.deepEqual(Object.keys(last).sort(), ['1', '2', '3', '4']);
  assert.ok(Object.values(last).every((n: any) => n.state === 'finished' && n.value === n.max));
  // order: running before finished for each node
  const firstFinished = states.findIndex((st) => st.nodes['3']?.state === 'finished');
  assert.ok(firstFinished > states.findIndex((st) => st.nodes['3']?.state === 'running'));
  const failing = (
    await api(s.url, 'POST', '/prompt', {
      prompt: {
        '1': { class_type: 'StubLoad', inputs: { value: 1 } },
        '2': { class_type: 'StubThrow', inputs: { x: ['1', 0] } },
        '3': { class_type: 'StubSave', inputs: { x: ['2', 0], filename_prefix: 'f' } },
      },
      client_id: 'ff',
    })
  ).json.prompt_id;
  const failEvents = await ws.untilDone(failing);
  const failStates = failEvents.filter((m) => m.type === 'progress_state');
  assert.equal(failStates[failStates.length - 1].data.nodes['2'].state, 'error');
  for (const m of ws.messages)
    assert.ok(COMFY_TYPES.has(m.type), `message type ${m.type} is not one ComfyUI's frontend knows`);
  ws.close();
});

test('a silent socket gets a status keepalive (client libraries drop sockets quiet for 10 s)', async () => {
  const s = await startStubServer({ wsKeepaliveMs: 300, execute: false });
  stubs.push(s);
  const ws = await WsClient.connect(s.url, 'quiet');
  const n0 = ws.messages.length;
  await ws.waitFor((m) => m.type === 'status' && ws.messages.indexOf(m) >= n0, 5000);
  const kept = ws.messages.slice(n0).filter((m) => m.type === 'status');
  assert.ok(kept.length >= 1);
  assert.deepEqual(Object.keys(kept[0].data.status.exec_info), ['queue_remaining']);
  ws.close();
});

test("SaveImageWebsocket sends each image as a PNG frame [1][2][png] to the prompt's client only, every run, writing nothing", async () => {
  const root = mkdtempSync(join(tmpdir(), 'tcd-siw-'));
  const dirs = {
    data: join(root, 'data'),
    models: join(root, 'models'),
    output: join(root, 'out'),
    input: join(root, 'in'),
    temp: join(root, 'tmp'),
  };
  const s: RunningServer<NodeServices> = await startServer<NodeServices>({
    host: '127.0.0.1',
    port: 0,
    dataDir: dirs.data,
    modelsDir: dirs.models,
    outputDir: dirs.output,
    inputDir: dirs.input,
    tempDir: dirs.temp,
    workflowsDir: join(root, 'wf'),
    registry: createRegistry(),
    log: () => {},
    makeServices: ({ models, dirs: d }) => makeServices(models, d, { dataDir: dirs.data, log: () => {} }, false),
  });
  stops.push(async () => {
    await s.close();
    rmSync(root, { recursive: true, force: true });
  });
  const px = new Uint8Array(6 * 4 * 3).map((_, i) => (i * 37) % 256);
  writeFileSync(join(dirs.input, 'pic.png'), encodePng(px, 6, 4, 3));
  const mine = await WsClient.connect(s.url, 'mine');
  const other = await WsClient.connect(s.url, 'other');
  const prompt = {
    '1': { class_type: 'LoadImage', inputs: { image: 'pic.png' } },
    '2': { class_type: 'SaveImageWebsocket', inputs: { images: ['1', 0] } },
  };
  assert.ok((await api(s.url, 'GET', '/object_info/SaveImageWebsocket')).json.SaveImageWebsocket.output_node);
  for (let run = 1; run <= 2; run++) {
    const r = await api(s.url, 'POST', '/prompt', { prompt, client_id: 'mine' });
    assert.equal(r.status, 200, r.text);
    const events = await mine.untilDone(r.json.prompt_id);
    assert.ok(events.some((e) => e.type === 'execution_success'));
    assert.equal(mine.binary.length, run, 'one frame per run: the node never comes from the cache');
  }
  const frame = mine.binary[0];
  assert.equal(frame.readUInt32BE(0), 1);
  assert.equal(frame.readUInt32BE(4), 2);
  const img = decodePng(frame.subarray(8));
  assert.deepEqual([img.width, img.height], [6, 4]);
  for (let i = 0; i < 24; i++) for (let c = 0; c < 3; c++) assert.equal(img.rgba[i * 4 + c], px[i * 3 + c]);
  assert.equal(other.binary.length, 0, 'another client gets nothing');
  assert.deepEqual(readdirSync(dirs.output), []);
  mine.close();
  other.close();
});

test('--preview-method: none turns previews off; auto/latent2rgb/taesd keep them (taesd noted); the default keeps them; junk refused', () => {
  assert.equal(parsePreviewMethod(undefined), 'latent2rgb');
  assert.deepEqual(previewSetting(parsePreviewMethod('none')), { previews: false });
  assert.deepEqual(previewSetting(parsePreviewMethod('AUTO')), { previews: true });
  assert.deepEqual(previewSetting(parsePreviewMethod('latent2rgb')), { previews: true });
  assert.match(previewSetting(parsePreviewMethod('taesd')).note!, /latent2rgb/);
  assert.throws(() => parsePreviewMethod('fast'), /none, auto, latent2rgb, taesd/);
});
