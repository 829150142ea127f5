/**
 * Fixture-free correctness: for data x0 ~ N(mu, s^2) the exact denoiser is known in closed form,
 *   D(x, sigma) = mu + s^2 / (s^2 + sigma^2) * (x - mu),
 * so a correct sampler started from the exact marginal at sigma_max, x = mu + sqrt(s^2 + sigma_max^2) z, must end
 * with mean -> mu and std -> s as the step count grows. Noise draws are standardized (mean 0, std 1 exactly) so the
 * sampling floor does not hide the discretization error.
 * LCM is a consistency sampler: with an exact denoiser it keeps a variance deficit that only decays slowly with the
 * step count (each re-noising restarts from the posterior mean); its bound is looser, as is TCD's at gamma 0.3.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DiscreteModelSampling } from '../../../server/engine/sampling/model-sampling.js';
import { SAMPLER_NAMES, getSampler } from '../../../server/engine/sampling/registry.js';
import { calculateSigmas } from '../../../server/engine/sampling/schedules.js';
import { tcdSigmas } from '../../../server/engine/sampling/k-sampler-tcd.js';
import { TCD_ALPHAS_CUMPROD, sampleTcd, tcdTimesteps } from '../../../server/engine/sampling/tcd.js';
import type { NoiseSource } from '../../../server/engine/sampling/noise.js';

const ms = DiscreteModelSampling.sd();
const N = 4096,
  MU = 0.7,
  S = 0.5;

function standardNoise(seed: number): NoiseSource {
  let st = seed >>> 0 || 1;
  const u = () => {
    st ^= st << 13;
    st >>>= 0;
    st ^= st >>> 17;
    st ^= st << 5;
    st >>>= 0;
    return (st + 0.5) / 4294967296;
  };
  return {
    randn(shape) {
      const n = shape.reduce((a, b) => a * b, 1);
      const a = Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()));
      const m = a.reduce((p, v) => p + v, 0) / n;
      const sd = Math.sqrt(a.reduce((p, v) => p + (v - m) ** 2, 0) / n);
      return Float32Array.from(a, (v) => (v - m) / sd);
    },
  };
}
const exactD = async (x: Float32Array, sigma: number) => {
  const k = (S * S) / (S * S + sigma * sigma);
  return Float32Array.from(x, (v) => MU + k * (v - MU));
};
function errors(x: Float32Array): { mean: number; std: number } {
  let m = 0;
  for (const v of x) m += v;
  m /= x.length;
  let q = 0;
  for (const v of x) q += (v - m) ** 2;
  return { mean: Math.abs(m - MU), std: Math.abs(Math.sqrt(q / x.length) - S) };
}
async function runK(name: string, sigmas: number[], eta?: number) {
  const noise = standardNoise(11);
  const z = noise.randn([N]);
  const x = Float32Array.from(z, (v) => MU + Math.sqrt(S * S + sigmas[0] ** 2) * v);
  return errors(await getSampler(name)({ denoiser: exactD, x, sigmas, noise, shape: [N], modelSampling: ms, eta }));
}

const STEPS = [2, 4, 8, 16, 32, 64];
/** std error allowed at 64 steps (karras schedule) */
const FINAL_TOL: Record<string, number> = { lcm: 0.2 };

for (const name of SAMPLER_NAMES.filter((n) => n !== 'tcd')) {
  test(`${name}: mean and std converge to the Gaussian's as steps grow`, async () => {
    const errs = [];
    for (const steps of STEPS) errs.push(await runK(name, calculateSigmas(ms, 'karras', steps)));
    const first = errs[0],
      last = errs[errs.length - 1];
    for (const e of errs) assert.ok(e.mean < 1e-4, `${name}: mean error ${e.mean}`);
    assert.ok(last.std < (FINAL_TOL[name] ?? 0.04), `${name}: std error at 64 steps ${last.std}`);
    assert.ok(last.std < first.std * (name === 'lcm' ? 0.5 : 0.15), `${name}: std error ${first.std} -> ${last.std}`);
  });
}

test('tcd (k-diffusion) converges on the TCD timesteps, at gamma 0.3 and at gamma 0 (DDIM)', async () => {
  for (const [gamma, tol] of [
    [0.3, 0.07],
    [0, 0.03],
  ] as const) {
    const errs = [];
    for (const steps of [2, 4, 8, 16, 25, 50]) errs.push(await runK('tcd', tcdSigmas(ms, tcdTimesteps(steps)), gamma));
    const last = errs[errs.length - 1];
    // diffusers ends on x_s at timestep 0: mean off by (1 - sqrt(abar_0)) * mu = 3e-4
    for (const e of errs) assert.ok(e.mean < 1e-3, `gamma ${gamma}: mean ${e.mean}`);
    assert.ok(last.std < tol && last.std < errs[0].std * 0.3, `gamma ${gamma}: std ${errs[0].std} -> ${last.std}`);
  }
});

test('tcd (diffusers scheduler, eps formulation) converges', async () => {
  const ac = TCD_ALPHAS_CUMPROD;
  // eps = (x_t - sqrt(a) E[x0 | x_t]) / sqrt(1 - a), with E[x0 | x_t] = mu + s^2 sqrt(a) / (a s^2 + 1 - a) (x_t - sqrt(a) mu)
  const eps = async (x: Float32Array, t: number) => {
    const a = ac[t],
      sa = Math.sqrt(a),
      k = (S * S * sa) / (a * S * S + 1 - a);
    return Float32Array.from(x, (v) => (v - sa * (MU + k * (v - sa * MU))) / Math.sqrt(1 - a));
  };
  const out: number[] = [];
  for (const steps of [2, 8, 50]) {
    const ts = tcdTimesteps(steps);
    const noise = standardNoise(5);
    const a = ac[ts[0]];
    const x = Float32Array.from(noise.randn([N]), (v) => Math.sqrt(a) * MU + Math.sqrt(a * S * S + 1 - a) * v);
    const e = errors(await sampleTcd({ x, timesteps: ts, eta: 0.3, denoise: eps, noise, shape: [N] }));
    assert.ok(e.mean < 1e-3, `mean ${e.mean}`);
    out.push(e.std);
  }
  assert.ok(out[2] < 0.07 && out[2] < out[1] && out[1] < out[0], `std errors ${out}`);
});
