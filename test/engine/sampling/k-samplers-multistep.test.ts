/**
 * deis, ipndm_v, res_multistep, gradient_estimation and exp_heun_2_x0 against ComfyUI's own code
 * (comfy/k_diffusion/sampling.py + deis.py, run once with torch on CPU float32, CUDA float32 and CPU float64 on the
 * deterministic toy denoiser of unipc-reference.json); outputs in comfy-samplers-reference.json (see its meta).
 * Cases: karras / normal, 1-20 steps, denoise 1 and 0.6, a schedule cut before 0 (KSamplerAdvanced end_at_step),
 * a late start. Also: the registry's order is ComfyUI's KSAMPLER_NAMES order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BROWNIAN_SAMPLERS,
  getSampler,
  NOISY_SAMPLERS,
  SAMPLER_NAMES,
} from '../../../server/engine/sampling/registry.js';
import { deisCoefficients } from '../../../server/engine/sampling/k-sampler-deis.js';
import { DiscreteModelSampling } from '../../../server/engine/sampling/model-sampling.js';
import { ksamplerSigmas } from '../../../server/engine/sampling/schedules.js';
import { initialSample, ksample } from '../../../server/engine/sampling/ksample.js';
import { maxAbsDiff } from '../../helpers/fixtures.js';
import { f, loadReference, parseName, tolFor, toyDenoiser } from './comfy-reference.js';

interface RefCase {
  sampler: string;
  name: string;
  sigmas: number[];
  max_denoise: boolean;
  model_calls: number;
  x_in: number[];
  cpu32: number[];
  cuda32: number[];
  cpu64: number[];
  deis_coeffs?: (number | null)[][];
}
const REF = loadReference<{
  shape: number[];
  noise: number[];
  latent: number[];
  mu: number[];
  v: number[];
  cases: RefCase[];
}>('comfy-samplers-reference.json');
const ms = DiscreteModelSampling.sd();
const SAMPLERS = ['deis', 'ipndm_v', 'res_multistep', 'gradient_estimation', 'exp_heun_2_x0'];

for (const sampler of SAMPLERS) {
  test(`${sampler} matches ComfyUI (torch float32, CPU and CUDA) within 1e-5 with the same model calls`, async (t) => {
    const cases = REF.cases.filter((c) => c.sampler === sampler);
    assert.equal(cases.length, 31);
    let worst = 0;
    for (const c of cases) {
      const calls = { n: 0 };
      const out = await getSampler(sampler)({
        denoiser: toyDenoiser(REF.mu, REF.v, calls),
        x: Float32Array.from(c.x_in),
        sigmas: c.sigmas,
      });
      const tol = tolFor(c.cpu32);
      const dCpu = maxAbsDiff(out, c.cpu32),
        dCuda = maxAbsDiff(out, c.cuda32);
      assert.ok(dCpu <= tol, `${sampler} ${c.name}: |ours - cpu32| = ${dCpu} > ${tol}`);
      assert.ok(dCuda <= tol, `${sampler} ${c.name}: |ours - cuda32| = ${dCuda} > ${tol}`);
      assert.equal(calls.n, c.model_calls, `${sampler} ${c.name}: model calls`);
      worst = Math.max(worst, dCpu / tol);
    }
    t.diagnostic(`worst |ours - cpu32| / tolerance: ${worst.toFixed(4)}`);
  });
}

test("deis coefficients equal ComfyUI's get_deis_coeff_list (tab, order 3) within 1e-5 relative", () => {
  let worst = 0,
    compared = 0;
  for (const c of REF.cases.filter((r) => r.sampler === 'deis')) {
    const ours = deisCoefficients(c.sigmas);
    assert.equal(ours.length, c.deis_coeffs!.length, c.name);
    c.deis_coeffs!.forEach((row, i) => {
      if (row.some((v) => v === null)) {
        assert.equal(ours[i], null, `${c.name} step ${i}: ComfyUI's is infinite`);
        return;
      }
      assert.equal(ours[i]!.length, row.length, `${c.name} step ${i}: order`);
      row.forEach((v, k) => {
        const rel = Math.abs(ours[i]![k] - v!) / Math.max(1e-3, Math.abs(v!));
        assert.ok(rel < 1e-5, `${c.name} step ${i} coeff ${k}: ${ours[i]![k]} vs ${v}`);
        worst = Math.max(worst, rel);
        compared++;
      });
    });
  }
  assert.ok(compared > 100, `compared ${compared}`);
});

test('the reference discriminates: the samplers differ from one another and from euler by more than the tolerance', async () => {
  const byKey = new Map(REF.cases.map((c) => [`${c.sampler}/${c.name}`, c]));
  for (const name of ['karras-8-d1', 'normal-20-d0.6', 'karras-12-start4']) {
    const euler = await getSampler('euler')({
      denoiser: toyDenoiser(REF.mu, REF.v, { n: 0 }),
      x: Float32Array.from(byKey.get(`deis/${name}`)!.x_in),
      sigmas: byKey.get(`deis/${name}`)!.sigmas,
    });
    for (let i = 0; i < SAMPLERS.length; i++) {
      const a = byKey.get(`${SAMPLERS[i]}/${name}`)!;
      assert.ok(maxAbsDiff(a.cpu32, euler) > 10 * tolFor(a.cpu32), `${SAMPLERS[i]} ${name} vs euler`);
      for (let j = i + 1; j < SAMPLERS.length; j++) {
        const b = byKey.get(`${SAMPLERS[j]}/${name}`)!;
        assert.ok(maxAbsDiff(a.cpu32, b.cpu32) > 10 * tolFor(a.cpu32), `${SAMPLERS[i]} vs ${SAMPLERS[j]} ${name}`);
      }
    }
  }
});

test("the reference sigmas and starting samples are this repo's KSampler rules", () => {
  const noise = Float32Array.from(REF.noise),
    latent = Float32Array.from(REF.latent);
  for (const c of REF.cases) {
    const p = parseName(c.name);
    if (p)
      assert.ok(
        maxAbsDiff(ksamplerSigmas(ms, c.sampler, p.scheduler, p.steps, p.denoise).map(f), c.sigmas) === 0,
        `${c.name}: sigmas`,
      );
    const x = initialSample(ms, c.sigmas[0], noise, latent);
    assert.ok(maxAbsDiff(x, c.x_in) <= 2e-6 * Math.max(1, ...c.x_in.map(Math.abs)), `${c.name}: x_in`);
  }
});

test("ksample with the new samplers reproduces ComfyUI's KSampler end to end", async () => {
  const noise = Float32Array.from(REF.noise),
    latent = Float32Array.from(REF.latent);
  const noEps = async (): Promise<Float32Array> => {
    throw new Error('the denoiser is given directly');
  };
  let checked = 0;
  for (const c of REF.cases) {
    const p = parseName(c.name);
    if (!p || p.steps > 8) continue;
    const out = await ksample({
      sampler: c.sampler,
      scheduler: p.scheduler,
      steps: p.steps,
      denoise: p.denoise,
      cfg: 1,
      cond: noEps,
      denoiser: toyDenoiser(REF.mu, REF.v, { n: 0 }),
      shape: REF.shape,
      latentImage: latent,
      initialNoise: noise,
      modelSampling: ms,
    });
    assert.ok(maxAbsDiff(out, c.cpu32) <= tolFor(c.cpu32), `${c.sampler} ${c.name}`);
    checked++;
  }
  assert.ok(checked >= 100, `checked ${checked}`);
});

/** comfy/samplers.py KSAMPLER_NAMES + ['ddim', 'uni_pc', 'uni_pc_bh2'] (ComfyUI master, 2025). */
const COMFY_SAMPLER_NAMES = [
  'euler',
  'euler_cfg_pp',
  'euler_ancestral',
  'euler_ancestral_cfg_pp',
  'heun',
  'heunpp2',
  'exp_heun_2_x0',
  'exp_heun_2_x0_sde',
  'dpm_2',
  'dpm_2_ancestral',
  'lms',
  'dpm_fast',
  'dpm_adaptive',
  'dpmpp_2s_ancestral',
  'dpmpp_2s_ancestral_cfg_pp',
  'dpmpp_sde',
  'dpmpp_sde_gpu',
  'dpmpp_2m',
  'dpmpp_2m_cfg_pp',
  'dpmpp_2m_sde',
  'dpmpp_2m_sde_gpu',
  'dpmpp_2m_sde_heun',
  'dpmpp_2m_sde_heun_gpu',
  'dpmpp_3m_sde',
  'dpmpp_3m_sde_gpu',
  'ddpm',
  'lcm',
  'ipndm',
  'ipndm_v',
  'deis',
  'res_multistep',
  'res_multistep_cfg_pp',
  'res_multistep_ancestral',
  'res_multistep_ancestral_cfg_pp',
  'gradient_estimation',
  'gradient_estimation_cfg_pp',
  'er_sde',
  'seeds_2',
  'seeds_3',
  'sa_solver',
  'sa_solver_pece',
  'ddim',
  'uni_pc',
  'uni_pc_bh2',
];

test("registry: ComfyUI's sampler order restricted to what is implemented, then tcd", () => {
  assert.equal(SAMPLER_NAMES[SAMPLER_NAMES.length - 1], 'tcd');
  const ours = SAMPLER_NAMES.slice(0, -1);
  assert.deepEqual(
    ours,
    COMFY_SAMPLER_NAMES.filter((n) => ours.includes(n)),
  );
  for (const n of [...SAMPLERS, 'dpmpp_sde_gpu', 'dpmpp_2m_sde_gpu', 'dpmpp_2m_sde_heun_gpu', 'dpmpp_3m_sde_gpu']) {
    assert.ok(SAMPLER_NAMES.includes(n), n);
    assert.equal(typeof getSampler(n), 'function');
  }
  for (const n of SAMPLERS) assert.ok(!NOISY_SAMPLERS.has(n), `${n} draws no noise`);
  for (const n of ['dpmpp_sde_gpu', 'dpmpp_2m_sde_gpu', 'dpmpp_2m_sde_heun_gpu', 'dpmpp_3m_sde_gpu']) {
    assert.ok(NOISY_SAMPLERS.has(n) && BROWNIAN_SAMPLERS.has(n), n);
  }
});

test('the _gpu samplers are the same solvers: same noise in, same output out', async () => {
  const sigmas = ksamplerSigmas(ms, 'dpmpp_2m_sde', 'karras', 6);
  for (const [gpu, cpu] of [
    ['dpmpp_sde_gpu', 'dpmpp_sde'],
    ['dpmpp_2m_sde_gpu', 'dpmpp_2m_sde'],
    ['dpmpp_2m_sde_heun_gpu', 'dpmpp_2m_sde_heun'],
    ['dpmpp_3m_sde_gpu', 'dpmpp_3m_sde'],
  ]) {
    const run = async (name: string) => {
      let k = 0;
      const noise = {
        randn: (shape: number[]) =>
          Float32Array.from({ length: shape.reduce((p, q) => p * q, 1) }, (_, i) => Math.sin(++k * 0.37 + i)),
      };
      return getSampler(name)({
        denoiser: toyDenoiser(REF.mu, REF.v, { n: 0 }),
        x: Float32Array.from(REF.cases[40].x_in),
        sigmas,
        noise,
        shape: REF.shape,
      });
    };
    const a = await run(gpu),
      b = await run(cpu);
    assert.deepEqual(Array.from(a), Array.from(b), gpu);
    assert.ok(maxAbsDiff(a, await run('dpmpp_2m')) > 1e-3, `${gpu} does add noise`);
  }
});
