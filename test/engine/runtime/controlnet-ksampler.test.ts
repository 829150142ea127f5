/**
 * A whole KSampler run with ControlNetApplyAdvanced semantics in the engine worker's loop (Engine.sampleK): euler,
 * normal schedule, cfg 4 on sd1_tiny, the ControlNet on both sides at strength 0.9 between 20% and 70% of the
 * sampling, against test/data/controlnet's reference (ComfyUI's get_control / control_merge / apply_control over
 * torch). Also: a ControlNet of another family is refused before any step runs.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../../../server/engine/engine.js';
import { globalAveragePooling } from '../../../server/engine/runtime/control-residuals.js';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import { TorchGenerator } from '../../../server/engine/rng.js';
import { DiscreteModelSampling } from '../../../server/engine/sampling/model-sampling.js';
import { ksamplerSigmas } from '../../../server/engine/sampling/schedules.js';
import type { Tensor } from '../../../server/engine/tensor.js';
import { componentTolerance, fixturePath, fixtureSkip, maxAbsDiff } from '../../helpers/fixtures.js';
import { makeTestControlNet, makeTestControlNets } from '../../helpers/controlnet-files.js';
import { makeCheckpoint, presetConfig } from '../../../server/tools/make-checkpoint.js';
import { makeControlNet } from '../../../server/tools/make-controlnet.js';

const skip = fixtureSkip();
const REF_DIR = join(import.meta.dirname, '..', '..', 'data', 'controlnet');
const refSkip = skip;
let dir: string, engine: Engine, cn: { sd1: string; sdxl: string };

before(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'tcd-cn-ksampler-'));
  cn = await makeTestControlNets(dir, fixturePath(''));
  engine = new Engine({ cacheDir: join(dir, 'cache'), log: () => {} });
});
after(async () => {
  await engine?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function channelsFirst(img: Tensor): Tensor {
  const [b, h, w, c] = img.shape;
  const out = new Float32Array(img.data.length);
  for (let n = 0; n < b; n++)
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        for (let k = 0; k < c; k++) out[((n * c + k) * h + y) * w + x] = img.data[((n * h + y) * w + x) * c + k];
  return { shape: [b, c, h, w], data: out };
}

const shape = [1, 4, 8, 8];

test(
  'KSampler run with ControlNetApplyAdvanced (strength 0.9, 0.2..0.7) matches the reference',
  { skip: refSkip },
  async (t) => {
    const file = SafetensorsFile.open(join(REF_DIR, 'reference.safetensors'));
    const c = JSON.parse(readFileSync(join(REF_DIR, 'reference.json'), 'utf8')).cases.ksampler;
    const ms = DiscreteModelSampling.sd();
    const sigmas = ksamplerSigmas(ms, c.sampler, c.scheduler, c.steps, 1);
    assert.ok(maxAbsDiff(sigmas, c.sigmas) < 1e-5, 'the schedule is the reference one');
    // the range check of get_control, step by step: which sigmas lie in [sigma(end), sigma(start)]
    const from = ms.percentToSigma(c.start_percent),
      to = ms.percentToSigma(c.end_percent);
    assert.ok(Math.abs(from - c.range_sigmas[0]) < 1e-5 * from && Math.abs(to - c.range_sigmas[1]) < 1e-5 * to);
    assert.deepEqual(
      sigmas.slice(0, -1).map((s) => !(s > from || s < to)),
      c.control_applied,
    );
    assert.ok(c.control_applied.includes(true) && c.control_applied.includes(false), 'the range cuts the run');
    const control = [
      {
        path: cn.sd1,
        hint: channelsFirst(file.readTensor(c.hint)),
        strength: c.strength,
        startPercent: c.start_percent,
        endPercent: c.end_percent,
      },
    ];
    const run = (withControl: boolean) =>
      engine.sampleK({
        model: { checkpoint: fixturePath('sd1_tiny.safetensors'), loras: [] },
        sampling: { prediction: 'eps', zsnr: false },
        sampler: c.sampler,
        sigmas,
        latent: { shape, data: new Float32Array(4 * 8 * 8) },
        noise: new TorchGenerator(BigInt(c.seed)).randn(shape),
        seed: String(c.seed),
        positive: [{ context: file.readTensor(c.positive), ...(withControl ? { control } : {}) }],
        negative: [{ context: file.readTensor(c.negative), ...(withControl ? { control } : {}) }],
        cfg: c.cfg,
      });
    const out = await run(true);
    const ref = file.readTensor(c.out);
    const d = maxAbsDiff(out.x.data, ref.data);
    t.diagnostic(`final latent: max diff ${d.toExponential(2)} (tol ${componentTolerance(ref.data)})`);
    assert.ok(d <= componentTolerance(ref.data), `final latent off by ${d}`);
    const plain = await run(false);
    assert.ok(
      maxAbsDiff(plain.x.data, ref.data) > 100 * componentTolerance(ref.data),
      'the ControlNet changed the run',
    );
  },
);

test('a ControlNet of another family is refused before any step runs', { skip }, async () => {
  const hint = { shape: [1, 3, 64, 64], data: new Float32Array(3 * 64 * 64) };
  const steps: number[] = [];
  await assert.rejects(
    engine.sampleK(
      {
        model: { checkpoint: fixturePath('sd1_tiny.safetensors'), loras: [] },
        sampling: { prediction: 'eps', zsnr: false },
        sampler: 'euler',
        sigmas: [14.6, 1, 0],
        latent: { shape, data: new Float32Array(4 * 8 * 8) },
        noise: new Float32Array(4 * 8 * 8),
        seed: '1',
        positive: [
          {
            context: { shape: [1, 77, 128], data: new Float32Array(77 * 128) },
            control: [{ path: cn.sdxl, hint, strength: 1, startPercent: 0, endPercent: 1 }],
          },
        ],
        negative: [],
        cfg: 1,
      },
      { onStep: (p) => steps.push(p.step) },
    ),
    /SDXL ControlNet cannot control an SD1 model/,
  );
  assert.deepEqual(steps, []);
});

test(
  'a *_shuffle ControlNet gets global average pooling of its outputs (ComfyUI), others do not',
  { skip },
  async () => {
    assert.ok(globalAveragePooling('/m/control_v11e_sd15_shuffle.safetensors'));
    assert.ok(globalAveragePooling('x_shuffle_fp16.safetensors'));
    assert.ok(!globalAveragePooling('/m/shuffle_canny.safetensors'));
    const shuffled = join(dir, 'sd1_cn_shuffle.safetensors');
    symlinkSync(cn.sd1, shuffled);
    const hint = { shape: [1, 3, 64, 64], data: Float32Array.from({ length: 3 * 64 * 64 }, (_, i) => (i % 13) / 13) };
    const run = async (path: string) =>
      (
        await engine.sampleK({
          model: { checkpoint: fixturePath('sd1_tiny.safetensors'), loras: [] },
          sampling: { prediction: 'eps', zsnr: false },
          sampler: 'euler',
          sigmas: [14.6, 3, 0],
          latent: { shape, data: new Float32Array(4 * 8 * 8) },
          noise: new TorchGenerator(5n).randn(shape),
          seed: '5',
          positive: [
            {
              context: { shape: [1, 77, 128], data: new Float32Array(77 * 128).fill(0.1) },
              control: [{ path, hint, strength: 1, startPercent: 0, endPercent: 1 }],
            },
          ],
          negative: [],
          cfg: 1,
        })
      ).x.data;
    const plain = await run(cn.sd1),
      pooled = await run(shuffled);
    assert.ok(maxAbsDiff(plain, pooled) > 1e-3, 'pooling changed the run');
  },
);

test(
  'with a LoRA: the controlled UNet takes the LoRA as the plain one does (a ControlNet out of range changes nothing)',
  { skip },
  async () => {
    const hint = { shape: [1, 3, 64, 64], data: Float32Array.from({ length: 3 * 64 * 64 }, (_, i) => (i % 7) / 7) };
    const context = { shape: [1, 77, 128], data: Float32Array.from({ length: 77 * 128 }, (_, i) => Math.sin(i) / 4) };
    const run = async (control?: { startPercent: number; endPercent: number }, loras = true) =>
      (
        await engine.sampleK({
          model: {
            checkpoint: fixturePath('sd1_tiny.safetensors'),
            loras: loras ? [{ path: fixturePath('sd1_tiny_lora_kohya.safetensors'), strength: 0.8 }] : [],
          },
          sampling: { prediction: 'eps', zsnr: false },
          sampler: 'euler',
          sigmas: [14.6, 3, 0.5, 0],
          latent: { shape, data: new Float32Array(4 * 8 * 8) },
          noise: new TorchGenerator(9n).randn(shape),
          seed: '9',
          positive: [{ context, ...(control ? { control: [{ path: cn.sd1, hint, strength: 1, ...control }] } : {}) }],
          negative: [],
          cfg: 1,
        })
      ).x.data;
    const lora = await run();
    // start 0.999: sigma(start) is below every step's sigma, so the ControlNet never applies
    assert.equal(maxAbsDiff(await run({ startPercent: 0.999, endPercent: 1 }), lora), 0);
    const controlled = await run({ startPercent: 0, endPercent: 1 });
    assert.ok(maxAbsDiff(controlled, lora) > 1e-3, 'the ControlNet applies on top of the LoRA');
    assert.ok(maxAbsDiff(controlled, await run({ startPercent: 0, endPercent: 1 }, false)) > 1e-3, 'the LoRA applies');
  },
);

test(
  'a 9-channel inpainting model takes an ordinary ControlNet: it sees the 4-channel noisy latent only',
  { skip },
  async () => {
    const cfg = presetConfig('tiny-sd1-inpaint');
    const ckpt = join(dir, 'inpaint.safetensors');
    await makeCheckpoint({ config: cfg, out: ckpt, seed: 3 });
    const net = await makeControlNet({
      unet: { ...cfg.unet, inChannels: 4 },
      out: join(dir, 'cn4.safetensors'),
      seed: 4,
      layout: 'ldm',
    });
    const [B, , h, w] = shape;
    const hint = {
      shape: [1, 3, 8 * h, 8 * w],
      data: Float32Array.from({ length: 3 * 64 * h * w }, (_, i) => (i % 5) / 5),
    };
    const context = {
      shape: [1, 77, cfg.unet.contextDim],
      data: new Float32Array(77 * cfg.unet.contextDim).fill(0.05),
    };
    const concat = { shape: [B, 5, h, w], data: Float32Array.from({ length: B * 5 * h * w }, (_, i) => Math.cos(i)) };
    const run = async (control: boolean) =>
      (
        await engine.sampleK({
          model: { checkpoint: ckpt, loras: [] },
          sampling: { prediction: 'eps', zsnr: false },
          sampler: 'euler',
          sigmas: [14.6, 2, 0],
          latent: { shape, data: new Float32Array(4 * h * w) },
          noise: new TorchGenerator(2n).randn(shape),
          seed: '2',
          positive: [
            {
              context,
              concat,
              ...(control ? { control: [{ path: net, hint, strength: 1, startPercent: 0, endPercent: 1 }] } : {}),
            },
          ],
          negative: [],
          cfg: 1,
        })
      ).x.data;
    assert.ok(maxAbsDiff(await run(true), await run(false)) > 1e-3);
  },
);

test("a diff ControlNet adds its base model's weights as loaded: with the base's LoRAs", { skip }, async () => {
  const diffPath = await makeTestControlNet(
    fixturePath('sd1_tiny.safetensors'),
    join(dir, 'sd1_cn_diff.safetensors'),
    11,
    'diff',
  );
  const sd1 = fixturePath('sd1_tiny.safetensors');
  const hint = { shape: [1, 3, 64, 64], data: Float32Array.from({ length: 3 * 64 * 64 }, (_, i) => (i % 11) / 11) };
  const run = async (loras: { path: string; strength: number }[]) =>
    (
      await engine.sampleK({
        model: { checkpoint: sd1, loras: [] },
        sampling: { prediction: 'eps', zsnr: false },
        sampler: 'euler',
        sigmas: [14.6, 2, 0],
        latent: { shape, data: new Float32Array(4 * 8 * 8) },
        noise: new TorchGenerator(6n).randn(shape),
        seed: '6',
        positive: [
          {
            context: { shape: [1, 77, 128], data: new Float32Array(77 * 128).fill(0.02) },
            control: [
              {
                path: diffPath,
                diffBase: { checkpoint: sd1, loras },
                hint,
                strength: 1,
                startPercent: 0,
                endPercent: 1,
              },
            ],
          },
        ],
        negative: [],
        cfg: 1,
      })
    ).x.data;
  const plainBase = await run([]);
  const loraBase = await run([{ path: fixturePath('sd1_tiny_lora_kohya.safetensors'), strength: 1 }]);
  assert.ok(maxAbsDiff(plainBase, loraBase) > 1e-4, "the base's LoRA reaches the diff ControlNet's weights");
  assert.equal(maxAbsDiff(await run([]), plainBase), 0);
});
