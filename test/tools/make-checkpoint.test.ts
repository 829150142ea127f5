import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '../../server/engine/io/safetensors.js';
import { detectCheckpoint, keySourceOf } from '../../server/engine/model/detect.js';
import { checkpointKeys } from '../../server/engine/model/checkpoint-layout.js';
import {
  DEMO_CHECKPOINT_NAME,
  ensureDemoCheckpoint,
  fillNormal,
  initRule,
  makeCheckpoint,
  makeCheckpointCommand,
  presetConfig,
} from '../../server/tools/make-checkpoint.js';
import { fixtureSkip } from '../helpers/fixtures.js';
import { realSource } from '../engine/real-architectures.js';

const dir = mkdtempSync(join(tmpdir(), 'mkckpt-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

test('sd15 and sdxl presets are exactly the configs detected from the real files', { skip: fixtureSkip() }, () => {
  assert.deepEqual(presetConfig('sd15'), detectCheckpoint(realSource('sd15')));
  assert.deepEqual(presetConfig('sdxl'), detectCheckpoint(realSource('sdxl')));
});

test('every preset layout detects back to its config; init rules put ones only on norm scales', () => {
  for (const name of ['sd15', 'sdxl', 'demo'] as const) {
    const cfg = presetConfig(name);
    const keys = checkpointKeys(cfg);
    assert.deepEqual(detectCheckpoint(keySourceOf(keys)), cfg, name);
    for (const k of keys) {
      const r = initRule(k);
      if (r.kind === 'ones')
        assert.match(k.name, /(norm[^.]*|ln_\w+|layer_norm\d|in_layers\.0|out_layers\.0|out\.0)\.weight$/, k.name);
      if (r.kind === 'zeros') assert.match(k.name, /bias$/, k.name);
    }
  }
  const demo = presetConfig('demo');
  assert.equal(demo.family, 'sdxl');
  assert.deepEqual(
    demo.unet.channelMult.map((m) => m * demo.unet.modelChannels),
    [32, 64, 64],
  );
  // attention only where a 64-channel head fits
  demo.unet.transformerDepth.forEach((d, i) =>
    assert.ok(!d || demo.unet.modelChannels * demo.unet.channelMult[i] >= 64),
  );
});

test('fillNormal: seeded, per-name streams with N(0, std^2) statistics', () => {
  const n = 1 << 20,
    std = 0.25;
  const a = new Float32Array(n);
  fillNormal(a, std, 7, 'w');
  let s1 = 0,
    s2 = 0,
    s4 = 0,
    beyond3 = 0;
  for (const x of a) {
    s1 += x;
    s2 += x * x;
    s4 += x ** 4;
    if (Math.abs(x) > 3 * std) beyond3++;
  }
  const mean = s1 / n,
    v = s2 / n;
  assert.ok(Math.abs(mean) < (5 * std) / Math.sqrt(n), `mean ${mean}`);
  assert.ok(Math.abs(Math.sqrt(v) / std - 1) < 0.005, `std ${Math.sqrt(v)}`);
  assert.ok(Math.abs(s4 / n / (v * v) - 3) < 0.05, `kurtosis ${s4 / n / (v * v)}`);
  assert.ok(Math.abs(beyond3 / n - 0.0027) < 0.0005, `tail ${beyond3 / n}`);
  const again = new Float32Array(n);
  fillNormal(again, std, 7, 'w');
  assert.deepEqual(again, a);
  const other = new Float32Array(n);
  fillNormal(other, std, 7, 'w2');
  const seed2 = new Float32Array(n);
  fillNormal(seed2, std, 7 + 2 ** 32, 'w');
  let same1 = 0,
    same2 = 0;
  for (let i = 0; i < n; i++) {
    if (other[i] === a[i]) same1++;
    if (seed2[i] === a[i]) same2++;
  }
  assert.ok(same1 < 10 && same2 < 10, 'other names and seeds (also above 2^32) give other streams');
});

test('demo checkpoint: < 30 MB, deterministic bytes per seed, detects back, sane values', async () => {
  const p1 = join(dir, 'a.safetensors'),
    p2 = join(dir, 'b.safetensors'),
    p3 = join(dir, 'c.safetensors');
  const r1 = await makeCheckpoint({ config: presetConfig('demo'), out: p1, seed: 5 });
  await makeCheckpoint({ config: presetConfig('demo'), out: p2, seed: 5, dtype: 'F16' });
  await makeCheckpoint({ config: presetConfig('demo'), out: p3, seed: 6 });
  assert.equal(statSync(p1).size, r1.bytes);
  assert.ok(r1.bytes < 30e6, `demo file ${r1.bytes} bytes`);
  assert.equal(sha(p1), sha(p2), 'same seed, same bytes');
  assert.notEqual(sha(p1), sha(p3), 'other seed, other bytes');
  const f = SafetensorsFile.open(p1);
  try {
    assert.deepEqual(detectCheckpoint(f), presetConfig('demo'));
    assert.equal(f.metadata['tcd_studio.seed'], '5');
    assert.ok(f.keys().every((k) => f.info(k).dtype === 'F16'));
    const norm = f.readFloat32('model.diffusion_model.input_blocks.4.1.transformer_blocks.0.norm2.weight');
    assert.ok(norm.every((x) => x === 1));
    assert.ok(
      f.readFloat32('conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_bias').every((x) => x === 0),
    );
    for (const [name, fanIn] of [
      ['model.diffusion_model.input_blocks.1.0.in_layers.2.weight', 32 * 9],
      ['conditioner.embedders.1.model.text_projection', 128],
      ['conditioner.embedders.0.transformer.embeddings.token_embedding.weight', 64],
    ] as const) {
      const w = f.readFloat32(name);
      assert.ok(w.every(Number.isFinite));
      const rms = Math.sqrt(w.reduce((s, x) => s + x * x, 0) / w.length);
      assert.ok(Math.abs(rms * Math.sqrt(fanIn) - 1) < 0.1, `${name}: rms ${rms} vs 1/sqrt(${fanIn})`);
    }
  } finally {
    f.close();
  }
});

test('ensureDemoCheckpoint writes models/checkpoints/<demo> once, keeps it, and replaces a broken or foreign one', async () => {
  const models = join(dir, 'models');
  const [path, same] = await Promise.all([ensureDemoCheckpoint(models), ensureDemoCheckpoint(models)]);
  assert.equal(path, join(models, 'checkpoints', DEMO_CHECKPOINT_NAME));
  assert.equal(same, path);
  assert.deepEqual(readdirSync(join(models, 'checkpoints')), [DEMO_CHECKPOINT_NAME], 'one write, no temp files left');
  const first = statSync(path),
    hash = sha(path);
  assert.equal(await ensureDemoCheckpoint(models), path);
  assert.equal(statSync(path).mtimeMs, first.mtimeMs, 'an existing demo checkpoint is not rewritten');
  writeFileSync(path, 'not a checkpoint');
  await ensureDemoCheckpoint(models);
  assert.equal(sha(path), hash, 'a broken file is regenerated with the same bytes');
  await makeCheckpoint({ config: presetConfig('demo'), out: path, seed: 1 });
  await ensureDemoCheckpoint(models);
  assert.equal(sha(path), hash, 'a demo-shaped file with another seed is replaced by the demo model');
});

test('makeCheckpointCommand writes the arch and reports progress on stderr', async () => {
  const out = join(dir, 'cmd.safetensors');
  const lines: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    assert.equal(await makeCheckpointCommand({ arch: 'demo', out, seed: 3, dtype: 'bf16' }), out);
  } finally {
    process.stderr.write = write;
  }
  const text = lines.join('');
  assert.match(text, /make-checkpoint demo: 100%/);
  assert.match(text, /wrote .*cmd\.safetensors: 743 tensors, 13\.\dM parameters, [\d.]+ MiB BF16 in [\d.]+ s/);
  const f = SafetensorsFile.open(out);
  try {
    assert.equal(f.info('first_stage_model.decoder.conv_out.weight').dtype, 'BF16');
  } finally {
    f.close();
  }
  await assert.rejects(
    makeCheckpointCommand({ arch: 'sd3', out }),
    /unknown --arch "sd3" \(expected sd15, sdxl, demo, sd15-inpaint, sdxl-inpaint, tiny-sd1-inpaint\)/,
  );
  await assert.rejects(makeCheckpointCommand({ arch: 'demo', out, dtype: 'q8' }), /unknown --dtype "q8"/);
});
