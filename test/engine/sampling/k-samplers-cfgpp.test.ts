/**
 * The cfg_pp samplers against ComfyUI's own code (comfy/k_diffusion/sampling.py *_cfg_pp with comfy/samplers.py's
 * cfg + post-cfg hook, run once with torch float32 on CPU and CUDA) on two deterministic toy denoisers (cond, uncond)
 * combined with cfg 1 and 3.5; outputs in comfy-cfgpp-reference.json (see its meta). The ancestral ones draw their
 * noise from TorchGenerator(seed), which equals the reference's torch CPU generator.
 * Also: cfg 1 still runs the negative branch for cfg_pp samplers (ksample), and with a plain (unguided) denoiser each
 * cfg_pp sampler equals its base sampler.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CFG_PP_SAMPLERS, getSampler, NOISY_SAMPLERS } from '../../../server/engine/sampling/registry.js';
import { cfgDenoiser, DiscreteModelSampling } from '../../../server/engine/sampling/model-sampling.js';
import { ksample } from '../../../server/engine/sampling/ksample.js';
import { TorchGenerator } from '../../../server/engine/rng.js';
import type { Denoiser } from '../../../server/engine/sampling/noise.js';
import { maxAbsDiff } from '../../helpers/fixtures.js';
import { COS_WAVE, f, loadReference, scaleOf, toyDenoiser } from './comfy-reference.js';

interface RefCase {
  sampler: string;
  name: string;
  cfg: number;
  seed: number;
  sigmas: number[];
  max_denoise: boolean;
  model_calls: number;
  uncond_calls: number;
  draws: number;
  cpu32: number[];
  cuda32: number[];
}
const REF = loadReference<{
  shape: number[];
  noise: number[];
  latent: number[];
  mu: number[];
  v: number[];
  mu2: number[];
  v2: number[];
  cases: RefCase[];
}>('comfy-cfgpp-reference.json');
const SAMPLERS = [
  'euler_cfg_pp',
  'euler_ancestral_cfg_pp',
  'dpmpp_2s_ancestral_cfg_pp',
  'dpmpp_2m_cfg_pp',
  'res_multistep_cfg_pp',
  'gradient_estimation_cfg_pp',
];

/** the driver's two toys: cond (0.125 sin(3x) wave) and uncond (its own mu2/v2, 0.1 cos(2x) wave) */
const condToy = (calls: { n: number }): Denoiser => toyDenoiser(REF.mu, REF.v, calls);
const uncondToy = (calls: { n: number }): Denoiser => toyDenoiser(REF.mu2, REF.v2, calls, COS_WAVE);
/** the driver's x_in: latent + noise * sqrt(1 + s0^2) (max denoise) or noise * s0, in float32 */
function xIn(c: RefCase): Float32Array {
  const s0 = f(c.sigmas[0]);
  const k = c.max_denoise ? f(Math.sqrt(f(1 + f(s0 * s0)))) : s0;
  return Float32Array.from(REF.noise, (n, i) => f(f(n * k) + REF.latent[i]));
}

for (const sampler of SAMPLERS) {
  test(`${sampler} matches ComfyUI (torch float32 CPU within 1e-5, CUDA within 3e-5) with the same model calls`, async (t) => {
    const cases = REF.cases.filter((c) => c.sampler === sampler);
    assert.equal(cases.length, 62);
    let worst = 0;
    for (const c of cases) {
      const cc = { n: 0 },
        uc = { n: 0 };
      const noise = new TorchGenerator(c.seed);
      let draws = 0;
      const counted = {
        randn: (shape: number[]) => {
          draws++;
          return noise.randn(shape);
        },
      };
      const out = await getSampler(sampler)({
        denoiser: cfgDenoiser(condToy(cc), uncondToy(uc), c.cfg),
        x: xIn(c),
        sigmas: c.sigmas,
        noise: counted,
        shape: REF.shape,
      });
      const scale = scaleOf(c.cpu32);
      const dCpu = maxAbsDiff(out, c.cpu32) / scale,
        dCuda = maxAbsDiff(out, c.cuda32) / scale;
      const what = `${sampler} ${c.name} cfg ${c.cfg}`;
      assert.ok(dCpu <= 1e-5, `${what}: |ours - cpu32| / max|x| = ${dCpu}`);
      // ComfyUI's own CPU and CUDA float32 runs differ from each other by up to 1.8e-5 relative here
      assert.ok(dCuda <= 3e-5, `${what}: |ours - cuda32| / max|x| = ${dCuda}`);
      assert.equal(cc.n, c.model_calls, `${what}: cond calls`);
      assert.equal(uc.n, c.uncond_calls, `${what}: uncond calls (run even at cfg 1)`);
      // ComfyUI also draws (and multiplies by sigma_up = 0) in res_multistep_cfg_pp; we skip those no-op draws
      if (sampler !== 'res_multistep_cfg_pp') assert.equal(draws, c.draws, `${what}: noise draws`);
      worst = Math.max(worst, dCpu / 1e-5);
    }
    t.diagnostic(`worst |ours - cpu32| / tolerance: ${worst.toFixed(4)}`);
  });
}

test('registry: cfg_pp samplers are registered, the ancestral ones are marked noisy', () => {
  for (const s of SAMPLERS) {
    assert.ok(CFG_PP_SAMPLERS.has(s), s);
    assert.equal(typeof getSampler(s), 'function');
  }
  assert.equal(CFG_PP_SAMPLERS.size, SAMPLERS.length);
  assert.ok(NOISY_SAMPLERS.has('euler_ancestral_cfg_pp') && NOISY_SAMPLERS.has('dpmpp_2s_ancestral_cfg_pp'));
  assert.ok(!NOISY_SAMPLERS.has('euler_cfg_pp') && !NOISY_SAMPLERS.has('dpmpp_2m_cfg_pp'));
});

test('with a plain (unguided) denoiser each cfg_pp sampler reduces to its base sampler', async () => {
  const base: Record<string, string> = {
    euler_cfg_pp: 'euler',
    euler_ancestral_cfg_pp: 'euler_ancestral',
    dpmpp_2s_ancestral_cfg_pp: 'dpmpp_2s_ancestral',
    dpmpp_2m_cfg_pp: 'dpmpp_2m',
    res_multistep_cfg_pp: 'res_multistep',
    gradient_estimation_cfg_pp: 'gradient_estimation',
  };
  const c = REF.cases.find((r) => r.name === 'karras-8-d1')!;
  for (const [pp, plain] of Object.entries(base)) {
    const run = (name: string) =>
      getSampler(name)({
        denoiser: condToy({ n: 0 }),
        x: xIn(c),
        sigmas: c.sigmas,
        noise: new TorchGenerator(5),
        shape: REF.shape,
      });
    const [a, b] = [await run(pp), await run(plain)];
    assert.ok(maxAbsDiff(a, b) <= 1e-5 * scaleOf(Array.from(b)), `${pp} vs ${plain}: ${maxAbsDiff(a, b)}`);
  }
});

test('ksample at cfg 1: cfg_pp runs the negative branch every call, plain euler never does', async () => {
  const ms = DiscreteModelSampling.sd();
  const shape = [1, 4, 2, 2];
  let pos = 0,
    neg = 0;
  const cond = async (x: Float32Array) => {
    pos++;
    return Float32Array.from(x, (v) => 0.1 * v);
  };
  const uncond = async (x: Float32Array) => {
    neg++;
    return Float32Array.from(x, (v) => -0.05 * v);
  };
  const common = {
    scheduler: 'karras',
    steps: 4,
    cfg: 1,
    shape,
    cond,
    uncond,
    latentImage: new Float32Array(16),
    initialNoise: new TorchGenerator(3).randn(shape),
    modelSampling: ms,
  };
  const a = await ksample({ ...common, sampler: 'euler' });
  assert.deepEqual([pos, neg], [4, 0]);
  pos = neg = 0;
  const b = await ksample({ ...common, sampler: 'euler_cfg_pp' });
  assert.deepEqual([pos, neg], [4, 4]);
  // different updates (CFG++ steps along the uncond eps), both finite
  assert.ok(a.every(Number.isFinite) && b.every(Number.isFinite));
  assert.ok(maxAbsDiff(a, b) > 1e-3);
  await assert.rejects(
    ksample({ ...common, uncond: undefined, sampler: 'euler_cfg_pp' }),
    /euler_cfg_pp needs an uncond model/,
  );
});
