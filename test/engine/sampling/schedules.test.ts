import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fixturePath, fixtureSkip } from '../../helpers/fixtures.js';
import { DiscreteModelSampling } from '../../../server/engine/sampling/model-sampling.js';
import { SCHEDULER_NAMES, calculateSigmas, ksamplerSigmas } from '../../../server/engine/sampling/schedules.js';
import { betaCdf, betaPpf } from '../../../server/engine/sampling/beta-dist.js';

const skip = fixtureSkip();
interface Schedules {
  model_sigmas: number[];
  tables: Record<string, (number | null)[]>;
}
/** the json holds NaN (kl_optimal@1, as ComfyUI computes it); JSON.parse needs it spelled null */
const load = (): Schedules =>
  JSON.parse(readFileSync(fixturePath('comfy_schedules.json'), 'utf8').replace(/\bNaN\b/g, 'null'));
const ms = DiscreteModelSampling.sd();

/** relative float32 agreement: torch's float32 exp/pow may differ from ours by a couple of ulps */
function assertSigmas(got: number[], want: (number | null)[], what: string) {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < got.length; i++) {
    const w = want[i];
    if (w === null) {
      assert.ok(Number.isNaN(got[i]), `${what}[${i}] NaN`);
      continue;
    }
    assert.ok(Math.abs(got[i] - w) <= 1e-6 * Math.abs(w), `${what}[${i}]: ${got[i]} vs ${w}`);
  }
}

test('the SD discrete sigma table equals ComfyUI model_sigmas exactly', { skip }, () => {
  const ref = load().model_sigmas;
  assert.equal(ms.sigmas.length, 1000);
  for (let i = 0; i < 1000; i++) assert.equal(ms.sigmas[i], ref[i], `sigma[${i}]`);
});

test('every scheduler at every step count equals calculate_sigmas', { skip }, () => {
  const { tables } = load();
  const seen = new Set<string>();
  for (const [key, want] of Object.entries(tables)) {
    const [name, steps] = key.split('@');
    assertSigmas(calculateSigmas(ms, name, Number(steps)), want, key);
    seen.add(name);
  }
  assert.deepEqual([...seen].sort(), [...SCHEDULER_NAMES].sort());
});

test('KSampler: dpm_2 family asks for steps + 1 and drops the penultimate sigma', { skip }, () => {
  const { tables } = load();
  for (const sampler of ['dpm_2', 'dpm_2_ancestral', 'uni_pc', 'uni_pc_bh2']) {
    for (const [sched, steps] of [
      ['karras', 3],
      ['normal', 7],
      ['simple', 19],
      ['exponential', 5],
    ] as const) {
      const full = tables[`${sched}@${steps + 1}`];
      assertSigmas(
        ksamplerSigmas(ms, sampler, sched, steps),
        [...full.slice(0, -2), full[full.length - 1]],
        `${sampler} ${sched}@${steps}`,
      );
    }
  }
  assertSigmas(ksamplerSigmas(ms, 'euler', 'karras', 8), tables['karras@8'], 'euler karras@8');
});

test('KSampler denoise < 1: last steps + 1 sigmas of a schedule of int(steps / denoise) steps', { skip }, () => {
  const { tables } = load();
  // 6 steps at denoise 0.75 -> 8-step schedule, last 7 sigmas; 15 at 0.5 -> 30-step schedule, last 16
  assertSigmas(ksamplerSigmas(ms, 'euler', 'normal', 6, 0.75), tables['normal@8'].slice(-7), 'normal 6@0.75');
  assertSigmas(ksamplerSigmas(ms, 'euler', 'karras', 15, 0.5), tables['karras@30'].slice(-16), 'karras 15@0.5');
  // int() truncates: 12 / 0.58 = 20.7 -> a 20-step schedule (not 21), last 13; 7 / 0.82 = 8.54 -> 8, last 8
  assertSigmas(ksamplerSigmas(ms, 'euler', 'normal', 12, 0.58), tables['normal@20'].slice(-13), 'normal 12@0.58');
  assertSigmas(ksamplerSigmas(ms, 'euler', 'simple', 7, 0.82), tables['simple@8'].slice(-8), 'simple 7@0.82');
  assert.deepEqual(ksamplerSigmas(ms, 'euler', 'karras', 10, 0), []);
  assertSigmas(ksamplerSigmas(ms, 'euler', 'simple', 4, 0.99995), tables['simple@4'], 'denoise > 0.9999 is full');
});

test("beta at many steps drops repeated table entries, as ComfyUI's beta_scheduler does", () => {
  // counts from ComfyUI's beta_scheduler (numpy rint of scipy.stats.beta.ppf(1 - linspace(0, 1, n, endpoint=False),
  // 0.6, 0.6) * 999, repeats skipped) run with numpy/scipy: 199, 475 and 847 distinct entries, plus the final 0
  for (const [steps, want] of [
    [200, 200],
    [500, 476],
    [1000, 848],
  ]) {
    const s = calculateSigmas(ms, 'beta', steps);
    assert.equal(s.length, want, `beta@${steps}`);
    assert.equal(s[0], ms.sigmas[999]);
    assert.equal(s[s.length - 1], 0);
    for (let i = 1; i < s.length; i++) assert.ok(s[i] < s[i - 1], `beta@${steps}[${i}] strictly decreasing`);
  }
});

test('model sampling: timestep(sigma) is the nearest table index and sigma(t) interpolates in log space', () => {
  for (const t of [0, 1, 259, 499, 759, 999]) assert.equal(ms.timestep(ms.sigmas[t]), t);
  assert.equal(ms.timestep(100), 999);
  assert.equal(ms.sigma(499), ms.sigmas[499]);
  const mid = ms.sigma(499.5);
  assert.ok(Math.abs(mid - Math.sqrt(ms.sigmas[499] * ms.sigmas[500])) < 1e-5 * mid);
});

test('beta distribution quantile inverts the CDF and is symmetric for a = b', () => {
  for (const p of [0.01, 0.2, 0.5, 0.77, 0.999]) {
    const x = betaPpf(p, 0.6, 0.6);
    assert.ok(Math.abs(betaCdf(x, 0.6, 0.6) - p) < 1e-12, `p=${p}`);
    assert.ok(Math.abs(x + betaPpf(1 - p, 0.6, 0.6) - 1) < 1e-12);
  }
  // a = b = 1 is the uniform distribution
  assert.ok(Math.abs(betaPpf(0.3, 1, 1) - 0.3) < 1e-12);
});
