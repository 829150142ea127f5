/**
 * Issue 18 finding 5: a small PNG declaring 10000x10000 pixels (a decompression bomb) used to block the server for
 * seconds through /view?preview=jpeg and LoadImage and pin gigabytes in the output cache that /free did not clear.
 * Now every decoder checks the declared size against a pixel budget before decoding, and /free drops cached outputs.
 * Runs the real node registry (LoadImage, PreviewImage) in a child process; nothing here needs a model.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync, crc32 } from 'node:zlib';
import { spawnStubServer, quick, type ChildServer } from './child-harness.js';
import { api, uploadForm, waitHistory, sleep } from '../server/protocol-client.js';
import { encodePng } from '../../server/storage/png.js';
import { VariantCache } from '../../server/storage/variant-cache.js';

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

/** A valid 1-bit greyscale PNG of `side` x `side` pixels, all black: a few hundred KiB that decode to gigabytes. */
function bombPng(side: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(side, 0);
  ihdr.writeUInt32BE(side, 4);
  ihdr[8] = 1;
  ihdr[9] = 0;
  const raw = Buffer.alloc(side * (1 + Math.ceil(side / 8)));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

let s: ChildServer;
const bomb = bombPng(10000);
const small = encodePng(new Uint8Array(8 * 8 * 3).fill(90), 8, 8, 3);
const loadAndPreview = (image: string) => ({
  '1': { class_type: 'LoadImage', inputs: { image } },
  '2': { class_type: 'PreviewImage', inputs: { images: ['1', 0] } },
});

before(async () => {
  s = await spawnStubServer({ real: true });
  writeFileSync(join(s.root, 'input', 'small.png'), small);
});
after(async () => {
  await s.stop();
});

/** Queue a small LoadImage -> PreviewImage prompt (the one that must not be lost). */
async function witness(): Promise<string> {
  const r = await api(s.url, 'POST', '/prompt', { prompt: loadAndPreview('small.png') });
  assert.equal(r.status, 200, r.text);
  return r.json.prompt_id;
}
async function assertWhole(id: string): Promise<void> {
  assert.ok(s.alive(), s.stderr());
  assert.equal((await quick(s.url, 'GET', '/prompt')).status, 200);
  assert.equal((await waitHistory(s.url, id, 30000)).status.status_str, 'success');
}

test('finding 5: a PNG bomb is refused at upload (413) from its header', async () => {
  assert.ok(bomb.length < 2 << 20, `bomb is ${bomb.length} bytes`);
  const id = await witness();
  const r = await quick(s.url, 'POST', '/upload/image', uploadForm('bomb.png', bomb));
  assert.equal(r.status, 413, r.text);
  assert.equal(r.json.error.type, 'image_too_large');
  assert.match(r.json.error.message, /10000x10000/);
  assert.ok(!readdirSync(join(s.root, 'input')).includes('bomb.png'));
  await assertWhole(id);
});

test('finding 5: /view?preview=jpeg of a PNG bomb already on disk answers 413 at once; the original stays downloadable', async () => {
  writeFileSync(join(s.root, 'output', 'bomb.png'), bomb);
  const id = await witness();
  const r = await quick(s.url, 'GET', '/view?filename=bomb.png&type=output&preview=jpeg;80');
  assert.equal(r.status, 413, r.text.slice(0, 200));
  assert.equal((await quick(s.url, 'GET', '/view?filename=bomb.png&type=output&channel=a')).status, 413);
  const raw = await quick(s.url, 'GET', '/view?filename=bomb.png&type=output');
  assert.equal(raw.status, 200);
  assert.equal(raw.bytes.length, bomb.length);
  await assertWhole(id);
});

test('finding 5: LoadImage of a PNG bomb fails the prompt at once, naming the node and the size', async () => {
  writeFileSync(join(s.root, 'input', 'bomb.png'), bomb);
  const t0 = Date.now();
  const r = await api(s.url, 'POST', '/prompt', { prompt: loadAndPreview('bomb.png') });
  assert.equal(r.status, 200, r.text);
  const id = await witness();
  const h = await waitHistory(s.url, r.json.prompt_id, 30000);
  assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
  assert.equal(h.status.status_str, 'error');
  const err = h.status.messages.find((m: [string, any]) => m[0] === 'execution_error')[1];
  assert.equal(err.node_type, 'LoadImage');
  assert.match(err.exception_message, /10000x10000/);
  await assertWhole(id);
});

test('finding 5: POST /free with free_memory drops cached node outputs', async () => {
  const cached = async () => {
    const id = (await api(s.url, 'POST', '/prompt', { prompt: loadAndPreview('small.png') })).json.prompt_id;
    const h = await waitHistory(s.url, id, 30000);
    return h.status.messages.find((m: [string, any]) => m[0] === 'execution_cached')[1].nodes as string[];
  };
  await cached();
  assert.deepEqual((await cached()).sort(), ['1', '2'], 'a repeat is served from the cache');
  assert.equal((await quick(s.url, 'POST', '/free', { free_memory: true })).status, 200);
  await sleep(50);
  assert.deepEqual(await cached(), [], 'after /free everything runs again');
});

test('previews are cached by bytes, least recently used first, and keyed by the file state', () => {
  const c = new VariantCache<{ bytes: Uint8Array }>(1000);
  const k = (i: number) => VariantCache.key('/a.png', 10, i, ['jpeg']);
  for (let i = 0; i < 6; i++) c.set(k(i), { bytes: new Uint8Array(200) });
  assert.equal(c.totalBytes, 1000);
  assert.equal(c.get(k(0)), undefined, 'oldest dropped past 1000 bytes');
  assert.ok(c.get(k(1)));
  c.set(k(9), { bytes: new Uint8Array(200) });
  assert.ok(c.get(k(1)), 'recently used survives');
  assert.equal(c.get(k(2)), undefined);
  c.set(k(10), { bytes: new Uint8Array(400) });
  assert.ok(c.totalBytes <= 1000);
  assert.notEqual(VariantCache.key('/a.png', 10, 1, ['jpeg']), VariantCache.key('/a.png', 11, 1, ['jpeg']));
});
