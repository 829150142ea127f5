/**
 * The worker's k-sampler loop (Engine.sampleK): every KSampler / SamplerCustom sampler runs its whole loop in the
 * engine worker, CFG as one batched UNet call. Compared with ksample on the main thread calling engine.unet once per
 * branch and evaluation (the path it replaces), on the demo SDXL-shaped checkpoint on the CPU provider.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../../../server/engine/engine.js';
import { ensureDemoCheckpoint } from '../../../server/tools/make-checkpoint.js';
import { TorchGenerator } from '../../../server/engine/rng.js';
import { ksample } from '../../../server/engine/sampling/ksample.js';
import { DiscreteModelSampling } from '../../../server/engine/sampling/model-sampling.js';
import { ksamplerSigmas } from '../../../server/engine/sampling/schedules.js';
import type { Tensor } from '../../../server/engine/tensor.js';
import type { CondBranch } from '../../../server/engine/engine.js';
import { assertLoopRunsWhileMainBlocked, assertStoppedAtCancel, timelineAfter } from '../../helpers/worker-timeline.js';

const ms = DiscreteModelSampling.sd();
const shape = [1, 4, 16, 16];
let dir: string, engine: Engine, ckpt: string, pos: CondBranch, neg: CondBranch, negLong: CondBranch;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tcd-kloop-'));
  ckpt = await ensureDemoCheckpoint(join(dir, 'models'));
  engine = new Engine({ cacheDir: join(dir, 'cache'), log: () => {} });
  const clip = { checkpoint: ckpt, loras: [] };
  const timeIds = { shape: [1, 6], data: Float32Array.of(128, 128, 0, 0, 128, 128) };
  const p = await engine.encodeText(clip, 'a lighthouse at dusk');
  const n = await engine.encodeText(clip, 'blurry');
  // a prompt over 77 tokens: 154-token context, which cannot share a batched call with a 77-token one
  const long = await engine.encodeText(clip, Array.from({ length: 40 }, () => 'red fox').join(' '));
  pos = { context: p.context, extra: { textEmbeds: p.pooled!, timeIds } };
  neg = { context: n.context, extra: { textEmbeds: n.pooled!, timeIds } };
  negLong = { context: long.context, extra: { textEmbeds: long.pooled!, timeIds } };
});
after(async () => {
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

const maxRelDiff = (a: Float32Array, b: Float32Array) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(b[i])));
  return m;
};

/** The main-thread reference: ksample with one engine.unet call per branch and model evaluation. */
async function jsKSample(
  sampler: string,
  sigmas: number[],
  cfg: number,
  seed: bigint,
  n: CondBranch,
): Promise<Float32Array> {
  const model = { checkpoint: ckpt, loras: [] };
  const eps = (b: CondBranch) => async (x: Float32Array, t: number) =>
    (await engine.unet(model, { shape, data: x }, Float32Array.of(t), b.context, b.extra)).data;
  return ksample({
    sampler,
    sigmas,
    cfg,
    cond: eps(pos),
    uncond: eps(n),
    shape,
    latentImage: new Float32Array(4 * 16 * 16),
    initialNoise: new TorchGenerator(seed).randn(shape),
    samplerNoise: new TorchGenerator(seed),
    modelSampling: ms,
  });
}

const request = (sampler: string, sigmas: number[], cfg: number, seed: bigint, n: CondBranch = neg, at = shape) => ({
  model: { checkpoint: ckpt, loras: [] },
  sampling: { prediction: 'eps' as const, zsnr: false },
  sampler,
  sigmas,
  latent: { shape: at, data: new Float32Array(at.reduce((a, b) => a * b, 1)) },
  noise: new TorchGenerator(seed).randn(at),
  seed: seed.toString(),
  positive: [pos],
  negative: [n],
  cfg,
});

const unetRuns = async () => (await engine.stats()).runTimings.filter((r) => r.component === 'unet').length;

test("Engine.sampleK gives ksample's latent for plain, ancestral, multistep and cfg_pp samplers; CFG is one UNet call per evaluation", async () => {
  const cases: [string, string, number, number, bigint][] = [
    ['euler', 'normal', 4, 3, 7n],
    ['euler_ancestral', 'karras', 4, 2, 11n],
    ['dpmpp_2m', 'karras', 5, 1, 3n],
    ['heun', 'simple', 3, 2.5, 5n],
    ['euler_cfg_pp', 'normal', 3, 1, 9n],
    ['dpmpp_2m_sde', 'exponential', 4, 4, 2n ** 40n + 1n],
  ];
  for (const [sampler, scheduler, steps, cfg, seed] of cases) {
    const sigmas = ksamplerSigmas(ms, sampler, scheduler, steps, 1);
    const ref = await jsKSample(sampler, sigmas, cfg, seed, neg);
    const before = await unetRuns();
    const out = await engine.sampleK(request(sampler, sigmas, cfg, seed));
    const runs = (await unetRuns()) - before;
    assert.deepEqual(out.x.shape, shape);
    const d = maxRelDiff(out.x.data, ref);
    assert.ok(d < 1e-4, `${sampler}: worker loop differs from main-thread ksample by ${d}`);
    // one UNet run per model evaluation even with cfg (heun evaluates twice per step but not on the last one)
    const evaluations = sampler === 'heun' ? 2 * steps - 1 : steps;
    assert.equal(runs, evaluations, `${sampler}: ${runs} UNet runs for ${evaluations} evaluations`);
  }
});

test('conditioning of different lengths (77 vs 154 tokens) runs one call per branch and gives the same latent', async () => {
  const sigmas = ksamplerSigmas(ms, 'euler', 'normal', 3, 1);
  const ref = await jsKSample('euler', sigmas, 2, 4n, negLong);
  const before = await unetRuns();
  const out = await engine.sampleK(request('euler', sigmas, 2, 4n, negLong));
  assert.equal((await unetRuns()) - before, 6);
  assert.ok(maxRelDiff(out.x.data, ref) < 1e-4);
});

test("progress once per step with the denoised estimate as preview; SamplerCustom's denoised is the last one", async () => {
  const sigmas = ksamplerSigmas(ms, 'euler_ancestral', 'normal', 4, 1);
  const seen: { step: number; total: number; preview?: Tensor }[] = [];
  const out = await engine.sampleK(request('euler_ancestral', sigmas, 2, 1n), {
    onStep: (p) => seen.push(p),
    previews: true,
  });
  assert.deepEqual(
    seen.map((p) => [p.step, p.total]),
    [
      [0, 4],
      [1, 4],
      [2, 4],
      [3, 4],
    ],
  );
  assert.deepEqual(Array.from(seen[3].preview!.data), Array.from(out.denoised.data));
  assert.notDeepEqual(Array.from(seen[0].preview!.data), Array.from(out.denoised.data));
  const quiet: unknown[] = [];
  await engine.sampleK(request('euler', sigmas, 2, 1n), { onStep: (p) => quiet.push(p.preview) });
  assert.deepEqual(quiet, [undefined, undefined, undefined, undefined]);
});

test('an abort stops the loop before its next UNet call with InterruptedError; fewer than 2 sigmas return the latent', async () => {
  const ac = new AbortController();
  const steps: number[] = [];
  const sigmas = ksamplerSigmas(ms, 'euler', 'normal', 20, 1);
  const prior = await engine.stats();
  // 64x64 latents: the loop's 20 steps outlast the cancel's trip to the worker many times over
  await assert.rejects(
    engine.sampleK(request('euler', sigmas, 2, 1n, neg, [1, 4, 64, 64]), {
      signal: ac.signal,
      onStep: (p) => {
        steps.push(p.step);
        if (p.step === 1) ac.abort();
      },
    }),
    (e: Error) => e.name === 'InterruptedError',
  );
  // how many steps ran depends on when the cancel arrived (the loop runs ahead of onStep); no UNet call after it
  // does not, and euler with cfg makes one batched UNet call per step
  assertStoppedAtCancel(timelineAfter(prior, await engine.stats()), steps.length);
  assert.ok(steps.length >= 2 && steps.length < 20, `${steps.length} steps`);
  const latent = { shape, data: Float32Array.from({ length: 1024 }, (_, i) => i / 1024) };
  const same = await engine.sampleK({ ...request('euler', [1.5], 2, 1n), latent });
  assert.deepEqual(Array.from(same.x.data), Array.from(latent.data));
  await assert.rejects(
    engine.sampleK({ ...request('euler', sigmas, 2, 1n), negative: [] }),
    /negative conditioning is empty/,
  );
});

test("the loop never waits for the main thread: while step 0's handler blocks it, the later steps run", async () => {
  await assertLoopRunsWhileMainBlocked(
    () => engine.stats(),
    (onStep) => engine.sampleK(request('euler', ksamplerSigmas(ms, 'euler', 'normal', 4, 1), 2, 3n), { onStep }),
  );
});

test("the loop's phases on the worker timeline: set-up, per UNet call yield / UNet, the sampler's math, reports, end", async () => {
  const prior = await engine.stats();
  await engine.sampleK(request('euler', ksamplerSigmas(ms, 'euler', 'normal', 2, 1), 2, 4n));
  const phases = timelineAfter(prior, await engine.stats()).filter((e) => e.component.startsWith('ks_'));
  const step = ['yield', 'unet', 'sampler', 'progress'];
  assert.deepEqual(
    phases.map((e) => e.component.slice(3)),
    ['setup', ...step, 'sampler', ...step, 'end'],
  );
  for (let i = 1; i < phases.length; i++)
    assert.ok(Math.abs(phases[i].at - (phases[i - 1].at + phases[i - 1].ms)) < 0.01, `gap before phase ${i}`);
});

test('a denoise mask (inpainting) keeps the latent where the mask is 0 and samples where it is 1', async () => {
  const sigmas = ksamplerSigmas(ms, 'euler', 'normal', 4, 1);
  const latent = { shape, data: Float32Array.from({ length: 1024 }, (_, i) => Math.sin(i) * 0.5) };
  const mask = Float32Array.from({ length: 1024 }, (_, i) => (i % 16 < 8 ? 1 : 0)); // left half of every row
  const out = await engine.sampleK({ ...request('euler', sigmas, 2, 3n), latent, denoiseMask: mask });
  const plain = await engine.sampleK({ ...request('euler', sigmas, 2, 3n), latent });
  let keptDiff = 0,
    changed = 0;
  for (let i = 0; i < 1024; i++) {
    if (mask[i] === 0) keptDiff = Math.max(keptDiff, Math.abs(out.x.data[i] - latent.data[i]));
    else if (Math.abs(out.x.data[i] - latent.data[i]) > 0.05) changed++;
  }
  assert.ok(keptDiff < 1e-4, `unmasked latent moved by ${keptDiff}`);
  assert.ok(changed > 256, `only ${changed} of 512 masked values changed`);
  assert.ok(maxRelDiff(out.x.data, plain.x.data) > 1e-2, 'the mask made no difference');
});
