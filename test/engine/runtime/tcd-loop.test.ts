/**
 * The worker's TCD loop (issue 8 point 1's GPU-resident loop), run on the CPU provider as the GPU path's twin: the
 * step graph computes tcdStep, and Engine.sampleTcd gives the latent that the JS loop (sampleTcd + one engine.unet
 * call per step) gives, with cfg, eta noise, previews, progress, cancellation and input checks.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { Engine } from '../../../server/engine/engine.js';
import { ensureDemoCheckpoint } from '../../../server/tools/make-checkpoint.js';
import { serializeModel } from '../../../server/engine/onnx/serialize.js';
import { TorchGenerator } from '../../../server/engine/rng.js';
import { buildTcdStepGraph, TCD_STEP_SCALARS } from '../../../server/engine/sampling/tcd-step-graph.js';
import { sampleTcd, tcdStep, tcdStepScalars, tcdTimesteps } from '../../../server/engine/sampling/tcd.js';
import type { Tensor } from '../../../server/engine/tensor.js';
import {
  assertLoopRunsWhileMainBlocked,
  assertStoppedAtCancel,
  holdThisThread,
  timelineAfter,
} from '../../helpers/worker-timeline.js';

const maxRelDiff = (a: Float32Array, b: Float32Array) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(b[i])));
  return m;
};

test('the step graph computes tcdStep (epsilon and v_prediction, with and without cfg, noisy and last steps)', async () => {
  const shape = [2, 4, 5, 6],
    n = 240;
  const gen = new TorchGenerator(3);
  const [x, pos, neg, noise] = [gen.randn(shape), gen.randn(shape), gen.randn(shape), gen.randn(shape)];
  for (const predictionType of ['epsilon', 'v_prediction'] as const) {
    for (const guided of [false, true]) {
      const s = await ort.InferenceSession.create(serializeModel(buildTcdStepGraph({ guided, predictionType })));
      for (const [t, prev, eta] of [
        [999, 759, 0.3],
        [259, null, 0.3],
        [759, 499, 0],
      ] as const) {
        const cfg = 2.5;
        const mo = guided ? pos.map((p, i) => neg[i] + cfg * (p - neg[i])) : pos;
        const ref = tcdStep({
          modelOutput: mo,
          timestep: t,
          prevTimestep: prev,
          sample: x,
          eta,
          noise,
          predictionType,
        });
        const sc = tcdStepScalars(t, prev, eta);
        const values = [sc.sqrtAlpha, sc.sqrtBeta, sc.sqrtAlphaS, sc.sqrtBetaS, sc.keep, sc.noiseScale, cfg];
        const feeds: Record<string, ort.Tensor> = {
          x: new ort.Tensor('float32', x, shape),
          pos: new ort.Tensor('float32', pos, shape),
          noise: new ort.Tensor('float32', sc.noisy ? noise : new Float32Array(n), shape),
        };
        if (guided) feeds.neg = new ort.Tensor('float32', neg, shape);
        TCD_STEP_SCALARS.forEach((name, k) => {
          feeds[name] = new ort.Tensor('float32', Float32Array.of(values[k]), [1]);
        });
        const out = await s.run(feeds);
        const what = `${predictionType} guided=${guided} t=${t} prev=${prev} eta=${eta}`;
        assert.ok(maxRelDiff(out.pns.data as Float32Array, ref.predNoisedSample) < 2e-6, `pns ${what}`);
        assert.ok(maxRelDiff(out.prev.data as Float32Array, ref.prevSample) < 2e-6, `prev ${what}`);
      }
      await s.release();
    }
  }
});

let dir: string, engine: Engine, ckpt: string;
let context: Tensor,
  negContext: Tensor,
  extra: { textEmbeds: Tensor; timeIds: Tensor },
  negExtra: { textEmbeds: Tensor; timeIds: Tensor };
const shape = [1, 4, 16, 16];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tcd-loop-'));
  ckpt = await ensureDemoCheckpoint(join(dir, 'models'));
  engine = new Engine({ cacheDir: join(dir, 'cache'), log: () => {} });
  const clip = { checkpoint: ckpt, loras: [] };
  const timeIds = { shape: [1, 6], data: Float32Array.of(128, 128, 0, 0, 128, 128) };
  const pos = await engine.encodeText(clip, 'a lighthouse at dusk');
  const neg = await engine.encodeText(clip, 'blurry');
  context = pos.context;
  negContext = neg.context;
  extra = { textEmbeds: pos.pooled!, timeIds };
  negExtra = { textEmbeds: neg.pooled!, timeIds };
});
after(async () => {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The JS reference: sampleTcd with one engine.unet call per branch and step, cfg combined in JS. */
async function jsLoop(seed: number, steps: number, eta: number, cfg: number): Promise<Float32Array> {
  const gen = new TorchGenerator(seed);
  const model = { checkpoint: ckpt, loras: [] };
  const t = (ts: number) => Float32Array.of(ts);
  return sampleTcd({
    x: gen.randn(shape),
    timesteps: tcdTimesteps(steps),
    eta,
    noise: gen,
    shape,
    denoise: async (x, ts) => {
      const p = (await engine.unet(model, { shape, data: x }, t(ts), context, extra)).data;
      if (cfg <= 1) return p;
      const n = (await engine.unet(model, { shape, data: x }, t(ts), negContext, negExtra)).data;
      return p.map((v, i) => n[i] + cfg * (v - n[i]));
    },
  });
}

function loopRequest(seed: number, steps: number, eta: number, cfg: number, at = shape) {
  const gen = new TorchGenerator(seed);
  const timesteps = tcdTimesteps(steps);
  const x = gen.randn(at);
  const noises = eta > 0 ? timesteps.slice(1).map(() => gen.randn(at)) : [];
  return {
    model: { checkpoint: ckpt, loras: [] },
    x: { shape: at, data: x },
    timesteps,
    eta,
    noises,
    cfg,
    positive: { context, extra },
    ...(cfg > 1 ? { negative: { context: negContext, extra: negExtra } } : {}),
  };
}

test("Engine.sampleTcd (the whole loop in the worker) gives the JS loop's latent: eta 0.3 without cfg, eta 0 with cfg 3", async () => {
  for (const [seed, steps, eta, cfg] of [
    [5, 4, 0.3, 1],
    [6, 3, 0, 3],
  ] as const) {
    const ref = await jsLoop(seed, steps, eta, cfg);
    const out = await engine.sampleTcd(loopRequest(seed, steps, eta, cfg));
    assert.deepEqual(out.shape, shape);
    const d = maxRelDiff(out.data, ref);
    assert.ok(d < 1e-5, `seed ${seed}: worker loop differs from the JS loop by ${d}`);
  }
});

test('progress comes once per step, with previews only when asked; the last preview is the result', async () => {
  const seen: { step: number; total: number; preview?: Tensor }[] = [];
  const out = await engine.sampleTcd(loopRequest(8, 4, 0.3, 1), { onStep: (p) => seen.push(p), previews: true });
  assert.deepEqual(
    seen.map((p) => [p.step, p.total]),
    [
      [0, 4],
      [1, 4],
      [2, 4],
      [3, 4],
    ],
  );
  assert.ok(seen.every((p) => p.preview && p.preview.data.length === out.data.length));
  assert.deepEqual(Array.from(seen[3].preview!.data), Array.from(out.data));
  assert.notDeepEqual(Array.from(seen[0].preview!.data), Array.from(out.data));
  const quiet: unknown[] = [];
  await engine.sampleTcd(loopRequest(8, 4, 0.3, 1), { onStep: (p) => quiet.push(p.preview) });
  assert.deepEqual(quiet, [undefined, undefined, undefined, undefined]);
});

test('an aborted signal stops the loop before its next UNet call with InterruptedError; the worker serves the next call', async () => {
  const ac = new AbortController();
  const steps: number[] = [];
  const prior = await engine.stats();
  // 64x64 latents: the loop's 20 steps outlast the cancel's trip to the worker many times over
  await assert.rejects(
    engine.sampleTcd(loopRequest(9, 20, 0.3, 1, [1, 4, 64, 64]), {
      signal: ac.signal,
      onStep: (p) => {
        steps.push(p.step);
        if (p.step === 1) ac.abort();
      },
    }),
    (e: Error) => e.name === 'InterruptedError',
  );
  // the loop runs ahead of onStep, so how many steps ran depends on when the cancel arrived; what does not: no UNet
  // call after its arrival, and every step that ran reported, in order
  assertStoppedAtCancel(timelineAfter(prior, await engine.stats()), steps.length);
  assert.deepEqual(
    steps,
    steps.map((_, i) => i),
  );
  assert.ok(steps.length >= 2 && steps.length < 20, `${steps.length} steps`);
  const out = await engine.sampleTcd(loopRequest(9, 2, 0.3, 1));
  assert.equal(out.data.length, 4 * 16 * 16);
});

test("the loop never waits for the main thread: while step 0's handler blocks it, the later steps run", async () => {
  await assertLoopRunsWhileMainBlocked(
    () => engine.stats(),
    (onStep) => engine.sampleTcd(loopRequest(11, 4, 0.3, 1), { onStep }),
  );
});

test("a progress handler slower than the loop's steps does not hold the main thread: a timer due in step 0's handler runs before step 1's", async () => {
  const steps: number[] = [];
  let timerAt = -1;
  await engine.sampleTcd(loopRequest(13, 4, 0.3, 1), {
    onStep: (p) => {
      steps.push(p.step);
      if (p.step !== 0) return;
      setTimeout(() => (timerAt = steps.length), 0);
      holdThisThread(300); // like a slow preview: the worker posts the other steps meanwhile
    },
  });
  assert.deepEqual(steps, [0, 1, 2, 3]);
  // handed over all at once, the queued reports would run before any timer (and before an interrupt's socket read)
  assert.equal(timerAt, 1, `the timer ran after ${timerAt} reports`);
});

test("the loop's phases on the worker timeline: set-up, per step yield / UNet / step graph / report, end, back to back", async () => {
  const prior = await engine.stats();
  await engine.sampleTcd(loopRequest(12, 3, 0.3, 1));
  const phases = timelineAfter(prior, await engine.stats()).filter((e) => e.component.startsWith('tcd_'));
  // the last step's download and report belong to 'end'
  const step = ['yield', 'unet', 'step'];
  assert.deepEqual(
    phases.map((e) => e.component.slice(4)),
    ['setup', ...step, 'progress', ...step, 'progress', ...step, 'end'],
  );
  // each phase starts where the previous one ended: together they are the loop's whole time in the worker
  for (let i = 1; i < phases.length; i++)
    assert.ok(Math.abs(phases[i].at - (phases[i - 1].at + phases[i - 1].ms)) < 0.01, `gap before phase ${i}`);
});

test('wrong noise counts and a missing SDXL pooled input are refused with a clear error', async () => {
  const r = loopRequest(10, 4, 0.3, 1);
  await assert.rejects(
    engine.sampleTcd({ ...r, noises: r.noises.slice(1) }),
    /3 noise draws needed \(eta 0.3, 4 steps\), got 2/,
  );
  await assert.rejects(engine.sampleTcd({ ...r, positive: { context } }), /needs textEmbeds \(pooled\) and timeIds/);
});
