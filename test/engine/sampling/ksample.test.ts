import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import { fixturePath, fixtureSkip, maxAbs, maxAbsDiff } from '../../helpers/fixtures.js';
import { ksample, sliceSigmas } from '../../../server/engine/sampling/ksample.js';
import { DiscreteModelSampling, type EpsModel } from '../../../server/engine/sampling/model-sampling.js';
import { QueuedNoise } from '../../../server/engine/sampling/noise.js';
import { getSampler } from '../../../server/engine/sampling/registry.js';
import { ksamplerSigmas } from '../../../server/engine/sampling/schedules.js';

const skip = fixtureSkip();
const ms = DiscreteModelSampling.sd();
const analytic = (scale: number) => async (x: Float32Array, sigma: number) =>
  Float32Array.from(x, (v) => scale * (v / (1 + sigma * sigma) + (0.25 * Math.sin(3 * v)) / (1 + sigma)));

/**
 * An eps model that behaves like the analytic denoiser once ComfyUI's EPS wrapping is applied; it checks what the
 * wrapper feeds it: the discrete timestep of sigma and the input scaled by 1 / sqrt(sigma^2 + 1).
 */
function epsFromDenoiser(D: (x: Float32Array, s: number) => Promise<Float32Array>, calls: { n: number }): EpsModel {
  return async (xIn, t, sigma) => {
    calls.n++;
    assert.equal(t, ms.timestep(sigma));
    assert.ok(Number.isInteger(t) && t >= 0 && t < 1000);
    const k = Math.sqrt(sigma * sigma + 1);
    const x = Float32Array.from(xIn, (v) => v * k);
    const den = await D(x, sigma);
    return Float32Array.from(x, (v, i) => (v - den[i]) / sigma);
  };
}

test('ksample through the eps wrapping reproduces ComfyUI samplers on the analytic denoiser', { skip }, async () => {
  const file = SafetensorsFile.open(fixturePath('comfy_samplers.safetensors'));
  for (const [name, scheduler, steps, draws] of [
    ['euler', 'karras', 6, 0],
    ['euler_ancestral', 'normal', 8, 7],
    ['dpmpp_2m', 'exponential', 5, 0],
    ['dpmpp_2m_sde', 'karras', 6, 5],
    ['lcm', 'karras', 6, 5],
  ] as const) {
    const xInit = file.readFloat32(`${name}/x_init`);
    const s0 = file.readFloat32(`${name}/sigmas`)[0];
    // the fixture starts from x_init at full denoise: KSampler's initial noise is x_init / sqrt(1 + sigma0^2)
    const initialNoise = Float32Array.from(xInit, (v) => v / Math.sqrt(1 + s0 * s0));
    const calls = { n: 0 };
    const out = await ksample({
      sampler: name,
      scheduler,
      steps,
      cfg: 1,
      cond: epsFromDenoiser(analytic(1), calls),
      shape: [1, 4, 4, 4],
      latentImage: new Float32Array(64),
      initialNoise,
      samplerNoise: new QueuedNoise(Array.from({ length: draws }, (_, k) => file.readFloat32(`${name}/noise${k}`))),
    });
    const ref = file.readFloat32(`${name}/out`);
    const d = maxAbsDiff(out, ref);
    assert.ok(d <= 2e-5 * Math.max(1, maxAbs(ref)), `${name}: ${d}`);
    assert.ok(calls.n >= steps, `${name}: model calls ${calls.n}`);
  }
});

test('cfg is applied on the denoised, and cfg == 1 never runs the negative branch', async () => {
  const n = 32,
    shape = [n];
  const noise = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.7) * 1.3);
  const latent = new Float32Array(n);
  const cCalls = { n: 0 },
    uCalls = { n: 0 };
  const cond = epsFromDenoiser(analytic(1), cCalls),
    uncond = epsFromDenoiser(analytic(0.6), uCalls);
  const cfg = 3.5;
  const out = await ksample({
    sampler: 'heun',
    scheduler: 'karras',
    steps: 5,
    cfg,
    cond,
    uncond,
    shape,
    latentImage: latent,
    initialNoise: noise,
  });
  // reference: the sampler on D = Du + cfg * (Dc - Du), started like KSampler at full denoise
  const sigmas = ksamplerSigmas(ms, 'heun', 'karras', 5);
  const Dc = analytic(1),
    Du = analytic(0.6);
  const D = async (x: Float32Array, s: number) => {
    const c = await Dc(x, s),
      u = await Du(x, s);
    return Float32Array.from(c, (v, i) => u[i] + cfg * (v - u[i]));
  };
  const ref = await getSampler('heun')({
    denoiser: D,
    x: Float32Array.from(noise, (v) => v * Math.sqrt(1 + sigmas[0] ** 2)),
    sigmas,
  });
  assert.ok(maxAbsDiff(out, ref) <= 1e-5 * Math.max(1, maxAbs(ref)), `cfg: ${maxAbsDiff(out, ref)}`);
  assert.equal(cCalls.n, uCalls.n);
  uCalls.n = 0;
  await ksample({
    sampler: 'euler',
    scheduler: 'normal',
    steps: 3,
    cfg: 1,
    cond,
    uncond,
    shape,
    latentImage: latent,
    initialNoise: noise,
  });
  assert.equal(uCalls.n, 0);
});

test('denoise < 1 starts from latent + noise * sigma0 on the truncated schedule', async () => {
  const n = 16,
    shape = [n];
  const noise = Float32Array.from({ length: n }, (_, i) => Math.cos(i) * 0.9);
  const latent = Float32Array.from({ length: n }, (_, i) => (i % 5) * 0.3 - 0.5);
  const seen: { x: Float32Array; sigma: number }[] = [];
  await ksample({
    sampler: 'euler',
    scheduler: 'normal',
    steps: 4,
    denoise: 0.5,
    cfg: 1,
    cond: epsFromDenoiser(analytic(1), { n: 0 }),
    shape,
    latentImage: latent,
    initialNoise: noise,
    onStep: ({ x, sigma }) => {
      seen.push({ x, sigma });
    },
  });
  const want = ksamplerSigmas(ms, 'euler', 'normal', 8).slice(-5);
  assert.deepEqual(
    seen.map((s) => s.sigma),
    want.slice(0, -1),
  );
  const s0 = want[0];
  assert.ok(s0 < ms.sigmaMax);
  assert.ok(
    maxAbsDiff(
      seen[0].x,
      Float32Array.from(latent, (v, i) => v + noise[i] * s0),
    ) < 1e-6,
  );
});

test('KSamplerAdvanced slicing: last_step, force_full_denoise, start_step', () => {
  const s = [10, 5, 2, 1, 0.5, 0];
  assert.deepEqual(sliceSigmas(s, undefined, 3), [10, 5, 2, 1]);
  assert.deepEqual(sliceSigmas(s, undefined, 3, true), [10, 5, 2, 0]);
  assert.deepEqual(sliceSigmas(s, 2), [2, 1, 0.5, 0]);
  assert.equal(sliceSigmas(s, 5), null);
});
