/**
 * The engine worker as a child process (isolation 'process'): bit-identical to the thread worker, its own environment,
 * crash isolation for a killed child, cancellation, and nothing left running after close(). Real processes, CPU
 * provider, the demo checkpoint.
 */
import { settingsFromEnv } from '../../../server/settings.js';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { totalmem } from 'node:os';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Engine, resolveEngineIsolation } from '../../../server/engine/engine.js';
import { ensureDemoCheckpoint } from '../../../server/tools/make-checkpoint.js';
import { TorchGenerator } from '../../../server/engine/rng.js';
import { tcdTimesteps } from '../../../server/engine/sampling/tcd.js';
import type { Tensor } from '../../../server/engine/tensor.js';
import { debugWorker, debugWorkerEnv, workerStarts } from '../../../server/engine/testing.js';
import { assertLoopRunsWhileMainBlocked, assertStoppedAtCancel, timelineAfter } from '../../helpers/worker-timeline.js';

let dir: string, ckpt: string, engine: Engine, cond: { context: Tensor; pooled: Tensor };
const shape = [1, 4, 16, 16];
const timeIds = { shape: [1, 6], data: Float32Array.of(128, 128, 0, 0, 128, 128) };

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tcd-process-'));
  ckpt = await ensureDemoCheckpoint(join(dir, 'models'));
  engine = new Engine({
    cacheDir: join(dir, 'cache'),
    isolation: 'process',
    env: { TCD_PROBE: 'child only' },
    log: () => {},
  });
  const { context, pooled } = await engine.encodeText({ checkpoint: ckpt, loras: [] }, 'a quiet harbour');
  cond = { context, pooled: pooled! };
});
after(async () => {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
/** alive and not a zombie: an orphan's reaping is up to whoever adopted it, not to the engine */
const running = (pid: number) => {
  if (!alive(pid)) return false;
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
};

/** Text encoding, a 3-step TCD loop with eta noise and cfg, and a VAE decode: every output, to compare bitwise. */
async function pipeline(e: Engine): Promise<Float32Array[]> {
  const clip = { checkpoint: ckpt, loras: [] };
  const pos = await e.encodeText(clip, 'a lighthouse at dusk');
  const neg = await e.encodeText(clip, 'blurry');
  const gen = new TorchGenerator(11);
  const timesteps = tcdTimesteps(3);
  const x = gen.randn(shape);
  const noises = timesteps.slice(1).map(() => gen.randn(shape));
  const latent = await e.sampleTcd({
    model: { checkpoint: ckpt, loras: [] },
    x: { shape, data: x },
    timesteps,
    eta: 0.3,
    noises,
    cfg: 2,
    positive: { context: pos.context, extra: { textEmbeds: pos.pooled!, timeIds } },
    negative: { context: neg.context, extra: { textEmbeds: neg.pooled!, timeIds } },
  });
  const image = await e.vaeDecode({ checkpoint: ckpt }, latent);
  return [pos.context.data, pos.pooled!.data, latent.data, image.data];
}

function loopRequest(steps: number, at = shape): Parameters<Engine['sampleTcd']>[0] & { x: Tensor } {
  const gen = new TorchGenerator(3);
  const timesteps = tcdTimesteps(steps);
  const x = gen.randn(at);
  return {
    model: { checkpoint: ckpt, loras: [] },
    x: { shape: at, data: x },
    timesteps,
    eta: 0,
    noises: [],
    cfg: 1,
    positive: { context: cond.context, extra: { textEmbeds: cond.pooled, timeIds } },
  };
}

test('options: process isolation by option (TCD_ENGINE_ISOLATION through the settings); env with a thread is refused', () => {
  assert.deepEqual(resolveEngineIsolation({}), { mode: 'thread' });
  const child = resolveEngineIsolation({ isolation: 'process', env: { A: '1' } });
  assert.deepEqual({ mode: child.mode, env: child.env }, { mode: 'process', env: { A: '1' } });
  assert.equal(child.maxRssBytes, Math.floor(totalmem() * 0.85), 'a child engine has a memory limit (issue 18)');
  const rss = settingsFromEnv({ TCD_ENGINE_MAX_RSS_MB: '512' }).engineMaxRssMB;
  assert.equal(resolveEngineIsolation({ isolation: 'process', maxRssMB: rss }).maxRssBytes, 512 * 2 ** 20);
  assert.throws(() => new Engine({ env: { A: '1' } }), /env .* needs isolation 'process'/);
  assert.equal(
    resolveEngineIsolation({ isolation: settingsFromEnv({ TCD_ENGINE_ISOLATION: 'process' }).isolation }).mode,
    'process',
  );
  assert.throws(
    () => settingsFromEnv({ TCD_ENGINE_ISOLATION: 'fiber' }),
    /TCD_ENGINE_ISOLATION must be thread or process, got "fiber"/,
  );
});

test("the child runs in its own process and sees the env it was given; the thread sees the server's", async () => {
  const probe = await debugWorkerEnv(engine, 'TCD_PROBE');
  assert.equal(probe.isolation, 'process');
  assert.equal(probe.value, 'child only');
  assert.notEqual(probe.pid, process.pid);
  assert.ok(alive(probe.pid));
  assert.equal(process.env.TCD_PROBE, undefined);
  assert.equal(
    (await debugWorkerEnv(engine, 'TCD_ENGINE_WORKER_INIT')).value,
    null,
    'the init comes in the start message, not the env',
  );
  const thread = new Engine({ cacheDir: join(dir, 'cache'), isolation: 'thread', log: () => {} });
  try {
    assert.deepEqual(await debugWorkerEnv(thread, 'TCD_PROBE'), { pid: process.pid, isolation: 'thread', value: null });
  } finally {
    await thread.close();
  }
});

test('encodeText + sampleTcd + vaeDecode in a child process are bit-identical to a worker thread', async () => {
  const thread = new Engine({ cacheDir: join(dir, 'cache'), isolation: 'thread', log: () => {} });
  try {
    const [viaThread, viaProcess] = [await pipeline(thread), await pipeline(engine)];
    assert.deepEqual(
      viaProcess.map((a) => a.length),
      viaThread.map((a) => a.length),
    );
    viaThread.forEach((a, k) =>
      assert.ok(
        Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
          Buffer.from(viaProcess[k].buffer, viaProcess[k].byteOffset, viaProcess[k].byteLength),
        ),
        `output ${k} differs`,
      ),
    );
    assert.ok(viaProcess[3].some((v) => v !== 0));
  } finally {
    await thread.close();
  }
});

test('in the child: the loop runs on while the main thread is blocked, an abort stops it before its next UNet call, logs come through', async () => {
  await assertLoopRunsWhileMainBlocked(
    () => engine.stats(),
    (onStep) => engine.sampleTcd(loopRequest(4), { onStep }),
  );
  const ac = new AbortController();
  const steps: number[] = [];
  const prior = await engine.stats();
  // 64x64 latents: the loop's 20 steps outlast the cancel's trip to the child many times over
  await assert.rejects(
    engine.sampleTcd(loopRequest(20, [1, 4, 64, 64]), {
      signal: ac.signal,
      onStep: (p) => {
        steps.push(p.step);
        if (p.step === 1) ac.abort();
      },
    }),
    (e: Error) => e.name === 'InterruptedError',
  );
  assertStoppedAtCancel(timelineAfter(prior, await engine.stats()), steps.length);
  assert.ok(steps.length >= 2 && steps.length < 20, `${steps.length} steps`);
  const previews: number[] = [];
  const out = await engine.sampleTcd(loopRequest(2), {
    previews: true,
    onStep: (p) => previews.push(p.preview!.data.length),
  });
  assert.deepEqual(previews, [256 * 4, 256 * 4]);
  assert.equal(out.data.length, 4 * 16 * 16);
  const logs: string[] = [];
  const e = new Engine({ ep: 'metal', cacheDir: join(dir, 'cache'), isolation: 'process', log: (l) => logs.push(l) });
  try {
    assert.equal((await e.stats()).ep, 'cpu');
    assert.deepEqual(logs, [
      'engine: asked for execution provider cpu, using cpu: unknown execution provider "metal" (expected cpu | webgpu | cuda | auto)',
    ]);
  } finally {
    await e.close();
  }
});

test('kill -9 of the child mid-call rejects that call naming its component; the next call gets a fresh child', async () => {
  const logs: string[] = [];
  const e = new Engine({ cacheDir: join(dir, 'cache'), isolation: 'process', log: (l) => logs.push(l) });
  try {
    const { pid } = await debugWorkerEnv(e, 'PATH');
    const call = e.sampleTcd(loopRequest(8), {
      onStep: (p) => {
        if (p.step === 0) process.kill(pid, 'SIGKILL');
      },
    });
    await assert.rejects(
      call,
      /^EngineWorkerCrashed: engine worker crashed while running the TCD sampling loop of tcd-studio-demo-sdxl\.safetensors: worker process was killed by SIGKILL/,
    );
    assert.ok(
      logs.some((l) => /worker crashed .*1 call\(s\) failed, the next call starts a fresh worker/.test(l)),
      logs.join('\n'),
    );
    assert.ok(!alive(pid), 'the killed child is reaped');
    const probe = await debugWorkerEnv(e, 'PATH');
    assert.notEqual(probe.pid, pid);
    assert.equal(workerStarts(e), 2);
    // the debug ops behave as with a thread: 'throw' and 'exit' end only the child, with the same messages
    const crash = debugWorker(e, 'throw');
    const queued = debugWorkerEnv(e, 'PATH');
    await assert.rejects(
      queued,
      /engine worker crashed while running the debug: debug: uncaught error at the top level of the engine worker/,
    );
    await assert.rejects(crash, /EngineWorkerCrashed/);
    await assert.rejects(
      debugWorker(e, 'exit'),
      /engine worker crashed while running the debug: worker exited with code 7/,
    );
    const blockStart = performance.now();
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    await debugWorker(e, 'block', 300);
    clearInterval(timer);
    assert.ok(performance.now() - blockStart >= 290 && ticks >= 10, `${ticks} ticks while the child blocked`);
    assert.equal(workerStarts(e), 4); // the first, and one after each of kill -9, 'throw' and 'exit'
  } finally {
    await e.close();
  }
});

test('close() kills the child, even one blocked in a call, and leaves no process behind', async () => {
  const e = new Engine({ cacheDir: join(dir, 'cache'), isolation: 'process', log: () => {} });
  const { pid } = await debugWorkerEnv(e, 'PATH');
  const blocked = assert.rejects(debugWorker(e, 'block', 60_000), /engine closed while running the debug/);
  const t0 = performance.now();
  await e.close();
  await blocked;
  assert.ok(performance.now() - t0 < 5000);
  assert.ok(!alive(pid), `child ${pid} still running after close()`);
});

test('a server whose engine child is idle exits by itself (no close()), and the child goes with it', async () => {
  const script = join(dir, 'idle-exit.mts');
  const engineModule = fileURLToPath(new URL('../../../server/engine/engine.ts', import.meta.url));
  const testingModule = fileURLToPath(new URL('../../../server/engine/testing.ts', import.meta.url));
  writeFileSync(
    script,
    [
      `import { Engine } from ${JSON.stringify(engineModule)};`,
      `import { debugWorkerEnv } from ${JSON.stringify(testingModule)};`,
      `const e = new Engine({ cacheDir: ${JSON.stringify(join(dir, 'cache'))}, isolation: 'process', log: () => {} });`,
      `console.log((await debugWorkerEnv(e, 'PATH')).pid);`,
    ].join('\n'),
  );
  const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve(null);
    }, 20_000);
    child.on('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  assert.equal(code, 0, `the script did not exit by itself: ${out}`);
  const pid = Number(out.trim());
  assert.ok(pid > 0 && pid !== child.pid, out);
  for (let i = 0; i < 50 && running(pid); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(!running(pid), `engine child ${pid} outlived its parent`);
});
