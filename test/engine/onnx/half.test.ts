/** float32 -> fp16 conversion: exact values, rounding to nearest even, subnormals, overflow, round trip. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { floatToHalf } from '../../../server/engine/onnx/half.js';
import { halfToFloat } from '../../../server/engine/io/safetensors.js';

test('floatToHalf rounds to nearest even and handles the edges', () => {
  assert.equal(floatToHalf(1), 0x3c00);
  assert.equal(floatToHalf(-2), 0xc000);
  assert.equal(floatToHalf(65504), 0x7bff);
  assert.equal(floatToHalf(65520), 0x7c00); // rounds up to inf
  assert.equal(floatToHalf(2 ** -24), 0x0001); // smallest subnormal
  assert.equal(floatToHalf(2 ** -26), 0x0000); // below half of it: zero
  assert.equal(floatToHalf(1 + 2 ** -11), 0x3c00); // tie -> even
  assert.equal(floatToHalf(1 + 3 * 2 ** -11), 0x3c02); // tie -> even (up)
  assert.equal(floatToHalf(-Infinity), 0xfc00);
  assert.ok((floatToHalf(NaN) & 0x7c00) === 0x7c00 && (floatToHalf(NaN) & 0x3ff) !== 0);
  for (let h = 0; h < 0x7c00; h += 7) assert.equal(floatToHalf(halfToFloat(h)), h); // every finite half round-trips
});
