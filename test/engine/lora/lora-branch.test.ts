/**
 * LoRA as low-rank side branches (TCD_GPU_LORA=branch, the CUDA way; forced on the CPU EP here): the graph keeps the
 * base weights, adds x @ down^T @ up^T beside each patched layer, and shares the LoRA-free graph's weight file on
 * disk (a hard link, no tensor read or written again). Checked against the diffusers/peft fixtures.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import { detectCheckpoint } from '../../../server/engine/model/detect.js';
import { buildUNetGraph } from '../../../server/engine/model/unet.js';
import { loraStats } from '../../../server/engine/lora/session.js';
import { lowRankDelta, planLoras } from '../../../server/engine/lora/patch.js';
import { applyTerms } from '../../../server/engine/lora/patch.js';
import { serializeModel } from '../../../server/engine/onnx/serialize.js';
import { createSession, runSession } from '../../../server/engine/onnx/session.js';
import { safetensorsWeights } from '../../../server/engine/onnx/weights.js';
import { runComponentCall } from '../../../server/engine/runtime/components.js';
import { SessionStore } from '../../../server/engine/runtime/session-store.js';
import type { Tensor } from '../../../server/engine/tensor.js';
import { assertComponentClose, fixturePath, fixtureSkip, unetFixtureCase } from '../../helpers/fixtures.js';

const skip = fixtureSkip();

test('lowRankDelta: up @ down equals the merged delta, fused rows placed, factors folded', { skip }, () => {
  const ckpt = SafetensorsFile.open(fixturePath('sdxl_tiny.safetensors'));
  const config = detectCheckpoint(ckpt);
  const lora = fixturePath('sdxl_tiny_lora_kohya.safetensors');
  // two LoRAs on the same weights: the ranks sit side by side
  const { plan } = planLoras(
    ckpt,
    config,
    [
      { path: lora, strength: 0.7 },
      { path: lora, strength: -0.2 },
    ],
    'unet',
  );
  let checked = 0;
  for (const [key, terms] of [...plan].slice(0, 12)) {
    const shape = ckpt.shape(key);
    const base = ckpt.readFloat32(key);
    const merged = applyTerms(terms, base, shape);
    const d = lowRankDelta(terms, shape);
    assert.equal(d.rank, terms[0].module.rank * 2);
    const rows = shape[0],
      cols = merged.length / rows;
    let worst = 0;
    for (let r = 0; r < rows; r++)
      for (let c = 0; c < cols; c++) {
        let acc = 0;
        for (let k = 0; k < d.rank; k++) acc += d.up[r * d.rank + k] * d.down[k * cols + c];
        worst = Math.max(worst, Math.abs(base[r * cols + c] + acc - merged[r * cols + c]));
      }
    assert.ok(worst < 1e-5, `${key}: ${worst}`);
    checked++;
  }
  assert.ok(checked > 5);
  ckpt.close();
});

for (const family of ['sd1', 'sdxl'] as const) {
  test(
    `${family} UNet graph with LoRA branches (MatMul linears, the GPU form) matches the reference`,
    { skip },
    async () => {
      const { ckpt, cases, config, feeds } = unetFixtureCase(family);
      const [lora, strength, ref] =
        family === 'sd1'
          ? ['sd1_tiny_lora_kohya.safetensors', 0.8, 'lora/unet_out']
          : ['sdxl_tiny_lora_peft.safetensors', 0.5, 'lora/unet_out@0.5'];
      const { plan } = planLoras(ckpt, config, [{ path: fixturePath(lora), strength }], 'unet');
      const deltas = new Map([...plan].map(([k, terms]) => [k, lowRankDelta(terms, ckpt.shape(k))]));
      const weights = {
        ...safetensorsWeights(ckpt),
        lowRank: (k: string) => deltas.get(k),
      };
      for (const linear of ['matmul', 'gemm-transb'] as const) {
        const g = buildUNetGraph(config.unet, weights, {
          linear,
          fusedAttention: true,
        });
        const branches = [...g.weightInits.keys()].filter((n) => n.endsWith(':lr_up'));
        assert.equal(branches.length, deltas.size, 'one branch per patched weight (convs included)');
        assert.ok(
          branches.some((n) => n.includes('in_layers.2')),
          'ResBlock 3x3 convs get conv branches',
        );
        const session = await createSession(serializeModel(g));
        assertComponentClose(
          (await runSession(session, feeds)).eps,
          cases.readTensor(ref),
          `${family} ${linear} branches`,
        );
        await session.release();
      }
      ckpt.close();
      cases.close();
    },
  );
}

for (const mode of ['branch', 'bake'] as const) {
  describe(
    `LoRA ${mode} mode in the session store (GPU graph form forced on the CPU EP, graphs on disk)`,
    { skip },
    () => {
      let store: SessionStore, cacheDir: string;
      before(async () => {
        cacheDir = mkdtempSync(join(tmpdir(), `tcd-lora-${mode}-`));
        // externalDataMinBytes 0: every graph goes to disk, as real-size ones do
        store = await SessionStore.start(
          {
            ep: 'cpu',
            ramBudget: 4 * 1024 ** 3,
            vramBudget: Infinity,
            cacheDir,
            externalDataMinBytes: 0,
          },
          () => {},
        );
        store.loraModeOverride = mode;
        // the GPU graph form: linears read pre-transposed weights (`key:T`), convs the stored ones
        store.graphTuningOverride = { fusedAttention: true, linear: 'matmul' };
      });
      after(async () => {
        await store.free();
        rmSync(cacheDir, { recursive: true, force: true });
      });

      test('sdxl kohya at 1.0 and 0.5 match; the LoRA graphs share the plain graph weight file', async () => {
        const ckpt = fixturePath('sdxl_tiny.safetensors');
        const cases = SafetensorsFile.open(fixturePath('sdxl_tiny_cases.safetensors'));
        const x = cases.readTensor('unet/x'),
          t = cases.readFloat32('unet/t'),
          context = cases.readTensor('unet/context');
        const extra = {
          textEmbeds: cases.readTensor('unet/text_embeds'),
          timeIds: cases.readTensor('unet/time_ids'),
        };
        const lora = fixturePath('sdxl_tiny_lora_kohya.safetensors');
        const unet = (strength: number) =>
          runComponentCall(store, {
            op: 'unet',
            model: {
              checkpoint: ckpt,
              loras: strength ? [{ path: lora, strength }] : [],
            },
            x,
            t,
            context,
            extra,
          }) as Promise<Tensor>;
        const reads = loraStats.baseReads,
          sets = loraStats.patchSets;
        assertComponentClose(await unet(1), cases.readTensor('lora/unet_out@1.0'), `${mode} 1.0`);
        assertComponentClose(await unet(0.5), cases.readTensor('lora/unet_out@0.5'), `${mode} 0.5`);
        assert.equal(loraStats.patchSets, sets + 2, 'one patch set per strength');
        assert.equal(loraStats.baseReads, reads, 'no checkpoint tensor was read for patching');
        if (mode === 'bake') assert.ok(loraStats.lastPatchedValues > 0, 'tensors were patched from the shared file');
        assertComponentClose(await unet(0), cases.readTensor('unet/out'), 'no LoRA: the plain model');
        assert.ok(store.stats().loaded.some((k) => k.includes(mode === 'bake' ? '+lora-baked' : '+lora-branch')));

        // on disk: the plain UNet's artifact, and one LoRA artifact per strength whose base.onnx.bin is a hard link
        const dirs = readdirSync(cacheDir).filter((d) => /^[0-9a-f]{32}$/.test(d));
        const shared = dirs.filter((d) => readdirSync(join(cacheDir, d)).includes('base.onnx.bin'));
        assert.equal(shared.length, 2, 'one LoRA graph per strength');
        for (const d of shared) {
          const base = statSync(join(cacheDir, d, 'base.onnx.bin'));
          assert.ok(base.nlink >= 3, 'the plain graph and both LoRA graphs hold the same file');
          const own = statSync(join(cacheDir, d, 'model.onnx.bin')).size;
          assert.ok(own < base.size, `the LoRA graph writes only its own tensors (${own} vs ${base.size} bytes)`);
        }
        cases.close();
      });
    },
  );
}
