/**
 * ModelSamplingDiscrete / RescaleCFG / SDTurboScheduler / TCDModelSamplingDiscrete: the tables, schedules and
 * prediction conversions (ComfyUI's formulas), and the patched models through KSampler and SamplerCustom on the demo
 * model.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { DiscreteModelSampling } from '../../server/engine/sampling/model-sampling.js';
import {
  DistilledModelSampling,
  denoisedFrom,
  modelSamplingFor,
  rescaledCfg,
} from '../../server/engine/sampling/model-sampling-variants.js';
import { tcdTimesteps } from '../../server/engine/sampling/tcd.js';
import { tcdSigmas } from '../../server/engine/sampling/k-sampler-tcd.js';
import { ensureDemoCheckpoint, DEMO_CHECKPOINT_NAME } from '../../server/tools/make-checkpoint.js';
import type { LatentValue, ModelValue, SamplerValue, SigmasValue } from '../../nodes/types.js';
import { makeHarness, type Harness } from '../helpers/run-prompt.js';
import { maxAbsDiff } from '../helpers/fixtures.js';
import { runNode } from './model-free-helpers.js';

const sd = DiscreteModelSampling.sd();

test('zsnr: the first sigma stays, the last is the zero-SNR one; distilled: 50 entries, t = 20 k + 19', () => {
  const z = modelSamplingFor({ prediction: 'eps', zsnr: true });
  assert.ok(Math.abs(z.sigmas[0] - sd.sigmas[0]) < 1e-7);
  assert.ok(Math.abs(z.sigmas[999] - Math.sqrt((1 - 4.8973451890853435e-8) / 4.8973451890853435e-8)) < 1e-2 * 4518);
  assert.ok(z.sigmas[500] > sd.sigmas[500] && z.sigmas[998] > 100 * sd.sigmas[998]);
  const d = modelSamplingFor({ prediction: 'lcm', zsnr: false }) as DistilledModelSampling;
  assert.ok(d instanceof DistilledModelSampling);
  assert.equal(d.sigmas.length, 50);
  assert.equal(d.sigmas[49], sd.sigmas[999]);
  assert.equal(d.sigmas[0], sd.sigmas[19]);
  assert.equal(d.timestep(sd.sigmas[759]), 759);
  assert.ok(Math.abs(d.sigma(999) - sd.sigmas[999]) < 1e-6 * sd.sigmas[999]);
  assert.ok(Math.abs(d.sigma(19) - sd.sigmas[19]) < 1e-6 * sd.sigmas[19]);
});

test("prediction types give ComfyUI's denoised; RescaleCFG at multiplier 0 is plain cfg", () => {
  const x = Float32Array.of(2, -1),
    out = Float32Array.of(1, 0.5);
  assert.deepEqual([...denoisedFrom('eps', sd, x, out, 2)], [0, -2]);
  assert.deepEqual([...denoisedFrom('x0', sd, x, out, 2)], [1, 0.5]);
  const v = denoisedFrom('v_prediction', sd, x, out, 1);
  assert.ok(Math.abs(v[0] - (1 - Math.SQRT1_2)) < 1e-6 && Math.abs(v[1] - (-0.5 - 0.5 * Math.SQRT1_2)) < 1e-6);
  // lcm at sigma_max of the distilled table: t = 999, c_skip ~ 0, c_out ~ 1 -> the eps denoised
  const d = modelSamplingFor({ prediction: 'lcm', zsnr: false });
  const l = denoisedFrom('lcm', d, x, out, d.sigmaMax),
    e = denoisedFrom('eps', d, x, out, d.sigmaMax);
  assert.ok(maxAbsDiff(l, e) < 1e-3 * Math.abs(e[0]));
  const xs = Float32Array.from({ length: 8 }, (_, i) => Math.sin(i) * 3),
    c = Float32Array.from({ length: 8 }, (_, i) => Math.cos(i)),
    u = Float32Array.from({ length: 8 }, (_, i) => 0.5 - i / 8);
  const plain = c.map((cv, i) => u[i] + 4 * (cv - u[i]));
  assert.ok(maxAbsDiff(rescaledCfg(xs, c, u, 3, 4, 0, 1), plain) < 1e-5);
  assert.ok(maxAbsDiff(rescaledCfg(xs, c, u, 3, 4, 0.7, 1), plain) > 1e-3);
});

test('SDTurboScheduler and TCDModelSamplingDiscrete schedules', async () => {
  const model = { ref: { checkpoint: 'x', loras: [] }, config: { predictionType: 'epsilon' } } as unknown as ModelValue;
  const [turbo] = (await runNode('SDTurboScheduler', { model, steps: 2, denoise: 1 })) as SigmasValue[];
  // ComfyUI's sigma(t): exp of the float32 log table (one rounding away from the stored sigmas)
  assert.deepEqual(turbo, [sd.sigma(999), sd.sigma(899), 0]);
  const [half] = (await runNode('SDTurboScheduler', { model, steps: 2, denoise: 0.5 })) as SigmasValue[];
  assert.deepEqual(half, [sd.sigma(499), sd.sigma(399), 0]);
  const [patched, sampler, sigmas] = (await runNode('TCDModelSamplingDiscrete', {
    model,
    steps: 4,
    scheduler: 'simple',
    denoise: 1,
    eta: 0.3,
  })) as [ModelValue, SamplerValue, SigmasValue];
  // the 'simple' distilled schedule lands on diffusers' TCD timesteps (999, 759, 499, 259)
  assert.deepEqual(sigmas, tcdSigmas(sd, tcdTimesteps(4)));
  assert.deepEqual(sampler, { name: 'tcd', eta: 0.3 });
  assert.deepEqual(patched.sampling, { prediction: 'eps', zsnr: false, distilled: true });
  const [, , partial] = (await runNode('TCDModelSamplingDiscrete', {
    model,
    steps: 2,
    scheduler: 'sgm_uniform',
    denoise: 0.5,
    eta: 0,
  })) as [ModelValue, SamplerValue, SigmasValue];
  assert.equal(partial.length, 3);
  assert.equal(partial[2], 0);
  assert.ok(partial[0] < sd.sigmas[999] && partial[0] > partial[1]);
});

let h: Harness;
before(async () => {
  h = makeHarness();
  await ensureDemoCheckpoint(h.dirs.models);
});
after(async () => {
  await h.close();
});

const base = (model: unknown[], sampler: Record<string, unknown>) => ({
  ckpt: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: DEMO_CHECKPOINT_NAME } },
  pos: { class_type: 'CLIPTextEncode', inputs: { text: 'a red fox', clip: ['ckpt', 1] } },
  neg: { class_type: 'CLIPTextEncode', inputs: { text: 'blurry', clip: ['ckpt', 1] } },
  empty: { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
  ...sampler,
  out: { class_type: 'CaptureLATENT', inputs: { value: ['ks', 0] } },
  _model: model,
});

async function sample(extra: Record<string, unknown>, model: unknown[] = ['ckpt', 0], cfg = 3): Promise<Float32Array> {
  const p: Record<string, unknown> = base(model, {
    ks: {
      class_type: 'KSampler',
      inputs: {
        model,
        seed: 5,
        steps: 3,
        cfg,
        sampler_name: 'euler',
        scheduler: 'normal',
        positive: ['pos', 0],
        negative: ['neg', 0],
        latent_image: ['empty', 0],
        denoise: 1,
      },
    },
    ...extra,
  });
  delete p._model;
  await h.run(p as never);
  return (h.captured.get('out') as LatentValue).samples.data;
}

test('KSampler on patched models: eps patch = unpatched; v_prediction, zsnr and RescaleCFG change the result', async () => {
  const plain = await sample({});
  const eps = await sample(
    { msd: { class_type: 'ModelSamplingDiscrete', inputs: { model: ['ckpt', 0], sampling: 'eps', zsnr: false } } },
    ['msd', 0],
  );
  assert.ok(maxAbsDiff(plain, eps) < 1e-5, `eps patch ${maxAbsDiff(plain, eps)}`);
  const v = await sample(
    {
      msd: {
        class_type: 'ModelSamplingDiscrete',
        inputs: { model: ['ckpt', 0], sampling: 'v_prediction', zsnr: true },
      },
    },
    ['msd', 0],
  );
  assert.ok(maxAbsDiff(plain, v) > 1e-3);
  const resc = await sample({ rc: { class_type: 'RescaleCFG', inputs: { model: ['ckpt', 0], multiplier: 0.7 } } }, [
    'rc',
    0,
  ]);
  assert.ok(maxAbsDiff(plain, resc) > 1e-4);
  const rescCfg1 = await sample(
    { rc: { class_type: 'RescaleCFG', inputs: { model: ['ckpt', 0], multiplier: 0.7 } } },
    ['rc', 0],
    1,
  );
  assert.ok(maxAbsDiff(await sample({}, ['ckpt', 0], 1), rescCfg1) < 1e-5, 'at cfg 1 RescaleCFG changes nothing');
});

test('SamplerCustom with TCDModelSamplingDiscrete runs 4 TCD steps on the demo model', async () => {
  const p = {
    ckpt: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: DEMO_CHECKPOINT_NAME } },
    pos: { class_type: 'CLIPTextEncode', inputs: { text: 'a red fox', clip: ['ckpt', 1] } },
    neg: { class_type: 'CLIPTextEncode', inputs: { text: 'blurry', clip: ['ckpt', 1] } },
    empty: { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
    tcd: {
      class_type: 'TCDModelSamplingDiscrete',
      inputs: { model: ['ckpt', 0], steps: 4, scheduler: 'simple', denoise: 1, eta: 0.3 },
    },
    sc: {
      class_type: 'SamplerCustom',
      inputs: {
        model: ['tcd', 0],
        add_noise: true,
        noise_seed: 7,
        cfg: 1,
        positive: ['pos', 0],
        negative: ['neg', 0],
        sampler: ['tcd', 1],
        sigmas: ['tcd', 2],
        latent_image: ['empty', 0],
      },
    },
    out: { class_type: 'CaptureLATENT', inputs: { value: ['sc', 0] } },
  };
  const r = await h.run(p);
  const steps = r.events.filter((e) => e.type === 'progress' && (e.data as { node: string }).node === 'sc');
  assert.equal(steps.length, 4);
  const x = (h.captured.get('out') as LatentValue).samples;
  assert.deepEqual(x.shape, [1, 4, 8, 8]);
  assert.ok(x.data.every(Number.isFinite));
});
