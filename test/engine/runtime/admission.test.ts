/**
 * The memory admission model (server/engine/runtime/estimate.ts, issue 18 finding 3) on the released SD1.5 and SDXL
 * layouts and the demo model: attention grows with the square of the token count, the largest size it offers fits
 * while the next step up does not, and the refusal says so in numbers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  activationBytes,
  admit,
  largestFitting,
  MemoryAdmissionError,
  type AdmissionRequest,
} from '../../../server/engine/runtime/estimate.js';
import { presetConfig } from '../../../server/tools/make-checkpoint.js';

const GiB = 1024 ** 3;
const req = (op: AdmissionRequest['op'], px: number, batch = 1, dtypeBytes = 4): AdmissionRequest => ({
  op,
  latentH: px / 8,
  latentW: px / 8,
  batch,
  dtypeBytes,
});

test('attention dominates: doubling the side multiplies the VAE decode by about 16 at large sizes', () => {
  const demo = presetConfig('demo');
  const a = activationBytes(demo, req('vae_decode', 2048)),
    b = activationBytes(demo, req('vae_decode', 4096));
  assert.ok(
    a > 30 * GiB,
    `a 2048x2048 decode counts the 65,536-token mid-block attention: ${(a / GiB).toFixed(1)} GiB`,
  );
  assert.ok(b / a > 15 && b / a <= 16, `${b / a}`);
  // batch and dtype scale linearly
  const sdxl = presetConfig('sdxl');
  assert.equal(activationBytes(sdxl, req('unet', 1024, 2, 2)), 2 * activationBytes(sdxl, req('unet', 1024, 1, 2)));
  assert.equal(activationBytes(sdxl, req('unet', 1024, 1, 4)), 2 * activationBytes(sdxl, req('unet', 1024, 1, 2)));
});

test('sizes people run fit a 24 GiB GPU; 4096x4096 SDXL does not', () => {
  const budget = 24 * GiB;
  for (const [name, px] of [
    ['sd15', 512],
    ['sd15', 768],
    ['sdxl', 1024],
  ] as const) {
    assert.ok(activationBytes(presetConfig(name), req('unet', px, 2, 2)) < budget, `${name} ${px}`);
  }
  assert.ok(activationBytes(presetConfig('sdxl'), req('unet', 4096, 2, 2)) > budget);
});

test('the largest size offered fits and 64 px more does not; the refusal names need, budget and that size', () => {
  const demo = presetConfig('demo');
  const budget = 2 * GiB;
  for (const op of ['unet', 'vae_decode'] as const) {
    const r = req(op, 4096, op === 'unet' ? 2 : 1);
    const best = largestFitting(demo, r, budget)!;
    assert.equal(best.width, best.height);
    assert.equal(best.width % 64, 0);
    assert.ok(activationBytes(demo, { ...r, latentH: best.height / 8, latentW: best.width / 8 }) <= budget);
    assert.ok(activationBytes(demo, { ...r, latentH: best.height / 8 + 8, latentW: best.width / 8 + 8 }) > budget);
    assert.throws(
      () => admit(demo, r, budget, 'the test budget'),
      (e: unknown) => {
        assert.ok(e instanceof MemoryAdmissionError);
        assert.match(
          e.message,
          new RegExp(
            `^4096x4096 needs about [\\d.]+ GiB .* the test budget allows 2\\.0 GiB; the largest size that fits is ${best.width}x${best.height}`,
          ),
        );
        return true;
      },
    );
  }
  assert.doesNotThrow(() => admit(demo, req('unet', 512), budget, 'x'));
  assert.doesNotThrow(() => admit(demo, req('unet', 8192), Infinity, 'an unlimited budget'));
});
