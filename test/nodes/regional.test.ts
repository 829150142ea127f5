/**
 * Regional conditioning in KSampler (calc_cond_batch): entries averaged by weight, a full-latent area equals the
 * plain prompt, real areas change the result, an area outside the latent is refused before anything runs when the
 * latent's size is known then (EmptyLatentImage through size-keeping nodes) and fails when the sampler runs otherwise,
 * a mask batch that cannot line up with the latent's fails naming the sampler and its input, and
 * TCDSampler refuses regional prompts by name.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ensureDemoCheckpoint, DEMO_CHECKPOINT_NAME } from '../../server/tools/make-checkpoint.js';
import type { LatentValue } from '../../nodes/types.js';
import { makeHarness, type Harness } from '../helpers/run-prompt.js';
import { defineNode, t } from '../../nodes/define.js';
import { maxAbs, maxAbsDiff } from '../helpers/fixtures.js';

/** the regional path applies cfg on denoised samples, the plain one on eps: equal up to rounding */
const close = (a: Float32Array, b: Float32Array) => maxAbsDiff(a, b) <= 2e-5 * Math.max(1, maxAbs(b));

let h: Harness;
before(async () => {
  h = makeHarness();
  await ensureDemoCheckpoint(h.dirs.models);
});
after(async () => {
  await h.close();
});

async function sample(
  cond: Record<string, unknown>,
  positive: unknown[],
  o: { allowErrors?: boolean; latent?: [string, number] } = {},
) {
  const r = await h.run(
    {
      ckpt: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: DEMO_CHECKPOINT_NAME } },
      pos: { class_type: 'CLIPTextEncode', inputs: { text: 'a red fox', clip: ['ckpt', 1] } },
      other: { class_type: 'CLIPTextEncode', inputs: { text: 'a blue lake', clip: ['ckpt', 1] } },
      neg: { class_type: 'CLIPTextEncode', inputs: { text: 'blurry', clip: ['ckpt', 1] } },
      empty: { class_type: 'EmptyLatentImage', inputs: { width: 128, height: 64, batch_size: 1 } },
      ones: { class_type: 'EmptyImage', inputs: { width: 128, height: 64, batch_size: 1, color: 0xffffff } },
      ...cond,
      ks: {
        class_type: 'KSampler',
        inputs: {
          model: ['ckpt', 0],
          seed: 11,
          steps: 2,
          cfg: 2.5,
          sampler_name: 'euler',
          scheduler: 'normal',
          positive,
          negative: ['neg', 0],
          latent_image: o.latent ?? ['empty', 0],
          denoise: 1,
        },
      },
      out: { class_type: 'CaptureLATENT', inputs: { value: ['ks', 0] } },
    },
    o,
  );
  return { r, x: o.allowErrors ? null : (h.captured.get('out') as LatentValue).samples.data };
}

test('a prompt combined with itself and a full-latent area equal the plain prompt (up to float rounding)', async () => {
  const { x: plain } = await sample({}, ['pos', 0]);
  const { x: twice } = await sample(
    { c: { class_type: 'ConditioningCombine', inputs: { conditioning_1: ['pos', 0], conditioning_2: ['pos', 0] } } },
    ['c', 0],
  );
  assert.ok(close(twice!, plain!), `combine ${maxAbsDiff(plain!, twice!)}`);
  const { x: full } = await sample(
    {
      a: {
        class_type: 'ConditioningSetArea',
        inputs: { conditioning: ['pos', 0], width: 128, height: 64, x: 0, y: 0, strength: 1 },
      },
    },
    ['a', 0],
  );
  assert.ok(close(full!, plain!), `full area ${maxAbsDiff(plain!, full!)}`);
});

test('areas: two prompts on the two halves differ from either prompt alone', async () => {
  const { x: plain } = await sample({}, ['pos', 0]);
  const { x: composed } = await sample(
    {
      l: {
        class_type: 'ConditioningSetAreaPercentage',
        inputs: { conditioning: ['pos', 0], width: 0.5, height: 1, x: 0, y: 0, strength: 1 },
      },
      r: {
        class_type: 'ConditioningSetAreaPercentage',
        inputs: { conditioning: ['other', 0], width: 0.5, height: 1, x: 0.5, y: 0, strength: 1 },
      },
      c: { class_type: 'ConditioningCombine', inputs: { conditioning_1: ['l', 0], conditioning_2: ['r', 0] } },
    },
    ['c', 0],
  );
  assert.ok(composed!.every(Number.isFinite));
  assert.ok(maxAbsDiff(plain!, composed!) > 1e-3);
});

/** The 400 body of a prompt the harness refused at validation. */
function refusal(e: Error) {
  return JSON.parse(e.message.replace(/^prompt invalid: /, '')) as {
    node_errors: Record<string, { errors: { type: string; details: string }[]; class_type: string }>;
  };
}

const areaAt = (x: number) => ({
  a: {
    class_type: 'ConditioningSetArea',
    inputs: { conditioning: ['pos', 0], width: 64, height: 64, x, y: 0, strength: 1 },
  },
});

test('an area outside an EmptyLatentImage latent is refused before anything runs, naming the sampler and input', async () => {
  await assert.rejects(sample(areaAt(256), ['a', 0]), (e: Error) => {
    const ks = refusal(e).node_errors.ks;
    assert.equal(ks.class_type, 'KSampler');
    assert.equal(ks.errors[0].type, 'custom_validation_failed');
    assert.match(
      ks.errors[0].details,
      /^positive: the conditioning area at \(256, 0\) px lies outside the 128x64 latent/,
    );
    return true;
  });
});

test('through a size-changing node the check waits for the run: inside the upscaled latent it runs, outside it fails', async () => {
  const up = (scale: number) => ({
    up: {
      class_type: 'LatentUpscaleBy',
      inputs: { samples: ['empty', 0], upscale_method: 'nearest-exact', scale_by: scale },
    },
  });
  // x = 192 px lies outside the 128 px EmptyLatentImage but inside its 2x upscale: no false refusal
  const { x } = await sample({ ...areaAt(192), ...up(2) }, ['a', 0], { latent: ['up', 0] });
  assert.equal(x!.length, 4 * 16 * 32);
  // halved, the latent is 64 px wide: the sampler fails before its first step, naming itself and the input
  const { r } = await sample({ ...areaAt(96), ...up(0.5) }, ['a', 0], { latent: ['up', 0], allowErrors: true });
  const err = r.events.find((e) => e.type === 'execution_error')?.data as {
    node_id: string;
    exception_message: string;
  };
  assert.equal(err.node_id, 'ks');
  assert.match(err.exception_message, /positive conditioning area at \(96, 0\) px lies outside the 64x32 latent/);
});

test('an area percentage starting at 1.0 is refused before anything runs, naming the node and input', async () => {
  await assert.rejects(
    sample(
      {
        a: {
          class_type: 'ConditioningSetAreaPercentage',
          inputs: { conditioning: ['pos', 0], width: 0.5, height: 1, x: 1, y: 0, strength: 1 },
        },
      },
      ['a', 0],
    ),
    (e: Error) => {
      const body = JSON.parse(e.message.replace(/^prompt invalid: /, '')) as {
        node_errors: Record<string, { errors: { type: string; details: string }[]; class_type: string }>;
      };
      const a = body.node_errors.a;
      assert.equal(a.class_type, 'ConditioningSetAreaPercentage');
      assert.equal(a.errors[0].type, 'custom_validation_failed');
      assert.match(a.errors[0].details, /^x is 1: the area starts at the latent's edge/);
      return true;
    },
  );
});

test('a conditioning mask whose batch does not divide the latent batch fails naming the sampler and its input', async () => {
  // a batch-2 mask (test-only source): ComfyUI repeats masks batch // mask-batch times, 1 // 2 = 0 cannot apply
  const twoMasks = defineNode({
    id: 'TwoMasks',
    category: 'testing',
    inputs: [],
    outputs: [t.out('MASK')],
    execute: () => ({ outputs: [{ shape: [2, 8, 16], data: new Float32Array(256).fill(1) }] }),
  });
  const h2 = makeHarness(undefined, { nodes: [twoMasks] });
  try {
    await ensureDemoCheckpoint(h2.dirs.models);
    const r = await h2.run(
      {
        ckpt: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: DEMO_CHECKPOINT_NAME } },
        pos: { class_type: 'CLIPTextEncode', inputs: { text: 'a red fox', clip: ['ckpt', 1] } },
        m: { class_type: 'TwoMasks', inputs: {} },
        sm: {
          class_type: 'ConditioningSetMask',
          inputs: { conditioning: ['pos', 0], mask: ['m', 0], strength: 1, set_cond_area: 'default' },
        },
        empty: { class_type: 'EmptyLatentImage', inputs: { width: 128, height: 64, batch_size: 1 } },
        ks: {
          class_type: 'KSampler',
          inputs: {
            model: ['ckpt', 0],
            seed: 1,
            steps: 1,
            cfg: 1,
            sampler_name: 'euler',
            scheduler: 'normal',
            positive: ['sm', 0],
            negative: ['pos', 0],
            latent_image: ['empty', 0],
            denoise: 1,
          },
        },
        out: { class_type: 'CaptureLATENT', inputs: { value: ['ks', 0] } },
      },
      { allowErrors: true },
    );
    const err = r.events.find((e) => e.type === 'execution_error')?.data as {
      node_id: string;
      exception_message: string;
    };
    assert.equal(err.node_id, 'ks');
    assert.match(err.exception_message, /positive conditioning mask has a batch of 2, .* latent batch of 1/);
  } finally {
    await h2.close();
  }
});
