/**
 * issue 9 point 3 on a real redis-server: prompts queued while no worker runs survive a Redis restart (AOF on) and
 * run once a worker comes; a worker without the checkpoint a prompt needs reports that clearly to the client; a
 * prompt whose worker dies more often than the farm retries is reported as failed, never lost.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { RunningServer } from '../../server/app/server.js';
import type { NodeServices } from '../../nodes/services.js';
import { DEMO_CHECKPOINT_NAME } from '../../server/tools/make-checkpoint.js';
import { queueNameFor } from '../../server/farm/protocol.js';
import { api, WsClient, waitHistory } from '../server/protocol-client.js';
import {
  RedisProcess,
  farmDirs,
  spawnWorker,
  stopWorker,
  workerStates,
  workerModels,
  demoPrompt,
  redisSkip,
  type FarmDirs,
  startFarmServer,
  stopFarmServer,
} from './farm-harness.js';
import { linkSync } from 'node:fs';
import { join } from 'node:path';

const skip = redisSkip();
let redis: RedisProcess, d: FarmDirs, server: RunningServer<NodeServices>;

before(async () => {
  if (skip) return;
  d = await farmDirs();
  // a checkpoint the server lists but no worker has
  linkSync(
    join(d.models, 'checkpoints', DEMO_CHECKPOINT_NAME),
    join(d.models, 'checkpoints', 'only-on-server.safetensors'),
  );
  ({ redis, server } = await startFarmServer(d));
});
after(async () => {
  if (skip) return;
  await stopFarmServer({ redis, server }, d);
});

async function waiting(): Promise<number> {
  const q = new Queue(queueNameFor(DEMO_CHECKPOINT_NAME), {
    connection: new Redis(redis.url, { maxRetriesPerRequest: null }),
  });
  try {
    return (await q.getJobCounts('wait')).wait;
  } finally {
    await q.close();
    await q.disconnect();
  }
}

test('POST /queue delete and clear remove the prompts from BullMQ too', { skip }, async () => {
  const ids: string[] = [];
  for (const seed of [1, 2])
    ids.push((await api(server.url, 'POST', '/prompt', { prompt: demoPrompt({ seed }) })).json.prompt_id);
  const until = async (n: number) => {
    for (let t = 0; t < 300 && (await waiting()) !== n; t++) await new Promise((r) => setTimeout(r, 100));
    return waiting();
  };
  assert.equal(await until(2), 2);
  await api(server.url, 'POST', '/queue', { delete: [ids[0]] });
  assert.equal(await until(1), 1);
  assert.deepEqual(
    (await api(server.url, 'GET', '/queue')).json.queue_pending.map((r: unknown[]) => r[1]),
    [ids[1]],
  );
  await api(server.url, 'POST', '/queue', { clear: true });
  assert.equal(await until(0), 0);
});

test('queued prompts survive a Redis restart while idle (AOF) and run when a worker comes', { skip }, async () => {
  const ws = await WsClient.connect(server.url, 'aof');
  const ids: string[] = [];
  for (const seed of [1, 2, 3])
    ids.push(
      (await api(server.url, 'POST', '/prompt', { prompt: demoPrompt({ seed }), client_id: 'aof' })).json.prompt_id,
    );
  for (let t = 0; t < 300 && (await waiting()) < 3; t++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(await waiting(), 3, 'three jobs waiting in BullMQ');
  await redis.stop();
  await redis.start();
  assert.equal(await waiting(), 3, 'still three after the restart');
  const w = await spawnWorker(redis.url, d, 'late');
  try {
    for (const id of ids) assert.equal((await waitHistory(server.url, id, 120000)).status.status_str, 'success');
    for (const id of ids)
      assert.ok(
        ws.forPrompt(id).some((e) => e.type === 'execution_success'),
        'events after the restart reach the client',
      );
  } finally {
    await stopWorker(w);
  }
  ws.close();
});

test('a worker without the checkpoint a prompt needs reports it to the client', { skip }, async () => {
  const w = await spawnWorker(redis.url, d, 'nomodel');
  try {
    const ws = await WsClient.connect(server.url, 'miss');
    const id = (
      await api(server.url, 'POST', '/prompt', {
        prompt: demoPrompt({ ckpt: 'only-on-server.safetensors' }),
        client_id: 'miss',
      })
    ).json.prompt_id;
    const evs = await ws.untilDone(id, 60000);
    const err = evs.find((e) => e.type === 'execution_error');
    assert.ok(err, `an execution_error: ${evs.map((e) => e.type)}`);
    assert.equal(err.data.exception_type, 'ModelNotOnWorker');
    assert.match(err.data.exception_message, /worker nomodel .*no checkpoint 'only-on-server\.safetensors'/);
    assert.equal((await waitHistory(server.url, id, 5000)).status.status_str, 'error');
    ws.close();
  } finally {
    await stopWorker(w);
  }
});

test('a prompt whose worker dies more often than the farm retries is reported as failed', { skip }, async () => {
  const a = await spawnWorker(redis.url, d, 'doomed');
  const ws = await WsClient.connect(server.url, 'lost');
  const id = (
    await api(server.url, 'POST', '/prompt', {
      prompt: demoPrompt({ seed: 5, steps: 30, size: 128 }),
      client_id: 'lost',
    })
  ).json.prompt_id;
  await ws.waitFor((m) => m.type === 'progress' && m.data.prompt_id === id, 120000);
  await stopWorker(a, 'SIGKILL');
  // the only worker left allows no stalled retry
  const b = await spawnWorker(redis.url, d, 'strict', ['--max-stalled', '0'], workerModels(d, 'strict2'));
  try {
    const evs = await ws.untilDone(id, 60000);
    const err = evs.find((e) => e.type === 'execution_error');
    assert.ok(err, `${evs.map((e) => e.type)}`);
    assert.equal(err.data.exception_type, 'WorkerLost');
    const h = await waitHistory(server.url, id, 5000);
    assert.equal(h.status.status_str, 'error');
    assert.equal(
      (await workerStates(redis.url)).find((w) => w.id === 'strict')!.done,
      0,
      'the strict worker did not run it',
    );
  } finally {
    await stopWorker(b);
  }
  ws.close();
});
