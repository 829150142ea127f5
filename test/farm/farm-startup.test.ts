/**
 * Start-up order on a real redis-server: an API server started while Redis is still down (a compose file or
 * systemd units starting everything at once) keeps trying and, once Redis is up, queues, relays events and writes
 * history as if Redis had been there first; a worker started before Redis joins the farm when it comes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
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
} from './farm-harness.js';

const skip = redisSkip();

test('a server started before Redis serves the farm once Redis comes up', { skip }, async () => {
  const d = await farmDirs();
  const redis = new RedisProcess(await freePort(), d.data);
  const logs: string[] = [];
  const server = await serveFarm(d, redis.url, { log: (m) => logs.push(m) });
  try {
    // the server has tried (and failed) to reach Redis before it comes up
    for (let t = 0; t < 100 && !logs.some((l) => /ECONNREFUSED/.test(l)); t++) await sleep(100);
    assert.ok(
      logs.some((l) => /ECONNREFUSED/.test(l)),
      `a failed connection is logged: ${logs.join(' | ')}`,
    );
    await redis.start();
    const w = await spawnWorker(redis.url, d, 'early-server', ['--lock-ms', '15000']);
    try {
      const ws = await WsClient.connect(server.url, 'late-redis');
      const id = (await api(server.url, 'POST', '/prompt', { prompt: demoPrompt(), client_id: 'late-redis' })).json
        .prompt_id;
      assert.equal((await waitHistory(server.url, id, 120000)).status.status_str, 'success');
      assert.ok(
        ws.forPrompt(id).some((e) => e.type === 'execution_success'),
        'the worker-run prompt events reach the client',
      );
      assert.ok(
        logs.some((l) => /connected to redis/.test(l)),
        `the connection is logged once Redis is up: ${logs.join(' | ')}`,
      );
      ws.close();
    } finally {
      await stopWorker(w);
    }
  } finally {
    await server.close();
    await redis.stop();
    removeDirs(d);
  }
});

test(
  'a worker asked to stop while Redis is down leaves (it waited for Redis forever); the lost Redis is logged once',
  { skip },
  async () => {
    const d = await farmDirs();
    const redis = new RedisProcess(await freePort(), d.data);
    await redis.start();
    const w = await spawnWorker(redis.url, d, 'stop-offline');
    let out = '';
    w.stdout!.on('data', (b) => (out += b));
    try {
      await redis.stop();
      await sleep(1500); // the worker has noticed the lost connection and tried to reconnect several times
      // one line for the lost connection, not one per reconnection attempt
      assert.equal(out.match(/ECONNREFUSED/g)?.length, 1, out);
      const exited = new Promise<number | null>((r) => w.once('exit', (code) => r(code)));
      w.kill('SIGTERM');
      // a hang shows as this deadline passing; the worker needs well under a second when it works
      const code = await Promise.race([exited, sleep(30000).then(() => 'still running' as const)]);
      assert.equal(code, 0);
    } finally {
      if (w.exitCode === null && w.signalCode === null) w.kill('SIGKILL');
      removeDirs(d);
    }
  },
);
