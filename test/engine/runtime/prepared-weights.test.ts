/**
 * ComponentSpec.weights (how LoRA-baked GPU graphs get their patched tensors): the graph is built from the prepared
 * source, which is asked for only when the graph must be built: a graph already in the on-disk cache (a later
 * start) skips the preparation altogether. artifactCached says which case applies.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import { safetensorsWeights } from '../../../server/engine/onnx/weights.js';
import { runSession } from '../../../server/engine/onnx/session.js';
import { artifactCached } from '../../../server/engine/runtime/graph-cache.js';
import { SessionStore } from '../../../server/engine/runtime/session-store.js';
import { buildVaeDecoderGraph } from '../../../server/engine/model/vae.js';
import { fixturePath, fixtureSkip, maxAbsDiff } from '../../helpers/fixtures.js';

test('artifactCached: false for in-memory artifacts and absent files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tcd-art-'));
  try {
    assert.equal(artifactCached({ cacheDir: dir, key: 'k', externalize: false }), false);
    assert.equal(artifactCached({ cacheDir: dir, key: 'k', externalize: true }), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test(
  'prepared weights build the graph once; a cached graph file skips the preparation',
  { skip: fixtureSkip() },
  async () => {
    const cacheDir = mkdtempSync(join(tmpdir(), 'tcd-prep-'));
    const ckpt = fixturePath('sd1_tiny.safetensors');
    const cases = SafetensorsFile.open(fixturePath('sd1_tiny_cases.safetensors'));
    const init = { ep: 'cpu', ramBudget: 1024 ** 3, vramBudget: Infinity, cacheDir, externalDataMinBytes: 0 };
    let prepared = 0;
    const spec = (file: SafetensorsFile) => ({
      checkpoint: ckpt,
      component: 'vae_decoder' as const,
      loras: [],
      variant: 'negated-conv-out',
      build: (
        w: Parameters<typeof buildVaeDecoderGraph>[1],
        cfg: { vae: Parameters<typeof buildVaeDecoderGraph>[0] },
      ) => buildVaeDecoderGraph(cfg.vae, w),
      // a visible change: conv_out negated, so the output is minus the decode of the stored weights
      weights: async () => {
        prepared++;
        const stored = safetensorsWeights(file);
        return {
          ...stored,
          read: (n: string) => (/decoder\.conv_out\./.test(n) ? stored.read(n).map((v) => -v) : stored.read(n)),
        };
      },
    });
    try {
      const z = cases.readTensor('vae/z');
      const ref = cases.readFloat32('vae/decoded');
      const a = await SessionStore.start(init, () => {});
      const s1 = await a.session(spec(a.checkpoint(ckpt).file));
      assert.equal(prepared, 1);
      const out1 = (await runSession(s1, { latent: z })).image;
      assert.ok(
        maxAbsDiff(
          out1.data,
          ref.map((v) => -v),
        ) < 1e-3,
        'the graph was built from the prepared source',
      );
      await a.free();
      const b = await SessionStore.start(init, () => {}); // a later start: same cache dir
      const s2 = await b.session(spec(b.checkpoint(ckpt).file));
      assert.equal(prepared, 1, 'the cached graph file was used without preparing weights');
      assert.equal(b.stats().graphsReused, 1);
      assert.ok(maxAbsDiff((await runSession(s2, { latent: z })).image.data, out1.data) === 0);
      await b.free();
    } finally {
      cases.close();
      rmSync(cacheDir, { recursive: true, force: true });
    }
  },
);
