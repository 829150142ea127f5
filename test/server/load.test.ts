/**
 * Issue 10 point 5 (load, bounded in time): 200 concurrent websocket clients and a burst of 1,000 prompts on the
 * demo model (64x64; only filename_prefix varies, so the sampler stays cached and SaveImage runs each time).
 * Every event reaches the right client and only it, every prompt completes with ComfyUI's event sequence, and the
 * server's memory returns to its baseline. Takes about a minute on 2 cores.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { serve } from '../../server/host.js';
import type { RunningServer } from '../../server/app/server.js';
import type { NodeServices } from '../../nodes/services.js';
import { api, WsClient, waitHistory } from './protocol-client.js';
import { demoPrompt } from './demo-prompt.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const CLIENTS = 200,
  PROMPTS = 1000;

let s: RunningServer<NodeServices>;
let root: string;
before(async () => {
  root = mkdtempSync(join(tmpdir(), 'tcd-load-'));
  s = await serve({
    port: 0,
    models: join(root, 'models'),
    data: join(root, 'data'),
    output: join(root, 'output'),
    input: join(root, 'input'),
    temp: join(root, 'temp'),
    log: () => {},
    previews: true,
  });
});
after(async () => {
  await s.close();
  rmSync(root, { recursive: true, force: true });
});

function memory(): number {
  for (let i = 0; i < 3; i++) gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

async function pool<T>(n: number, width: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await fn(i);
      }
    }),
  );
  return out;
}

test(
  `${CLIENTS} websocket clients, a burst of ${PROMPTS} prompts: every event to the right client, memory back to baseline`,
  { timeout: 240000 },
  async () => {
    const t0 = Date.now();
    const warm = (await api(s.url, 'POST', '/prompt', { prompt: demoPrompt({ seed: 1, steps: 1, prefix: 'warm' }) }))
      .json.prompt_id;
    assert.equal((await waitHistory(s.url, warm, 120000)).status.status_str, 'success');
    // a round of the measured workload once, so lazily created structures exist before the baseline
    const pre = await WsClient.connect(s.url, 'pre');
    const preId = (
      await api(s.url, 'POST', '/prompt', {
        prompt: demoPrompt({ seed: 1, steps: 1, prefix: 'pre' }),
        client_id: 'pre',
      })
    ).json.prompt_id;
    await pre.untilDone(preId);
    pre.close();
    const tWarm = Date.now();
    const base = memory();

    const clients = await pool(CLIENTS, 50, (i) => WsClient.connect(s.url, `load-${i}`));
    assert.equal(s.hub.clientCount(), CLIENTS);
    const owner = new Map<string, number>();
    const ids = await pool(PROMPTS, 32, async (i) => {
      const r = await api(s.url, 'POST', '/prompt', {
        prompt: demoPrompt({ seed: 1, steps: 1, prefix: `load${i}` }),
        client_id: `load-${i % CLIENTS}`,
      });
      assert.equal(r.status, 200, r.text);
      owner.set(r.json.prompt_id, i % CLIENTS);
      return r.json.prompt_id as string;
    });
    const tQueued = Date.now();
    const mid = process.memoryUsage();
    await Promise.all(ids.map((id) => clients[owner.get(id)!].untilDone(id, 200000)));
    const tDone = Date.now();

    for (let c = 0; c < CLIENTS; c++) {
      const mine = new Set(ids.filter((id) => owner.get(id) === c));
      assert.equal(mine.size, PROMPTS / CLIENTS);
      const own = clients[c].messages.filter((m) => m.data?.prompt_id);
      assert.ok(
        own.every((m) => mine.has(m.data.prompt_id)),
        `client ${c} got only its own events`,
      );
      for (const id of mine) {
        const evs = clients[c].forPrompt(id).filter((m) => m.type !== 'progress' && m.type !== 'progress_state');
        assert.deepEqual(
          evs.map((e) => e.type),
          ['execution_start', 'execution_cached', 'executing', 'executed', 'execution_success', 'executing'],
          `prompt ${id}`,
        );
        assert.deepEqual(evs[1].data.nodes.sort(), ['3', '4', '5', '6', '7', '8']);
        assert.equal(evs[2].data.node, '9');
        assert.equal(evs[5].data.node, null);
      }
      assert.ok(
        clients[c].messages.filter((m) => m.type === 'status').length > 1,
        'queue status broadcast to everyone',
      );
    }
    const files = readdirSync(join(root, 'output')).filter((f) => f.startsWith('load'));
    assert.equal(files.length, PROMPTS);
    assert.equal(
      Object.keys((await api(s.url, 'GET', '/history?max_items=2000')).json).filter((id) => owner.has(id)).length,
      PROMPTS,
    );
    assert.equal((await api(s.url, 'GET', '/prompt')).json.exec_info.queue_remaining, 0);

    for (const c of clients) c.close();
    for (let i = 0; i < 100 && s.hub.clientCount() > 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(s.hub.clientCount(), 0);
    clients.length = 0;
    await new Promise((r) => setTimeout(r, 200));
    const end = memory();
    const mb = (x: number) => (x / 2 ** 20).toFixed(1);
    console.log(
      `load: warm-up ${tWarm - t0} ms, ${PROMPTS} queued in ${tQueued - tWarm} ms, all done ${tDone - tWarm} ms after warm-up; ` +
        `memory baseline ${mb(base)} MiB, peak heap ${mb(mid.heapUsed)} MiB, after ${mb(end)} MiB; rss ${mb(process.memoryUsage().rss)} MiB`,
    );
    assert.ok(end - base < 48 * 2 ** 20, `memory back near baseline: ${mb(base)} -> ${mb(end)} MiB`);
    assert.ok(tDone - tWarm < 150000, 'the burst completes within the time bound');
  },
);
