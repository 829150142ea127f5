import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import { fixtureJson, fixturePath, fixtureSkip, maxAbs, maxAbsDiff } from '../../helpers/fixtures.js';
import { getSampler, SAMPLER_NAMES } from '../../../server/engine/sampling/registry.js';
import { QueuedNoise } from '../../../server/engine/sampling/noise.js';
import { DiscreteModelSampling } from '../../../server/engine/sampling/model-sampling.js';
import { calculateSigmas } from '../../../server/engine/sampling/schedules.js';

const skip = fixtureSkip();

/** the fixture's analytic denoiser, computed in float32 steps like torch */
const analytic = async (x: Float32Array, sigma: number) => {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] / (1 + sigma * sigma) + (0.25 * Math.sin(3 * x[i])) / (1 + sigma);
  return out;
};

// deis needs DEIS coefficient tables (not implemented); every other sampler in the fixture is checked
const NOT_IMPLEMENTED = new Set(['deis']);
const REQUIRED = ['euler', 'euler_ancestral', 'heun', 'dpmpp_2m', 'dpmpp_2m_sde', 'lcm', 'ddpm'];

test('every implemented k-diffusion sampler matches ComfyUI on the analytic denoiser', { skip }, async () => {
  const file = SafetensorsFile.open(fixturePath('comfy_samplers.safetensors'));
  const spec = fixtureJson('comfy_samplers.json').samplers as Record<
    string,
    { scheduler: string; steps: number; noise_draws: number }
  >;
  const ms = DiscreteModelSampling.sd();
  const checked: string[] = [];
  for (const [name, s] of Object.entries(spec)) {
    if (NOT_IMPLEMENTED.has(name)) continue;
    const sigmas = file.readFloat32(`${name}/sigmas`);
    // the fixture's sigmas are ComfyUI's calculate_sigmas on the SD schedule
    const ours = calculateSigmas(ms, s.scheduler, s.steps);
    assert.ok(maxAbsDiff(ours, sigmas) <= 1e-5 * maxAbs(sigmas), `${name}: sigmas`);
    const draws = Array.from({ length: s.noise_draws }, (_, k) => file.readFloat32(`${name}/noise${k}`));
    const noise = new QueuedNoise(draws);
    const out = await getSampler(name)({
      denoiser: analytic,
      x: file.readFloat32(`${name}/x_init`),
      sigmas,
      noise,
      shape: [1, 4, 4, 4],
    });
    assert.equal(noise.used, s.noise_draws, `${name}: noise draws`);
    const ref = file.readFloat32(`${name}/out`);
    const d = maxAbsDiff(out, ref),
      tol = 1e-5 * Math.max(1, maxAbs(ref));
    assert.ok(d <= tol, `${name}: max diff ${d} > ${tol}`);
    checked.push(name);
  }
  for (const r of REQUIRED) assert.ok(checked.includes(r), `${r} checked`);
  assert.ok(checked.length >= 14, `checked ${checked.join(', ')}`);
});

test('ddim is euler, as in ComfyUI', { skip }, async () => {
  const file = SafetensorsFile.open(fixturePath('comfy_samplers.safetensors'));
  const out = await getSampler('ddim')({
    denoiser: analytic,
    x: file.readFloat32('euler/x_init'),
    sigmas: file.readFloat32('euler/sigmas'),
  });
  assert.ok(maxAbsDiff(out, file.readFloat32('euler/out')) <= 1e-5);
});

test('registry lists the required samplers in ComfyUI order, plus tcd', () => {
  for (const n of ['euler', 'euler_ancestral', 'heun', 'dpmpp_2m', 'dpmpp_2m_sde', 'lcm', 'ddim', 'ddpm', 'tcd'])
    assert.ok(SAMPLER_NAMES.includes(n), n);
  assert.ok(
    SAMPLER_NAMES.indexOf('euler') < SAMPLER_NAMES.indexOf('dpmpp_2m') &&
      SAMPLER_NAMES.indexOf('lcm') < SAMPLER_NAMES.indexOf('ddim'),
  );
  assert.throws(() => getSampler('nope'), /unknown sampler/);
});
