/**
 * Text encoder graphs against transformers/open_clip outputs on the tiny fixture checkpoints (ORT CPU, float32).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import { detectCheckpoint } from '../../../server/engine/model/detect.js';
import { buildTextEncoderGraph } from '../../../server/engine/model/clip.js';
import { serializeModel } from '../../../server/engine/onnx/serialize.js';
import { createSession, runSession } from '../../../server/engine/onnx/session.js';
import { safetensorsWeights } from '../../../server/engine/onnx/weights.js';
import { fixturePath, fixtureSkip, maxAbsDiff, componentTolerance } from '../../helpers/fixtures.js';

const skip = fixtureSkip();

function near(name: string, got: Float32Array, ref: Float32Array): void {
  const d = maxAbsDiff(got, ref),
    tol = componentTolerance(ref);
  assert.ok(d <= tol, `${name}: max |diff| ${d} > tolerance ${tol}`);
}

test('SD1 CLIP-L: last hidden state (final norm) and penultimate hidden state', { skip }, async () => {
  const ckpt = SafetensorsFile.open(fixturePath('sd1_tiny.safetensors'));
  const cases = SafetensorsFile.open(fixturePath('sd1_tiny_cases.safetensors'));
  const cfg = detectCheckpoint(ckpt).textEncoders[0];
  const g = buildTextEncoderGraph(cfg, safetensorsWeights(ckpt), { hiddenFromEnd: 2 });
  const s = await createSession(serializeModel(g));
  const ids = cases.readTensor('text/ids');
  const out = await runSession(s, { ids: { shape: ids.shape, ids: Array.from(ids.data) } });
  assert.deepEqual(out.last.shape, [3, 77, cfg.width]);
  near('text/last', out.last.data, cases.readFloat32('text/last'));
  near('text/penultimate', out.hidden.data, cases.readFloat32('text/penultimate'));
  // int32 ids give the same graph result
  const g32 = buildTextEncoderGraph(cfg, safetensorsWeights(ckpt), { idsType: 'int32', hiddenFromEnd: 2 });
  const o32 = await runSession(await createSession(serializeModel(g32)), {
    ids: { shape: ids.shape, ids: Int32Array.from(ids.data), type: 'int32' },
  });
  assert.equal(maxAbsDiff(o32.last.data, out.last.data), 0);
  // a hidden-only graph (no final layers) still gives the penultimate state
  const gh = buildTextEncoderGraph(cfg, safetensorsWeights(ckpt), { hiddenFromEnd: 2, last: false });
  const oh = await runSession(await createSession(serializeModel(gh)), {
    ids: { shape: ids.shape, ids: Array.from(ids.data) },
  });
  near('hidden-only penultimate', oh.hidden.data, cases.readFloat32('text/penultimate'));
  assert.equal(oh.last, undefined);
});

test('SDXL: concat(CLIP-L, OpenCLIP-G penultimate) context and OpenCLIP pooled projection', { skip }, async () => {
  const ckpt = SafetensorsFile.open(fixturePath('sdxl_tiny.safetensors'));
  const cases = SafetensorsFile.open(fixturePath('sdxl_tiny_cases.safetensors'));
  const [cl, cg] = detectCheckpoint(ckpt).textEncoders;
  const idsL = cases.readTensor('text/ids_l'),
    idsG = cases.readTensor('text/ids_g');
  const sl = await createSession(
    serializeModel(buildTextEncoderGraph(cl, safetensorsWeights(ckpt), { hiddenFromEnd: 2, last: false })),
  );
  const sg = await createSession(
    serializeModel(buildTextEncoderGraph(cg, safetensorsWeights(ckpt), { hiddenFromEnd: 2, last: false })),
  );
  const ol = await runSession(sl, { ids: { shape: idsL.shape, ids: Array.from(idsL.data) } });
  const og = await runSession(sg, { ids: { shape: idsG.shape, ids: Array.from(idsG.data) } });
  const [B, T] = idsL.shape,
    CL = cl.width,
    CG = cg.width;
  const context = new Float32Array(B * T * (CL + CG));
  for (let r = 0; r < B * T; r++) {
    context.set(ol.hidden.data.subarray(r * CL, (r + 1) * CL), r * (CL + CG));
    context.set(og.hidden.data.subarray(r * CG, (r + 1) * CG), r * (CL + CG) + CL);
  }
  near('text/context', context, cases.readFloat32('text/context'));
  assert.deepEqual(og.pooled.shape, [B, cg.projectionDim]);
  near('text/pooled', og.pooled.data, cases.readFloat32('text/pooled'));
});
