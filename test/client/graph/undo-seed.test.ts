import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UndoStack } from '../../../client/graph/undo-stack.js';
import { nextSeed } from '../../../client/graph/seed-control.js';

test('undo/redo walk the snapshot history; a new edit clears redo', () => {
  const h = new UndoStack();
  h.reset('a');
  assert.equal(h.record('a'), false);
  h.record('b');
  h.record('c');
  assert.equal(h.undo(), 'b');
  assert.equal(h.undo(), 'a');
  assert.equal(h.undo(), null);
  assert.equal(h.redo(), 'b');
  h.record('d');
  assert.equal(h.redo(), null);
  assert.equal(h.undo(), 'b');
});

test('step counts follow undo/redo; replacing the present keeps both stacks', () => {
  const h = new UndoStack();
  h.reset('a');
  h.record('b');
  h.record('c');
  h.undo();
  assert.deepEqual([h.undoCount, h.redoCount], [1, 1]);
  // what restoring 'b' serialises to replaces it: no step, redo still leads to 'c'
  h.replacePresent('b2');
  assert.deepEqual([h.present, h.undoCount, h.redoCount], ['b2', 1, 1]);
  assert.equal(h.record('b2'), false);
  assert.equal(h.redo(), 'c');
  assert.equal(h.undo(), 'b2');
  assert.deepEqual([h.undoCount, h.redoCount], [1, 1]);
});

test('history is bounded', () => {
  const h = new UndoStack(3);
  h.reset('0');
  for (let i = 1; i <= 10; i++) h.record(String(i));
  assert.equal(h.undo(), '9');
  assert.equal(h.undo(), '8');
  assert.equal(h.undo(), '7');
  assert.equal(h.undo(), null);
});

test('seed controls', () => {
  assert.equal(nextSeed(5, 'fixed'), 5);
  assert.equal(nextSeed(5, 'increment', { max: 5 }), 5);
  assert.equal(nextSeed(5, 'increment'), 6);
  assert.equal(nextSeed(0, 'decrement'), 0);
  assert.equal(nextSeed(5, 'decrement'), 4);
  assert.equal(
    nextSeed(5, 'randomize', { min: 10, max: 19 }, () => 0.999),
    19,
  );
  assert.equal(
    nextSeed(5, 'randomize', { min: 10, max: 19 }, () => 0),
    10,
  );
});

import { fuzzySearch, fuzzyScore } from '../../../client/graph/fuzzy.js';

test('fuzzy search ranks subsequence matches', () => {
  const names = [
    'KSampler',
    'KSamplerAdvanced',
    'CLIPTextEncode',
    'CheckpointLoaderSimple',
    'VAEDecode',
    'TCDSampler',
    'SaveImage',
  ];
  assert.equal(fuzzyScore('xyz', 'KSampler'), null);
  assert.deepEqual(fuzzySearch('ksamp', names, (n) => [n]).slice(0, 2), ['KSampler', 'KSamplerAdvanced']);
  assert.equal(fuzzySearch('clptxt', names, (n) => [n])[0], 'CLIPTextEncode');
  assert.equal(fuzzySearch('tcd', names, (n) => [n])[0], 'TCDSampler');
  assert.equal(fuzzySearch('ckpt load', names, (n) => [n])[0], 'CheckpointLoaderSimple');
  assert.equal(fuzzySearch('vae', names, (n) => [n])[0], 'VAEDecode');
});
