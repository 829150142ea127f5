/**
 * ControlNet nodes: object_info as ComfyUI reports it; an unknown file layout is a 400 naming the node and input
 * before anything runs; a ControlNet of another family fails the sampler before its first step, naming it; the old
 * ControlNetApply hands its ControlNet to the negative side (control_apply_to_uncond); a diff ControlNet through
 * DiffControlNetLoader samples with the model's weights added.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { createRegistry } from '../../nodes/index.js';
import { controlToUncond } from '../../nodes/controlnet.js';
import type { Conditioning, ControlApplied } from '../../nodes/types.js';
import { objectInfoFor } from '../../server/executor/object-info.js';
import { makeServices } from '../../server/host.js';
import { ModelFolders } from '../../server/storage/model-folders.js';
import { FIXTURES, fixturePath, fixtureSkip } from '../helpers/fixtures.js';
import { makeHarness, type Harness } from '../helpers/run-prompt.js';
import { CN_SEEDS, makeTestControlNet } from '../helpers/controlnet-files.js';

describe('ControlNet nodes', { skip: fixtureSkip() }, () => {
  let h: Harness;
  const registry = createRegistry();
  before(async () => {
    h = makeHarness();
    symlinkSync(FIXTURES, join(h.dirs.models, 'checkpoints'));
    const dir = join(h.dirs.models, 'controlnet');
    mkdirSync(dir, { recursive: true });
    await makeTestControlNet(
      fixturePath('sd1_tiny.safetensors'),
      join(dir, 'sd1_cn.safetensors'),
      CN_SEEDS.sd1,
      'ldm-prefixed',
    );
    await makeTestControlNet(
      fixturePath('sdxl_tiny.safetensors'),
      join(dir, 'sdxl_cn.safetensors'),
      CN_SEEDS.sdxl,
      'diffusers',
    );
    await makeTestControlNet(fixturePath('sd1_tiny.safetensors'), join(dir, 'sd1_diff.safetensors'), 5, 'diff');
    symlinkSync(fixturePath('sd1_tiny_lora_kohya.safetensors'), join(dir, 'not_a_controlnet.safetensors'));
  });
  after(async () => {
    await h.close();
  });
  const services = () =>
    makeServices(
      new ModelFolders(h.dirs.models),
      { output: h.dirs.output, input: h.dirs.input, temp: h.dirs.temp },
      {
        dataDir: h.dirs.data,
        log: () => {},
      },
      false,
    );

  test("object_info: ComfyUI's names, inputs, defaults and outputs", () => {
    const info = (id: string) => objectInfoFor(registry.get(id)!, services()) as Record<string, any>;
    const names = ['not_a_controlnet.safetensors', 'sd1_cn.safetensors', 'sd1_diff.safetensors', 'sdxl_cn.safetensors'];
    const loader = info('ControlNetLoader');
    assert.deepEqual(loader.input.required.control_net_name[0], names);
    assert.deepEqual(
      [loader.output, loader.output_name, loader.category, loader.display_name],
      [['CONTROL_NET'], ['CONTROL_NET'], 'loaders', 'Load ControlNet Model'],
    );
    const diff = info('DiffControlNetLoader');
    assert.deepEqual(diff.input_order, { required: ['model', 'control_net_name'] });
    assert.deepEqual(diff.input.required.model, ['MODEL']);
    assert.equal(diff.display_name, 'Load ControlNet Model (diff)');
    const old = info('ControlNetApply');
    assert.deepEqual(old.input_order, { required: ['conditioning', 'control_net', 'image', 'strength'] });
    assert.deepEqual(old.input.required.strength, ['FLOAT', { default: 1, min: 0, max: 10, step: 0.01 }]);
    assert.deepEqual(
      [old.output, old.category, old.display_name, old.deprecated],
      [['CONDITIONING'], 'conditioning/controlnet', 'Apply ControlNet (OLD)', true],
    );
    const adv = info('ControlNetApplyAdvanced');
    assert.deepEqual(adv.input_order, {
      required: ['positive', 'negative', 'control_net', 'image', 'strength', 'start_percent', 'end_percent'],
      optional: ['vae'],
    });
    assert.deepEqual(adv.input.required.start_percent, ['FLOAT', { default: 0, min: 0, max: 1, step: 0.001 }]);
    assert.deepEqual(adv.input.required.end_percent, ['FLOAT', { default: 1, min: 0, max: 1, step: 0.001 }]);
    assert.deepEqual(adv.input.optional, { vae: ['VAE'] });
    assert.deepEqual(
      [adv.output, adv.output_name, adv.display_name],
      [['CONDITIONING', 'CONDITIONING'], ['positive', 'negative'], 'Apply ControlNet'],
    );
  });

  const graph = (ckpt: string, cn: string, extra: Record<string, unknown> = {}) => ({
    ckpt: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: ckpt } },
    pos: { class_type: 'CLIPTextEncode', inputs: { text: 'a house', clip: ['ckpt', 1] } },
    neg: { class_type: 'CLIPTextEncode', inputs: { text: 'blurry', clip: ['ckpt', 1] } },
    cn: { class_type: 'ControlNetLoader', inputs: { control_net_name: cn } },
    img: { class_type: 'EmptyImage', inputs: { width: 40, height: 56, batch_size: 1, color: 0x3366cc } },
    apply: {
      class_type: 'ControlNetApplyAdvanced',
      inputs: {
        positive: ['pos', 0],
        negative: ['neg', 0],
        control_net: ['cn', 0],
        image: ['img', 0],
        strength: 0.9,
        start_percent: 0,
        end_percent: 1,
      },
    },
    lat: { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
    ks: {
      class_type: 'KSampler',
      inputs: {
        model: ['ckpt', 0],
        positive: ['apply', 0],
        negative: ['apply', 1],
        latent_image: ['lat', 0],
        seed: 3,
        steps: 2,
        cfg: 2,
        sampler_name: 'euler',
        scheduler: 'normal',
        denoise: 1,
      },
    },
    save: { class_type: 'CaptureLATENT', inputs: { value: ['ks', 0] } },
    ...extra,
  });

  test('a file that is no ControlNet is a 400 naming ControlNetLoader and control_net_name', async () => {
    const p = graph('sd1_tiny.safetensors', 'not_a_controlnet.safetensors');
    await assert.rejects(h.run(p as never), (e: Error) => {
      assert.match(e.message, /prompt invalid/);
      assert.match(e.message, /"class_type":"ControlNetLoader"/);
      assert.match(e.message, /control_net_name: .*not a ControlNet in a known layout/);
      return true;
    });
    assert.equal(h.captured.size, 0, 'nothing ran');
  });

  test('an SDXL ControlNet on an SD1 model is a 400 naming KSampler and positive, before anything runs', async () => {
    await assert.rejects(h.run(graph('sd1_tiny.safetensors', 'sdxl_cn.safetensors') as never), (e: Error) => {
      assert.match(e.message, /prompt invalid/);
      assert.match(e.message, /"class_type":"KSampler"/);
      assert.match(
        e.message,
        /positive: the ControlNet sdxl_cn\.safetensors is an SDXL ControlNet and cannot control this SD1 model/,
      );
      return true;
    });
    // through a ModelSamplingDiscrete (MODEL passes its facts on) and a ConditioningSetArea (so does CONDITIONING)
    const p = graph('sd1_tiny.safetensors', 'sdxl_cn.safetensors', {
      msd: { class_type: 'ModelSamplingDiscrete', inputs: { model: ['ckpt', 0], sampling: 'eps', zsnr: false } },
      area: {
        class_type: 'ConditioningSetArea',
        inputs: { conditioning: ['apply', 1], width: 64, height: 64, x: 0, y: 0, strength: 1 },
      },
    });
    p.ks.inputs = { ...p.ks.inputs, model: ['msd', 0], positive: ['pos', 0], negative: ['area', 0] } as never;
    await assert.rejects(h.run(p as never), /negative: the ControlNet sdxl_cn\.safetensors is an SDXL ControlNet/);
    assert.equal(h.captured.size, 0, 'nothing ran');
  });

  test('where validation cannot follow the links, the sampler refuses before its first step', async () => {
    const p = graph('sd1_tiny.safetensors', 'sdxl_cn.safetensors', {
      // validation follows ConditioningCombine's first input (an SD1 ControlNet), not the second (the SDXL one)
      cn1: { class_type: 'ControlNetLoader', inputs: { control_net_name: 'sd1_cn.safetensors' } },
      apply1: {
        class_type: 'ControlNetApply',
        inputs: { conditioning: ['pos', 0], control_net: ['cn1', 0], image: ['img', 0], strength: 1 },
      },
      comb: {
        class_type: 'ConditioningCombine',
        inputs: { conditioning_1: ['apply1', 0], conditioning_2: ['apply', 0] },
      },
    });
    p.ks.inputs = { ...p.ks.inputs, positive: ['comb', 0], negative: ['neg', 0] } as never;
    const r = await h.run(p as never, { allowErrors: true });
    const err = r.events.find((e) => e.type === 'execution_error');
    assert.ok(err, 'an execution error');
    const d = err.data as { node_type: string; exception_message: string };
    assert.equal(d.node_type, 'KSampler');
    assert.match(d.exception_message, /sdxl_cn\.safetensors is an SDXL ControlNet and cannot control this SD1 model/);
    assert.ok(!r.events.some((e) => e.type === 'progress'), 'no sampling step ran');
  });

  test('ControlNetApply (old) gives the negative side its ControlNet; Advanced and own ControlNets do not', () => {
    const ctx = { shape: [1, 77, 4], data: new Float32Array(77 * 4) };
    const applied = { strength: 1 } as ControlApplied;
    const pos: Conditioning = [{ context: ctx, pooled: null, control: [applied], controlApplyToUncond: true }];
    const neg: Conditioning = [
      { context: ctx, pooled: null },
      { context: ctx, pooled: null, area: { unit: 'cells', h: 1, w: 1, y: 0, x: 0 } },
    ];
    const out = controlToUncond(pos, neg);
    assert.deepEqual(out[0].control, [applied]);
    assert.equal(out[1].control, undefined, 'an entry with an area keeps none');
    assert.equal(controlToUncond([{ ...pos[0], controlApplyToUncond: false }], neg), neg);
    const own: Conditioning = [{ context: ctx, pooled: null, control: [{ strength: 0.5 } as ControlApplied] }];
    assert.equal(controlToUncond(pos, own), own);
  });

  test('ControlNet nodes sample: plain vs diff ControlNet vs none give different latents', async () => {
    const latent = async (p: Record<string, unknown>) => {
      await h.run(p as never);
      return (h.captured.get('save') as { samples: { data: Float32Array } }).samples.data.slice();
    };
    const diffGraph = graph('sd1_tiny.safetensors', 'sd1_diff.safetensors', {
      cn: {
        class_type: 'DiffControlNetLoader',
        inputs: { model: ['ckpt', 0], control_net_name: 'sd1_diff.safetensors' },
      },
    });
    const plain = await latent(graph('sd1_tiny.safetensors', 'sd1_cn.safetensors'));
    const diff = await latent(diffGraph);
    const none = await latent(
      graph('sd1_tiny.safetensors', 'sd1_cn.safetensors', {
        ks: { ...graph('', '').ks, inputs: { ...graph('', '').ks.inputs, positive: ['pos', 0], negative: ['neg', 0] } },
      }),
    );
    const differ = (a: Float32Array, b: Float32Array) => a.some((v, i) => Math.abs(v - b[i]) > 1e-3);
    assert.ok(differ(plain, none) && differ(diff, none) && differ(plain, diff));
  });

  test('TCDSampler runs ControlNets too; one out of its start/end range leaves the result bit-identical', async () => {
    const tcd = (control: Record<string, unknown> | null) => {
      const p = graph('sd1_tiny.safetensors', 'sd1_cn.safetensors') as Record<string, any>;
      if (control) Object.assign(p.apply.inputs, control);
      p.tcd = {
        class_type: 'TCDSampler',
        inputs: {
          model: ['ckpt', 0],
          positive: control ? ['apply', 0] : ['pos', 0],
          negative: control ? ['apply', 1] : ['neg', 0],
          latent_image: ['lat', 0],
          seed: 4,
          steps: 3,
          cfg: 2,
          eta: 0.3,
          denoise: 1,
          original_inference_steps: 50,
        },
      };
      delete p.ks;
      p.save = { class_type: 'CaptureLATENT', inputs: { value: ['tcd', 0] } };
      return p;
    };
    const latent = async (p: Record<string, unknown>) => {
      await h.run(p as never);
      return (h.captured.get('save') as { samples: { data: Float32Array } }).samples.data.slice();
    };
    const plain = await latent(tcd(null));
    const controlled = await latent(tcd({ start_percent: 0, end_percent: 1 }));
    const outOfRange = await latent(tcd({ start_percent: 0.999, end_percent: 1 }));
    assert.ok(
      controlled.some((v, i) => Math.abs(v - plain[i]) > 1e-3),
      'the ControlNet applies',
    );
    assert.ok(
      outOfRange.every((v, i) => v === plain[i]),
      'out of range: exactly the plain run',
    );
  });
});
