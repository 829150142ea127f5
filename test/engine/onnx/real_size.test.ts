/**
 * Real-size check (opt-in: TCD_REAL_SIZE=1, minutes and ~6 GB of RAM/disk): SDXL's OpenCLIP-G text encoder
 * (2.8 GB of float32 weights, over protobuf's 2 GB limit) built from the real key shapes with random weights,
 * written with external data, loaded by ORT from its path and run once; SD1.5's VAE decoder likewise.
 * Run: TCD_REAL_SIZE=1 node --import tsx --test test/engine/onnx/real_size.test.ts
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectCheckpoint, keySourceOf } from '../../../server/engine/model/detect.js';
import { buildTextEncoderGraph } from '../../../server/engine/model/clip.js';
import { buildVaeDecoderGraph } from '../../../server/engine/model/vae.js';
import { serializeModel, writeModel } from '../../../server/engine/onnx/serialize.js';
import { createSession, runSession } from '../../../server/engine/onnx/session.js';
import type { WeightSource } from '../../../server/engine/onnx/weights.js';
import { fixtureJson, fixtureSkip } from '../../helpers/fixtures.js';

const skip =
  fixtureSkip() || (process.env.TCD_REAL_SIZE ? false : 'skipped: set TCD_REAL_SIZE=1 for the real-size build');

/** Deterministic random weights of the real shapes: norms' weights 1, everything else small. */
function randomWeights(shapes: Record<string, number[]>): WeightSource {
  return {
    shape: (n) => {
      const s = shapes[n];
      if (!s) throw new Error(`no ${n}`);
      return [...s];
    },
    has: (n) => n in shapes,
    read: (n) => {
      const size = shapes[n].reduce((a, b) => a * b, 1);
      const out = new Float32Array(size);
      if (/(norm|ln_|layer_norm)[^.]*\.weight$/.test(n)) return out.fill(1);
      let s = 0x9e3779b9 ^ n.length;
      for (let i = 0; i < size; i++) {
        s = (s * 1664525 + 1013904223) >>> 0;
        out[i] = (s / 2 ** 32 - 0.5) * 0.04;
      }
      return out;
    },
  };
}

function realModel(family: 'sd15' | 'sdxl') {
  const keys = fixtureJson<Record<string, { keys: Record<string, number[]> }>>('real_architectures.json')[family].keys;
  return {
    cfg: detectCheckpoint(keySourceOf(Object.entries(keys).map(([name, shape]) => ({ name, shape })))),
    weights: randomWeights(keys),
  };
}

test('SDXL OpenCLIP-G at real size: > 2 GB of weights through external data', { skip, timeout: 600_000 }, async () => {
  const { cfg, weights } = realModel('sdxl');
  const te = cfg.textEncoders[1];
  const g = buildTextEncoderGraph(te, weights, { hiddenFromEnd: 2 });
  assert.throws(() => serializeModel(g), /2 GB/);
  const dir = mkdtempSync(join(tmpdir(), 'tcd-real-'));
  try {
    let t = Date.now();
    const { modelPath, dataPath } = writeModel(g, join(dir, 'openclip_g.onnx'), { externalData: 'auto' });
    const writeS = (Date.now() - t) / 1000;
    assert.ok(dataPath && statSync(dataPath).size > 2 ** 31);
    assert.ok(statSync(modelPath).size < 2 ** 20);
    t = Date.now();
    const s = await createSession(modelPath);
    const loadS = (Date.now() - t) / 1000;
    const ids = [49406, 320, 1125, 49407, ...new Array(73).fill(0)];
    t = Date.now();
    const out = await runSession(s, { ids: { shape: [1, 77], ids } });
    console.log(
      `openclip-g: write ${writeS}s, data ${statSync(dataPath).size} B, load ${loadS}s, run ${(Date.now() - t) / 1000}s, rss ${Math.round(process.memoryUsage().rss / 2 ** 20)} MiB`,
    );
    assert.deepEqual(out.hidden.shape, [1, 77, te.width]);
    assert.deepEqual(out.pooled.shape, [1, te.projectionDim]);
    assert.ok(out.pooled.data.every(Number.isFinite) && out.hidden.data.every(Number.isFinite));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('SD1.5 VAE decoder at real size, external data, 64x64 latent', { skip, timeout: 600_000 }, async () => {
  const { cfg, weights } = realModel('sd15');
  const dir = mkdtempSync(join(tmpdir(), 'tcd-real-'));
  try {
    const { modelPath } = writeModel(buildVaeDecoderGraph(cfg.vae, weights), join(dir, 'vae.onnx'), {
      externalData: true,
    });
    const s = await createSession(modelPath);
    const t = Date.now();
    const { image } = await runSession(s, {
      latent: { shape: [1, 4, 16, 16], data: new Float32Array(1024).fill(0.5) },
    });
    console.log(`sd15 vae decode 128x128: ${(Date.now() - t) / 1000}s`);
    assert.deepEqual(image.shape, [1, 3, 128, 128]);
    assert.ok(image.data.every(Number.isFinite));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
