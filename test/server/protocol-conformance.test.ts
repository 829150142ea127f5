/**
 * Conformance points found by the protocol audit (/work/coord/audit-protocol.md), each against the real server on a
 * real port: POST /upload/mask (ComfyUI's mask editor), annotated `name [output]` file names in /view, events routed
 * by extra_data.client_id, any websocket clientId kept as the sid, extra_data.preview_method none, torch_vram_* in
 * /system_stats, hidden inputs listed in input_order.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PNG } from 'pngjs';
import { api, WsClient, uploadForm, waitHistory, sleep } from './protocol-client.js';
import { startStubServer, stubRegistry, chainPrompt, type StubServer } from '../executor/stub-server.js';
import { encodePng, readPngText } from '../../server/storage/png.js';

let s: StubServer;
before(async () => {
  const registry = stubRegistry();
  const load = registry.get('StubLoad')!;
  registry.set('StubHidden', { ...load, id: 'StubHidden', hidden: { prompt: 'PROMPT', unique_id: 'UNIQUE_ID' } });
  s = await startStubServer({ registry });
});
after(async () => {
  await s.stop();
});

/** A 3x2 RGB image with a `prompt` text chunk; pixel i is (10i, 20i, 30i). */
function originalPng(): Buffer {
  const px = new Uint8Array(3 * 2 * 3);
  for (let i = 0; i < 6; i++) px.set([10 * i, 20 * i, 30 * i], i * 3);
  return encodePng(px, 3, 2, 3, { prompt: '{"1":{}}' });
}

/** An RGBA mask of the given size whose alpha at pixel i is 40i (its colour is ignored). */
function maskPng(w = 3, h = 2): Buffer {
  const px = new Uint8Array(w * h * 4);
  for (let i = 0; i < w * h; i++) px.set([255, 0, 0, 40 * i], i * 4);
  return encodePng(px, w, h, 4);
}

test('POST /upload/mask stores the original image with the mask alpha, keeping its text chunks', async () => {
  const up = await api(s.url, 'POST', '/upload/image', uploadForm('photo.png', originalPng()));
  assert.equal(up.status, 200);
  assert.deepEqual(up.json, { name: 'photo.png', subfolder: '', type: 'input' });
  // the form ComfyUI's mask editor sends
  const form = uploadForm('clipspace-mask-1.png', maskPng(), {
    original_ref: JSON.stringify({ filename: 'photo.png', subfolder: '', type: 'input' }),
    type: 'input',
    subfolder: 'clipspace',
  });
  const r = await api(s.url, 'POST', '/upload/mask', form);
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { name: 'clipspace-mask-1.png', subfolder: 'clipspace', type: 'input' });
  const v = await api(s.url, 'GET', '/view?filename=clipspace-mask-1.png&subfolder=clipspace&type=input');
  assert.equal(v.status, 200);
  assert.equal(v.headers.get('content-type'), 'image/png');
  const png = PNG.sync.read(v.bytes);
  assert.equal(png.width, 3);
  assert.equal(png.height, 2);
  for (let i = 0; i < 6; i++)
    assert.deepEqual([...png.data.subarray(i * 4, i * 4 + 4)], [10 * i, 20 * i, 30 * i, 40 * i], `pixel ${i}`);
  assert.deepEqual(readPngText(v.bytes), { prompt: '{"1":{}}' });

  // the /api prefix, and an annotated original name (its folder named in the name, not in `type`)
  const again = await api(
    s.url,
    'POST',
    '/api/upload/mask',
    uploadForm('clipspace-mask-2.png', maskPng(), {
      original_ref: JSON.stringify({ filename: 'clipspace/clipspace-mask-1.png [input]' }),
      type: 'input',
      subfolder: 'clipspace',
    }),
  );
  assert.equal(again.status, 200, again.text);
  assert.equal(again.json.name, 'clipspace-mask-2.png');
});

test('POST /upload/mask refuses a missing original, a mask of another size and a form without original_ref', async () => {
  await api(s.url, 'POST', '/upload/image', uploadForm('base.png', originalPng()));
  const ask = (fields: Record<string, string>, mask = maskPng()) =>
    api(s.url, 'POST', '/upload/mask', uploadForm('m.png', mask, { type: 'input', ...fields }));
  const missing = await ask({ original_ref: JSON.stringify({ filename: 'nope.png', type: 'input' }) });
  assert.equal(missing.status, 404);
  assert.equal(missing.json.error.type, 'not_found');
  const size = await ask({ original_ref: JSON.stringify({ filename: 'base.png', type: 'input' }) }, maskPng(4, 2));
  assert.equal(size.status, 400);
  assert.match(size.json.error.message, /4x2.*3x2/);
  const noRef = await ask({});
  assert.equal(noRef.status, 400);
  assert.match(noRef.json.error.message, /original_ref/);
  const escape = await ask({ original_ref: JSON.stringify({ filename: '../base.png', type: 'input' }) });
  assert.equal(escape.status, 400);
  // nothing was written for the refused uploads
  assert.equal((await api(s.url, 'GET', '/view?filename=m.png&type=input')).status, 404);
});

test('GET /view reads the folder from an annotated name: `name.png [input]`', async () => {
  await api(s.url, 'POST', '/upload/image', uploadForm('annotated.png', originalPng(), { subfolder: 'pasted' }));
  const plain = await api(s.url, 'GET', '/view?filename=annotated.png&subfolder=pasted&type=input');
  assert.equal(plain.status, 200);
  const q = encodeURIComponent('annotated.png [input]');
  const annotated = await api(s.url, 'GET', `/view?filename=${q}&subfolder=pasted&type=output`);
  assert.equal(annotated.status, 200, annotated.text);
  assert.ok(annotated.bytes.equals(plain.bytes));
  // the annotation picks the folder: the same name annotated [temp] is not there
  const temp = encodeURIComponent('annotated.png [temp]');
  assert.equal((await api(s.url, 'GET', `/view?filename=${temp}&subfolder=pasted`)).status, 404);
});

test('a prompt with its client id only in extra_data sends its events to that client alone', async () => {
  const owner = await WsClient.connect(s.url, 'ex-owner');
  const bystander = await WsClient.connect(s.url, 'ex-bystander');
  const r = await api(s.url, 'POST', '/prompt', {
    prompt: chainPrompt({ seed: 31, prefix: 'extra' }),
    extra_data: { client_id: 'ex-owner' },
  });
  assert.equal(r.status, 200);
  const id = r.json.prompt_id;
  const evs = await owner.untilDone(id);
  assert.ok(evs.some((e) => e.type === 'execution_success'));
  await sleep(100);
  assert.deepEqual(
    bystander.forPrompt(id).map((e) => e.type),
    [],
    'another client hears nothing of the prompt',
  );
  const h = await waitHistory(s.url, id);
  assert.equal(h.prompt[3].client_id, 'ex-owner');
  owner.close();
  bystander.close();
});

test('/system_stats devices carry torch_vram_total and torch_vram_free; input_order lists hidden inputs', async () => {
  const stats = (await api(s.url, 'GET', '/system_stats')).json;
  for (const d of stats.devices) {
    assert.equal(typeof d.torch_vram_total, 'number');
    assert.equal(typeof d.torch_vram_free, 'number');
  }
  const info = (await api(s.url, 'GET', '/object_info/StubHidden')).json.StubHidden;
  assert.deepEqual(info.input.hidden, { prompt: 'PROMPT', unique_id: 'UNIQUE_ID' });
  assert.deepEqual(info.input_order, { required: ['value'], hidden: ['prompt', 'unique_id'] });
});

test('a websocket clientId with spaces or @ is kept as the sid, so prompts queued with it reach the socket', async () => {
  const cid = 'my client@host/1';
  const ws = await WsClient.connect(s.url, cid);
  assert.equal(ws.messages[0].data.sid, cid);
  const r = await api(s.url, 'POST', '/prompt', { prompt: chainPrompt({ seed: 41, prefix: 'sid' }), client_id: cid });
  const evs = await ws.untilDone(r.json.prompt_id);
  assert.ok(evs.some((e) => e.type === 'execution_success'));
  ws.close();
});

test("extra_data.preview_method 'none' (the frontend's per-prompt setting) sends no preview frames for that prompt", async () => {
  const ws = await WsClient.connect(s.url, 'pv');
  const prompt = {
    '1': { class_type: 'StubLoad', inputs: { value: 1 } },
    '2': { class_type: 'StubPreview', inputs: { x: ['1', 0], count: 5, kb: 1 } },
    '3': { class_type: 'StubSave', inputs: { x: ['2', 0], filename_prefix: 'pv' } },
  };
  const run = async (extra: Record<string, unknown>) => {
    const before = ws.binary.length;
    const r = await api(s.url, 'POST', '/prompt', { prompt, client_id: 'pv', extra_data: extra });
    const evs = await ws.untilDone(r.json.prompt_id);
    assert.equal(evs.filter((e) => e.type === 'progress').length, 5, 'progress still reported');
    return ws.binary.length - before;
  };
  assert.equal(await run({ preview_method: 'none' }), 0);
  // a new upstream value makes the preview node run again (an unchanged graph would come from the cache)
  prompt['1'].inputs.value = 2;
  assert.equal(await run({ preview_method: 'auto' }), 5);
  prompt['1'].inputs.value = 3;
  assert.equal(await run({}), 5);
  ws.close();
});
