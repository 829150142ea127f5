/**
 * The k-diffusion TCD sampler equals diffusers' TCDScheduler loop when run on the SD discrete schedule at the TCD
 * timesteps, with KSampler's full-denoise noise scaling, on the analytic denoiser, noise draw for noise draw.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DiscreteModelSampling } from '../../../server/engine/sampling/model-sampling.js';
import { QueuedNoise } from '../../../server/engine/sampling/noise.js';
import { sampleTcd, tcdTimesteps } from '../../../server/engine/sampling/tcd.js';
import { sampleTcdK, tcdSigmas } from '../../../server/engine/sampling/k-sampler-tcd.js';
import { ksample } from '../../../server/engine/sampling/ksample.js';
import { maxAbs, maxAbsDiff } from '../../helpers/fixtures.js';

const ms = DiscreteModelSampling.sd();
const D = async (x: Float32Array, sigma: number) =>
  Float32Array.from(x, (v) => v / (1 + sigma * sigma) + (0.25 * Math.sin(3 * v)) / (1 + sigma));

/** deterministic pseudo-normal draws (Box-Muller on a xorshift stream): only needs to be the same on both sides */
function draws(count: number, n: number, seed: number): Float32Array[] {
  let s = seed >>> 0 || 1;
  const u = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 0.5) / 4294967296;
  };
  return Array.from({ length: count }, () =>
    Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u())),
  );
}

/** the same analytic model seen from diffusers' side: eps at DDPM-space x and discrete t */
const epsModel = async (x: Float32Array, t: number) => {
  const s = ms.sigmas[t],
    k = Math.sqrt(1 + s * s);
  const X = Float32Array.from(x, (v) => v * k);
  const den = await D(X, s);
  return Float32Array.from(X, (v, i) => (v - den[i]) / s);
};

for (const [steps, eta, strength] of [
  [4, 0.3, 1],
  [8, 0.3, 1],
  [4, 0, 1],
  [6, 1, 1],
  [2, 0.7, 1],
  [5, 0.5, 0.6],
] as const) {
  test(`k-diffusion tcd == diffusers TCD: ${steps} steps, gamma ${eta}, strength ${strength}`, async () => {
    const n = 64;
    const ts = tcdTimesteps(steps, strength);
    const [z0, ...rest] = draws(steps, n, 1234 + steps);
    const stepNoise = eta > 0 ? rest.slice(0, steps - 1) : [];
    // diffusers: x_T = z (for strength < 1 this plays the role of an already noised latent at ts[0])
    const ref = await sampleTcd({ x: z0, timesteps: ts, eta, denoise: epsModel, noise: new QueuedNoise(stepNoise) });
    // k-diffusion: X = x / sqrt(abar_t0) = z * sqrt(1 + sigma_t0^2)
    const s0 = ms.sigmas[ts[0]];
    const noise = new QueuedNoise(stepNoise);
    const out = await sampleTcdK({
      denoiser: D,
      x: Float32Array.from(z0, (v) => v * Math.sqrt(1 + s0 * s0)),
      sigmas: tcdSigmas(ms, ts),
      eta,
      noise,
      modelSampling: ms,
    });
    assert.equal(noise.used, stepNoise.length);
    const d = maxAbsDiff(out, ref);
    assert.ok(d <= 1e-5 * Math.max(1, maxAbs(ref)), `max diff ${d}`);
  });
}

/**
 * KSampler with sampler 'tcd' against diffusers' TCD pipeline from one generator's draws (the pipeline's RNG rule:
 * initial latent first, then one draw per noisy step); `eta` is what KSampler is given (undefined: none) and
 * `gamma` the pipeline's.
 */
async function assertKSamplerTcdMatches(eta: number | undefined, gamma: number, seed: number): Promise<void> {
  const n = 64,
    steps = 4;
  const stream = draws(steps, n, seed);
  const ref = await sampleTcd({
    x: stream[0],
    timesteps: tcdTimesteps(steps),
    eta: gamma,
    denoise: epsModel,
    noise: new QueuedNoise(stream.slice(1)),
  });
  const out = await ksample({
    sampler: 'tcd',
    sigmas: tcdSigmas(ms, tcdTimesteps(steps)),
    cfg: 1,
    ...(eta === undefined ? {} : { eta }),
    shape: [n],
    cond: async (xIn, t) => epsModel(xIn, t),
    latentImage: new Float32Array(n),
    initialNoise: stream[0],
    samplerNoise: new QueuedNoise(stream.slice(1)),
  });
  assert.ok(maxAbsDiff(out, ref) <= 1e-5 * Math.max(1, maxAbs(ref)), `max diff ${maxAbsDiff(out, ref)}`);
}

test('KSampler with sampler "tcd" from the seed noise equals the diffusers TCD pipeline latent', async () => {
  await assertKSamplerTcdMatches(0.3, 0.3, 99);
});

test("KSampler 'tcd' without eta (ComfyUI's KSampler has none) uses gamma 0.3, diffusers' default", async () => {
  await assertKSamplerTcdMatches(undefined, 0.3, 7);
});

test('the k-diffusion tcd sampler refuses gamma outside [0, 1] like diffusers', async () => {
  for (const eta of [-0.1, 1.2])
    await assert.rejects(
      sampleTcdK({
        denoiser: D,
        x: new Float32Array(4),
        sigmas: tcdSigmas(ms, tcdTimesteps(2)),
        eta,
        noise: new QueuedNoise([new Float32Array(4)]),
        modelSampling: ms,
      }),
      /gamma must be less than or equal to 1.0/,
      `gamma ${eta}`,
    );
});
