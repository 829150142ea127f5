/** 64-bit seeds: exact as decimal strings through validation, clamped when a client rounded 2^64-1 up to 2^64. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { convertConstant } from '../../server/executor/validate.js';
import { seedInput, seedValue } from '../../nodes/define.js';

test('a seed above 2^53 given as a string stays exact; above 2^64-1 it is refused', () => {
  const spec = seedInput();
  assert.deepEqual(convertConstant(spec, '18446744073709551615'), { value: '18446744073709551615' });
  assert.deepEqual(convertConstant(spec, '9223372036854775819'), { value: '9223372036854775819' });
  const over = convertConstant(spec, '18446744073709551616');
  assert.ok('error' in over && over.error.type === 'value_bigger_than_max');
  const neg = convertConstant(spec, '-9007199254740993');
  assert.ok('error' in neg && neg.error.type === 'value_smaller_than_min');
  assert.deepEqual(convertConstant(spec, 4294967301), { value: 4294967301 });
});

test('seedValue reads numbers, strings and bigints as uint64', () => {
  assert.equal(seedValue('9223372036854775819'), 9223372036854775819n);
  assert.equal(seedValue(4294967301), 4294967301n);
  assert.equal(seedValue(2 ** 64), 2n ** 64n - 1n);
  assert.equal(seedValue(5n), 5n);
});
