/**
 * End to end through the Engine (main thread -> worker -> ONNX Runtime CPU) on the tiny fixture checkpoints:
 * every component against the diffusers/transformers references within the README's component tolerance.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../../server/engine/engine.js';
import { SafetensorsFile } from '../../server/engine/io/safetensors.js';
import type { Tensor } from '../../server/engine/tensor.js';
import { assertComponentClose, fixtureJson, fixturePath, fixtureSkip, maxAbsDiff } from '../helpers/fixtures.js';

const skip = fixtureSkip();

/** row i of a batched tensor, as [1, ...rest] */
function row(t: Tensor, i: number): Tensor {
  const n = t.data.length / t.shape[0];
  return { shape: [1, ...t.shape.slice(1)], data: t.data.slice(i * n, (i + 1) * n) };
}

/** torch LayerNorm over the last axis, in float64 then rounded */
function layerNorm(t: Tensor, w: Float32Array, b: Float32Array, eps = 1e-5): Tensor {
  const C = t.shape[t.shape.length - 1];
  const out = new Float32Array(t.data.length);
  for (let r = 0; r < t.data.length / C; r++) {
    const x = t.data.subarray(r * C, (r + 1) * C);
    let mean = 0;
    for (const v of x) mean += v;
    mean /= C;
    let vr = 0;
    for (const v of x) vr += (v - mean) ** 2;
    vr /= C;
    for (let c = 0; c < C; c++) out[r * C + c] = ((x[c] - mean) / Math.sqrt(vr + eps)) * w[c] + b[c];
  }
  return { shape: t.shape, data: out };
}

describe('Engine on sd1_tiny', { skip }, () => {
  let engine: Engine, cases: SafetensorsFile, ckpt: string, cacheDir: string;
  const prompts: string[] = skip ? [] : fixtureJson('manifest.json').cases.sd1_tiny.prompts;
  before(() => {
    cacheDir = mkdtempSync(join(tmpdir(), 'tcd-engine-'));
    engine = new Engine({ ep: 'cpu', cacheDir, log: () => {} });
    cases = SafetensorsFile.open(fixturePath('sd1_tiny_cases.safetensors'));
    ckpt = fixturePath('sd1_tiny.safetensors');
  });
  after(async () => {
    await engine.close();
    cases.close();
    rmSync(cacheDir, { recursive: true, force: true });
  });

  test('inspect reads the family and config from the header', () => {
    const { family, config } = engine.inspect(ckpt);
    assert.equal(family, 'sd1');
    assert.equal(config.vae.scalingFactor, 0.18215);
    assert.equal(config.defaultClipSkip, -1);
  });

  test('encodeText equals text/last for every manifest prompt (clip skip -1, no pooled)', async () => {
    const ref = cases.readTensor('text/last');
    for (let i = 0; i < prompts.length; i++) {
      const { context, pooled } = await engine.encodeText({ checkpoint: ckpt, loras: [], clipSkip: -1 }, prompts[i]);
      assert.equal(pooled, null);
      assertComponentClose(context, row(ref, i), `prompt ${JSON.stringify(prompts[i])}`);
    }
  });

  test("clip skip -2 is ComfyUI's: final layer norm applied to hidden_states[-2] (text/penultimate)", async () => {
    const f = SafetensorsFile.open(ckpt);
    const p = `${engine.inspect(ckpt).config.textEncoders[0].prefix}final_layer_norm.`;
    const ref = layerNorm(
      row(cases.readTensor('text/penultimate'), 0),
      f.readFloat32(`${p}weight`),
      f.readFloat32(`${p}bias`),
    );
    f.close();
    const { context } = await engine.encodeText({ checkpoint: ckpt, loras: [], clipSkip: -2 }, prompts[0]);
    assertComponentClose(context, ref, 'clip skip -2');
  });

  test('a long prompt is encoded window by window and concatenated on the sequence axis', async () => {
    const ref = { checkpoint: ckpt, loras: [] };
    const long = await engine.encodeText(ref, Array(100).fill('cat').join(' ')); // 100 tokens: windows of 75 + 25
    assert.deepEqual(long.context.shape, [1, 154, 128]);
    const first = await engine.encodeText(ref, Array(75).fill('cat').join(' '));
    const second = await engine.encodeText(ref, Array(25).fill('cat').join(' '));
    const n = 77 * 128;
    assert.ok(maxAbsDiff(long.context.data.subarray(0, n), first.context.data) <= 1e-5);
    assert.ok(maxAbsDiff(long.context.data.subarray(n), second.context.data) <= 1e-5);
  });

  test('emphasis weights follow ComfyUI: weighted tokens move away from the empty prompt by their weight', async () => {
    const ref = { checkpoint: ckpt, loras: [] };
    const weighted = await engine.encodeText(ref, 'a (cat:1.5) hat');
    const plain = await engine.encodeText(ref, 'a cat hat'); // same token ids, all weights 1
    const empty = await engine.encodeText(ref, ''); // [BOS, EOS, EOS...] = the empty window (CLIP-L pads with EOS)
    const C = 128,
      cat = 2; // position 0 is BOS, 1 'a', 2 'cat'
    for (let j = 0; j < 77; j++) {
      for (let c = 0; c < C; c++) {
        const i = j * C + c;
        const want =
          j === cat
            ? empty.context.data[i] + 1.5 * (plain.context.data[i] - empty.context.data[i])
            : plain.context.data[i];
        assert.ok(
          Math.abs(weighted.context.data[i] - want) <= 1e-5,
          `token ${j} channel ${c}: ${weighted.context.data[i]} vs ${want}`,
        );
      }
    }
    assert.ok(maxAbsDiff(weighted.context.data, plain.context.data) > 1e-3); // the weight did something
  });

  test("unet equals unet/out; the caller's arrays stay usable", async () => {
    const x = cases.readTensor('unet/x'),
      t = cases.readFloat32('unet/t'),
      context = cases.readTensor('unet/context');
    const out = await engine.unet({ checkpoint: ckpt, loras: [] }, x, t, context);
    assertComponentClose(out, cases.readTensor('unet/out'), 'unet');
    assert.equal(x.data.length, 2 * 4 * 8 * 8); // not detached by the transfer
    assert.equal(context.data.length, 2 * 77 * 128);
  });

  test('vaeDecode equals vae/decoded (input already divided by scaling_factor); vaeEncode equals vae/encoded_mean', async () => {
    assertComponentClose(
      await engine.vaeDecode({ checkpoint: ckpt }, cases.readTensor('vae/z')),
      cases.readTensor('vae/decoded'),
      'vae decode',
    );
    assertComponentClose(
      await engine.vaeEncode({ checkpoint: ckpt }, cases.readTensor('vae/image')),
      cases.readTensor('vae/encoded_mean'),
      'vae encode',
    );
  });

  test('sessions are reused across calls and prompts', async () => {
    const s = await engine.stats();
    assert.deepEqual(s.loaded.map((k) => JSON.parse(k).component).sort(), [
      'text_encoder_0',
      'text_encoder_0',
      'unet',
      'vae_decoder',
      'vae_encoder',
    ]);
    assert.equal(s.graphsBuilt, 5); // clip skip -1 and -2 are two graphs; nothing was built twice
    assert.equal(s.evictions.length, 0);
  });
});

describe('Engine on sdxl_tiny', { skip }, () => {
  let engine: Engine, cases: SafetensorsFile, ckpt: string, cacheDir: string;
  const prompts: string[] = skip ? [] : fixtureJson('manifest.json').cases.sdxl_tiny.prompts;
  before(() => {
    cacheDir = mkdtempSync(join(tmpdir(), 'tcd-engine-'));
    engine = new Engine({ ep: 'cpu', cacheDir, log: () => {} });
    cases = SafetensorsFile.open(fixturePath('sdxl_tiny_cases.safetensors'));
    ckpt = fixturePath('sdxl_tiny.safetensors');
  });
  after(async () => {
    await engine.close();
    cases.close();
    rmSync(cacheDir, { recursive: true, force: true });
  });

  test('encodeText equals text/context and text/pooled (default clip skip -2 of both encoders)', async () => {
    assert.equal(engine.inspect(ckpt).config.defaultClipSkip, -2);
    const refContext = cases.readTensor('text/context'),
      refPooled = cases.readTensor('text/pooled');
    for (let i = 0; i < prompts.length; i++) {
      const { context, pooled } = await engine.encodeText({ checkpoint: ckpt, loras: [] }, prompts[i]);
      assertComponentClose(context, row(refContext, i), `context ${i}`);
      assert.ok(pooled);
      assertComponentClose(pooled, row(refPooled, i), `pooled ${i}`);
    }
  });

  test('long prompt: context [1, 154, 192], pooled from the first window', async () => {
    const ref = { checkpoint: ckpt, loras: [] };
    const long = await engine.encodeText(ref, Array(100).fill('cat').join(' '));
    const first = await engine.encodeText(ref, Array(75).fill('cat').join(' '));
    assert.deepEqual(long.context.shape, [1, 154, 192]);
    assert.ok(maxAbsDiff(long.pooled!.data, first.pooled!.data) <= 1e-5);
    assert.ok(maxAbsDiff(long.context.data.subarray(0, 77 * 192), first.context.data) <= 1e-5);
  });

  test('unet with text_embeds and time_ids equals unet/out', async () => {
    const out = await engine.unet(
      { checkpoint: ckpt, loras: [] },
      cases.readTensor('unet/x'),
      cases.readFloat32('unet/t'),
      cases.readTensor('unet/context'),
      { textEmbeds: cases.readTensor('unet/text_embeds'), timeIds: cases.readTensor('unet/time_ids') },
    );
    assertComponentClose(out, cases.readTensor('unet/out'), 'sdxl unet');
  });

  test('vaeDecode equals vae/decoded; vaeEncode equals vae/encoded_mean', async () => {
    assertComponentClose(
      await engine.vaeDecode({ checkpoint: ckpt }, cases.readTensor('vae/z')),
      cases.readTensor('vae/decoded'),
      'vae decode',
    );
    assertComponentClose(
      await engine.vaeEncode({ checkpoint: ckpt }, cases.readTensor('vae/image')),
      cases.readTensor('vae/encoded_mean'),
      'vae encode',
    );
  });
});
