/**
 * Issue 15 point 2 (settings, userdata, the small start-up routes, plain 404) and point 3 (JSON bodies whatever the
 * content type, cross-site simple requests still refused), on a real server (real port, real SQLite, real files).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startStubServer, chainPrompt, type StubServer } from '../executor/stub-server.js';

const servers: StubServer[] = [];
after(async () => {
  for (const s of servers) await s.stop();
});
async function start(o: Parameters<typeof startStubServer>[0] = {}) {
  const s = await startStubServer({ execute: false, ...o });
  servers.push(s);
  return s;
}

/** fetch with the body sent as is (no content type added unless given). */
async function call(url: string, method: string, body?: string | Buffer, headers: Record<string, string> = {}) {
  const r = await fetch(url, { method, body: body as BodyInit | undefined, headers });
  const text = await r.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.status, text, json, type: r.headers.get('content-type') ?? '' };
}

function raw(
  url: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, method, path, headers }, (res) => {
      let b = '';
      res.on('data', (c) => (b += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: b }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('start-up routes answer in ComfyUI shapes at /api/X and /X', async () => {
  const s = await start();
  for (const p of ['', '/api']) {
    assert.deepEqual((await call(`${s.url}${p}/extensions`, 'GET')).json, []);
    assert.deepEqual((await call(`${s.url}${p}/i18n`, 'GET')).json, {});
    assert.deepEqual((await call(`${s.url}${p}/global_subgraphs`, 'GET')).json, {});
    assert.deepEqual((await call(`${s.url}${p}/users`, 'GET')).json, { storage: 'server', migrated: true });
  }
});

test('an unknown route answers plain text 404: Not Found, never a body that parses as data', async () => {
  const s = await start();
  for (const p of ['/api/nope', '/api/extensions/x/y', '/nope', '/api/jobs/x/y/z']) {
    const r = await call(s.url + p, 'GET');
    assert.equal(r.status, 404, p);
    assert.equal(r.text, '404: Not Found');
    assert.match(r.type, /^text\/plain/);
    assert.equal(r.json, undefined);
  }
});

test('settings: per id and whole, posted without a JSON content type, kept across a restart', async () => {
  const s = await start();
  assert.deepEqual((await call(`${s.url}/api/settings`, 'GET')).json, {});
  assert.equal((await call(`${s.url}/api/settings/Comfy.TutorialCompleted`, 'GET')).text, 'null');
  // ComfyUI's frontend posts JSON.stringify(value) with fetch's default text/plain type
  assert.equal(
    (
      await call(`${s.url}/api/settings/Comfy.TutorialCompleted`, 'POST', 'true', {
        'content-type': 'text/plain;charset=UTF-8',
      })
    ).status,
    200,
  );
  assert.equal(
    (
      await call(
        `${s.url}/api/settings`,
        'POST',
        JSON.stringify({ 'Comfy.Locale': 'en', 'Comfy.Sidebar.Size': 'small', n: 3.5, o: { a: [1] } }),
      )
    ).status,
    200,
  );
  assert.equal(
    (await call(`${s.url}/api/settings/Comfy.Locale`, 'POST', '"fr"', { 'content-type': 'application/json' })).status,
    200,
  );
  const want = {
    'Comfy.Locale': 'fr',
    'Comfy.Sidebar.Size': 'small',
    'Comfy.TutorialCompleted': true,
    n: 3.5,
    o: { a: [1] },
  };
  assert.deepEqual((await call(`${s.url}/api/settings`, 'GET')).json, want);
  assert.deepEqual((await call(`${s.url}/api/settings/o`, 'GET')).json, { a: [1] });
  // bad input: not an object for the whole-settings route, malformed JSON whatever the type
  assert.equal((await call(`${s.url}/api/settings`, 'POST', '[1,2]')).status, 400);
  const bad = await call(`${s.url}/api/settings/x`, 'POST', '{oops', { 'content-type': 'text/plain' });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.type, 'invalid_json');
  await s.stop({ keep: true });
  servers.splice(servers.indexOf(s), 1);
  const again = await start({ root: s.root });
  assert.deepEqual((await call(`${again.url}/api/settings`, 'GET')).json, want);
});

test('userdata: save (409 unless overwrite), list with dir/recurse/split/full_info, get, move, delete', async () => {
  const s = await start();
  const u = (p: string, q = '') => `${s.url}/api/userdata/${encodeURIComponent(p)}${q}`;
  assert.equal(
    (await call(`${s.url}/api/userdata?dir=workflows&recurse=true&split=false&full_info=true`, 'GET')).status,
    404,
  );
  const wf = JSON.stringify({ nodes: [], links: [], version: 0.4 });
  const first = await call(u('workflows/a b.json', '?overwrite=false&full_info=true'), 'POST', wf, {
    'content-type': 'text/plain',
  });
  assert.equal(first.status, 200);
  assert.equal(first.json.path, 'workflows/a b.json');
  assert.equal(first.json.size, Buffer.byteLength(wf));
  assert.ok(Math.abs(first.json.modified - Date.now() / 1000) < 60, 'modified in seconds, as ComfyUI');
  assert.equal(readFileSync(join(s.root, 'data', 'user', 'default', 'workflows', 'a b.json'), 'utf8'), wf);
  const clash = await call(u('workflows/a b.json', '?overwrite=false'), 'POST', '{}');
  assert.equal(clash.status, 409);
  assert.equal(clash.json.error.type, 'conflict');
  const over = await call(u('workflows/a b.json', '?overwrite=true&full_info=false'), 'POST', '{"v":2}');
  assert.deepEqual([over.status, over.json], [200, 'workflows/a b.json']);
  await call(u('workflows/sub/c.json'), 'POST', '[]');
  await call(u('user.css'), 'POST', 'body{}');
  const full = (await call(`${s.url}/api/userdata?dir=workflows&recurse=true&split=false&full_info=true`, 'GET')).json;
  assert.deepEqual(
    full.map((f: any) => [f.path, f.size]),
    [
      ['a b.json', 7],
      ['sub/c.json', 2],
    ],
  );
  assert.deepEqual((await call(`${s.url}/userdata?dir=workflows`, 'GET')).json, ['a b.json']);
  assert.deepEqual((await call(`${s.url}/userdata?dir=workflows&recurse=true&split=true`, 'GET')).json, [
    ['a b.json', 'a b.json'],
    ['sub/c.json', 'sub', 'c.json'],
  ]);
  assert.equal((await call(`${s.url}/api/userdata`, 'GET')).status, 400, 'dir is required');
  const got = await call(u('workflows/a b.json'), 'GET');
  assert.deepEqual([got.status, got.json], [200, { v: 2 }]);
  // move: 409 onto an existing file unless overwrite, 404 for a missing source
  assert.equal(
    (
      await call(
        `${u('workflows/sub/c.json')}/move/${encodeURIComponent('workflows/a b.json')}?overwrite=false`,
        'POST',
      )
    ).status,
    409,
  );
  const mv = await call(
    `${u('workflows/sub/c.json')}/move/${encodeURIComponent('workflows/d.json')}?full_info=true`,
    'POST',
  );
  assert.equal(mv.status, 200);
  assert.equal(mv.json.path, 'workflows/d.json');
  assert.equal((await call(u('workflows/sub/c.json'), 'GET')).status, 404);
  assert.equal((await call(`${u('nope.json')}/move/x.json`, 'POST')).status, 404);
  assert.equal((await call(u('workflows/d.json'), 'DELETE')).status, 204);
  assert.equal((await call(u('workflows/d.json'), 'DELETE')).status, 404);
  assert.equal((await call(u('workflows/d.json'), 'GET')).status, 404);
});

test('userdata paths never leave the user folder: traversal, absolute paths, links, oversized bodies', async () => {
  const s = await start({ maxUploadBytes: 1024 });
  const base = join(s.root, 'data', 'user', 'default');
  const outside = join(s.root, 'outside');
  mkdirSync(outside, { recursive: true });
  writeFileSync(join(outside, 'secret.json'), '{"secret":1}');
  mkdirSync(base, { recursive: true });
  symlinkSync(outside, join(base, 'linkdir'));
  symlinkSync(join(outside, 'secret.json'), join(base, 'link.json'));
  const u = (p: string) => `${s.url}/api/userdata/${encodeURIComponent(p)}`;
  for (const p of [
    '../outside/secret.json',
    '../../data/tcd-studio.sqlite',
    'a/../../x.json',
    '..\\x.json',
    '%2e%2e/x',
  ]) {
    for (const m of ['GET', 'POST', 'DELETE']) {
      const r = await call(u(p), m, m === 'POST' ? '{}' : undefined);
      assert.equal(r.status, 400, `${m} ${p}`);
      assert.equal(r.json.error.type, 'bad_request');
    }
  }
  for (const p of ['/etc/passwd', 'C:/x.json']) assert.equal((await call(u(p), 'GET')).status, 400, p);
  for (const p of ['linkdir/secret.json', 'link.json']) {
    assert.equal((await call(u(p), 'GET')).status, 403, p);
    assert.equal((await call(u(p), 'POST', '{"x":1}')).status, 403, p);
    assert.equal((await call(u(p), 'DELETE')).status, 403, p);
  }
  assert.equal((await call(`${u('ok.json')}/move/${encodeURIComponent('../escaped.json')}`, 'POST')).status, 400);
  assert.equal((await call(`${s.url}/api/userdata?dir=linkdir`, 'GET')).status, 403);
  assert.equal((await call(`${s.url}/api/userdata?dir=..`, 'GET')).status, 400);
  assert.equal(
    readFileSync(join(outside, 'secret.json'), 'utf8'),
    '{"secret":1}',
    'the file behind the link is untouched',
  );
  const big = await call(u('big.json'), 'POST', 'x'.repeat(2048));
  assert.equal(big.status, 413);
  assert.equal(big.json.error.type, 'request_too_large');
  assert.equal(existsSync(join(base, 'big.json')), false);
  assert.equal((await call(u('small.json'), 'POST', 'x'.repeat(1000))).status, 200);
});

test('POST /prompt parses JSON whatever the content type; malformed JSON is 400 whatever the type', async () => {
  const s = await start();
  const body = JSON.stringify({ prompt: chainPrompt(), client_id: 'sdk' });
  for (const type of [
    undefined,
    'text/plain;charset=UTF-8',
    'application/x-www-form-urlencoded',
    'application/octet-stream',
  ]) {
    const r = await call(`${s.url}/prompt`, 'POST', body, type ? { 'content-type': type } : {});
    assert.equal(r.status, 200, `${type}: ${r.text}`);
    assert.match(r.json.prompt_id, /^[\w-]+$/);
  }
  assert.equal(s.store.pending().length, 4);
  const bad = await call(`${s.url}/prompt`, 'POST', '{"prompt": ', { 'content-type': 'text/plain' });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.type, 'invalid_json');
});

test('a cross-origin simple request is refused even off loopback; same origin and preflighted JSON pass', async () => {
  const s = await start({ host: '0.0.0.0' });
  const host = `studio.example:${s.port}`;
  const url = `http://127.0.0.1:${s.port}`;
  const body = JSON.stringify({ prompt: chainPrompt() });
  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
    const r = await raw(url, 'POST', '/prompt', { host, origin: 'http://evil.example', 'content-type': type }, body);
    assert.equal(r.status, 403, type);
    assert.equal(JSON.parse(r.body).error.type, 'forbidden_origin');
  }
  const noType = await raw(url, 'POST', '/api/settings/x', { host, origin: 'http://evil.example' }, '1');
  assert.equal(noType.status, 403);
  const fetchMeta = await raw(
    url,
    'POST',
    '/prompt',
    { host, 'sec-fetch-site': 'cross-site', 'content-type': 'text/plain' },
    body,
  );
  assert.equal(fetchMeta.status, 403);
  assert.equal(s.store.pending().length, 0);
  assert.equal(
    (await raw(url, 'POST', '/prompt', { host, origin: `http://${host}`, 'content-type': 'text/plain' }, body)).status,
    200,
  );
  // application/json cannot be sent cross-origin without a preflight the server never grants
  assert.equal(
    (
      await raw(
        url,
        'POST',
        '/prompt',
        { host, origin: 'http://evil.example', 'content-type': 'application/json' },
        body,
      )
    ).status,
    200,
  );
  assert.equal(
    (await raw(url, 'POST', '/prompt', { host, 'content-type': 'text/plain' }, body)).status,
    200,
    'scripts without Origin',
  );
});
