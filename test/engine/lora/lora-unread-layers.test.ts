/**
 * A LoRA that patches text-encoder weights the encoding never reads (SDXL's CLIP-L last layer: SDXL conditions on its
 * penultimate state; an SD1 last layer behind CLIPSetLastLayer -2) is applied where it can be and the rest is skipped,
 * as ComfyUI does: the prompt runs, the encoding equals the one from the LoRA without those modules, and the loader's
 * report counts the skipped keys as not loaded. (It used to fail the prompt: "LoRA patches ... which the
 * text_encoder_0 graph does not read".)
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import { writeSafetensors, type TensorEntry } from '../../../server/engine/io/safetensors-writer.js';
import type { Tensor } from '../../../server/engine/tensor.js';
import type { CondEntry } from '../../../nodes/types.js';
import { FIXTURES, fixtureJson, fixturePath, fixtureSkip, maxAbsDiff } from '../../helpers/fixtures.js';
import { makeHarness, type Harness } from '../../helpers/run-prompt.js';

const skip = fixtureSkip();

/** deterministic pseudo-random values in [-0.5, 0.5) */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}

/** kohya modules `lora_te1_text_model_encoder_layers_<L>_mlp_fc1` (rank 4) for SDXL tiny's CLIP-L */
function te1Modules(layers: number[], width: number, hidden: number): TensorEntry[] {
  return layers.flatMap((l, i) => {
    const m = `lora_te1_text_model_encoder_layers_${l}_mlp_fc1`;
    return [
      {
        name: `${m}.lora_down.weight`,
        dtype: 'F32' as const,
        shape: [4, width],
        data: () => values(4 * width, 11 + i),
      },
      {
        name: `${m}.lora_up.weight`,
        dtype: 'F32' as const,
        shape: [hidden, 4],
        data: () => values(hidden * 4, 23 + i),
      },
      { name: `${m}.alpha`, dtype: 'F32' as const, shape: [], data: () => Float32Array.of(4) },
    ];
  });
}

describe('LoRA patches of text-encoder weights the encoding does not read', { skip }, () => {
  let h: Harness;
  before(async () => {
    h = makeHarness();
    symlinkSync(FIXTURES, join(h.dirs.models, 'checkpoints'));
    const lo = join(h.dirs.models, 'loras');
    mkdirSync(lo, { recursive: true });
    const ck = SafetensorsFile.open(fixturePath('sdxl_tiny.safetensors'));
    const [hidden, width] = ck.shape('conditioner.embedders.0.transformer.encoder.layers.0.mlp.fc1.weight');
    ck.close();
    await writeSafetensors(join(lo, 'te1_0_and_last.safetensors'), te1Modules([0, 2], width, hidden));
    await writeSafetensors(join(lo, 'te1_0.safetensors'), te1Modules([0], width, hidden));
    // the SD1 fixture LoRA, and the same without its layer-2 (last layer) text-encoder modules
    const src = SafetensorsFile.open(fixturePath('sd1_tiny_lora_kohya.safetensors'));
    const entry = (name: string): TensorEntry => ({
      name,
      dtype: 'F32',
      shape: src.shape(name),
      data: () => src.readFloat32(name),
    });
    await writeSafetensors(join(lo, 'sd1_all.safetensors'), src.keys().map(entry));
    await writeSafetensors(
      join(lo, 'sd1_no_last.safetensors'),
      src
        .keys()
        .filter((k) => !k.startsWith('lora_te_encoder_layers_2_'))
        .map(entry),
    );
    src.close();
  });
  after(async () => {
    await h.close();
  });

  const prompt = (ckpt: string, lora: string, text: string, clipSkip?: number) => ({
    ckpt: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: ckpt } },
    ...(clipSkip
      ? { skip: { class_type: 'CLIPSetLastLayer', inputs: { clip: ['ckpt', 1], stop_at_clip_layer: clipSkip } } }
      : {}),
    lora: {
      class_type: 'LoraLoader',
      inputs: {
        model: ['ckpt', 0],
        clip: [clipSkip ? 'skip' : 'ckpt', clipSkip ? 0 : 1],
        lora_name: lora,
        strength_model: 1,
        strength_clip: 1,
      },
    },
    pos: { class_type: 'CLIPTextEncode', inputs: { text, clip: ['lora', 1] } },
    out: { class_type: 'CaptureCONDITIONING', inputs: { value: ['pos', 0] } },
  });
  async function encode(p: ReturnType<typeof prompt>): Promise<{ context: Tensor; report: string }> {
    const r = await h.run(p);
    const executed = r.events.find((e) => e.type === 'executed' && (e.data as { node: string }).node === 'lora');
    const report = (executed?.data as { output: { text: string[] } }).output.text.join('\n');
    return { context: (h.captured.get('out') as CondEntry[])[0].context, report };
  }

  test('SDXL: a LoRA on CLIP-L layers 0 and 2 (the last, unread) runs and equals the layer-0 LoRA', async () => {
    const text = fixtureJson('manifest.json').cases.sdxl_tiny.prompts[0];
    const both = await encode(prompt('sdxl_tiny.safetensors', 'te1_0_and_last.safetensors', text));
    const first = await encode(prompt('sdxl_tiny.safetensors', 'te1_0.safetensors', text));
    assert.equal(maxAbsDiff(both.context.data, first.context.data), 0, 'the skipped layer changes nothing');
    assert.match(
      both.report,
      /1 text-encoder modules, 3 keys not loaded \(lora_te1_text_model_encoder_layers_2_mlp_fc1\./,
    );
    assert.match(first.report, /1 text-encoder modules, 0 keys not loaded/);
  });

  test('SD1 behind CLIPSetLastLayer -2: layer-2 modules are skipped and reported; at -1 they apply', async () => {
    const text = fixtureJson('manifest.json').cases.sd1_tiny.prompts[0];
    const all = await encode(prompt('sd1_tiny.safetensors', 'sd1_all.safetensors', text, -2));
    const noLast = await encode(prompt('sd1_tiny.safetensors', 'sd1_no_last.safetensors', text, -2));
    assert.equal(maxAbsDiff(all.context.data, noLast.context.data), 0);
    // 6 modules x (down, up, alpha) of layer 2 are not loaded; layers 0 and 1 are
    assert.match(all.report, /12 text-encoder modules, 18 keys not loaded \(lora_te_encoder_layers_2_/);
    const atLast = await encode(prompt('sd1_tiny.safetensors', 'sd1_all.safetensors', text, -1));
    const noLastAtLast = await encode(prompt('sd1_tiny.safetensors', 'sd1_no_last.safetensors', text, -1));
    assert.ok(
      maxAbsDiff(atLast.context.data, noLastAtLast.context.data) > 1e-4,
      "at -1 the last layer's patches apply",
    );
    assert.match(atLast.report, /18 text-encoder modules, 0 keys not loaded/);
  });
});
