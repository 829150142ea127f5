/**
 * Issue 10 point 5 (slow clients): a websocket client that stops reading cannot grow server memory without bound.
 * Above the soft limit the hub drops previews for that socket; above the hard limit it closes the socket. A client
 * reading normally at the same time receives everything, and the stalled client can reconnect and replay.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { api, WsClient, waitHistory } from './protocol-client.js';
import { startStubServer, type StubServer } from '../executor/stub-server.js';

const SOFT = 256 * 1024,
  HARD = 2 * 1024 * 1024;
let s: StubServer;
before(async () => {
  s = await startStubServer({ wsSoftLimit: SOFT, wsHardLimit: HARD });
});
after(async () => {
  await s.stop();
});

const chatty = (count: number, kb: number, x = 1) => ({
  '1': { class_type: 'StubLoad', inputs: { value: x } },
  '2': { class_type: 'StubPreview', inputs: { x: ['1', 0], count, kb } },
  '3': { class_type: 'StubSave', inputs: { x: ['2', 0], filename_prefix: 'bp' } },
});

/** Largest bufferedAmount the server holds for any socket of the client, sampled while the prompt runs. */
function sampleBuffered(clientId: string, stop: () => boolean): Promise<number> {
  return new Promise((resolve) => {
    let max = 0;
    const hub = s.hub as unknown as { clients: Map<string, { sockets: Set<{ bufferedAmount: number }> }> };
    const t = setInterval(() => {
      for (const ws of hub.clients.get(clientId)?.sockets ?? []) max = Math.max(max, ws.bufferedAmount);
      if (stop()) {
        clearInterval(t);
        resolve(max);
      }
    }, 5);
  });
}

test(
  'a stalled reader: previews dropped above the soft limit, socket closed above the hard limit; others unaffected',
  { timeout: 60000 },
  async () => {
    const stalled = await WsClient.connect(s.url, 'stalled');
    const reader = await WsClient.connect(s.url, 'reader');
    // stop reading: the kernel buffers fill, then the server's queue for this socket grows
    (stalled.ws as unknown as { _socket: Socket })._socket.pause();

    // 1) previews only: 3000 x 32 KiB = 96 MiB offered; the server must drop most of them
    const dropped0 = s.hub.dropped;
    const heap0 = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
    const p1 = (await api(s.url, 'POST', '/prompt', { prompt: chatty(3000, 32), client_id: 'stalled' })).json.prompt_id;
    let done1 = false;
    const maxBuffered = sampleBuffered('stalled', () => done1);
    await waitHistory(s.url, p1);
    done1 = true;
    const peak = await maxBuffered;
    assert.ok(s.hub.dropped - dropped0 > 1000, `previews dropped: ${s.hub.dropped - dropped0}`);
    // soft limit + one preview + the (never dropped) progress frames, ~110 bytes each
    assert.ok(peak <= SOFT + 32 * 1024 + 3000 * 150, `queued bytes stay near the soft limit: ${peak}`);
    const heap1 = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
    assert.ok(
      heap1 - heap0 < 64 * 1024 * 1024,
      `memory bounded: +${((heap1 - heap0) / 2 ** 20).toFixed(1)} MiB for 96 MiB offered`,
    );

    // 2) text events that are never dropped: 200000 progress frames (~22 MiB) exceed the hard limit: the socket is closed
    const p2 = (await api(s.url, 'POST', '/prompt', { prompt: chatty(200000, 0, 2), client_id: 'stalled' })).json
      .prompt_id;
    let done2 = false;
    const maxBuffered2 = sampleBuffered('stalled', () => done2);
    await waitHistory(s.url, p2);
    done2 = true;
    const peak2 = await maxBuffered2;
    assert.ok(peak2 <= HARD + 4096, `never more than the hard limit queued: ${peak2}`);
    for (let i = 0; i < 100 && s.hub.clientCount() > 1; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(s.hub.clientCount(), 1, 'the stalled socket was closed; the reader remains');

    // 3) the stalled client reconnects and replays what it missed (logged events, not progress)
    const back = await WsClient.connect(s.url, 'stalled', { since: 0 });
    await back.waitFor((m) => m.type === 'executing' && m.data.node === null && m.data.prompt_id === p2);
    assert.ok(back.messages.some((m) => m.type === 'execution_success' && m.data.prompt_id === p1));
    back.close();

    // the reader, meanwhile, got every event of its own prompt
    const p3 = (await api(s.url, 'POST', '/prompt', { prompt: chatty(200, 4, 3), client_id: 'reader' })).json.prompt_id;
    const evs = await reader.untilDone(p3);
    assert.equal(evs.filter((e) => e.type === 'progress').length, 200);
    assert.equal(reader.binary.length, 200, 'every preview delivered to a reading client');
    assert.ok(!reader.messages.some((m) => m.data?.prompt_id === p1 || m.data?.prompt_id === p2));
    reader.close();
    stalled.ws.terminate();
  },
);
