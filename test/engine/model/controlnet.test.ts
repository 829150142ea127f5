/**
 * ControlNet model code: file layouts and family checks (controlnet-file.ts), the ControlNet graph and the UNet's
 * controlled variant on the ORT CPU EP against references made the way ComfyUI runs a ControlNet
 * (test/data/controlnet/make_reference.py on the tiny fixture models and the ControlNets of test/helpers).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile, halfToFloat } from '../../../server/engine/io/safetensors.js';
import { floatToHalf } from '../../../server/engine/onnx/half.js';
import { detectCheckpoint, keySourceOf } from '../../../server/engine/model/detect.js';
import { safetensorsWeights } from '../../../server/engine/onnx/weights.js';
import { serializeModel } from '../../../server/engine/onnx/serialize.js';
import { createSession, runSession, type Feed } from '../../../server/engine/onnx/session.js';
import { buildUNetGraph, controlResidualNames } from '../../../server/engine/model/unet.js';
import { buildControlNetGraph } from '../../../server/engine/model/controlnet.js';
import {
  ControlNetFileError,
  ControlNetMismatchError,
  controlNetConfigFor,
  controlNetWeights,
  inspectControlNet,
} from '../../../server/engine/model/controlnet-file.js';
import { hintFor } from '../../../server/engine/runtime/control-residuals.js';
import type { Tensor } from '../../../server/engine/tensor.js';
import { componentTolerance, fixturePath, fixtureSkip, maxAbsDiff, unetFixtureCase } from '../../helpers/fixtures.js';
import { CN_SEEDS, makeTestControlNet, makeTestControlNets } from '../../helpers/controlnet-files.js';

const skip = fixtureSkip();
const REF_DIR = join(import.meta.dirname, '..', '..', 'data', 'controlnet');
const dir = mkdtempSync(join(tmpdir(), 'tcd-controlnet-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
let made: Promise<{ sd1: string; sdxl: string }> | null = null;
const files = () => (made ??= makeTestControlNets(dir, fixturePath('')));

/** IMAGE [B, H, W, C] -> [B, C, H, W] (ComfyUI's movedim(-1, 1)) */
function channelsFirst(img: Tensor): Tensor {
  const [b, h, w, c] = img.shape;
  const out = new Float32Array(img.data.length);
  for (let n = 0; n < b; n++)
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        for (let k = 0; k < c; k++) out[((n * c + k) * h + y) * w + x] = img.data[((n * h + y) * w + x) * c + k];
  return { shape: [b, c, h, w], data: out };
}

async function sessions(family: 'sd1' | 'sdxl') {
  const { ckpt, cases, config, feeds } = unetFixtureCase(family);
  const cnFile = SafetensorsFile.open((await files())[family]);
  const info = inspectControlNet(cnFile);
  const cn = buildControlNetGraph(
    controlNetConfigFor(info, config),
    controlNetWeights(safetensorsWeights(cnFile), info),
  );
  const unet = buildUNetGraph(config.unet, safetensorsWeights(ckpt), { controlInputs: true });
  return {
    config,
    info,
    feeds,
    ref: cases.readTensor('unet/out'),
    cn: await createSession(serializeModel(cn)),
    unet: await createSession(serializeModel(unet)),
    names: controlResidualNames(config.unet),
  };
}
const built = new Map<string, ReturnType<typeof sessions>>();
const session = (f: 'sd1' | 'sdxl') => {
  if (!built.has(f)) built.set(f, sessions(f));
  return built.get(f)!;
};

/** strength-scaled sum of ControlNet outputs over a chain, as control_merge: later x s + earlier */
function merge(outs: { out: Record<string, Tensor>; strength: number }[], names: string[]): Record<string, Tensor> {
  const res: Record<string, Tensor> = {};
  for (const name of names) {
    let acc: Float32Array | null = null;
    for (const { out, strength } of outs) {
      const o = out[name].data;
      const next = new Float32Array(o.length);
      for (let i = 0; i < o.length; i++) next[i] = acc ? Math.fround(o[i] * strength) + acc[i] : o[i] * strength;
      acc = next;
    }
    res[name] = { shape: outs[0].out[name].shape, data: acc! };
  }
  return res;
}

test('ControlNet files: layouts, config from shapes, another family refused', { skip }, async () => {
  const f = await files();
  const sd1 = inspectControlNet(SafetensorsFile.open(f.sd1));
  assert.equal(sd1.layout, 'ldm-prefixed');
  assert.equal(sd1.family, 'sd1');
  assert.equal(sd1.config.hintChannels, 3);
  assert.equal(sd1.config.hintConvs, 8);
  const sd1Model = detectCheckpoint(SafetensorsFile.open(fixturePath('sd1_tiny.safetensors')));
  const sdxlModel = detectCheckpoint(SafetensorsFile.open(fixturePath('sdxl_tiny.safetensors')));
  const cfg = controlNetConfigFor(sd1, sd1Model);
  for (const k of ['channelMult', 'numResBlocks', 'transformerDepth', 'transformerDepthMiddle', 'contextDim'] as const)
    assert.deepEqual(cfg.unet[k], sd1Model.unet[k], k);
  const sdxl = inspectControlNet(SafetensorsFile.open(f.sdxl));
  assert.equal(sdxl.layout, 'ldm');
  assert.equal(sdxl.family, 'sdxl');
  assert.deepEqual(controlNetConfigFor(sdxl, sdxlModel).unet.adm, sdxlModel.unet.adm);
  assert.throws(() => controlNetConfigFor(sd1, sdxlModel), ControlNetMismatchError);
  assert.throws(() => controlNetConfigFor(sdxl, sd1Model), /SDXL ControlNet cannot control an SD1 model/);
  assert.throws(
    () => inspectControlNet(SafetensorsFile.open(fixturePath('sd1_tiny_lora_kohya.safetensors'))),
    ControlNetFileError,
  );
  assert.throws(
    () => inspectControlNet(SafetensorsFile.open(fixturePath('sd1_tiny.safetensors'))),
    ControlNetFileError,
  );
  // a ControlNet++ union model (extra task_embedding / control_add_embedding) is named, not run as a plain one
  const sd1File = SafetensorsFile.open(f.sd1);
  const union = keySourceOf([
    ...sd1File.keys().map((k) => ({ name: k, shape: sd1File.shape(k) })),
    { name: 'control_model.task_embedding', shape: [8, 32] },
  ]);
  assert.throws(() => inspectControlNet(union), /ControlNet\+\+ union/);
});

test('diffusers-layout ControlNet serves the same tensors as the ldm file of the same seed', { skip }, async () => {
  const f = await files();
  const ldmFile = SafetensorsFile.open(f.sdxl);
  const diffusersPath = await makeTestControlNet(
    fixturePath('sdxl_tiny.safetensors'),
    join(dir, 'sdxl_cn_diffusers.safetensors'),
    CN_SEEDS.sdxl,
    'diffusers',
  );
  const dFile = SafetensorsFile.open(diffusersPath);
  assert.ok(dFile.has('controlnet_cond_embedding.conv_in.weight') && dFile.has('controlnet_mid_block.weight'));
  const a = inspectControlNet(ldmFile),
    b = inspectControlNet(dFile);
  assert.equal(b.layout, 'diffusers');
  assert.deepEqual([...b.keys.keys()].sort(), [...a.keys.keys()].sort());
  assert.deepEqual(b.config, a.config);
  const wa = controlNetWeights(safetensorsWeights(ldmFile), a),
    wb = controlNetWeights(safetensorsWeights(dFile), b);
  for (const name of a.keys.keys()) {
    assert.deepEqual(wb.shape(name), wa.shape(name), name);
    assert.equal(maxAbsDiff(wb.read(name), wa.read(name)), 0, name);
  }
});

test('diff ControlNet: its weights are the model UNet weights plus the differences', { skip }, async () => {
  const path = await makeTestControlNet(
    fixturePath('sd1_tiny.safetensors'),
    join(dir, 'sd1_cn_diff.safetensors'),
    7,
    'diff',
  );
  const file = SafetensorsFile.open(path);
  const info = inspectControlNet(file);
  assert.equal(info.diff, true);
  const ckpt = SafetensorsFile.open(fixturePath('sd1_tiny.safetensors'));
  const base = (n: string) => {
    const k = `model.diffusion_model.${n}`;
    return ckpt.has(k) ? ckpt.readFloat32(k) : undefined;
  };
  const w = controlNetWeights(safetensorsWeights(file), info, base, (k) => file.info(k).dtype === 'F16');
  const name = 'input_blocks.1.0.in_layers.2.weight';
  const got = w.read(name),
    d = file.readFloat32(`control_model.${name}`),
    m = base(name)!;
  assert.ok(maxAbsDiff(got, d) > 0.01, 'the model weights were added');
  // ComfyUI adds in the file's dtype (float16 here): the sum rounded to float16
  for (let i = 0; i < got.length; i++) assert.equal(got[i], halfToFloat(floatToHalf(Math.fround(d[i] + m[i]))));
  assert.ok(
    got.some((v, i) => v !== Math.fround(d[i] + m[i])),
    'the float16 rounding shows',
  );
  // a zero conv is not in the model: served as stored
  assert.equal(maxAbsDiff(w.read('zero_convs.0.0.weight'), file.readFloat32('control_model.zero_convs.0.0.weight')), 0);
});

test('controlled UNet with zero residuals gives the plain UNet output exactly', { skip }, async () => {
  const s = await session('sd1');
  const zeros: Record<string, Feed> = {};
  const outs = await runSession(s.cn, {
    ...s.feeds,
    hint: hintFor({ shape: [1, 3, 64, 64], data: new Float32Array(3 * 64 * 64) }, 2, 8, 8),
  });
  for (const [k, v] of Object.entries(outs)) zeros[k] = { shape: v.shape, data: new Float32Array(v.data.length) };
  const out = (await runSession(s.unet, { ...s.feeds, ...zeros })).eps;
  assert.ok(maxAbsDiff(out.data, s.ref.data) <= componentTolerance(s.ref.data) / 5);
  const plain = await createSession(
    serializeModel(
      buildUNetGraph(s.config.unet, safetensorsWeights(SafetensorsFile.open(fixturePath('sd1_tiny.safetensors')))),
    ),
  );
  assert.equal(maxAbsDiff((await runSession(plain, s.feeds)).eps.data, out.data), 0);
});

const refSkip = skip;
const reference = () => ({
  file: SafetensorsFile.open(join(REF_DIR, 'reference.safetensors')),
  json: JSON.parse(readFileSync(join(REF_DIR, 'reference.json'), 'utf8')),
});

test(
  'SD1 ControlNet outputs and the UNet with control at strength 0.7 match the reference',
  { skip: refSkip },
  async (t) => {
    const s = await session('sd1');
    const { file, json } = reference();
    const c = json.cases.sd1;
    const hint = hintFor(channelsFirst(file.readTensor(c.hint)), 2, 8, 8);
    const out = await runSession(s.cn, { ...s.feeds, hint });
    const names = [...s.names.skips, s.names.middle];
    assert.equal(names.length, c.controls);
    names.forEach((n, i) => {
      const ref = file.readTensor(`sd1/control/${i}`);
      assert.deepEqual(out[n].shape, ref.shape, n);
      const d = maxAbsDiff(out[n].data, ref.data);
      assert.ok(d <= componentTolerance(ref.data), `${n}: ${d}`);
    });
    const eps = (await runSession(s.unet, { ...s.feeds, ...merge([{ out, strength: c.strength }], names) })).eps;
    const ref = file.readTensor(c.out);
    const d = maxAbsDiff(eps.data, ref.data);
    t.diagnostic(`sd1 UNet with control: max diff ${d.toExponential(2)} (tol ${componentTolerance(ref.data)})`);
    assert.ok(d <= componentTolerance(ref.data), `unet with control: ${d}`);
    assert.ok(maxAbsDiff(ref.data, s.ref.data) > 0.05, 'the control changed the UNet output');
  },
);

test('chained ControlNets (two Apply nodes) sum as in ComfyUI', { skip: refSkip }, async () => {
  const s = await session('sd1');
  const { file, json } = reference();
  const c = json.cases.sd1_chain;
  const names = [...s.names.skips, s.names.middle];
  const first = await runSession(s.cn, {
    ...s.feeds,
    hint: hintFor(channelsFirst(file.readTensor('sd1/hint')), 2, 8, 8),
  });
  const second = await runSession(s.cn, {
    ...s.feeds,
    hint: hintFor(channelsFirst(file.readTensor(c.hints[0])), 2, 8, 8),
  });
  const res = merge(
    [
      { out: first, strength: c.strengths[0] },
      { out: second, strength: c.strengths[1] },
    ],
    names,
  );
  const eps = (await runSession(s.unet, { ...s.feeds, ...res })).eps;
  const ref = file.readTensor(c.out);
  assert.ok(maxAbsDiff(eps.data, ref.data) <= componentTolerance(ref.data));
});

test(
  'SDXL ControlNet (ADM input) with the UNet at strength 0.7 matches the reference',
  { skip: refSkip },
  async (t) => {
    const s = await session('sdxl');
    const { file, json } = reference();
    const c = json.cases.sdxl;
    const out = await runSession(s.cn, { ...s.feeds, hint: hintFor(channelsFirst(file.readTensor(c.hint)), 2, 8, 12) });
    const names = [...s.names.skips, s.names.middle];
    const eps = (await runSession(s.unet, { ...s.feeds, ...merge([{ out, strength: c.strength }], names) })).eps;
    const ref = file.readTensor(c.out);
    const d = maxAbsDiff(eps.data, ref.data);
    t.diagnostic(`sdxl UNet with control: max diff ${d.toExponential(2)} (tol ${componentTolerance(ref.data)})`);
    assert.ok(d <= componentTolerance(ref.data), `sdxl unet with control: ${d}`);
  },
);
