import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import { fixtureJson, fixturePath, fixtureSkip, maxAbs, maxAbsDiff } from '../../helpers/fixtures.js';
import {
  TCD_ALPHAS_CUMPROD,
  sampleTcd,
  tcdAddNoise,
  tcdStep,
  tcdTimesteps,
  torchLinspaceF32,
  type PredictionType,
} from '../../../server/engine/sampling/tcd.js';
import { QueuedNoise } from '../../../server/engine/sampling/noise.js';

const skip = fixtureSkip();
interface Trace {
  id: number;
  steps: number;
  eta: number;
  prediction_type: PredictionType;
  timesteps: number[];
}

test('alphas_cumprod equals torch float32 bit for bit', { skip }, () => {
  const ref = SafetensorsFile.open(fixturePath('tcd_scheduler.safetensors')).readFloat32('alphas_cumprod');
  assert.equal(maxAbsDiff(TCD_ALPHAS_CUMPROD, ref), 0);
});

test('tcdTimesteps equals every set_timesteps(N, strength) entry, errors included', { skip }, () => {
  const table = fixtureJson('manifest.json').cases.tcd_scheduler.timesteps as Record<string, number[] | string>;
  let checked = 0,
    errors = 0;
  for (const [key, want] of Object.entries(table)) {
    const [n, s] = key.split('@');
    const run = () => tcdTimesteps(Number(n), Number(s));
    if (typeof want === 'string') {
      const prefix = want.replace(/^error: /, '');
      assert.throws(run, (e: Error) => e.message.startsWith(prefix), `${key} should raise "${prefix}"`);
      errors++;
    } else {
      assert.deepEqual(run(), want, key);
    }
    checked++;
  }
  assert.ok(checked >= 50 && errors >= 5, `checked ${checked} entries (${errors} errors)`);
});

test('tcdStep reproduces every trace step (epsilon, v_prediction, sample) within 1e-5', { skip }, () => {
  const file = SafetensorsFile.open(fixturePath('tcd_scheduler.safetensors'));
  const traces = fixtureJson('manifest.json').cases.tcd_scheduler.traces as Trace[];
  const kinds = new Set<string>();
  for (const tr of traces) {
    assert.deepEqual(tcdTimesteps(tr.steps), tr.timesteps);
    let x = file.readFloat32(`trace${tr.id}/x_init`);
    for (let j = 0; j < tr.steps; j++) {
      const p = `trace${tr.id}/${j}/`;
      const noiseKey = `${p}noise`;
      const drawn = file.tensors.has(noiseKey);
      // diffusers draws exactly when eta > 0 and this is not the last step
      assert.equal(drawn, tr.eta > 0 && j < tr.steps - 1, `${noiseKey} presence`);
      const r = tcdStep({
        modelOutput: file.readFloat32(`${p}model_output`),
        timestep: tr.timesteps[j],
        prevTimestep: j + 1 < tr.steps ? tr.timesteps[j + 1] : null,
        sample: x,
        eta: tr.eta,
        noise: drawn ? file.readFloat32(noiseKey) : undefined,
        predictionType: tr.prediction_type,
      });
      const dPrev = maxAbsDiff(r.prevSample, file.readFloat32(`${p}prev_sample`));
      const dPns = maxAbsDiff(r.predNoisedSample, file.readFloat32(`${p}pred_noised_sample`));
      assert.ok(dPrev <= 1e-5 && dPns <= 1e-5, `trace${tr.id} step ${j}: prev ${dPrev}, pred_noised ${dPns}`);
      // feed the reference forward, as the trace did
      x = file.readFloat32(`${p}prev_sample`);
    }
    kinds.add(tr.prediction_type);
  }
  assert.deepEqual([...kinds].sort(), ['epsilon', 'sample', 'v_prediction']);
});

test('sampleTcd runs a whole trace from x_init, drawing noise in the pipeline order', { skip }, async () => {
  const file = SafetensorsFile.open(fixturePath('tcd_scheduler.safetensors'));
  const traces = fixtureJson('manifest.json').cases.tcd_scheduler.traces as Trace[];
  for (const tr of traces) {
    const draws: Float32Array[] = [];
    for (let j = 0; j < tr.steps; j++)
      if (file.tensors.has(`trace${tr.id}/${j}/noise`)) draws.push(file.readFloat32(`trace${tr.id}/${j}/noise`));
    const noise = new QueuedNoise(draws);
    let j = 0,
      reported = 0;
    const out = await sampleTcd({
      x: file.readFloat32(`trace${tr.id}/x_init`),
      timesteps: tr.timesteps,
      eta: tr.eta,
      noise,
      shape: [1, 4, 4, 4],
      predictionType: tr.prediction_type,
      // the recorded model outputs stand in for the network (they do not depend on our x, which equals the reference)
      denoise: async (_x, t) => {
        assert.equal(t, tr.timesteps[j]);
        return file.readFloat32(`trace${tr.id}/${j++}/model_output`);
      },
      // each step reports the sample it produced (prev_sample) and its pred_noised_sample, in step order
      onStep: (info) => {
        const p = `trace${tr.id}/${info.i}/`;
        assert.deepEqual([info.i, info.total, info.timestep], [reported++, tr.steps, tr.timesteps[info.i]]);
        const tol = 1e-5 * Math.max(1, maxAbs(file.readFloat32(`${p}prev_sample`)));
        assert.ok(maxAbsDiff(info.x, file.readFloat32(`${p}prev_sample`)) <= tol, `${p} onStep x`);
        assert.ok(maxAbsDiff(info.predNoisedSample, file.readFloat32(`${p}pred_noised_sample`)) <= tol, `${p} pns`);
      },
    });
    assert.equal(reported, tr.steps);
    assert.equal(noise.used, draws.length);
    const ref = file.readFloat32(`trace${tr.id}/${tr.steps - 1}/prev_sample`);
    // chained float32 rounding over the whole trace: 1e-5 relative to the largest value (some reach ~100)
    const d = maxAbsDiff(out, ref),
      tol = 1e-5 * Math.max(1, maxAbs(ref));
    assert.ok(d <= tol, `trace${tr.id}: final ${d} > ${tol}`);
  }
});

test('tcdStep rejects eta outside [0, 1] like diffusers (assert 0 <= eta <= 1)', () => {
  const z = new Float32Array(4);
  for (const eta of [1.5, -0.1, NaN])
    assert.throws(
      () => tcdStep({ modelOutput: z, timestep: 999, prevTimestep: 499, sample: z, eta, noise: z }),
      /gamma must be less than or equal to 1.0/,
      `eta ${eta}`,
    );
});

test('torchLinspaceF32 with one step is [start], as torch.linspace(start, end, 1)', () => {
  assert.deepEqual([...torchLinspaceF32(2, 5, 1)], [2]);
  assert.deepEqual([...torchLinspaceF32(0, 1, 5)], [0, 0.25, 0.5, 0.75, 1]);
});

test('tcdAddNoise is sqrt(abar) x + sqrt(1 - abar) n', () => {
  const lat = Float32Array.from([1, -2, 0.5]),
    n = Float32Array.from([0.3, 0.1, -1]);
  const a = TCD_ALPHAS_CUMPROD[499];
  const out = tcdAddNoise(lat, n, 499);
  for (let i = 0; i < 3; i++) assert.ok(Math.abs(out[i] - (Math.sqrt(a) * lat[i] + Math.sqrt(1 - a) * n[i])) < 1e-6);
});
