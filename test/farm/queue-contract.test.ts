/**
 * One contract for every queue backend behind PromptQueue (issue 19 point 1): the embedded SQLite runner and the
 * Redis/BullMQ farm (a real redis-server, a real in-process FarmWorker) pass the same steps on the demo model:
 * enqueue in order (a `front` prompt first), cancel a pending prompt, survive a restart with prompts pending, run them
 * in that order into history, and interrupt a running prompt by id (and only that id).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRegistry } from '../../nodes/index.js';
import { Executor } from '../../server/executor/execute.js';
import { validatePrompt } from '../../server/executor/validate.js';
import { QueueStore } from '../../server/queue/store.js';
import { PromptQueue, type EventSink } from '../../server/queue/prompt-queue.js';
import { LocalRunner } from '../../server/queue/local-runner.js';
import { RedisBackend } from '../../server/farm/redis-queue.js';
import { FarmWorker } from '../../server/farm/worker.js';
import { ModelFolders } from '../../server/storage/model-folders.js';
import { makeServices } from '../../server/host.js';
import type { ServerEvent } from '../../protocol/events.js';
import {
  RedisProcess,
  demoPrompt,
  farmDirs,
  freePort,
  redisSkip,
  removeDirs,
  sleep,
  type FarmDirs,
} from './farm-harness.js';

/** A backend under test: `open` gives a queue on a data folder that does not run prompts until `run`. */
interface Backend {
  open(dataDir: string): Promise<{ queue: PromptQueue; run(): Promise<void>; close(): Promise<void> }>;
  dispose?(): Promise<void>;
}

const events: { ev: ServerEvent; clientId: string | null }[] = [];
const sink: EventSink = {
  send: (ev, clientId) => {
    events.push({ ev, clientId });
  },
  preview: () => {},
};
const quiet = () => {};

function servicesFor(d: FarmDirs, dataDir: string) {
  return makeServices(
    new ModelFolders(d.models),
    { output: d.output, input: d.input, temp: d.temp },
    { ep: 'cpu', dataDir, log: quiet },
    false,
  );
}

const local = (d: FarmDirs): Backend => ({
  async open(dataDir) {
    const store = new QueueStore(dataDir);
    const services = servicesFor(d, dataDir);
    const queue = new PromptQueue(
      store,
      sink,
      quiet,
      (ctx) => new LocalRunner(ctx, new Executor(createRegistry(), services)),
    );
    queue.recover();
    return {
      queue,
      run: async () => queue.start(),
      close: async () => {
        await queue.stop();
        store.close();
        await services.engine().close();
      },
    };
  },
});

function farm(d: FarmDirs, redis: () => RedisProcess): Backend {
  return {
    async open(dataDir) {
      const store = new QueueStore(dataDir);
      const queue = new PromptQueue(
        store,
        sink,
        quiet,
        (ctx) => new RedisBackend(ctx, { url: redis().url, syncMs: 200 }),
      );
      queue.recover();
      queue.start(); // connected and syncing; no worker yet, so nothing runs
      let worker: FarmWorker | null = null;
      return {
        queue,
        run: async () => {
          worker = await FarmWorker.start({
            queue: redis().url,
            modelsDir: d.models,
            outputDir: d.output,
            inputDir: d.input,
            tempDir: d.temp,
            id: 'contract',
            engine: { ep: 'cpu', dataDir: join(dataDir, 'worker') },
            lockMs: 3000,
            stalledIntervalMs: 1000,
            pollMs: 50,
            previews: false,
            log: quiet,
          });
        },
        close: async () => {
          await worker?.close();
          await queue.stop();
          store.close();
        },
      };
    },
  };
}

async function until<T>(what: string, f: () => T | undefined | null | false, ms = 120000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function contract(name: string, make: (d: FarmDirs) => Backend, skip: string | false = false) {
  describe(`queue contract: ${name}`, { skip }, () => {
    let d: FarmDirs;
    let backend: Backend;
    before(async () => {
      d = await farmDirs();
      backend = make(d);
    });
    after(async () => {
      await backend?.dispose?.();
      if (d) removeDirs(d);
    });

    test('enqueue in order, cancel, restart with prompts pending, run them in order into history, interrupt by id', async () => {
      const dataDir = join(d.data, name);
      mkdirSync(dataDir, { recursive: true });
      const registry = createRegistry();
      const submit = (queue: PromptQueue, seed: number, o: { front?: boolean; steps?: number; size?: number } = {}) => {
        const prompt = demoPrompt({ seed, prefix: `${name}-${seed}`, steps: o.steps, size: o.size });
        const v = validatePrompt(prompt, registry, servicesFor(d, dataDir));
        assert.ok(v.ok);
        return queue.submit({
          prompt,
          extraData: {},
          clientId: `c-${name}`,
          outputs: v.outputs,
          front: o.front,
          valid: v,
        }).prompt_id;
      };
      const pendingIds = (q: PromptQueue) => q.pending().map((i) => i.promptId);

      let h = await backend.open(dataDir);
      const a = submit(h.queue, 1),
        b = submit(h.queue, 2),
        c = submit(h.queue, 3);
      const first = submit(h.queue, 4, { front: true });
      assert.deepEqual(pendingIds(h.queue), [first, a, b, c], 'front goes first, the rest in submission order');
      assert.equal(h.queue.remaining(), 4);
      assert.deepEqual(
        (h.queue.snapshot().queue_pending as unknown[][]).map((r) => r[1]),
        [first, a, b, c],
      );
      assert.equal(h.queue.removePending({ ids: [b] }), 1);
      assert.deepEqual(pendingIds(h.queue), [first, a, c]);
      assert.equal(h.queue.has(b), false);
      assert.equal(h.queue.interrupt(a), false, 'a pending prompt is not interrupted');
      await sleep(300); // let a farm sync see the deletion before the restart
      await h.close();

      h = await backend.open(dataDir); // restart: what was pending still is, in order
      assert.deepEqual(pendingIds(h.queue), [first, a, c]);
      await h.run();
      const hist = await until('three prompts in history', () => {
        const x = h.queue.history();
        return Object.keys(x).length === 3 && x;
      });
      assert.deepEqual(Object.keys(hist), [first, a, c], 'completed in queue order');
      for (const id of [first, a, c]) {
        assert.equal(hist[id].status.status_str, 'success', JSON.stringify(hist[id].status.messages));
        const images = Object.values(hist[id].outputs).flatMap((o) => (o.images as unknown[] | undefined) ?? []);
        assert.equal(images.length, 1);
      }
      assert.equal(h.queue.historyItem(b), undefined, 'the cancelled prompt never ran');
      assert.equal(h.queue.remaining(), 0);
      assert.ok(
        events.some(
          ({ ev, clientId }) =>
            ev.type === 'executing' && ev.data.node === null && ev.data.prompt_id === a && clientId === `c-${name}`,
        ),
      );

      const long = submit(h.queue, 5, { steps: 40, size: 256 });
      await until('the long prompt running', () => h.queue.runningPromptId() === long);
      assert.equal(h.queue.interrupt('someone-else'), false);
      assert.equal(h.queue.interrupt(long), true);
      const e = await until('the interrupted prompt in history', () => h.queue.historyItem(long));
      assert.equal(e.status.status_str, 'error');
      assert.ok(
        e.status.messages.some(([type]) => type === 'execution_interrupted'),
        JSON.stringify(e.status.messages),
      );
      h.queue.deleteHistory([a]);
      assert.deepEqual(Object.keys(h.queue.history()), [first, c, long]);
      h.queue.clearHistory();
      assert.deepEqual(h.queue.history(), {});
      await h.close();
    });
  });
}

contract('sqlite', local);

let redis: RedisProcess | null = null;
contract(
  'redis',
  (d) => ({
    ...farm(d, () => redis!),
    dispose: async () => {
      await redis?.stop();
    },
  }),
  redisSkip(),
);
before(async () => {
  if (redisSkip()) return;
  redis = new RedisProcess(await freePort(), mkdtempSync(join(tmpdir(), 'tcd-contract-redis-')));
  await redis.start();
});
after(async () => {
  await redis?.stop();
});
