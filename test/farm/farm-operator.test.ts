/**
 * What an operator sees on a real redis-server: a server whose prompts wait with no worker alive says so in its log
 * (and again when a worker comes); a second API server on the same Redis neither records nor relays the first
 * one's prompts (both servers hear every worker's messages on the shared channel).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { RunningServer } from '../../server/app/server.js';
import type { NodeServices } from '../../nodes/services.js';
import { api, WsClient, waitHistory } from '../server/protocol-client.js';
import {
  RedisProcess,
  serveFarm,
  farmDirs,
  freePort,
  spawnWorker,
  stopWorker,
  demoPrompt,
  redisSkip,
  removeDirs,
  sleep,
  type FarmDirs,
} from './farm-harness.js';

const skip = redisSkip();
let redis: RedisProcess, d: FarmDirs;
const servers: RunningServer<NodeServices>[] = [];
let worker: ChildProcess | null = null;
const logs: Record<string, string[]> = { a: [], b: [] };

async function farmServer(name: 'a' | 'b'): Promise<RunningServer<NodeServices>> {
  const s = await serveFarm(d, redis.url, { data: join(d.data, `server-${name}`), log: (m) => logs[name].push(m) });
  servers.push(s);
  return s;
}

async function logged(name: 'a' | 'b', re: RegExp): Promise<boolean> {
  for (let t = 0; t < 300 && !logs[name].some((l) => re.test(l)); t++) await sleep(100);
  return logs[name].some((l) => re.test(l));
}

before(async () => {
  if (skip) return;
  d = await farmDirs();
  redis = new RedisProcess(await freePort(), d.data);
  await redis.start();
});
after(async () => {
  if (skip) return;
  if (worker) await stopWorker(worker);
  for (const s of servers) await s.close();
  await redis.stop();
  removeDirs(d);
});

test(
  'prompts waiting with no worker alive are pending and the server log says no worker is connected',
  { skip },
  async () => {
    const a = await farmServer('a');
    const id = (await api(a.url, 'POST', '/prompt', { prompt: demoPrompt() })).json.prompt_id;
    assert.ok(
      await logged('a', /1 prompt\(s\) waiting and no worker is connected/),
      `the missing worker is logged: ${logs.a.join(' | ')}`,
    );
    assert.deepEqual(
      (await api(a.url, 'GET', '/queue')).json.queue_pending.map((r: unknown[]) => r[1]),
      [id],
    );
    worker = await spawnWorker(redis.url, d, 'op', ['--lock-ms', '15000']);
    assert.equal((await waitHistory(a.url, id, 120000)).status.status_str, 'success');
    assert.ok(
      await logged('a', /a worker is connected again/),
      `the worker's arrival is logged: ${logs.a.join(' | ')}`,
    );
  },
);

test("a second server on the same Redis keeps out of the first one's prompts", { skip }, async () => {
  const [a] = servers;
  worker ??= await spawnWorker(redis.url, d, 'op', ['--lock-ms', '15000']);
  const b = await farmServer('b');
  const wsB = await WsClient.connect(b.url, 'shared-client');
  const id = (await api(a.url, 'POST', '/prompt', { prompt: demoPrompt({ seed: 7 }), client_id: 'shared-client' })).json
    .prompt_id;
  assert.equal((await waitHistory(a.url, id, 120000)).status.status_str, 'success');
  await sleep(1500); // two of b's syncs: what b would write, it has written by now
  assert.deepEqual((await api(b.url, 'GET', `/history/${id}`)).json, {}, "b's history holds no entry of a's prompt");
  const qb = (await api(b.url, 'GET', '/queue')).json;
  assert.deepEqual([qb.queue_running.length, qb.queue_pending.length], [0, 0]);
  assert.deepEqual(wsB.forPrompt(id), [], "b's client of the same client_id got none of a's prompt's events");
  wsB.close();
});
