/**
 * issue 9 point 4, measured: a worker whose engine holds one model at a time (TCD_RAM_BUDGET_MB=55; a demo
 * model takes about 51 MB, and each prompt has its own text so the text encoders run every time) runs six queued prompts alternating two checkpoints, with model affinity on (first, so it also
 * pays for building the ONNX graphs) and then off. Affinity must load each model once; wall times are printed.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { RunningServer } from '../../server/app/server.js';
import type { NodeServices } from '../../nodes/services.js';
import { makeCheckpoint, presetConfig, DEMO_CHECKPOINT_NAME } from '../../server/tools/make-checkpoint.js';
import { api, waitHistory } from '../server/protocol-client.js';
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

const skip = redisSkip();
let redis: RedisProcess, d: FarmDirs, server: RunningServer<NodeServices>;
const OTHER = 'demo-seed2.safetensors';

before(async () => {
  if (skip) return;
  d = await farmDirs();
  await makeCheckpoint({
    config: presetConfig('demo'),
    out: join(d.models, 'checkpoints', OTHER),
    seed: 2,
    dtype: 'F16',
  });
  ({ redis, server } = await startFarmServer(d));
});
after(async () => {
  if (skip) return;
  await stopFarmServer({ redis, server }, d);
});

async function round(tag: string, affinity: boolean, n = 6): Promise<{ ms: number; switches: number; done: number }> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    ids.push(
      (
        await api(server.url, 'POST', '/prompt', {
          prompt: demoPrompt({
            seed: i,
            text: `${tag} lighthouse ${i}`,
            ckpt: i % 2 ? OTHER : DEMO_CHECKPOINT_NAME,
            prefix: tag,
          }),
        })
      ).json.prompt_id,
    );
  }
  // the worker starts with the whole burst queued, as a farm does after a spike
  const t0 = Date.now();
  const w = await spawnWorker(
    redis.url,
    d,
    tag,
    [...(affinity ? [] : ['--no-affinity']), '--max-wait-ms', '120000'],
    workerModels(d, tag, [DEMO_CHECKPOINT_NAME, OTHER]),
    { dataName: 'shared-cache', env: { TCD_RAM_BUDGET_MB: '55' } },
  );
  try {
    for (const id of ids) {
      const h = await waitHistory(server.url, id, 180000);
      assert.equal(h.status.status_str, 'success', JSON.stringify(h.status.messages).slice(0, 600));
    }
    const ms = Date.now() - t0;
    await new Promise((r) => setTimeout(r, 1500)); // the last heartbeat after the last job
    const st = (await workerStates(redis.url)).find((x) => x.id === tag)!;
    const hist = (await api(server.url, 'GET', '/history')).json;
    const order = Object.values(hist as Record<string, any>)
      .filter((e) => ids.includes(e.prompt[1]))
      .map((e) => (e.prompt[2].ckpt.inputs.ckpt_name === OTHER ? 'B' : 'A'))
      .join('');
    console.log(`# ${tag}: ran ${order}`);
    return { ms, switches: st.switches, done: st.done };
  } finally {
    await stopWorker(w);
  }
}

test('model affinity loads each checkpoint once for a burst alternating two checkpoints', { skip }, async () => {
  const on = await round('on', true);
  const off = await round('off', false);
  console.log(`# affinity on:  ${on.ms} ms for ${on.done} prompts, ${on.switches} model switches`);
  console.log(`# affinity off: ${off.ms} ms for ${off.done} prompts, ${off.switches} model switches`);
  assert.equal(on.switches, 2, 'each checkpoint loaded once');
  // oldest-first alternates (6 switches) unless prompts queued in the same millisecond tie; it must reload more
  assert.ok(off.switches > on.switches + 1, `without affinity ${off.switches} switches, with ${on.switches}`);
});
