/** Model affinity ranking (server/farm/affinity.ts): which queue a free worker tries first. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { queueOrder, type QueueHead } from '../../server/farm/affinity.js';
import type { WorkerState } from '../../server/farm/protocol.js';

const now = 100000;
const o = { affinity: true, maxWaitMs: 10000, orphanGraceMs: 3000 };
const head = (name: string, ckpt: string, age: number): QueueHead => ({ name, ckpt, oldest: now - age });
const other = (id: string, loaded: string[], onDisk: string[], busy = false): WorkerState => ({
  id,
  host: 'h',
  pid: 1,
  device: null,
  loaded,
  onDisk,
  running: busy ? ['p'] : [],
  concurrency: 1,
  done: 0,
  switches: 0,
  ts: now,
});
const me = (loaded: string[], onDisk = ['a', 'b', 'c']) => ({ id: 'me', loaded, onDisk: new Set(onDisk) });

test('the checkpoint this worker holds comes first, even when younger', () => {
  assert.deepEqual(queueOrder([head('qa', 'a', 5000), head('qb', 'b', 1000)], me(['b']), [], o, now), ['qb', 'qa']);
});

test('without affinity the oldest prompt comes first', () => {
  assert.deepEqual(
    queueOrder([head('qa', 'a', 5000), head('qb', 'b', 1000)], me(['b']), [], { ...o, affinity: false }, now),
    ['qa', 'qb'],
  );
});

test('a checkpoint an idle worker holds is left to it; a busy holder does not block', () => {
  const heads = [head('qa', 'a', 5000), head('qc', 'c', 1000)];
  assert.deepEqual(queueOrder(heads, me([]), [other('w2', ['a'], ['a'])], o, now), ['qc']);
  assert.deepEqual(queueOrder(heads, me([]), [other('w2', ['a'], ['a'], true)], o, now), ['qa', 'qc']);
});

test('a prompt waiting longer than maxWaitMs is taken by anyone first', () => {
  const heads = [head('qa', 'a', 12000), head('qb', 'b', 1000)];
  assert.deepEqual(queueOrder(heads, me(['b']), [other('w2', ['a'], ['a'])], o, now), ['qa', 'qb']);
});

test('a checkpoint not on this disk is skipped while another worker has it, taken (to report) when nobody has it', () => {
  const heads = [head('qx', 'x', 5000)];
  assert.deepEqual(queueOrder(heads, me([]), [other('w2', [], ['x'], true)], o, now), []);
  assert.deepEqual(queueOrder(heads, me([]), [], o, now), ['qx']);
  assert.deepEqual(queueOrder([head('qx', 'x', 1000)], me([]), [], o, now), [], 'not before the grace period');
});

test('prompts without a checkpoint go to anyone', () => {
  assert.deepEqual(queueOrder([head('tcd-any', '', 10)], me([], []), [], o, now), ['tcd-any']);
});
