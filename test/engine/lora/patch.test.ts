/**
 * LoRA weights without running networks: the three SDXL fixture formats give bit-identical patched weights; the patch
 * equals an independent float64 evaluation of W + s*(alpha/rank)*(up@down); stacking two LoRAs (different ranks per
 * layer, alpha present and absent, linear and 3x3-conv/1x1-up layers, a negative strength) equals one LoRA whose
 * delta is their sum; OpenCLIP's fused in_proj gets q/k/v as row slices; unmatched keys are reported; a LoRA of
 * another family is an error naming it; real SD1.5/SDXL diffusers and kohya names map to the right LDM keys.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectCheckpoint } from '../../../server/engine/model/detect.js';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import { type TensorEntry, writeSafetensors } from '../../../server/engine/io/safetensors-writer.js';
import { loadLora } from '../../../server/engine/lora/format.js';
import { loraKeyMap } from '../../../server/engine/lora/key-map.js';
import { LoraMismatchError } from '../../../server/engine/lora/match.js';
import { matchLoraFile } from '../../../server/engine/lora/patch.js';
import { weightSourceFor } from '../../../server/engine/model/weights.js';
import { fixturePath, fixtureSkip, maxAbs, maxAbsDiff } from '../../helpers/fixtures.js';
import { realArchitecture, realSource } from '../real-architectures.js';

const skip = fixtureSkip();

/** deterministic pseudo-random values in [-0.5, 0.5) */
function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  });
}
const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

interface Mod {
  name: string;
  down: number[];
  up: number[];
  downData: Float32Array;
  upData: Float32Array;
  alpha?: number;
}
function mod(name: string, down: number[], up: number[], seed: number, alpha?: number): Mod {
  return { name, down, up, downData: values(numel(down), seed), upData: values(numel(up), seed + 1), alpha };
}
async function writeLora(path: string, mods: Mod[], extra: TensorEntry[] = []): Promise<string> {
  const entries: TensorEntry[] = [...extra];
  for (const m of mods) {
    entries.push({ name: `${m.name}.lora_down.weight`, dtype: 'F32', shape: m.down, data: () => m.downData });
    entries.push({ name: `${m.name}.lora_up.weight`, dtype: 'F32', shape: m.up, data: () => m.upData });
    if (m.alpha !== undefined)
      entries.push({ name: `${m.name}.alpha`, dtype: 'F32', shape: [], data: () => Float32Array.of(m.alpha!) });
  }
  await writeSafetensors(path, entries);
  return path;
}

/** independent float64 reference: W + factor * up.flatten(1) @ down.flatten(1) on rows [r0, r0 + up rows) */
function reference(
  base: Float32Array,
  shape: number[],
  terms: { m: Mod; factor: number; r0?: number }[],
): Float64Array {
  const out = Float64Array.from(base);
  const cols = numel(shape) / shape[0];
  for (const { m, factor, r0 = 0 } of terms) {
    const rank = m.down[0];
    for (let o = 0; o < m.up[0]; o++)
      for (let c = 0; c < cols; c++) {
        let s = 0;
        for (let k = 0; k < rank; k++) s += m.upData[o * rank + k] * m.downData[k * cols + c];
        out[(r0 + o) * cols + c] += factor * s;
      }
  }
  return out;
}

describe('LoRA weights', { skip }, () => {
  let dir: string, sdxl: SafetensorsFile, sd1: SafetensorsFile;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tcd-lora-w-'));
    sdxl = SafetensorsFile.open(fixturePath('sdxl_tiny.safetensors'));
    sd1 = SafetensorsFile.open(fixturePath('sd1_tiny.safetensors'));
  });
  after(() => {
    sdxl.close();
    sd1.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the three SDXL fixture formats give identical patched weights (1.0 and 0.5)', () => {
    for (const s of [1, 0.5]) {
      const srcs = ['kohya', 'diffusers', 'peft'].map((f) =>
        weightSourceFor(sdxl, 'unet', [{ path: fixturePath(`sdxl_tiny_lora_${f}.safetensors`), strength: s }]),
      );
      assert.equal(srcs[0].patchedKeys.length, 257);
      for (const src of srcs.slice(1)) assert.deepEqual([...src.patchedKeys].sort(), [...srcs[0].patchedKeys].sort());
      for (const key of srcs[0].patchedKeys) {
        const k = srcs[0].read(key);
        assert.ok(maxAbsDiff(k, sdxl.readFloat32(key)) > 0, `${key} is patched`);
        for (const src of srcs.slice(1)) assert.equal(maxAbsDiff(src.read(key), k), 0, `${key} @ ${s}`);
      }
    }
  });

  test('stacking: A(0.8) + B(-0.7) equals one LoRA whose delta is their sum; ranks, alpha and conv shapes vary', async () => {
    const P = 'lora_unet_';
    // linear [64, 64] (attn1 to_q), conv 3x3 [64, 64, 3, 3] (resnet conv1) with a 1x1 up, conv shortcut 1x1 [128, 64, 1, 1]
    const q = 'input_blocks_4_1_transformer_blocks_0_attn1_to_q',
      conv = 'input_blocks_1_0_in_layers_2',
      sc = 'input_blocks_7_0_skip_connection';
    const A = [mod(P + q, [2, 64], [64, 2], 1, 1.5), mod(P + conv, [3, 64, 3, 3], [64, 3, 1, 1], 3, 6)];
    const B = [mod(P + q, [5, 64], [64, 5], 5), mod(P + sc, [1, 64, 1, 1], [128, 1, 1, 1], 7, 4)];
    const U = 'model.diffusion_model.';
    const KEY: Record<string, string> = {
      [P + q]: `${U}input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight`,
      [P + conv]: `${U}input_blocks.1.0.in_layers.2.weight`,
      [P + sc]: `${U}input_blocks.7.0.skip_connection.weight`,
    };
    const sA = 0.8,
      sB = -0.7;
    const fA = (m: Mod) => sA * (m.alpha! / m.down[0]),
      fB = (m: Mod) => sB * (m.alpha === undefined ? 1 : m.alpha / m.down[0]);
    // C: per layer, up = [fA*upA | fB*upB] and down = [downA ; downB] (rank rA + rB), no alpha
    const byName = new Map<string, { up: number[][]; down: number[][] }>();
    const rows = (data: Float32Array, shape: number[]) =>
      Array.from({ length: shape[0] }, (_, i) =>
        Array.from(data.subarray(i * (data.length / shape[0]), (i + 1) * (data.length / shape[0]))),
      );
    for (const [mods, f] of [
      [A, fA],
      [B, fB],
    ] as const) {
      for (const m of mods) {
        const e = byName.get(m.name) ?? { up: rows(new Float32Array(0), [m.up[0]]).map(() => []), down: [] };
        const ur = rows(m.upData, m.up);
        e.up = e.up.map((r, i) => [...r, ...ur[i].map((v) => v * f(m))]);
        e.down.push(...rows(m.downData, m.down));
        byName.set(m.name, e);
      }
    }
    const C: Mod[] = [...byName].map(([name, e]) => {
      const rank = e.down.length,
        spatial = [...A, ...B].find((m) => m.name === name)!.down.slice(2);
      return {
        name,
        down: [rank, e.down[0].length / numel(spatial.length ? spatial : [1]), ...spatial],
        up: [e.up.length, rank, ...(spatial.length ? [1, 1] : [])],
        downData: Float32Array.from(e.down.flat()),
        upData: Float32Array.from(e.up.flat()),
      };
    });
    const [a, b, c] = await Promise.all([
      writeLora(join(dir, 'a.safetensors'), A),
      writeLora(join(dir, 'b.safetensors'), B),
      writeLora(join(dir, 'c.safetensors'), C),
    ]);
    const stacked = weightSourceFor(sdxl, 'unet', [
      { path: a, strength: sA },
      { path: b, strength: sB },
    ]);
    const merged = weightSourceFor(sdxl, 'unet', [{ path: c, strength: 1 }]);
    assert.equal(stacked.patchedKeys.length, 3);
    for (const key of stacked.patchedKeys) {
      const base = sdxl.readFloat32(key),
        shape = sdxl.shape(key);
      const mine = stacked.read(key),
        one = merged.read(key);
      const terms = [...A.map((m) => ({ m, factor: fA(m) })), ...B.map((m) => ({ m, factor: fB(m) }))].filter(
        ({ m }) => KEY[m.name] === key,
      );
      assert.ok(terms.length > 0, `reference terms for ${key}`);
      const ref = reference(base, shape, terms);
      assert.ok(maxAbsDiff(mine, ref) < 1e-6, `${key}: stacked vs float64 reference ${maxAbsDiff(mine, ref)}`);
      assert.ok(maxAbsDiff(mine, one) < 1e-6, `${key}: stacked vs merged ${maxAbsDiff(mine, one)}`);
      assert.ok(maxAbsDiff(mine, base) > 1e-3, `${key} changed`);
    }
    // strength 0 everywhere is the checkpoint itself, bit for bit; the checkpoint's own arrays are never written
    const zero = weightSourceFor(sdxl, 'unet', [
      { path: a, strength: 0 },
      { path: b, strength: 0 },
    ]);
    for (const key of stacked.patchedKeys) assert.equal(maxAbsDiff(zero.read(key), sdxl.readFloat32(key)), 0);
  });

  test('OpenCLIP-G fused in_proj: q/k/v LoRAs patch their row slices only; CLIP-L gets lora_te1_ names', async () => {
    const enc = detectCheckpoint(sdxl).textEncoders[1];
    const w = enc.width;
    const k = mod('lora_te2_text_model_encoder_layers_1_self_attn_k_proj', [3, w], [w, 3], 11, 1.5);
    const fc1 = mod('lora_te1_text_model_encoder_layers_0_mlp_fc1', [2, 64], [128, 2], 13); // tiny CLIP-L: width 64, MLP 128
    const path = await writeLora(join(dir, 'te.safetensors'), [k, fc1]);
    const key = `${enc.prefix}transformer.resblocks.1.attn.in_proj_weight`;
    const src = weightSourceFor(sdxl, 'text_encoder_1', [{ path, strength: 0.9 }]);
    assert.deepEqual(src.patchedKeys, [key]);
    const base = sdxl.readFloat32(key),
      out = src.read(key);
    const ref = reference(base, sdxl.shape(key), [{ m: k, factor: 0.9 * 0.5, r0: w }]);
    assert.ok(maxAbsDiff(out, ref) < 1e-6);
    assert.equal(maxAbsDiff(out.subarray(0, w * w), base.subarray(0, w * w)), 0, 'q rows untouched');
    assert.equal(maxAbsDiff(out.subarray(2 * w * w), base.subarray(2 * w * w)), 0, 'v rows untouched');
    const l = weightSourceFor(sdxl, 'text_encoder_0', [{ path, strength: 0.9 }]);
    assert.deepEqual(l.patchedKeys, [
      `${detectCheckpoint(sdxl).textEncoders[0].prefix}encoder.layers.0.mlp.fc1.weight`,
    ]);
  });

  test('keys that match nothing are reported, the rest still applies', async () => {
    const good = mod('lora_unet_input_blocks_4_1_proj_in', [2, 64], [64, 2], 21);
    const stray = mod('lora_unet_input_blocks_99_1_proj_in', [2, 64], [64, 2], 23);
    const path = await writeLora(
      join(dir, 'stray.safetensors'),
      [good, stray],
      [
        {
          name: 'lora_unet_input_blocks_4_1_proj_out.hada_w1_a',
          dtype: 'F32',
          shape: [64, 2],
          data: () => values(128, 1),
        },
      ],
    );
    const m = matchLoraFile(loadLora(path), sdxl, detectCheckpoint(sdxl));
    assert.equal(m.matched.length, 1);
    assert.deepEqual([...m.unmatched].sort(), [
      'lora_unet_input_blocks_4_1_proj_out.hada_w1_a',
      'lora_unet_input_blocks_99_1_proj_in.lora_down.weight',
      'lora_unet_input_blocks_99_1_proj_in.lora_up.weight',
    ]);
    const src = weightSourceFor(sdxl, 'unet', [{ path, strength: 1 }]);
    assert.deepEqual(src.unmatched.get(path)?.length, 3);
    assert.deepEqual(src.patchedKeys, ['model.diffusion_model.input_blocks.4.1.proj_in.weight']);
  });

  test('a LoRA for another family is an error that names both families', () => {
    assert.throws(
      () => weightSourceFor(sdxl, 'unet', [{ path: fixturePath('sd1_tiny_lora_kohya.safetensors'), strength: 1 }]),
      (e: Error) => e instanceof LoraMismatchError && /SD1/.test(e.message) && /SDXL checkpoint/.test(e.message),
    );
    assert.throws(
      () => weightSourceFor(sd1, 'unet', [{ path: fixturePath('sdxl_tiny_lora_peft.safetensors'), strength: 1 }]),
      (e: Error) =>
        e instanceof LoraMismatchError && /SD1 checkpoint/.test(e.message) && /another model family/.test(e.message),
    );
  });

  test('real SD1.5 / SDXL layouts: kohya (diffusers names), diffusers, PEFT and text-encoder names map to LDM/SGM keys', () => {
    const expect = (model: 'sd15' | 'sdxl', cases: [string, string, [number, number]?][]) => {
      const keys = realArchitecture(model).keys;
      const map = loraKeyMap(detectCheckpoint(realSource(model)), (k) => keys[k], Object.keys(keys));
      for (const [alias, key, rows] of cases) {
        const t = map.get(alias);
        assert.ok(t, `${model}: ${alias} maps to something`);
        assert.equal(t.key, key, `${model}: ${alias}`);
        assert.deepEqual(t.rows, rows, `${model}: ${alias} rows`);
      }
    };
    const U = 'model.diffusion_model.';
    expect('sd15', [
      ['lora_unet_down_blocks_0_attentions_0_proj_in', `${U}input_blocks.1.1.proj_in.weight`],
      ['lora_unet_down_blocks_1_resnets_1_conv2', `${U}input_blocks.5.0.out_layers.3.weight`],
      ['lora_unet_down_blocks_2_downsamplers_0_conv', `${U}input_blocks.9.0.op.weight`],
      ['lora_unet_down_blocks_3_resnets_0_time_emb_proj', `${U}input_blocks.10.0.emb_layers.1.weight`],
      [
        'lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k',
        `${U}middle_block.1.transformer_blocks.0.attn2.to_k.weight`,
      ],
      ['lora_unet_mid_block_resnets_1_conv1', `${U}middle_block.2.in_layers.2.weight`],
      ['lora_unet_up_blocks_0_upsamplers_0_conv', `${U}output_blocks.2.1.conv.weight`],
      ['lora_unet_up_blocks_1_upsamplers_0_conv', `${U}output_blocks.5.2.conv.weight`],
      ['lora_unet_up_blocks_2_resnets_2_conv_shortcut', `${U}output_blocks.8.0.skip_connection.weight`],
      [
        'lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_ff_net_0_proj',
        `${U}output_blocks.11.1.transformer_blocks.0.ff.net.0.proj.weight`,
      ],
      ['unet.time_embedding.linear_1', `${U}time_embed.0.weight`],
      ['up_blocks.3.attentions.2.proj_out', `${U}output_blocks.11.1.proj_out.weight`],
      [
        'lora_te_text_model_encoder_layers_11_self_attn_q_proj',
        'cond_stage_model.transformer.encoder.layers.11.self_attn.q_proj.weight',
      ],
      [
        'text_encoder.text_model.encoder.layers.0.mlp.fc2',
        'cond_stage_model.transformer.encoder.layers.0.mlp.fc2.weight',
      ],
    ]);
    expect('sdxl', [
      [
        'lora_unet_input_blocks_8_1_transformer_blocks_9_ff_net_2',
        `${U}input_blocks.8.1.transformer_blocks.9.ff.net.2.weight`,
      ],
      [
        'unet.down_blocks.2.attentions.1.transformer_blocks.9.ff.net.2',
        `${U}input_blocks.8.1.transformer_blocks.9.ff.net.2.weight`,
      ],
      ['unet.down_blocks.1.downsamplers.0.conv', `${U}input_blocks.6.0.op.weight`],
      ['unet.up_blocks.0.attentions.2.proj_in', `${U}output_blocks.2.1.proj_in.weight`],
      ['unet.up_blocks.0.upsamplers.0.conv', `${U}output_blocks.2.2.conv.weight`],
      ['unet.up_blocks.2.resnets.2.conv1', `${U}output_blocks.8.0.in_layers.2.weight`],
      ['lora_unet_add_embedding_linear_2', `${U}label_emb.0.2.weight`],
      [
        'lora_te1_text_model_encoder_layers_0_mlp_fc1',
        'conditioner.embedders.0.transformer.encoder.layers.0.mlp.fc1.weight',
      ],
      [
        'lora_te2_text_model_encoder_layers_31_self_attn_k_proj',
        'conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight',
        [1280, 2560],
      ],
      [
        'text_encoder_2.text_model.encoder.layers.3.mlp.fc2',
        'conditioner.embedders.1.model.transformer.resblocks.3.mlp.c_proj.weight',
      ],
      [
        'text_encoder_2.text_model.encoder.layers.3.self_attn.out_proj',
        'conditioner.embedders.1.model.transformer.resblocks.3.attn.out_proj.weight',
      ],
    ]);
  });
});

describe('ORT patcher (what the worker feeds)', { skip }, () => {
  test('equals the float64 reference patch on every key of the SD1 and SDXL fixture LoRAs', async () => {
    const { patchWithOrt } = await import('../../../server/engine/lora/patcher.js');
    const { planLoras, applyTerms } = await import('../../../server/engine/lora/patch.js');
    for (const [ck, lora, component, s] of [
      ['sd1_tiny', 'sd1_tiny_lora_kohya', 'unet', 0.8],
      ['sd1_tiny', 'sd1_tiny_lora_kohya', 'text_encoder_0', -0.6],
      ['sdxl_tiny', 'sdxl_tiny_lora_peft', 'unet', 0.5],
    ] as const) {
      const file = SafetensorsFile.open(fixturePath(`${ck}.safetensors`));
      const { plan } = planLoras(
        file,
        detectCheckpoint(file),
        [{ path: fixturePath(`${lora}.safetensors`), strength: s }],
        component,
      );
      assert.ok(plan.size > 10);
      for (const [key, terms] of plan) {
        const base = file.readFloat32(key),
          shape = file.shape(key);
        const copy = Float32Array.from(base);
        const fast = await patchWithOrt(terms, base, shape),
          ref = applyTerms(terms, base, shape);
        assert.ok(maxAbsDiff(fast, ref) <= 1e-6 * Math.max(1, maxAbs(ref)), `${ck} ${key}: ${maxAbsDiff(fast, ref)}`);
        assert.equal(maxAbsDiff(base, copy), 0, 'base untouched');
      }
      file.close();
    }
  });
});
