/**
 * Issue 18 findings 1, 2, 7, 8 and 9: requests that used to crash the server, fill its database or leave files behind.
 * Each test runs the attack against a stub server in its own process (child-harness.ts) with a prompt queued first,
 * then checks the refusal (the right 4xx, quickly), that the process is alive, and that the queued prompt completed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, statSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnStubServer, rawRequest, quick, queueWitness, assertAliveAndWhole } from './child-harness.js';
import { uploadForm, WsClient } from '../server/protocol-client.js';
import { encodePng } from '../../server/storage/png.js';
import { chainPrompt } from '../executor/stub-server.js';

const upgrade = (path: string, port: string, extra = '') =>
  `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
  `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;
const png2x2 = () => encodePng(new Uint8Array(12).fill(200), 2, 2, 3);

test('finding 1: a websocket upgrade to an unparsable URL gets 400 and the server stays up', async () => {
  const s = await spawnStubServer();
  try {
    const witness = await queueWitness(s.url);
    const port = new URL(s.url).port;
    for (const path of ['//[', '//[::1', 'http://[', '//a:b@[x]/ws']) {
      const reply = await rawRequest(s.url, upgrade(path, port));
      assert.match(reply, /^HTTP\/1\.1 4\d\d /, `${path}: ${JSON.stringify(reply.slice(0, 80))}`);
    }
    // a plain HTTP request to the same URL is refused too, not answered with 500
    assert.match(
      await rawRequest(s.url, `GET //[ HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`),
      /^HTTP\/1\.1 4\d\d /,
    );
    await assertAliveAndWhole(s, witness);
    const ws = await WsClient.connect(s.url, 'after-attack');
    ws.close();
  } finally {
    await s.stop();
  }
});

test('finding 2: a malformed tcd_token cookie is refused with 401, never a crash or a 500', async () => {
  const token = 'hardening-token';
  const s = await spawnStubServer({ token });
  const auth = { authorization: `Bearer ${token}` };
  try {
    const witness = await queueWitness(s.url, auth);
    const port = new URL(s.url).port;
    const bad = 'tcd_token=%E0%A4%A';
    assert.match(await rawRequest(s.url, upgrade('/ws?clientId=x', port, `Cookie: ${bad}\r\n`)), /^HTTP\/1\.1 401 /);
    assert.equal((await quick(s.url, 'GET', '/prompt', undefined, { cookie: bad })).status, 401);
    // the token given another way still works next to the broken cookie
    assert.equal((await quick(s.url, 'GET', '/prompt', undefined, { cookie: bad, ...auth })).status, 200);
    // the editor's own page stays reachable so it can ask for the token again (404 here: the stub has no editor)
    assert.notEqual((await quick(s.url, 'GET', '/', undefined, { cookie: bad })).status, 500);
    await assertAliveAndWhole(s, witness, auth);
  } finally {
    await s.stop();
  }
});

function dbBytes(root: string): number {
  const d = join(root, 'data');
  return readdirSync(d).reduce((n, f) => n + statSync(join(d, f)).size, 0);
}

test('finding 7: oversized client_id and extra_data are refused with 4xx and do not reach the database', async () => {
  const s = await spawnStubServer();
  try {
    const witness = await queueWitness(s.url);
    const before = dbBytes(s.root);
    const longId = await quick(
      s.url,
      'POST',
      '/prompt',
      { prompt: chainPrompt(), client_id: 'c'.repeat(4 << 20) },
      {},
      6000,
    );
    assert.equal(longId.status, 400, longId.text.slice(0, 200));
    assert.equal(longId.json.error.type, 'invalid_prompt');
    assert.match(longId.json.error.message, /client_id/);
    // the client id ComfyUI reads from extra_data (1 MiB: within extra_data's own bound) has the same ceiling
    const longExtraId = await quick(
      s.url,
      'POST',
      '/prompt',
      { prompt: chainPrompt(), extra_data: { client_id: 'c'.repeat(1 << 20) } },
      {},
      6000,
    );
    assert.equal(longExtraId.status, 400, longExtraId.text.slice(0, 200));
    assert.match(longExtraId.json.error.message, /client_id/);
    const bigExtra = await quick(
      s.url,
      'POST',
      '/prompt',
      { prompt: chainPrompt(), extra_data: { junk: 'x'.repeat(8 << 20) } },
      {},
      6000,
    );
    assert.equal(bigExtra.status, 413, bigExtra.text.slice(0, 200));
    assert.match(bigExtra.json.error.message, /extra_data/);
    await assertAliveAndWhole(s, witness);
    assert.ok(dbBytes(s.root) - before < 1 << 20, `database grew by ${dbBytes(s.root) - before} bytes`);
    // history is still served whole, and paged
    const h = await quick(s.url, 'GET', '/history');
    assert.equal(h.status, 200);
    assert.ok(h.json[witness]);
    assert.deepEqual(Object.keys((await quick(s.url, 'GET', '/history?max_items=1')).json), [witness]);
  } finally {
    await s.stop();
  }
});

test('finding 8: an upload named "." (or "..", "", a folder) is refused before anything is written', async () => {
  const s = await spawnStubServer();
  try {
    const witness = await queueWitness(s.url);
    const listing = () =>
      readdirSync(s.root).sort().join(',') + '|' + readdirSync(join(s.root, 'input')).sort().join(',');
    mkdirSync(join(s.root, 'input', 'folder'), { recursive: true });
    const before = listing();
    for (const name of ['.', '..', 'folder', 'x\u0001.png']) {
      for (const overwrite of ['true', 'false']) {
        const r = await quick(s.url, 'POST', '/upload/image', uploadForm(name, png2x2(), { overwrite }));
        assert.equal(r.status, 400, `${JSON.stringify(name)} overwrite=${overwrite}: ${r.status} ${r.text}`);
      }
    }
    assert.equal(listing(), before, 'no file left in input/ or its parent');
    await assertAliveAndWhole(s, witness);
  } finally {
    await s.stop();
  }
});

/** A 1x1 24-bit BMP with a real header. */
function bmp1x1(): Buffer {
  const b = Buffer.alloc(58);
  b.write('BM', 0, 'latin1');
  b.writeUInt32LE(58, 2);
  b.writeUInt32LE(54, 10);
  b.writeUInt32LE(40, 14);
  b.writeInt32LE(1, 18);
  b.writeInt32LE(1, 22);
  b.writeUInt16LE(1, 26);
  b.writeUInt16LE(24, 28);
  b.writeUInt32LE(4, 34);
  return b;
}

test('finding 9: UTF-8 names end to end, reserved temp names refused, images recognised by a real header', async () => {
  const s = await spawnStubServer();
  try {
    const witness = await queueWitness(s.url);
    // an output name outside Latin-1 is served, with an RFC 5987 Content-Disposition
    const outName = '画像 ✓ "q".png';
    writeFileSync(join(s.root, 'output', outName), png2x2());
    const v = await quick(s.url, 'GET', `/view?filename=${encodeURIComponent(outName)}&type=output`);
    assert.equal(v.status, 200, v.text);
    const cd = v.headers.get('content-disposition')!;
    assert.ok(
      cd.includes(
        `filename*=UTF-8''${encodeURIComponent(outName).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)}`,
      ),
      cd,
    );
    assert.ok(/^[\x20-\x7e]*$/.test(cd), `header is plain ASCII: ${cd}`);
    // an upload name outside ASCII arrives unchanged
    const upName = 'café 画像.png';
    const up = await quick(s.url, 'POST', '/upload/image', uploadForm(upName, png2x2()));
    assert.equal(up.status, 200, up.text);
    assert.equal(up.json.name, upName);
    assert.ok(readdirSync(join(s.root, 'input')).includes(upName));
    assert.equal((await quick(s.url, 'GET', `/view?filename=${encodeURIComponent(upName)}&type=input`)).status, 200);
    // the server's own temp-file prefix is reserved
    const partial = await quick(s.url, 'POST', '/upload/image', uploadForm('.tcd-partial-abc-x.png', png2x2()));
    assert.equal(partial.status, 400, partial.text);
    assert.ok(!readdirSync(join(s.root, 'input')).some((n) => n.startsWith('.tcd-partial-')));
    // "BM" followed by anything is not a BMP; neither is a PNG signature without its header chunk
    for (const bytes of [
      Buffer.from('BM<script>alert(1)</script>'),
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]),
    ]) {
      const r = await quick(s.url, 'POST', '/upload/image', uploadForm('fake.png', bytes));
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.error.type, 'not_an_image');
    }
    assert.equal((await quick(s.url, 'POST', '/upload/image', uploadForm('real.bmp', bmp1x1()))).status, 200);
    assert.ok(!existsSync(join(s.root, 'input', 'fake.png')));
    await assertAliveAndWhole(s, witness);
  } finally {
    await s.stop();
  }
});
