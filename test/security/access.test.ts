/**
 * Issue 10 point 3: with a token every HTTP route and the websocket require it (Bearer, ?token=, cookie);
 * a foreign Origin against a loopback Host is refused (403, also for the websocket upgrade); a non-loopback Host on
 * a loopback-bound server is refused (DNS rebinding); CORS headers only when enabled; loopback bind by default.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import WebSocket from 'ws';
import { api, WsClient } from '../server/protocol-client.js';
import { startStubServer, chainPrompt, type StubServer } from '../executor/stub-server.js';
import { tokenMatches } from '../../server/app/security.js';
import { parseCommandLine } from '../../server/settings.js';

const TOKEN = 's3cret-token-for-tests';
const servers: StubServer[] = [];
after(async () => {
  for (const s of servers) await s.stop();
});
async function start(o: Parameters<typeof startStubServer>[0] = {}) {
  const s = await startStubServer(o);
  servers.push(s);
  return s;
}

/** A raw HTTP request with full control over Host and Origin. */
function raw(
  url: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, method, path, headers }, (res) => {
      let b = '';
      res.on('data', (c) => (b += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: b }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function wsStatus(url: string, headers: Record<string, string> = {}, query = ''): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${url.replace('http', 'ws')}/ws?clientId=a${query}`, { headers });
    ws.on('open', () => {
      ws.close();
      resolve(101);
    });
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode!);
    });
    ws.on('error', () => resolve(-1));
  });
}

const ROUTES: [string, string, unknown?][] = [
  ['GET', '/prompt'],
  ['POST', '/prompt', { prompt: chainPrompt() }],
  ['GET', '/queue'],
  ['POST', '/queue', { clear: true }],
  ['POST', '/interrupt', {}],
  ['GET', '/history'],
  ['GET', '/history/x'],
  ['POST', '/history', { clear: true }],
  ['GET', '/object_info'],
  ['GET', '/object_info/StubLoad'],
  ['GET', '/view?filename=a.png'],
  ['POST', '/upload/image', 'x'],
  ['GET', '/system_stats'],
  ['GET', '/features'],
  ['GET', '/models'],
  ['GET', '/models/checkpoints'],
  ['GET', '/embeddings'],
  ['POST', '/free', {}],
  ['POST', '/workflow/convert', { nodes: [], links: [] }],
  ['GET', '/workflows'],
  ['GET', '/workflows/x'],
];

test('with a token, every route at /X and /api/X answers 401 without it or with a wrong one', async () => {
  const s = await start({ token: TOKEN, execute: false });
  for (const [m, p, body] of ROUTES)
    for (const prefix of ['', '/api']) {
      const none = await api(s.url, m, prefix + p, body);
      assert.equal(none.status, 401, `${m} ${prefix}${p}`);
      assert.equal(none.json.error.type, 'unauthorized');
      assert.equal((await api(s.url, m, prefix + p, body, { authorization: `Bearer ${TOKEN}x` })).status, 401);
      assert.equal(
        (await api(s.url, m, prefix + p, body, { authorization: `Bearer ${TOKEN.slice(0, -1)}` })).status,
        401,
      );
    }
  assert.equal(s.store.pending().length, 0, 'nothing was queued without the token');
  assert.equal((await api(s.url, 'GET', '/nonexistent')).status, 401, 'unknown routes do not reveal themselves either');
});

test('with a token, the right one opens every route (Bearer, ?token=, cookie)', async () => {
  const s = await start({ token: TOKEN, execute: false });
  for (const [m, p, body] of ROUTES) {
    const r = await api(s.url, m, p, body, { authorization: `Bearer ${TOKEN}` });
    assert.notEqual(r.status, 401, `${m} ${p}`);
  }
  assert.equal((await api(s.url, 'GET', `/queue?token=${TOKEN}`)).status, 200);
  assert.equal(
    (await api(s.url, 'GET', '/queue', undefined, { cookie: `a=b; tcd_token=${encodeURIComponent(TOKEN)}` })).status,
    200,
  );
});

test('with a token, the websocket upgrade is refused without it', async () => {
  const s = await start({ token: TOKEN, execute: false });
  assert.equal(await wsStatus(s.url), 401);
  assert.equal(await wsStatus(s.url, { authorization: 'Bearer nope' }), 401);
  assert.equal(await wsStatus(s.url, {}, '&token=nope'), 401);
  assert.equal(await wsStatus(s.url, { authorization: `Bearer ${TOKEN}` }), 101);
  assert.equal(await wsStatus(s.url, {}, `&token=${TOKEN}`), 101);
  for (let i = 0; i < 50 && s.hub.clientCount() > 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(s.hub.clientCount(), 0, 'refused upgrades never reached the hub');
});

test('token comparison: exact match only, any lengths, no exceptions', () => {
  assert.equal(tokenMatches(TOKEN, TOKEN), true);
  for (const g of ['', undefined, null, 'x', TOKEN + 'x', TOKEN.toUpperCase(), 'é'.repeat(1000), TOKEN.slice(1)])
    assert.equal(tokenMatches(TOKEN, g as string), false);
});

test('loopback Host with a foreign Origin gets 403, on HTTP and on the websocket; same origin passes', async () => {
  const s = await start({ execute: false });
  const host = `127.0.0.1:${s.port}`;
  for (const origin of [
    'http://evil.example',
    'http://127.0.0.1:1',
    `http://localhost:${s.port}.evil.example`,
    'null',
    'not a url',
  ]) {
    const r = await raw(
      s.url,
      'POST',
      '/prompt',
      { host, origin, 'content-type': 'application/json' },
      JSON.stringify({ prompt: chainPrompt() }),
    );
    assert.equal(r.status, 403, origin);
    assert.equal(JSON.parse(r.body).error.type, 'forbidden_origin');
    assert.equal(await wsStatus(s.url, { origin }), 403, `ws ${origin}`);
  }
  assert.equal(s.store.pending().length, 0);
  assert.equal((await raw(s.url, 'GET', '/queue', { host, origin: `http://${host}` })).status, 200);
  assert.equal(
    (await raw(s.url, 'GET', '/queue', { host: `localhost:${s.port}`, origin: `http://localhost:${s.port}` })).status,
    200,
  );
  assert.equal((await raw(s.url, 'GET', '/queue', { host })).status, 200, 'no Origin (curl, scripts) passes');
  assert.equal(await wsStatus(s.url, { origin: `http://${host}` }), 101);
});

test('a loopback-bound server refuses a non-loopback Host (DNS rebinding), even with a matching Origin', async () => {
  const s = await start({ execute: false });
  const host = `rebind.example:${s.port}`;
  const r = await raw(s.url, 'GET', '/queue', { host, origin: `http://${host}` });
  assert.equal(r.status, 403);
  assert.equal((await raw(s.url, 'GET', '/queue', { host })).status, 403);
  assert.equal(await wsStatus(s.url, { host }), 403);
});

test('CORS headers only when enabled; an allowed origin may then call in', async () => {
  const closed = await start({ execute: false });
  const r = await raw(closed.url, 'OPTIONS', '/prompt', {
    host: `127.0.0.1:${closed.port}`,
    origin: 'http://app.example',
    'access-control-request-method': 'POST',
  });
  assert.equal(r.headers['access-control-allow-origin'], undefined);
  const open = await start({ execute: false, corsOrigin: 'http://app.example' });
  const pre = await raw(open.url, 'OPTIONS', '/prompt', {
    host: `127.0.0.1:${open.port}`,
    origin: 'http://app.example',
    'access-control-request-method': 'POST',
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers['access-control-allow-origin'], 'http://app.example');
  assert.equal(
    (await raw(open.url, 'GET', '/queue', { host: `127.0.0.1:${open.port}`, origin: 'http://app.example' })).status,
    200,
  );
  assert.equal(
    (await raw(open.url, 'GET', '/queue', { host: `127.0.0.1:${open.port}`, origin: 'http://other.example' })).status,
    403,
  );
});

test('the server binds to loopback unless told otherwise', () => {
  assert.equal(parseCommandLine('serve', [], {}).settings.listen, '127.0.0.1');
  assert.equal(parseCommandLine('serve', [], { TCD_LISTEN: '0.0.0.0' }).settings.listen, '0.0.0.0');
});

test('a reachable websocket without token still works end to end when no token is configured', async () => {
  const s = await start();
  const ws = await WsClient.connect(s.url, 'open');
  const id = (await api(s.url, 'POST', '/prompt', { prompt: chainPrompt({ seed: 3 }), client_id: 'open' })).json
    .prompt_id;
  assert.ok((await ws.untilDone(id)).some((e) => e.type === 'execution_success'));
  ws.close();
});

test('listening beyond loopback without a token logs a warning; with a token it does not', async () => {
  const lines: string[] = [];
  const open = await start({ host: '0.0.0.0', execute: false, log: (m) => lines.push(m) });
  assert.ok(
    lines.some((l) => /without an access token/.test(l)),
    lines.join('\n'),
  );
  // reachable through loopback too, and a non-loopback bind does not apply the loopback Host rule
  assert.equal(
    (await raw(`http://127.0.0.1:${open.port}`, 'GET', '/queue', { host: `some-lan-name:${open.port}` })).status,
    200,
  );
  const quiet: string[] = [];
  await start({ host: '0.0.0.0', token: TOKEN, execute: false, log: (m) => quiet.push(m) });
  assert.ok(!quiet.some((l) => /without an access token/.test(l)));
});
