/**
 * LoRA through the worker's own code path (SessionStore + runComponentCall, in this thread so the checkpoint's reads
 * can be counted): fixture outputs for SD1 (kohya, model 0.8 / clip 0.6) and SDXL (kohya, diffusers, PEFT at 1.0
 * and 0.5); a strength change or a format swap reads nothing from the checkpoint and builds no graph; LoRA-free
 * calls stay exact after LoRA calls; strength 0 is the base model.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import { loraStats } from '../../../server/engine/lora/session.js';
import { runComponentCall } from '../../../server/engine/runtime/components.js';
import { SessionStore } from '../../../server/engine/runtime/session-store.js';
import type { LoraRef } from '../../../server/engine/types.js';
import type { Tensor } from '../../../server/engine/tensor.js';
import { assertComponentClose, fixtureJson, fixturePath, fixtureSkip, maxAbsDiff } from '../../helpers/fixtures.js';

const skip = fixtureSkip();

/** Counts positioned reads of the checkpoint's tensors (readBytes underlies readFloat32/readTensor). */
function countReads(file: SafetensorsFile): { n: number } {
  const counter = { n: 0 };
  const orig = file.readBytes.bind(file);
  file.readBytes = (name: string) => {
    counter.n++;
    return orig(name);
  };
  return counter;
}

describe('LoRA sessions (worker code path)', { skip }, () => {
  let store: SessionStore, cacheDir: string;
  before(async () => {
    cacheDir = mkdtempSync(join(tmpdir(), 'tcd-lora-'));
    store = await SessionStore.start(
      { ep: 'cpu', ramBudget: 4 * 1024 ** 3, vramBudget: Infinity, cacheDir, externalDataMinBytes: 1024 ** 3 },
      () => {},
    );
  });
  after(async () => {
    await store.free();
    rmSync(cacheDir, { recursive: true, force: true });
  });

  test('sd1_tiny + sd1_tiny_lora_kohya: unet at 0.8 = lora/unet_out, text at 0.6 = lora/text_last', async () => {
    const ckpt = fixturePath('sd1_tiny.safetensors'),
      lora = fixturePath('sd1_tiny_lora_kohya.safetensors');
    const cases = SafetensorsFile.open(fixturePath('sd1_tiny_cases.safetensors'));
    const x = cases.readTensor('unet/x'),
      t = cases.readFloat32('unet/t'),
      context = cases.readTensor('unet/context');
    const eps = (await runComponentCall(store, {
      op: 'unet',
      model: { checkpoint: ckpt, loras: [{ path: lora, strength: 0.8 }] },
      x,
      t,
      context,
    })) as Tensor;
    assertComponentClose(eps, cases.readTensor('lora/unet_out'), 'sd1 unet lora 0.8');
    const prompts: string[] = fixtureJson('manifest.json').cases.sd1_tiny.prompts;
    const ref = cases.readTensor('lora/text_last');
    const n = ref.data.length / ref.shape[0];
    for (let i = 0; i < prompts.length; i++) {
      const { context: c } = (await runComponentCall(store, {
        op: 'encodeText',
        clip: { checkpoint: ckpt, loras: [{ path: lora, strength: 0.6 }], clipSkip: -1 },
        text: prompts[i],
      })) as { context: Tensor };
      assertComponentClose(
        c,
        { shape: [1, 77, ref.shape[2]], data: ref.data.slice(i * n, (i + 1) * n) },
        `sd1 text lora 0.6, prompt ${i}`,
      );
    }
    // the LoRA-free model after LoRA runs: unchanged
    const base = (await runComponentCall(store, {
      op: 'unet',
      model: { checkpoint: ckpt, loras: [] },
      x,
      t,
      context,
    })) as Tensor;
    assertComponentClose(base, cases.readTensor('unet/out'), 'sd1 unet without LoRA after LoRA runs');
    cases.close();
  });

  test('sdxl_tiny: kohya/diffusers/PEFT at 1.0 and 0.5 match; strength changes and swaps read no checkpoint bytes', async () => {
    const ckpt = fixturePath('sdxl_tiny.safetensors');
    const cases = SafetensorsFile.open(fixturePath('sdxl_tiny_cases.safetensors'));
    const x = cases.readTensor('unet/x'),
      t = cases.readFloat32('unet/t'),
      context = cases.readTensor('unet/context');
    const extra = { textEmbeds: cases.readTensor('unet/text_embeds'), timeIds: cases.readTensor('unet/time_ids') };
    const unet = (loras: LoraRef[]) =>
      runComponentCall(store, {
        op: 'unet',
        model: { checkpoint: ckpt, loras },
        x,
        t,
        context,
        extra,
      }) as Promise<Tensor>;
    const file = (fmt: string) => fixturePath(`sdxl_tiny_lora_${fmt}.safetensors`);

    assertComponentClose(await unet([]), cases.readTensor('unet/out'), 'sdxl base');
    assertComponentClose(
      await unet([{ path: file('kohya'), strength: 1 }]),
      cases.readTensor('lora/unet_out@1.0'),
      'kohya 1.0',
    );
    const reads = countReads(store.checkpoint(ckpt).file);
    const built = store.stats().graphsBuilt;
    const baseReads = loraStats.baseReads;
    for (const fmt of ['kohya', 'diffusers', 'peft']) {
      for (const s of [0.5, 1.0]) {
        const t0 = performance.now();
        const eps = await unet([{ path: file(fmt), strength: s }]);
        const ms = performance.now() - t0;
        assertComponentClose(eps, cases.readTensor(`lora/unet_out@${s.toFixed(1)}`), `${fmt} ${s}`);
        console.log(
          `# sdxl_tiny switch to ${fmt} @ ${s}: patch ${loraStats.lastPatchMs.toFixed(1)} ms (${loraStats.lastPatchedValues} weights), call ${ms.toFixed(1)} ms`,
        );
      }
    }
    assert.equal(reads.n, 0, 'no checkpoint tensor was read for strength changes and format swaps');
    assert.equal(loraStats.baseReads, baseReads, 'base weights came from the cache');
    assert.equal(store.stats().graphsBuilt, built, 'no graph was built for strength changes and swaps');
    // LoRA-free and strength-0 calls after all that: the untouched model
    assertComponentClose(await unet([]), cases.readTensor('unet/out'), 'sdxl base after LoRA runs');
    assertComponentClose(await unet([{ path: file('peft'), strength: 0 }]), cases.readTensor('unet/out'), 'strength 0');
    assert.equal(reads.n, 0, 'the base session was cached too');
    cases.close();
  });
});

describe('LoRA-ready graphs in fp16 (the GPU compute dtype), on the CPU EP', { skip }, () => {
  test("exposed fp16 weights (float32 inputs + Cast) give the plain fp16 graph's output when fed the base weights", async () => {
    const { buildTextEncoderGraph } = await import('../../../server/engine/model/clip.js');
    const { detectCheckpoint } = await import('../../../server/engine/model/detect.js');
    const { exposeWeights } = await import('../../../server/engine/lora/session.js');
    const { keyMapFor } = await import('../../../server/engine/lora/patch.js');
    const { patchableKeys } = await import('../../../server/engine/lora/key-map.js');
    const { safetensorsWeights } = await import('../../../server/engine/onnx/weights.js');
    const { serializeModel } = await import('../../../server/engine/onnx/serialize.js');
    const { createSession, runSession } = await import('../../../server/engine/onnx/session.js');
    const file = SafetensorsFile.open(fixturePath('sdxl_tiny.safetensors'));
    const config = detectCheckpoint(file);
    const enc = config.textEncoders[1];
    const opts = { dtype: 'float16' as const, hiddenFromEnd: 2, normHidden: false, last: false, pooled: true };
    const plain = await createSession(serializeModel(buildTextEncoderGraph(enc, safetensorsWeights(file), opts)));
    const patchable = new Set(patchableKeys(keyMapFor(file, config), 'text_encoder_1'));
    const g = exposeWeights(buildTextEncoderGraph(enc, safetensorsWeights(file), opts), patchable);
    const ready = await createSession(serializeModel(g));
    const exposed = ready.inputNames.filter((n) => n.endsWith(':f32'));
    assert.equal(exposed.length, patchable.size, 'every patchable weight is a float32 input');
    const ids = {
      shape: [1, 77],
      ids: Array.from({ length: 77 }, (_, i) => (i === 0 ? 49406 : i === 1 ? 320 : i === 2 ? 49407 : 0)),
    };
    const feeds = Object.fromEntries(
      exposed.map((n) => {
        const k = n.slice(0, -4);
        return [n, { shape: file.shape(k), data: file.readFloat32(k) }];
      }),
    );
    const a = await runSession(plain, { ids }),
      b = await runSession(ready, { ...feeds, ids });
    assert.ok(
      maxAbsDiff(a.hidden.data, b.hidden.data) <=
        1e-3 * Math.max(1, ...[...a.hidden.data].slice(0, 1000).map(Math.abs)),
      `hidden ${maxAbsDiff(a.hidden.data, b.hidden.data)}`,
    );
    assert.ok(maxAbsDiff(a.pooled.data, b.pooled.data) <= 1e-3, `pooled ${maxAbsDiff(a.pooled.data, b.pooled.data)}`);
    file.close();
  });
});
