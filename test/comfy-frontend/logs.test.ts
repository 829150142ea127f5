/**
 * The Logs tab of ComfyUI's frontend (bottom panel): it reads GET /internal/logs/raw and, after
 * PATCH /internal/logs/subscribe, gets each new line as a websocket `logs` message. Without these routes the tab
 * only says "Unable to load logs, please ensure you have updated your ComfyUI backend."
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { api, WsClient } from '../server/protocol-client.js';
import { startStubServer, type StubServer } from '../executor/stub-server.js';
import { LogBuffer, captureProcessOutput } from '../../server/app/log-buffer.js';

const stubs: StubServer[] = [];
after(async () => {
  for (const s of stubs) await s.stop();
});

test('/internal/logs/raw lists the output; a subscribed websocket client gets each new line until it unsubscribes', async () => {
  const logs = new LogBuffer();
  logs.line('before the server');
  const s = await startStubServer({ logBuffer: logs });
  stubs.push(s);
  const raw = await api(s.url, 'GET', '/internal/logs/raw');
  assert.equal(raw.status, 200);
  assert.equal(raw.json.entries.length, 1);
  assert.equal(raw.json.entries[0].m, 'before the server\n');
  assert.ok(!Number.isNaN(Date.parse(raw.json.entries[0].t)), 't is a time');
  assert.ok(raw.json.size.cols >= 1 && raw.json.size.rows >= 1, JSON.stringify(raw.json.size));
  const text = await api(s.url, 'GET', '/internal/logs');
  assert.equal(text.json, `${raw.json.entries[0].t} - before the server\n`);

  const ws = await WsClient.connect(s.url, 'logs-client');
  const other = await WsClient.connect(s.url, 'other-client');
  const sub = (enabled: boolean) =>
    api(s.url, 'PATCH', '/internal/logs/subscribe', { enabled, clientId: 'logs-client' });
  assert.equal((await sub(true)).status, 200);
  logs.line('second');
  const m = await ws.waitFor((x) => x.type === 'logs');
  assert.deepEqual(
    m.data.entries.map((e: { m: string }) => e.m),
    ['second\n'],
  );
  assert.ok(m.data.size.cols >= 1);
  assert.equal((await sub(false)).status, 200);
  logs.line('third: nobody listens');
  assert.equal((await sub(true)).status, 200);
  logs.line('fourth');
  // messages keep their order on one socket: the next `logs` after the second is the fourth, not the third
  const next = await ws.waitFor((x) => x.type === 'logs' && x !== m);
  assert.equal(next.data.entries[0].m, 'fourth\n');
  assert.equal(ws.messages.filter((x) => x.type === 'logs').length, 2);
  assert.equal(other.messages.filter((x) => x.type === 'logs').length, 0, 'only the subscriber gets lines');
  assert.equal((await api(s.url, 'GET', '/internal/logs/raw')).json.entries.length, 4);
  // the frontend sends {enabled, clientId}; anything else is refused, not stored
  const bad = await api(s.url, 'PATCH', '/internal/logs/subscribe', { enabled: 'yes' });
  assert.equal(bad.status, 400);
  ws.close();
  other.close();
});

test("without a buffer of its own the server keeps the messages it logs (here: --front-end-root's warning)", async () => {
  const empty = mkdtempSync(join(tmpdir(), 'tcd-no-frontend-'));
  const s = await startStubServer({ frontEndRoot: empty });
  stubs.push(s);
  const raw = await api(s.url, 'GET', '/internal/logs/raw');
  assert.ok(
    raw.json.entries.some((e: { m: string }) => e.m === `warning: --front-end-root ${empty} has no index.html\n`),
    JSON.stringify(raw.json.entries),
  );
});

test('captureProcessOutput copies what the process writes, keeps writing it, and can be undone; the buffer is bounded', () => {
  const logs = new LogBuffer(3);
  const undo = captureProcessOutput(logs);
  try {
    process.stderr.write('# captured line\n');
  } finally {
    undo();
  }
  process.stderr.write('# not captured\n');
  assert.deepEqual(
    logs.all().map((e) => e.m),
    ['# captured line\n'],
  );
  for (const n of [1, 2, 3, 4]) logs.line(`n${n}`);
  assert.deepEqual(
    logs.all().map((e) => e.m),
    ['n2\n', 'n3\n', 'n4\n'],
  );
});
