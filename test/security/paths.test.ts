/**
 * Issue 10 point 2: /view, /upload/image and model names refuse traversal (`..`, absolute paths, encoded forms,
 * NUL, backslashes, symlinks that leave the folder); uploads must be images; files are written atomically and
 * partial files from a crash are swept at start-up.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync, symlinkSync, readdirSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { api, uploadForm } from '../server/protocol-client.js';
import { startStubServer, type StubServer } from '../executor/stub-server.js';
import { encodePng } from '../../server/storage/png.js';
import { ModelFolders } from '../../server/storage/model-folders.js';
import { TEMP_PREFIX } from '../../server/storage/atomic-write.js';

let s: StubServer;
const PNG = encodePng(new Uint8Array(12).fill(7), 2, 2, 3);
const SECRET = 'top secret outside the served folders';

before(async () => {
  s = await startStubServer({ execute: false, maxUploadBytes: 64 * 1024 });
  writeFileSync(join(s.root, 'secret.txt'), SECRET);
  writeFileSync(join(join(s.root, 'output'), 'ok.png'), PNG);
  mkdirSync(join(join(s.root, 'output'), 'sub'), { recursive: true });
  writeFileSync(join(join(s.root, 'output'), 'sub', 'in-sub.png'), PNG);
  symlinkSync(s.root, join(join(s.root, 'output'), 'escape-dir'));
  symlinkSync(join(s.root, 'secret.txt'), join(join(s.root, 'output'), 'escape-file.png'));
  symlinkSync(s.root, join(s.root, 'input', 'escape-dir'));
});
after(async () => {
  await s.stop();
});

const view = (q: string) => api(s.url, 'GET', `/view?${q}`);

test('/view serves files inside the folders', async () => {
  assert.equal((await view('filename=ok.png')).status, 200);
  assert.equal((await view('filename=in-sub.png&subfolder=sub&type=output')).status, 200);
  assert.equal((await view('filename=nope.png')).status, 404);
  assert.equal((await view('filename=ok.png&type=secret')).status, 400);
  assert.equal((await view('')).status, 400);
});

test('/view refuses traversal in every spelling and never returns the secret', async () => {
  const names = [
    'filename=../secret.txt',
    'filename=..%2Fsecret.txt',
    'filename=%2E%2E%2Fsecret.txt',
    'filename=..%252Fsecret.txt',
    'filename=..%5Csecret.txt',
    `filename=${encodeURIComponent(join(s.root, 'secret.txt'))}`,
    'filename=/etc/passwd',
    'filename=secret.txt&subfolder=..',
    'filename=secret.txt&subfolder=..%2F',
    'filename=secret.txt&subfolder=sub%2F..%2F..',
    'filename=secret.txt&subfolder=%2Ftmp',
    'filename=ok.png%00.txt',
    'filename=ok.png&subfolder=sub%00',
    'filename=secret.txt&subfolder=escape-dir',
    'filename=escape-file.png',
    'filename=C:%5Cwindows%5Cwin.ini',
    'filename=secret.txt&type=input&subfolder=escape-dir',
    'filename[]=a&filename[]=b',
  ];
  for (const q of names) {
    const r = await view(q);
    assert.ok([400, 403, 404].includes(r.status), `${q}: ${r.status}`);
    assert.ok(!r.text.includes(SECRET), q);
  }
  assert.equal((await view('filename=secret.txt&subfolder=escape-dir')).status, 403, 'symlinked folder out');
  assert.equal((await view('filename=escape-file.png')).status, 403, 'symlinked file out');
  assert.equal((await view('filename=../secret.txt')).status, 400);
});

test('/view sends files so a browser cannot run them; /workflows refuses traversal', async () => {
  const polyglot = Buffer.concat([
    Buffer.from(PNG.subarray(0, 33)),
    Buffer.from('<html><script>alert(1)</script></html>'),
  ]);
  const up = await api(s.url, 'POST', '/upload/image', uploadForm('page.html', polyglot));
  assert.equal(up.status, 200, 'it starts with a whole PNG header, so it is accepted');
  const v = await view(`filename=${up.json.name}&type=input`);
  assert.equal(v.headers.get('content-type'), 'application/octet-stream');
  assert.equal(v.headers.get('x-content-type-options'), 'nosniff');
  assert.match(v.headers.get('content-security-policy') ?? '', /sandbox/);
  mkdirSync(join(s.root, 'workflows'), { recursive: true });
  writeFileSync(join(s.root, 'workflows', 'w.json'), '{"nodes":[],"links":[]}');
  assert.equal((await api(s.url, 'GET', '/workflows/w')).status, 200);
  for (const name of ['..%2Fsecret.txt', '..%2F..%2Fetc%2Fpasswd', '%2Fetc%2Fpasswd', '..%5Csecret']) {
    const r = await api(s.url, 'GET', `/workflows/${name}`);
    assert.ok([400, 403, 404].includes(r.status), `${name}: ${r.status}`);
    assert.ok(!r.text.includes(SECRET));
  }
});

test('/upload/image stores images, renames clashes, reuses identical bytes, overwrites on request', async () => {
  const up = (name: string, bytes: Uint8Array, fields: Record<string, string> = {}) =>
    api(s.url, 'POST', '/upload/image', uploadForm(name, bytes, fields));
  const a = await up('pic.png', PNG);
  assert.equal(a.status, 200);
  assert.deepEqual(a.json, { name: 'pic.png', subfolder: '', type: 'input' });
  assert.deepEqual((await up('pic.png', PNG)).json.name, 'pic.png', 'identical bytes: same file');
  const other = encodePng(new Uint8Array(12).fill(9), 2, 2, 3);
  assert.equal((await up('pic.png', other)).json.name, 'pic (1).png');
  assert.equal((await up('pic.png', other, { overwrite: 'true' })).json.name, 'pic.png');
  assert.ok(readFileSync(join(s.root, 'input', 'pic.png')).equals(Buffer.from(other)));
  const sub = await up('x.png', PNG, { subfolder: 'albums/2024', type: 'temp' });
  assert.deepEqual(sub.json, { name: 'x.png', subfolder: 'albums/2024', type: 'temp' });
  assert.ok(existsSync(join(s.root, 'temp', 'albums', '2024', 'x.png')));
  assert.ok(!readdirSync(join(s.root, 'input')).some((n) => n.startsWith(TEMP_PREFIX)), 'no temp file left behind');
});

test('/upload/image refuses non-images, oversized files, traversal in name or subfolder, symlinked folders', async () => {
  const up = (name: string, bytes: Uint8Array, fields: Record<string, string> = {}) =>
    api(s.url, 'POST', '/upload/image', uploadForm(name, bytes, fields));
  const html = await up('evil.png', Buffer.from('<html><script>alert(1)</script></html>'));
  assert.equal(html.status, 400);
  assert.equal(html.json.error.type, 'not_an_image');
  assert.equal((await up('big.png', Buffer.concat([Buffer.from(PNG), Buffer.alloc(70 * 1024)]))).status, 413);
  for (const [name, fields] of [
    ['../x.png', {}],
    ['..\\x.png', {}],
    ['/tmp/x.png', {}],
    ['a/b.png', {}],
    ['x\u0000.png', {}],
    ['x.png', { subfolder: '../..' }],
    ['x.png', { subfolder: '/tmp' }],
    ['x.png', { subfolder: '%2e%2e' }],
    ['x.png', { type: 'models' }],
  ] as [string, Record<string, string>][]) {
    const r = await up(name, PNG, fields);
    // multipart file names are reduced to their last segment (like ComfyUI): then it must land in input/ itself
    if (r.status === 200)
      assert.ok(
        !Object.keys(fields).length &&
          !/[\\/]|\.\./.test(r.json.name) &&
          existsSync(join(s.root, 'input', r.json.name)),
        `${name}: ${r.text}`,
      );
    else assert.ok(r.status === 400 || r.status === 403, `${name} ${JSON.stringify(fields)}: ${r.status}`);
  }
  assert.equal((await up('x.png', PNG, { subfolder: 'escape-dir' })).status, 403);
  assert.ok(!existsSync(join(s.root, 'x.png')));
  const noFile = await api(
    s.url,
    'POST',
    '/upload/image',
    (() => {
      const f = new FormData();
      f.append('overwrite', 'true');
      return f;
    })(),
  );
  assert.equal(noFile.status, 400);
  assert.equal((await api(s.url, 'POST', '/upload/image', { image: 'x' })).status, 400, 'not multipart');
});

test('model names: traversal, absolute and NUL are refused, the error names the file; links inside models/ are followed', () => {
  const root = join(s.root, 'models');
  mkdirSync(join(root, 'checkpoints', 'nested'), { recursive: true });
  writeFileSync(join(root, 'checkpoints', 'nested', 'a.safetensors'), 'x');
  writeFileSync(join(s.root, 'outside.safetensors'), 'x');
  symlinkSync(join(s.root, 'outside.safetensors'), join(root, 'checkpoints', 'linked-out.safetensors'));
  const m = new ModelFolders(root);
  assert.equal(m.resolve('checkpoints', 'nested/a.safetensors'), join(root, 'checkpoints', 'nested', 'a.safetensors'));
  for (const bad of [
    '../outside.safetensors',
    '..%2Foutside.safetensors',
    join(s.root, 'outside.safetensors'),
    'nested/../../../outside.safetensors',
    'a\u0000.safetensors',
    'nested\\..\\..\\x',
  ]) {
    assert.throws(() => m.resolve('checkpoints', bad), /must|NUL|escapes/, bad);
  }
  assert.throws(() => m.resolve('checkpoints', '../outside.safetensors'), /outside\.safetensors/);
  // issue 15 point 5: as in ComfyUI, a link placed inside models/ by the machine's owner is listed and loaded
  assert.equal(m.resolve('checkpoints', 'linked-out.safetensors'), join(root, 'checkpoints', 'linked-out.safetensors'));
  assert.ok(m.list('checkpoints').includes('linked-out.safetensors'));
  assert.throws(() => m.resolve('checkpoints', 'missing.safetensors'), /missing\.safetensors/);
  assert.throws(() => m.resolve('../etc', 'x'), /unknown model folder/);
});

test('partial files a crash left in output/, input/, temp/ are removed at start-up', async () => {
  const s2 = await startStubServer({ execute: false });
  const root = s2.root;
  await s2.stop({ keep: true });
  writeFileSync(join(root, 'output', `${TEMP_PREFIX}abc-ComfyUI_00001_.png`), 'half');
  writeFileSync(join(root, 'temp', `${TEMP_PREFIX}abc-x.png`), 'half');
  const s3 = await startStubServer({ root, execute: false });
  assert.deepEqual(
    readdirSync(join(root, 'output')).filter((n) => n.startsWith(TEMP_PREFIX)),
    [],
  );
  assert.deepEqual(
    readdirSync(join(root, 'temp')).filter((n) => n.startsWith(TEMP_PREFIX)),
    [],
  );
  await s3.stop();
});
