/**
 * The bench on the CPU provider with the small demo architecture: every figure is there and consistent (steps per
 * image, in-worker time below the round trip, the loop's phases adding up, loads recorded once per component, a
 * second run reuses the graphs); the GPU memory probe's parsing and per-phase readings with nvidia-smi's output.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCheckpoint, presetConfig } from '../../server/tools/make-checkpoint.js';
import { runBench } from '../../server/tools/bench/run.js';
import { GpuMemoryProbe, parseUsedMiB } from '../../server/tools/bench/gpu-memory.js';

test('bench: demo arch at 64x64, 2 steps on cpu', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tcd-bench-test-'));
  try {
    const checkpoint = join(dir, 'demo.safetensors');
    await makeCheckpoint({ config: presetConfig('demo'), out: checkpoint, seed: 3, dtype: 'F16' });
    const r = await runBench({
      arch: 'demo',
      size: 64,
      steps: 2,
      ep: 'cpu',
      checkpoint,
      images: 2,
      cacheDir: join(dir, 'cache'),
      log: () => {},
    });
    assert.equal(r.ep, 'cpu');
    assert.equal(r.images.length, 2);
    for (const im of r.images) {
      assert.equal(im.unetStepMs.length, 2);
      assert.equal(im.unetStepInWorkerMs.length, 2);
      // the loop runs in the worker: all its session.run time lies inside the time from the call to its last step
      const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
      assert.ok(
        sum(im.unetStepInWorkerMs) <= sum(im.unetStepMs) + 0.5,
        `session.run time exceeds the loop's: ${JSON.stringify(im)}`,
      );
      assert.ok(im.loopMs >= sum(im.unetStepMs) - 0.5 && im.loopMs <= im.totalMs, JSON.stringify(im));
      assert.ok(im.totalMs >= im.textEncodeMs + im.vaeDecodeMs + im.unetStepMs.reduce((a, b) => a + b, 0) - 1);
      // the loop's phases in the worker add up to its time there, which lies inside the loop's time on the main side
      const ph = im.loopPhasesMs!;
      const phases = ['setup', 'yield', 'unet', 'step', 'progress', 'end'];
      assert.deepEqual(Object.keys(ph), [...phases, 'inWorker', 'outsideWorker', 'unetInSession']);
      assert.ok(Math.abs(sum(phases.map((k) => ph[k])) - ph.inWorker) < 0.05, JSON.stringify(ph));
      assert.ok(ph.inWorker <= im.loopMs + 0.1 && ph.outsideWorker >= -0.1, JSON.stringify(ph));
      assert.ok(Math.abs(ph.inWorker + ph.outsideWorker - im.loopMs) < 0.2, JSON.stringify(ph));
      assert.ok(Math.abs(ph.unetInSession - sum(im.unetStepInWorkerMs)) < 0.2, JSON.stringify(ph));
      assert.ok(ph.unet >= ph.unetInSession - 0.05 && ph.unetInSession > 0, JSON.stringify(ph));
    }
    assert.deepEqual(Object.keys(r.summary.loopPhasesMs!), Object.keys(r.images[0].loopPhasesMs!));
    assert.equal(r.summary.loopPhasesMs!.unet, Math.min(...r.images.map((im) => im.loopPhasesMs!.unet)));
    // GPU memory after each cold first call: MiB above the baseline where nvidia-smi answers, else null
    const gpuKnown = r.memory.gpuBaselineMiB !== null;
    for (const v of Object.values(r.memory.afterPhaseMiB)) assert.equal(typeof v, gpuKnown ? 'number' : 'object');
    assert.deepEqual(Object.keys(r.memory.afterPhaseMiB), ['text', 'unet', 'vae']);
    // sdxl-family demo: two text encoders, unet, vae decoder, each loaded once
    assert.equal(r.loads.length, 4, JSON.stringify(r.loads.map((l) => l.name)));
    assert.ok(r.summary.secondsPerImage > 0 && Number.isFinite(r.summary.unetStepMs));
    assert.ok(r.memory.peakRssMiB > 50);
    assert.equal(typeof JSON.stringify(r), 'string');
    await assert.rejects(
      runBench({ arch: 'sd15', size: 100, steps: 1, ep: 'cpu', checkpoint, log: () => {} }),
      /multiple of 64/,
    );
    // --cfg: the same seeds with guidance against the empty prompt (batch-2 UNet calls) give another image
    const common = { arch: 'demo' as const, size: 64, steps: 2, ep: 'cpu', checkpoint, cacheDir: join(dir, 'cache') };
    // (asked for an unknown provider, which the engine's log says it replaced by the CPU: the report keeps that line)
    const guided = await runBench({ ...common, ep: 'metal', images: 2, cfg: 3, log: () => {} });
    assert.equal(r.cfg, 1);
    assert.equal(guided.cfg, 3);
    assert.deepEqual(r.engineLog, []);
    assert.equal(guided.ep, 'cpu');
    assert.match(guided.engineLog.join('\n'), /using cpu: unknown execution provider "metal"/);
    assert.equal(guided.images.length, 2);
    assert.notEqual(guided.lastImage!.mean, r.lastImage!.mean);
    await assert.rejects(runBench({ ...common, cfg: 2, loop: 'js', log: () => {} }), /worker loop only/);
    await assert.rejects(runBench({ ...common, cfg: 0.5, log: () => {} }), /--cfg must be a number >= 1/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('GPU memory probe: nvidia-smi output parsed; readings after each phase and the peak, above the baseline', async () => {
  // captured from `nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0` on an H200
  assert.equal(parseUsedMiB('18342\n'), 18342);
  assert.equal(parseUsedMiB('  4\n'), 4);
  assert.equal(parseUsedMiB('[N/A]\n'), null);
  assert.equal(parseUsedMiB('NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.\n'), null);
  assert.equal(parseUsedMiB(''), null);
  // a scripted reader in nvidia-smi's place: the baseline, then one reading per phase
  const readings = [1000, 1500, 9000, 4200];
  const probe = await GpuMemoryProbe.start(60_000, async () => readings.shift() ?? 4200);
  assert.equal(probe.baselineMiB, 1000);
  const after = [];
  for (let i = 0; i < 3; i++) after.push(probe.aboveBaseline(await probe.now()));
  assert.deepEqual(after, [500, 8000, 3200]);
  assert.deepEqual(await probe.stop(), { baselineMiB: 1000, peakMiB: 9000, peakAboveBaselineMiB: 8000 });
  // without nvidia-smi: every reading null
  const none = await GpuMemoryProbe.start(60_000, async () => null);
  assert.equal(none.aboveBaseline(await none.now()), null);
  assert.deepEqual(await none.stop(), { baselineMiB: null, peakMiB: null, peakAboveBaselineMiB: null });
});
