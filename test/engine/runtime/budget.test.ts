/**
 * Memory budget on the tiny checkpoints: size estimates from the header, LRU eviction order with small budgets,
 * the too-big error, free(), options (never the environment), and graphs reused from the on-disk cache.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine, resolveEngineOptions } from '../../../server/engine/engine.js';
import { DEFAULT_GPU_TUNING } from '../../../server/engine/runtime/providers.js';
import { parseCommandLine } from '../../../server/settings.js';
import { engineOptions } from '../../../server/host.js';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import { componentBytes, parameterCount, componentPrefixes } from '../../../server/engine/runtime/estimate.js';
import { componentTolerance, fixturePath, fixtureSkip, maxAbsDiff } from '../../helpers/fixtures.js';
import { workerStarts } from '../../../server/engine/testing.js';

const skip = fixtureSkip();
const MiB = 1024 * 1024;

test('engine options: explicit values, then defaults; the engine reads no environment (the settings do)', () => {
  const saved = { ...process.env };
  try {
    Object.assign(process.env, {
      TCD_EP: 'webgpu',
      TCD_RAM_BUDGET_MB: '512',
      TCD_VRAM_BUDGET_MB: '8000',
      TCD_DATA: '/srv/tcd',
      TCD_DEVICE: '2',
    });
    const d = resolveEngineOptions();
    assert.equal(d.ep, undefined, 'TCD_EP in the environment does not reach an engine created without options');
    assert.ok(d.ramBudget > 0 && d.ramBudget < 2 ** 53 && d.ramBudget !== 512 * MiB);
    assert.equal(d.vramBudget, Infinity);
    assert.match(d.cacheDir, /data\/onnx-cache$/);
    assert.equal(d.externalDataMinBytes, 64 * MiB);
    assert.equal(d.device, 0);
    // the command line's path: flags and environment -> settings -> engine options
    const s = parseCommandLine('serve', ['--vram-budget-mb', '4000'], process.env).settings;
    const r = resolveEngineOptions(engineOptions(s, () => {}));
    assert.deepEqual(
      { ...r, tuning: undefined },
      {
        ep: 'webgpu',
        ramBudget: 512 * MiB,
        vramBudget: 4000 * MiB,
        cacheDir: '/srv/tcd/onnx-cache',
        externalDataMinBytes: 64 * MiB,
        device: 2,
        tuning: undefined,
      },
    );
    assert.deepEqual(r.tuning, DEFAULT_GPU_TUNING);
    assert.deepEqual(
      {
        ...resolveEngineOptions({ ep: 'cpu', ramBudgetMB: 1, cacheDir: '/tmp/c', externalDataMinMB: 0 }),
        tuning: undefined,
      },
      {
        ep: 'cpu',
        ramBudget: MiB,
        vramBudget: Infinity,
        cacheDir: '/tmp/c',
        externalDataMinBytes: 0,
        device: 0,
        tuning: undefined,
      },
    );
    assert.throws(
      () => parseCommandLine('run', [], { TCD_RAM_BUDGET_MB: 'lots' }),
      /TCD_RAM_BUDGET_MB must be a positive number of megabytes, got "lots"/,
    );
    assert.equal(
      parseCommandLine('run', [], { TCD_DATA_DIR: '/old/name' }).settings.data,
      '/old/name',
      'TCD_DATA_DIR: deprecated alias of TCD_DATA',
    );
  } finally {
    process.env = saved;
  }
});

describe('budget on sd1_tiny', { skip }, () => {
  let cases: SafetensorsFile, ckpt: string, cacheDir: string;
  const size: Record<string, number> = {};
  before(() => {
    cases = SafetensorsFile.open(fixturePath('sd1_tiny_cases.safetensors'));
    ckpt = fixturePath('sd1_tiny.safetensors');
    cacheDir = mkdtempSync(join(tmpdir(), 'tcd-budget-'));
    const file = SafetensorsFile.open(ckpt);
    const { config } = new Engine({ log: () => {} }).inspect(ckpt);
    for (const c of ['text_encoder_0', 'unet', 'vae_decoder', 'vae_encoder'] as const)
      size[c] = componentBytes(file, config, c, 'float32');
    // fp16 halves it; prefixes cover every tensor of the checkpoint exactly once
    assert.equal(componentBytes(file, config, 'unet', 'float16') * 2, size.unet);
    const all = (['text_encoder_0', 'unet', 'vae_decoder', 'vae_encoder'] as const).flatMap((c) =>
      componentPrefixes(config, c),
    );
    const unclaimed = file.keys().filter((k) => !all.some((p) => k.startsWith(p)));
    assert.deepEqual(
      unclaimed.filter((k) => !/logit_scale|alphas|betas|posterior|sqrt|log_one_minus|model_ema/.test(k)),
      [],
    );
    assert.equal(
      parameterCount(file, all),
      file
        .keys()
        .filter((k) => !unclaimed.includes(k))
        .reduce((n, k) => n + file.info(k).shape.reduce((a, b) => a * b, 1), 0),
    );
    file.close();
  });
  after(() => {
    cases.close();
    rmSync(cacheDir, { recursive: true, force: true });
  });

  const ref = () => ({ checkpoint: ckpt, loras: [] });
  const unetCall = (e: Engine) =>
    e.unet(ref(), cases.readTensor('unet/x'), cases.readFloat32('unet/t'), cases.readTensor('unet/context'));
  const components = (keys: string[]) => keys.map((k) => JSON.parse(k).component);

  test('least recently used components are evicted first, a hit refreshes recency, results stay right', async () => {
    const budgetMB = (size.text_encoder_0 + size.unet + MiB) / MiB; // room for the two biggest, not a third
    const engine = new Engine({ ramBudgetMB: budgetMB, cacheDir, log: () => {} });
    try {
      const prompt = 'a photo of a cat wearing a tiny hat';
      const first = await engine.encodeText(ref(), prompt);
      await unetCall(engine);
      assert.deepEqual(components((await engine.stats()).loaded), ['text_encoder_0', 'unet']);
      await engine.vaeDecode(ref(), cases.readTensor('vae/z')); // evicts the text encoder
      let s = await engine.stats();
      assert.deepEqual(components(s.loaded), ['unet', 'vae_decoder']);
      assert.deepEqual(s.evictions, ['sd1 text encoder 0 (hidden-1-norm) of sd1_tiny.safetensors']);
      const eps = await unetCall(engine); // hit: unet becomes the most recent
      await engine.vaeEncode(ref(), cases.readTensor('vae/image')); // fits beside the two
      assert.deepEqual(components((await engine.stats()).loaded), ['vae_decoder', 'unet', 'vae_encoder']);
      const again = await engine.encodeText(ref(), prompt); // needs room: vae decoder, then unet, go
      s = await engine.stats();
      assert.deepEqual(components(s.loaded), ['vae_encoder', 'text_encoder_0']);
      assert.deepEqual(s.evictions.slice(1), [
        'sd1 vae decoder of sd1_tiny.safetensors',
        'sd1 unet of sd1_tiny.safetensors',
      ]);
      assert.ok(s.ramUsed <= s.ramBudget);
      assert.equal(s.ramUsed, size.vae_encoder + size.text_encoder_0);
      assert.deepEqual(again.context.data, first.context.data);
      const refEps = cases.readFloat32('unet/out');
      assert.ok(maxAbsDiff(eps.data, refEps) <= componentTolerance(refEps));
    } finally {
      await engine.close();
    }
  });

  test('a component bigger than the whole budget fails before loading, naming it and both sizes; the worker lives on', async () => {
    const engine = new Engine({ ramBudgetMB: 10, cacheDir, log: () => {} });
    try {
      const need = (size.unet / MiB).toFixed(1);
      await assert.rejects(
        unetCall(engine),
        new RegExp(
          `^ModelTooBigError: sd1 unet of sd1_tiny\\.safetensors needs ${need} MiB but the whole RAM budget is 10\\.0 MiB`,
        ),
      );
      const out = await engine.vaeDecode(ref(), cases.readTensor('vae/z'));
      assert.deepEqual(out.shape, [1, 3, 64, 64]);
      assert.equal(workerStarts(engine), 1);
    } finally {
      await engine.close();
    }
  });

  test('free() unloads everything; the next call loads again', async () => {
    const engine = new Engine({ cacheDir, log: () => {} });
    try {
      await engine.vaeEncode(ref(), cases.readTensor('vae/image'));
      assert.equal((await engine.stats()).loaded.length, 1);
      await engine.free();
      const s = await engine.stats();
      assert.deepEqual(s.loaded, []);
      assert.equal(s.ramUsed, 0);
      const mean = await engine.vaeEncode(ref(), cases.readTensor('vae/image'));
      const refMean = cases.readFloat32('vae/encoded_mean');
      assert.ok(maxAbsDiff(mean.data, refMean) <= componentTolerance(refMean));
    } finally {
      await engine.close();
    }
  });

  test('big graphs go to content-addressed external-data files that a second start reuses', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tcd-graphs-'));
    try {
      const first = new Engine({ cacheDir: dir, externalDataMinMB: 0, log: () => {} }); // treat everything as big
      const a = await first.vaeDecode(ref(), cases.readTensor('vae/z'));
      assert.deepEqual(await first.stats().then((s) => [s.graphsBuilt, s.graphsReused]), [1, 0]);
      await first.close();
      const entries = readdirSync(dir);
      assert.equal(entries.length, 1);
      assert.match(entries[0], /^[0-9a-f]{32}$/);
      assert.deepEqual(readdirSync(join(dir, entries[0])).sort(), ['model.onnx', 'model.onnx.bin']);
      const second = new Engine({ cacheDir: dir, externalDataMinMB: 0, log: () => {} });
      const b = await second.vaeDecode(ref(), cases.readTensor('vae/z'));
      assert.deepEqual(await second.stats().then((s) => [s.graphsBuilt, s.graphsReused]), [0, 1]);
      await second.close();
      assert.deepEqual(b.data, a.data);
      const refImage = cases.readFloat32('vae/decoded');
      assert.ok(maxAbsDiff(b.data, refImage) <= componentTolerance(refImage));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
