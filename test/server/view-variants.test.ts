/** GET /view with ComfyUI's `preview=jpeg;Q` / `webp;Q` and `channel=rgb|a` on a PNG with alpha. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import jpeg from 'jpeg-js';
import { startStubServer, type StubServer } from '../executor/stub-server.js';
import { encodePng, decodePng } from '../../server/storage/png.js';

let s: StubServer;
const W = 16,
  H = 8;
before(async () => {
  s = await startStubServer();
  const px = new Uint8Array(W * H * 4);
  for (let i = 0; i < W * H; i++) {
    px[i * 4] = 200;
    px[i * 4 + 1] = 40;
    px[i * 4 + 2] = 90;
    px[i * 4 + 3] = i % 2 ? 255 : 64;
  }
  writeFileSync(join(s.services.dirs.output, 'a.png'), encodePng(px, W, H, 4));
});
after(async () => {
  await s.stop();
});

const get = (q: string) => fetch(`${s.url}/view?filename=a.png&type=output${q}`);

test('no parameters: the original bytes', async () => {
  const r = await get('');
  assert.equal(r.headers.get('content-type'), 'image/png');
  assert.deepEqual(Buffer.from(await r.arrayBuffer()), readFileSync(join(s.services.dirs.output, 'a.png')));
});

test('preview=jpeg;80 and preview=webp;90 give a JPEG of the same size and colour', async () => {
  for (const q of ['&preview=jpeg;80', '&preview=webp;90']) {
    const r = await get(q);
    assert.equal(r.headers.get('content-type'), 'image/jpeg', q);
    const img = jpeg.decode(new Uint8Array(await r.arrayBuffer()));
    assert.deepEqual([img.width, img.height], [W, H]);
    assert.ok(Math.abs(img.data[0] - 200) < 12 && Math.abs(img.data[1] - 40) < 12, `${q}: ${img.data.slice(0, 3)}`);
  }
});

test('channel=rgb drops alpha; channel=a keeps only alpha over black', async () => {
  const rgb = decodePng(new Uint8Array(await (await get('&channel=rgb')).arrayBuffer()));
  assert.deepEqual([rgb.rgba[0], rgb.rgba[1], rgb.rgba[2], rgb.rgba[3]], [200, 40, 90, 255]);
  const a = decodePng(new Uint8Array(await (await get('&channel=a')).arrayBuffer()));
  assert.deepEqual([a.rgba[0], a.rgba[1], a.rgba[2], a.rgba[3], a.rgba[7]], [0, 0, 0, 64, 255]);
});
