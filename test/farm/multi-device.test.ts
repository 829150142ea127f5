/**
 * issue 9 point 2, embedded mode with several devices (`serve --devices 0,1`): one executor per device over the
 * same SQLite queue, so two prompts run at the same time, each once, and interrupt by id stops only its own.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { serve } from '../../server/host.js';
import type { RunningServer } from '../../server/app/server.js';
import type { NodeServices } from '../../nodes/services.js';
import { MultiDeviceBackend } from '../../server/farm/multi-device.js';
import { api, WsClient, waitHistory } from '../server/protocol-client.js';
import { farmDirs, removeDirs, demoPrompt, sleep, type FarmDirs } from './farm-harness.js';

let d: FarmDirs, server: RunningServer<NodeServices>;
before(async () => {
  d = await farmDirs();
  server = await serve({
    port: 0,
    listen: '127.0.0.1',
    models: d.models,
    data: d.data,
    output: d.output,
    input: d.input,
    temp: d.temp,
    devices: ['0', '1'],
    log: () => {},
  });
});
after(async () => {
  await server.close();
  removeDirs(d);
});

test('two devices run two prompts at once; interrupt by id stops only that one', async () => {
  assert.ok(server.queue.backend instanceof MultiDeviceBackend);
  const q = server.queue.backend as MultiDeviceBackend<NodeServices>;
  const ws = await WsClient.connect(server.url, 'md');
  const a = (
    await api(server.url, 'POST', '/prompt', { prompt: demoPrompt({ seed: 1, steps: 12, size: 384 }), client_id: 'md' })
  ).json.prompt_id;
  const b = (
    await api(server.url, 'POST', '/prompt', { prompt: demoPrompt({ seed: 2, steps: 12, size: 384 }), client_id: 'md' })
  ).json.prompt_id;
  let both = false;
  for (let t = 0; t < 600 && !both; t++) {
    const running = Object.values(q.runningByDevice());
    both = running.includes(a) && running.includes(b);
    if (!both) await sleep(50);
  }
  assert.ok(both, `both prompts running at once: ${JSON.stringify(q.runningByDevice())}`);
  assert.equal((await api(server.url, 'GET', '/queue')).json.queue_running.length, 2);
  await ws.waitFor((m) => m.type === 'progress' && m.data.prompt_id === b, 120000);
  await api(server.url, 'POST', '/interrupt', { prompt_id: b });
  const ha = await waitHistory(server.url, a, 120000);
  const hb = await waitHistory(server.url, b, 120000);
  assert.equal(ha.status.status_str, 'success');
  assert.ok(ws.forPrompt(b).some((e) => e.type === 'execution_interrupted'));
  assert.equal(ws.forPrompt(a).filter((e) => e.type === 'execution_start').length, 1, 'ran once');
  assert.equal(hb.status.status_str, 'error');
  ws.close();
});
