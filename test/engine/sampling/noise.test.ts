/**
 * QueuedNoise replays recorded draws for the fixture tests; it must refuse a draw that was not recorded or that has
 * the wrong size, or a sampler drawing in the wrong order or shape would pass those tests unnoticed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QueuedNoise } from '../../../server/engine/sampling/noise.js';

test('QueuedNoise hands out the draws in order and counts them', () => {
  const a = Float32Array.of(1, 2, 3, 4),
    b = Float32Array.of(5, 6, 7, 8);
  const q = new QueuedNoise([a, b]);
  assert.equal(q.used, 0);
  assert.equal(q.randn([2, 2]), a);
  assert.equal(q.randn([1, 4]), b);
  assert.equal(q.used, 2);
});

test('QueuedNoise refuses one draw too many and a draw of the wrong size', () => {
  const q = new QueuedNoise([new Float32Array(4)]);
  assert.throws(() => q.randn([2, 3]), /draw 0 has 4 values, shape \[2,3\] needs 6/);
  const r = new QueuedNoise([new Float32Array(4)]);
  r.randn([4]);
  assert.throws(() => r.randn([4]), /draw 1 requested but only 1 recorded/);
});
