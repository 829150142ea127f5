/**
 * LoRA end to end: through the Engine (main thread -> worker) the SDXL kohya LoRA reproduces lora/unet_out@1.0 and
 * @0.5 with no graph built for the strength change; through the real nodes (CheckpointLoaderSimple -> LoraLoader ->
 * CLIPTextEncode) the SD1 LoRA at clip 0.6 gives lora/text_last, the node's UI output and log report keys that load
 * nothing, and a LoRA of another family fails at the loader with a message naming both families.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../../../server/engine/engine.js';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import { writeSafetensors, type TensorEntry } from '../../../server/engine/io/safetensors-writer.js';
import type { CondEntry } from '../../../nodes/types.js';
import { FIXTURES, assertComponentClose, fixtureJson, fixturePath, fixtureSkip } from '../../helpers/fixtures.js';
import { makeHarness, type Harness } from '../../helpers/run-prompt.js';

const skip = fixtureSkip();

describe('LoRA through the Engine', { skip }, () => {
  let engine: Engine, cacheDir: string;
  before(() => {
    cacheDir = mkdtempSync(join(tmpdir(), 'tcd-lora-e-'));
    engine = new Engine({ ep: 'cpu', cacheDir, log: () => {} });
  });
  after(async () => {
    await engine.close();
    rmSync(cacheDir, { recursive: true, force: true });
  });

  test('engine.unet with the SDXL kohya LoRA at 1.0 then 0.5 equals the fixtures; the strength change builds nothing', async () => {
    const cases = SafetensorsFile.open(fixturePath('sdxl_tiny_cases.safetensors'));
    const x = cases.readTensor('unet/x'),
      t = cases.readFloat32('unet/t'),
      context = cases.readTensor('unet/context');
    const extra = { textEmbeds: cases.readTensor('unet/text_embeds'), timeIds: cases.readTensor('unet/time_ids') };
    const model = (strength: number) => ({
      checkpoint: fixturePath('sdxl_tiny.safetensors'),
      loras: [{ path: fixturePath('sdxl_tiny_lora_kohya.safetensors'), strength }],
    });
    assertComponentClose(
      await engine.unet(model(1), x, t, context, extra),
      cases.readTensor('lora/unet_out@1.0'),
      'engine kohya 1.0',
    );
    const built = (await engine.stats()).graphsBuilt;
    assertComponentClose(
      await engine.unet(model(0.5), x, t, context, extra),
      cases.readTensor('lora/unet_out@0.5'),
      'engine kohya 0.5',
    );
    assert.equal((await engine.stats()).graphsBuilt, built, 'a strength change builds no graph');
    cases.close();
  });
});

describe('LoRA loader nodes', { skip }, () => {
  let h: Harness;
  before(async () => {
    h = makeHarness();
    // checkpoints/ is the fixtures folder (a linked folder, as the harness does); loras/ holds files written here
    symlinkSync(FIXTURES, join(h.dirs.models, 'checkpoints'));
    const lo = join(h.dirs.models, 'loras');
    mkdirSync(lo, { recursive: true });
    const rewrite = async (from: string, to: string, extra: TensorEntry[] = []) => {
      const src = SafetensorsFile.open(fixturePath(from));
      const entries: TensorEntry[] = src
        .keys()
        .map((name) => ({ name, dtype: 'F32', shape: src.shape(name), data: () => src.readFloat32(name) }));
      await writeSafetensors(join(lo, to), [...entries, ...extra]);
      src.close();
    };
    // the SD1 fixture LoRA plus two keys that patch nothing; the SDXL PEFT LoRA as is
    await rewrite('sd1_tiny_lora_kohya.safetensors', 'with_stray.safetensors', [
      {
        name: 'lora_unet_no_such_layer.lora_down.weight',
        dtype: 'F32',
        shape: [4, 8],
        data: () => new Float32Array(32),
      },
      { name: 'lora_unet_no_such_layer.lora_up.weight', dtype: 'F32', shape: [8, 4], data: () => new Float32Array(32) },
    ]);
    await rewrite('sdxl_tiny_lora_peft.safetensors', 'sdxl_peft.safetensors');
  });
  after(async () => {
    await h.close();
  });

  const prompt = (lora: string, sm: number, sc: number) => ({
    ckpt: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'sd1_tiny.safetensors' } },
    lora: {
      class_type: 'LoraLoader',
      inputs: { model: ['ckpt', 0], clip: ['ckpt', 1], lora_name: lora, strength_model: sm, strength_clip: sc },
    },
    pos: {
      class_type: 'CLIPTextEncode',
      inputs: { text: fixtureJson('manifest.json').cases.sd1_tiny.prompts[0], clip: ['lora', 1] },
    },
    out: { class_type: 'CaptureCONDITIONING', inputs: { value: ['pos', 0] } },
  });

  test('LoraLoader at clip 0.6 gives lora/text_last; unmatched keys are counted in the UI output', async () => {
    const r = await h.run(prompt('with_stray.safetensors', 0.8, 0.6));
    const cond = h.captured.get('out') as CondEntry[];
    const cases = SafetensorsFile.open(fixturePath('sd1_tiny_cases.safetensors'));
    const ref = cases.readTensor('lora/text_last');
    cases.close();
    assertComponentClose(
      cond[0].context,
      { shape: [1, 77, ref.shape[2]], data: ref.data.slice(0, 77 * ref.shape[2]) },
      'text through LoraLoader',
    );
    const executed = r.events.find((e) => e.type === 'executed' && (e.data as { node: string }).node === 'lora');
    const text = (executed?.data as { output: { text: string[] } }).output.text.join('\n');
    assert.match(
      text,
      /277 UNet modules, 18 text-encoder modules, 2 keys not loaded \(lora_unet_no_such_layer\.lora_down\.weight/,
    );
  });

  test('an SDXL LoRA on an SD1 checkpoint fails at the loader, naming the families', async () => {
    const r = await h.run(prompt('sdxl_peft.safetensors', 1, 1), { allowErrors: true });
    const err = r.events.find((e) => e.type === 'execution_error');
    assert.ok(err, 'execution_error');
    const data = err.data as { node_id: string; exception_message: string };
    assert.equal(data.node_id, 'lora');
    assert.match(data.exception_message, /does not fit this SD1 checkpoint: .*another model family/);
  });
});
