/**
 * The bench on the CPU provider with the small demo architecture: every figure is there and consistent (steps per
 * image, in-worker time below the round trip, loads recorded once per component, a second run reuses the graphs).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCheckpoint, presetConfig } from '../../server/tools/make-checkpoint.js';
import { runBench } from '../../server/tools/bench/run.js';

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
    }
    // sdxl-family demo: two text encoders, unet, vae decoder, each loaded once
    assert.equal(r.loads.length, 4, JSON.stringify(r.loads.map((l) => l.name)));
    assert.ok(r.summary.secondsPerImage > 0 && Number.isFinite(r.summary.unetStepMs));
    assert.ok(r.memory.peakRssMiB > 50);
    assert.equal(typeof JSON.stringify(r), 'string');
    await assert.rejects(
      runBench({ arch: 'sd15', size: 100, steps: 1, ep: 'cpu', checkpoint, log: () => {} }),
      /multiple of 64/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
