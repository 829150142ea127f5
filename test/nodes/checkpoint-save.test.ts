/**
 * CheckpointSave on sd1_tiny after a LoRA, a merge and another LoRA (model) and a CLIP LoRA: the file is written
 * under output/checkpoints with ComfyUI's counter names and metadata, has exactly the input checkpoint's keys and
 * dtypes, merges in node order (a key no LoRA touches is w_a * r + w_b * (1 - r)), and reloaded with
 * CheckpointLoaderSimple its UNet and text encoder compute what the in-memory patched model computes (up to the fp16
 * rounding of the stored weights). A CLIP of another family fails naming the input; nothing is left behind.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeHarness, type Harness } from '../helpers/run-prompt.js';
import { fixtureSkip, FIXTURES, maxAbs, maxAbsDiff } from '../helpers/fixtures.js';
import { SafetensorsFile } from '../../server/engine/io/safetensors.js';
import { writeSafetensors } from '../../server/engine/io/safetensors-writer.js';
import type { ClipValue, ModelValue } from '../../nodes/types.js';
import { encodeValues } from '../../server/engine/io/safetensors-writer.js';
import { patchedWeights } from '../../server/engine/model/merge.js';
import { ensureDemoCheckpoint, DEMO_CHECKPOINT_NAME } from '../../server/tools/make-checkpoint.js';

const skip = fixtureSkip();
let h: Harness;
const models = { get: (id: string) => h.captured.get(id) as ModelValue | undefined };
const clips = { get: (id: string) => h.captured.get(id) as ClipValue | undefined };
const KEY_NO_LORA = 'model.diffusion_model.time_embed.0.weight';

before(async () => {
  if (skip) return;
  h = makeHarness();
  await ensureDemoCheckpoint(h.dirs.models);
  const ck = join(h.dirs.models, 'checkpoints', 'fixtures');
  mkdirSync(ck, { recursive: true });
  mkdirSync(join(h.dirs.models, 'loras'), { recursive: true });
  symlinkSync(join(FIXTURES, 'sd1_tiny.safetensors'), join(ck, 'sd1_tiny.safetensors'));
  symlinkSync(join(FIXTURES, 'sd1_tiny_lora_kohya.safetensors'), join(h.dirs.models, 'loras', 'sd1_kohya.safetensors'));
  // a second SD1 checkpoint to merge with: sd1_tiny with every UNet weight scaled by 1.5
  const src = SafetensorsFile.open(join(FIXTURES, 'sd1_tiny.safetensors'));
  await writeSafetensors(
    join(ck, 'sd1_scaled.safetensors'),
    src.keys().map((k) => ({
      name: k,
      dtype: 'F32' as const,
      shape: src.shape(k),
      data: () => {
        const v = src.readFloat32(k);
        return k.startsWith('model.diffusion_model.') ? v.map((x) => x * 1.5) : v;
      },
    })),
  );
  src.close();
});
after(async () => {
  await h?.close();
});

const lora = 'sd1_kohya.safetensors';
const patchedGraph = (save: Record<string, unknown>) => ({
  a: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'fixtures/sd1_tiny.safetensors' } },
  b: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'fixtures/sd1_scaled.safetensors' } },
  l1: { class_type: 'LoraLoaderModelOnly', inputs: { model: ['a', 0], lora_name: lora, strength_model: 0.5 } },
  m: { class_type: 'ModelMergeSimple', inputs: { model1: ['l1', 0], model2: ['b', 0], ratio: 0.6 } },
  l2: {
    class_type: 'LoraLoader',
    inputs: { model: ['m', 0], clip: ['a', 1], lora_name: lora, strength_model: 0.8, strength_clip: 0.7 },
  },
  cap: { class_type: 'CaptureMODEL', inputs: { value: ['l2', 0] } },
  ...save,
});

function header(path: string) {
  const f = SafetensorsFile.open(path);
  const keys = new Map([...f.tensors.values()].map((i) => [i.name, `${i.dtype}[${i.shape}]`]));
  return { f, keys };
}

test(
  'CheckpointSave writes the merged + LoRA model with the input key set and ComfyUI metadata',
  { skip },
  async () => {
    const save = {
      s: {
        class_type: 'CheckpointSave',
        inputs: { model: ['l2', 0], clip: ['l2', 1], vae: ['a', 2], filename_prefix: 'checkpoints/merged' },
      },
    };
    const workflow = { nodes: [], links: [], version: 0.4 };
    await h.run(patchedGraph(save), { extraData: { extra_pnginfo: { workflow } } });
    const dir = join(h.dirs.output, 'checkpoints');
    assert.deepEqual(readdirSync(dir), ['merged_00001_.safetensors'], 'one file, no temp file left');
    const saved = header(join(dir, 'merged_00001_.safetensors'));
    const input = header(join(FIXTURES, 'sd1_tiny.safetensors'));
    assert.deepEqual([...saved.keys.entries()].sort(), [...input.keys.entries()].sort(), 'same keys, dtypes, shapes');
    assert.equal(saved.f.metadata['modelspec.predict_key'], 'epsilon');
    assert.equal(saved.f.metadata['modelspec.architecture'], undefined, 'modelspec only for SDXL, as ComfyUI');
    assert.equal(JSON.parse(saved.f.metadata.prompt).s.class_type, 'CheckpointSave');
    assert.deepEqual(JSON.parse(saved.f.metadata.workflow), workflow);

    // a key no LoRA touches: w_a * 0.6 + (1.5 w_a) * 0.4, stored as fp16
    const wa = input.f.readFloat32(KEY_NO_LORA);
    const got = saved.f.readFloat32(KEY_NO_LORA);
    const f = Math.fround;
    let worst = 0;
    for (let i = 0; i < wa.length; i++) {
      const want = f(f(wa[i] * 0.6) + f(f(wa[i] * 1.5) * f(1 - 0.6)));
      worst = Math.max(worst, Math.abs(got[i] - want) / Math.max(Math.abs(want), 1e-3));
    }
    assert.ok(worst <= 2 ** -11, `merged key within fp16 rounding: ${worst}`);
    // the VAE is the input's, byte for byte
    const vk = 'first_stage_model.decoder.conv_in.weight';
    assert.deepEqual(saved.f.readBytes(vk), input.f.readBytes(vk));
    saved.f.close();
    input.f.close();

    // the counter follows the highest `merged_NNNNN` of any extension, as ComfyUI's get_save_image_path
    writeFileSync(join(dir, 'merged_00007_.png'), '');
    const changed = patchedGraph(save);
    changed.m.inputs.ratio = 0.5;
    delete (changed as Partial<typeof changed>).cap; // CaptureMODEL keeps the ratio-0.6 model for the next test
    await h.run(changed);
    assert.ok(existsSync(join(dir, 'merged_00008_.safetensors')));
  },
);

test('the saved checkpoint, reloaded, computes what the in-memory patched model computes', { skip }, async () => {
  // the saved file lives in output/checkpoints: a link makes it a checkpoint to load
  const ck = join(h.dirs.models, 'checkpoints', 'merged_00001_.safetensors');
  if (!existsSync(ck)) symlinkSync(join(h.dirs.output, 'checkpoints', 'merged_00001_.safetensors'), ck);
  await h.run({
    ...patchedGraph({}),
    r: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'merged_00001_.safetensors' } },
    capr: { class_type: 'CaptureMODEL', inputs: { value: ['r', 0] } },
    capc: { class_type: 'CaptureCLIP', inputs: { value: ['l2', 1] } },
    capa: { class_type: 'CaptureMODEL', inputs: { value: ['a', 0] } },
  });
  const engine = h.executor.services.engine();
  const inMemory = models.get('cap')!.ref,
    reloaded = models.get('capr')!.ref,
    plain = models.get('capa')!.ref;
  assert.equal(inMemory.merges?.length, 1);
  assert.equal(inMemory.loras.length, 2);
  const x = { shape: [1, 4, 8, 8], data: Float32Array.from({ length: 256 }, (_, i) => Math.sin(i * 0.37)) };
  const context = { shape: [1, 77, 128], data: Float32Array.from({ length: 77 * 128 }, (_, i) => Math.cos(i * 0.11)) };
  const eps = async (ref: typeof plain) =>
    (await engine.unet(ref, x, Float32Array.of(500), context)).data as Float32Array;
  const [a, b, p] = [await eps(inMemory), await eps(reloaded), await eps(plain)];
  const diff = maxAbsDiff(a, b),
    far = maxAbsDiff(a, p);
  assert.ok(far > 0.05 * maxAbs(a), `the patches change the model (${far})`);
  // the file stores fp16 like its input: written as F32 the two agree bit for bit; fp16 weights move eps by ~1%
  assert.ok(diff <= 2e-2 * Math.max(1, maxAbs(a)) && diff * 50 < far, `saved vs in-memory ${diff} (patches ${far})`);

  // weight by weight: every stored UNet and text-encoder tensor is the engine's patched weight rounded to fp16
  const file = SafetensorsFile.open(join(FIXTURES, 'sd1_tiny.safetensors'));
  const other = SafetensorsFile.open(inMemory.merges![0].path);
  const saved = SafetensorsFile.open(ck);
  const config = engine.inspect(ck).config;
  const merges = inMemory.merges!.map((ref) => ({ ref, file: other }));
  const unet = patchedWeights(file, config, 'unet', inMemory.loras, merges);
  const clipRef = clips.get('capc')!.ref;
  assert.equal(clipRef.loras.length, 1);
  const te = patchedWeights(file, config, 'text_encoder_0', clipRef.loras, []);
  let checked = 0,
    changedKeys = 0;
  for (const k of file.keys()) {
    const w = k.startsWith('model.diffusion_model.') ? unet : k.startsWith('cond_stage_model.') ? te : null;
    if (!w) continue;
    const want = encodeValues(w.read(k), 'F16');
    if (!Buffer.from(want).equals(saved.readBytes(k))) assert.fail(`${k} is not the patched weight in fp16`);
    if (!saved.readBytes(k).equals(file.readBytes(k))) changedKeys++;
    checked++;
  }
  assert.ok(checked > 500 && changedKeys > 300, `${checked} keys checked, ${changedKeys} changed`);
  [file, other, saved].forEach((f) => f.close());
});

test('CheckpointSave refuses a CLIP of another family, naming the input, and writes nothing', { skip }, async () => {
  const before = existsSync(join(h.dirs.output, 'bad')) ? readdirSync(join(h.dirs.output, 'bad')) : [];
  const r = await h.run(
    {
      a: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'fixtures/sd1_tiny.safetensors' } },
      x: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: DEMO_CHECKPOINT_NAME } },
      s: {
        class_type: 'CheckpointSave',
        inputs: { model: ['a', 0], clip: ['x', 1], vae: ['a', 2], filename_prefix: 'bad/ComfyUI' },
      },
    },
    { allowErrors: true },
  );
  const err = r.events.find((e) => e.type === 'execution_error')?.data as {
    node_id: string;
    exception_message: string;
  };
  assert.equal(err.node_id, 's');
  assert.match(err.exception_message, /^clip: a SDXL CLIP cannot go in a SD1 checkpoint/);
  const after = existsSync(join(h.dirs.output, 'bad')) ? readdirSync(join(h.dirs.output, 'bad')) : [];
  assert.deepEqual(after, before);
});

test("an SDXL checkpoint saves with the sgm keys and ComfyUI's SDXL modelspec metadata", async () => {
  const hx = makeHarness();
  try {
    await ensureDemoCheckpoint(hx.dirs.models);
    await hx.run({
      a: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: DEMO_CHECKPOINT_NAME } },
      s: {
        class_type: 'CheckpointSave',
        inputs: { model: ['a', 0], clip: ['a', 1], vae: ['a', 2], filename_prefix: 'checkpoints/xl' },
      },
    });
    const saved = header(join(hx.dirs.output, 'checkpoints', 'xl_00001_.safetensors'));
    const input = header(join(hx.dirs.models, 'checkpoints', DEMO_CHECKPOINT_NAME));
    assert.deepEqual([...saved.keys.entries()].sort(), [...input.keys.entries()].sort());
    assert.equal(saved.f.metadata['modelspec.architecture'], 'stable-diffusion-xl-v1-base');
    assert.equal(saved.f.metadata['modelspec.implementation'], 'sgm');
    assert.equal(saved.f.metadata['modelspec.title'], 'xl 1');
    // nothing patched: every tensor is the input's, byte for byte
    for (const k of ['conditioner.embedders.1.model.text_projection', 'model.diffusion_model.out.2.weight'])
      assert.ok(saved.f.readBytes(k).equals(input.f.readBytes(k)), k);
    saved.f.close();
    input.f.close();
  } finally {
    await hx.close();
  }
});
