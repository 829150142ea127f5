/**
 * 9-channel inpainting UNets and InpaintModelConditioning against ComfyUI's own code (test/data/inpaint: made by
 * make_reference.py from the tiny 'tiny-sd1-inpaint' checkpoint, regenerated here and checked by hash):
 * the node's greyed pixels and mask, its latents, the UNet's concat channels in ComfyUI's three cases (conditioning,
 * the latent's noise mask, nothing: defaults), one UNet evaluation with them, and KSampler runs through the node
 * (with and without its noise mask). Components within 1e-4 x max(1, max|ref|); pixels within 2 levels on 99.9%,
 * none over 4. A mask batch that cannot broadcast over the image fails naming the node and input.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile } from '../../server/engine/io/safetensors.js';
import type { Tensor } from '../../server/engine/tensor.js';
import { defineNode, t } from '../../nodes/define.js';
import { inpaintConcat } from '../../nodes/inpaint-concat.js';
import { maskedPixels } from '../../nodes/inpaint.js';
import { denoiseMask } from '../../nodes/sampling.js';
import type { Conditioning, LatentValue } from '../../nodes/types.js';
import { comparePixels, makeHarness, type Harness } from '../helpers/run-prompt.js';
import { makeInpaintCheckpoint, PROMPTS } from '../data/inpaint/make-inputs.js';

const DATA = join(dirname(fileURLToPath(import.meta.url)), '..', 'data', 'inpaint');
const ref = SafetensorsFile.open(join(DATA, 'reference.safetensors'));
const inputs = SafetensorsFile.open(join(DATA, 'inputs.safetensors'));
const report = JSON.parse(readFileSync(join(DATA, 'reference.json'), 'utf8')) as {
  checkpoint_sha256: string;
  checks: Record<string, number>;
  ksampler: { seed: number; steps: number; cfg: number; sampler_name: string; scheduler: string };
  unet_sigma: number;
  scale: number;
};

/** max |ours - ref| / max(1, max |ref|): the fixtures' component rule */
function relErr(ours: Float32Array, want: Float32Array): number {
  assert.equal(ours.length, want.length);
  let d = 0,
    m = 1;
  for (let i = 0; i < want.length; i++) {
    d = Math.max(d, Math.abs(ours[i] - want[i]));
    m = Math.max(m, Math.abs(want[i]));
  }
  return d / m;
}
const near = (ours: Tensor, name: string, tol = 1e-4) => {
  const want = ref.readTensor(name);
  assert.deepEqual(ours.shape, want.shape, name);
  const e = relErr(ours.data, want.data);
  assert.ok(e <= tol, `${name}: ${e} > ${tol}`);
};

/** test-only sources: the reference's exact float image and mask */
const sources = [
  defineNode({
    id: 'TestPixels',
    category: 'testing',
    inputs: [],
    outputs: [t.out('IMAGE')],
    execute: () => ({ outputs: [inputs.readTensor('pixels')] }),
  }),
  defineNode({
    id: 'TestMask',
    category: 'testing',
    inputs: [],
    outputs: [t.out('MASK')],
    execute: () => ({ outputs: [inputs.readTensor('mask')] }),
  }),
];

let dir: string, h: Harness, ckptName: string;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tcd-inpaint-'));
  const ckpt = await makeInpaintCheckpoint(dir);
  ckptName = ckpt.split('/').pop()!;
  h = makeHarness(dir, { nodes: sources });
});
after(async () => {
  await h.close();
  rmSync(dir, { recursive: true, force: true });
});

test('the regenerated checkpoint is the one the reference was made from; the torch networks matched diffusers', () => {
  const sha = createHash('sha256')
    .update(readFileSync(join(dir, ckptName)))
    .digest('hex');
  assert.equal(sha, report.checkpoint_sha256);
  // make_reference.py checked its own UNet / VAE against the diffusers fixtures before using them
  for (const [k, v] of Object.entries(report.checks)) assert.ok(v < 1e-5, `${k}: ${v}`);
});

test("InpaintModelConditioning's greyed pixels and mask are ComfyUI's (resize, crop to multiples of 8)", () => {
  const m = maskedPixels(inputs.readTensor('pixels'), inputs.readTensor('mask'));
  near(m.pixels, 'imc/masked_pixels', 1e-6);
  near(m.mask, 'imc/mask', 1e-6);
});

test("the UNet's concat channels follow ComfyUI's concat_cond in all three cases", () => {
  const shape = [1, 4, 8, 16];
  const samples = ref.readTensor('imc/samples');
  const latent = samples.data.map((v) => v * report.scale);
  const entry = { context: inputs.readTensor('context_pos'), pooled: null };
  const concatLatent = ref.readTensor('imc/concat_latent'),
    concatMask = ref.readTensor('imc/mask');
  near(inpaintConcat({ ...entry, concatLatent, concatMask }, shape, report.scale, { latent }), 'unet/c_concat_cond');
  near(inpaintConcat(entry, shape, report.scale, { latent: new Float32Array(128) }), 'unet/c_concat_default', 1e-7);
  // VAEEncodeForInpaint's way: the latent's noise mask, prepared as KSampler does (bilinear to the latent)
  const prepared = denoiseMask(concatMask, shape);
  near(inpaintConcat(entry, shape, report.scale, { latent, denoiseMask: prepared }), 'unet/c_concat_noise_mask');
});

test('one UNet evaluation of the 9-channel model with its concat channels', async () => {
  const engine = h.executor.services.engine();
  const model = { checkpoint: join(dir, ckptName), loras: [] };
  const sigma = report.unet_sigma;
  const x = inputs.readTensor('unet_x');
  const xs = { shape: x.shape, data: x.data.map((v) => v / Math.sqrt(sigma * sigma + 1)) };
  const t = ref.readFloat32('unet/t');
  const ctx = inputs.readTensor('context_pos');
  near(await engine.unet(model, xs, t, ctx, undefined, ref.readTensor('unet/c_concat_cond')), 'unet/eps_cond');
  near(await engine.unet(model, xs, t, ctx, undefined, ref.readTensor('unet/c_concat_default')), 'unet/eps_default');
  await assert.rejects(engine.unet(model, xs, t, ctx), /inpainting unet needs 5 concat channels/);
});

const ks = report.ksampler;
const graph = (noiseMask: boolean) => ({
  ckpt: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: ckptName } },
  pos: { class_type: 'CLIPTextEncode', inputs: { text: PROMPTS.positive, clip: ['ckpt', 1] } },
  neg: { class_type: 'CLIPTextEncode', inputs: { text: PROMPTS.negative, clip: ['ckpt', 1] } },
  px: { class_type: 'TestPixels', inputs: {} },
  mk: { class_type: 'TestMask', inputs: {} },
  imc: {
    class_type: 'InpaintModelConditioning',
    inputs: {
      positive: ['pos', 0],
      negative: ['neg', 0],
      vae: ['ckpt', 2],
      pixels: ['px', 0],
      mask: ['mk', 0],
      noise_mask: noiseMask,
    },
  },
  ks: {
    class_type: 'KSampler',
    inputs: {
      model: ['ckpt', 0],
      seed: ks.seed,
      steps: ks.steps,
      cfg: ks.cfg,
      sampler_name: ks.sampler_name,
      scheduler: ks.scheduler,
      positive: ['imc', 0],
      negative: ['imc', 1],
      latent_image: ['imc', 2],
      denoise: 1,
    },
  },
  dec: { class_type: 'VAEDecode', inputs: { samples: ['ks', 0], vae: ['ckpt', 2] } },
  capImc: { class_type: 'CaptureLATENT', inputs: { value: ['imc', 2] } },
  capPos: { class_type: 'CaptureCONDITIONING', inputs: { value: ['imc', 0] } },
  capKs: { class_type: 'CaptureLATENT', inputs: { value: ['ks', 0] } },
  capImg: { class_type: 'CaptureIMAGE', inputs: { value: ['dec', 0] } },
});

function checkPixels(image: Tensor, refName: string) {
  const want = ref.readTensor(refName);
  const { fractionOver2, maxDiff } = comparePixels(image.data, want.data, want.shape);
  assert.ok(fractionOver2 <= 0.001 && maxDiff <= 4, `${refName}: ${fractionOver2} over 2 levels, max ${maxDiff}`);
}

test('KSampler through InpaintModelConditioning on the 9-channel model: ComfyUI latents and pixels', async () => {
  await h.run(graph(true));
  const pos = h.captured.get('capPos') as Conditioning;
  assert.ok(relErr(pos[0].context.data, inputs.readFloat32('context_pos')) < 1e-5, 'the prompt encodes as before');
  near(pos[0].concatLatent!, 'imc/concat_latent');
  near(pos[0].concatMask!, 'imc/mask', 1e-6);
  const imc = h.captured.get('capImc') as LatentValue;
  near(imc.samples, 'imc/samples');
  near(imc.noise_mask!, 'imc/mask', 1e-6);
  near((h.captured.get('capKs') as LatentValue).samples, 'ks/latent');
  checkPixels(h.captured.get('capImg') as Tensor, 'ks/image');
});

test('noise_mask off: no noise mask on the latent, the UNet still reads the mask and masked image', async () => {
  await h.run(graph(false));
  assert.equal((h.captured.get('capImc') as LatentValue).noise_mask, undefined);
  near((h.captured.get('capKs') as LatentValue).samples, 'ks_no_noise_mask/latent');
  checkPixels(h.captured.get('capImg') as Tensor, 'ks_no_noise_mask/image');
});

test('a mask batch that cannot broadcast over the pixels fails naming the node and input', async () => {
  const bad = defineNode({
    id: 'TestMask2',
    category: 'testing',
    inputs: [],
    outputs: [t.out('MASK')],
    execute: () => {
      const m = inputs.readTensor('mask');
      const data = new Float32Array(m.data.length * 2);
      data.set(m.data);
      data.set(m.data, m.data.length);
      return { outputs: [{ shape: [2, ...m.shape.slice(1)], data }] };
    },
  });
  const h2 = makeHarness(dir, { nodes: [...sources, bad] });
  try {
    const g = graph(true);
    const r = await h2.run({ ...g, mk: { class_type: 'TestMask2', inputs: {} }, capImc: g.capImc } as never, {
      allowErrors: true,
    });
    const err = r.events.find((e) => e.type === 'execution_error')?.data as {
      node_id: string;
      node_type: string;
      exception_message: string;
    };
    assert.equal(err.node_id, 'imc');
    assert.equal(err.node_type, 'InpaintModelConditioning');
    assert.match(err.exception_message, /mask has a batch of 2, pixels 1/);
  } finally {
    await h2.close();
  }
});

test('regional entries get their crop of the concat; TCDSampler feeds the default concat', async () => {
  const g = graph(true);
  // a half-width area on the positive side: its UNet call runs on the crop, concat included (else shapes clash)
  await h.run({
    ...g,
    area: {
      class_type: 'ConditioningSetAreaPercentage',
      inputs: { conditioning: ['imc', 0], width: 0.5, height: 1, x: 0.5, y: 0, strength: 1 },
    },
    both: { class_type: 'ConditioningCombine', inputs: { conditioning_1: ['imc', 0], conditioning_2: ['area', 0] } },
    ks: { ...g.ks, inputs: { ...g.ks.inputs, positive: ['both', 0] } },
  } as never);
  const regional = (h.captured.get('capKs') as LatentValue).samples.data;
  assert.ok(regional.every(Number.isFinite));
  assert.ok(relErr(regional, ref.readFloat32('ks/latent')) > 1e-3, 'the area changes the result');
  // TCDSampler takes no noise mask: a plain VAEEncode latent, the conditioning still carries the concat
  await h.run({
    ckpt: g.ckpt,
    pos: g.pos,
    px: g.px,
    mk: g.mk,
    imc: g.imc,
    enc: { class_type: 'VAEEncode', inputs: { pixels: ['px', 0], vae: ['ckpt', 2] } },
    tcd: {
      class_type: 'TCDSampler',
      inputs: {
        model: ['ckpt', 0],
        positive: ['imc', 0],
        negative: ['imc', 1],
        latent_image: ['enc', 0],
        seed: 1,
        steps: 2,
        cfg: 1,
        eta: 0.3,
        denoise: 1,
        original_inference_steps: 50,
      },
    },
    neg: g.neg,
    capKs: { class_type: 'CaptureLATENT', inputs: { value: ['tcd', 0] } },
  } as never);
  const tcd = (h.captured.get('capKs') as LatentValue).samples;
  assert.deepEqual(tcd.shape, [1, 4, 8, 16]);
  assert.ok(tcd.data.every(Number.isFinite));
});
