/**
 * GET /internal/files/{input|output|temp}: the "Imported" tab of ComfyUI's assets panel lists the input folder
 * through it (newest first, file names only); a 404 there made the tab fail ("Failed to fetch input files").
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { api, uploadForm } from '../server/protocol-client.js';
import { startStubServer, type StubServer } from '../executor/stub-server.js';
import { encodePng } from '../../server/storage/png.js';

const stubs: StubServer[] = [];
after(async () => {
  for (const s of stubs) await s.stop();
});

test('/internal/files/input lists uploads newest first, files only; output and temp too; other types are refused', async () => {
  const s = await startStubServer();
  stubs.push(s);
  assert.deepEqual((await api(s.url, 'GET', '/internal/files/input')).json, []);
  const png = encodePng(new Uint8Array(4 * 4 * 3).fill(90), 4, 4, 3);
  for (const name of ['old.png', 'new.png']) {
    const up = await api(s.url, 'POST', '/upload/image', uploadForm(name, png));
    assert.equal(up.status, 200, up.text);
  }
  // a pasted image lands in input/pasted/: a folder, not listed (ComfyUI lists the folder's own files)
  assert.equal(
    (await api(s.url, 'POST', '/upload/image', uploadForm('p.png', png, { subfolder: 'pasted' }))).status,
    200,
  );
  const input = join(s.root, 'input');
  utimesSync(join(input, 'old.png'), new Date(1_000_000_000_000), new Date(1_000_000_000_000));
  utimesSync(join(input, 'new.png'), new Date(1_700_000_000_000), new Date(1_700_000_000_000));
  writeFileSync(join(input, '.hidden'), 'x');
  symlinkSync(join(input, 'old.png'), join(input, 'linked.png'));
  utimesSync(join(input, 'old.png'), new Date(1_000_000_000_000), new Date(1_000_000_000_000));
  const listed = await api(s.url, 'GET', '/internal/files/input');
  assert.equal(listed.status, 200);
  // the link has its target's time: old.png and linked.png tie, then go by name
  assert.deepEqual(listed.json, ['new.png', 'linked.png', 'old.png']);
  assert.deepEqual((await api(s.url, 'GET', '/api/internal/files/input')).json, listed.json, 'under /api too');
  mkdirSync(join(s.root, 'output'), { recursive: true });
  writeFileSync(join(s.root, 'output', 'ComfyUI_00001_.png'), png);
  assert.deepEqual((await api(s.url, 'GET', '/internal/files/output')).json, ['ComfyUI_00001_.png']);
  assert.deepEqual((await api(s.url, 'GET', '/internal/files/temp')).json, []);
  const bad = await api(s.url, 'GET', '/internal/files/models');
  assert.equal(bad.status, 400);
});
