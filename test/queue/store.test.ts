/**
 * The SQLite queue (server/queue/store.ts) and PromptQueue on a real database file, reopened as a restart would:
 * prompt numbers keep increasing across a restart and `front` ones go before every pending one, history keeps
 * completion order (not number order), deleting pending prompts never removes a running one, the event log is
 * pruned to what it keeps, and /queue rows carry client_id in extra_data as ComfyUI's do.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { historyEntry, QueueStore, type QueueItem } from '../../server/queue/store.js';
import { PromptQueue, type QueueBackend } from '../../server/queue/prompt-queue.js';
import { LocalRunner } from '../../server/queue/local-runner.js';
import { Executor } from '../../server/executor/execute.js';

const root = mkdtempSync(join(tmpdir(), 'tcd-store-'));
after(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const freshDir = () => join(root, `d${dirs++}`);

const item = (promptId: string, number: number, clientId: string | null = null): QueueItem => ({
  number,
  promptId,
  prompt: { '1': { class_type: 'X', inputs: {} } },
  extraData: { extra_pnginfo: { n: number } },
  outputs: ['1'],
  clientId,
});

test('prompt numbers increase and keep increasing after a restart; front numbers go before all pending', () => {
  const dir = freshDir();
  let s = new QueueStore(dir);
  const first = [s.nextNumber(), s.nextNumber(), s.nextNumber()];
  assert.deepEqual(first, [0, 1, 2]);
  s.enqueue(item('a', first[0]));
  s.enqueue(item('b', first[1]));
  s.close();
  s = new QueueStore(dir);
  const next = s.nextNumber();
  assert.equal(next, 3, 'the counter survives the restart');
  s.enqueue(item('c', next));
  const front = s.nextNumber(true);
  assert.ok(front < 0, `front number ${front}`);
  s.enqueue(item('f', front));
  const front2 = s.nextNumber(true);
  assert.ok(front2 < front);
  s.enqueue(item('g', front2));
  assert.deepEqual(
    s.pending().map((i) => i.promptId),
    ['g', 'f', 'a', 'b', 'c'],
  );
  assert.equal(s.take()!.promptId, 'g');
  s.close();
});

test('history lists prompts in the order they finished, not by number, also within one millisecond', () => {
  const s = new QueueStore(freshDir());
  // no fsync, so that many prompts finish within the same millisecond (as on a fast disk)
  s.db.pragma('synchronous = OFF');
  // e.g. prompts queued to the front (lower numbers) finishing after the one that was running
  const order = Array.from({ length: 40 }, (_, i) => `p${i}`);
  for (const [i, id] of order.entries()) {
    const it = item(id, 100 - i);
    s.enqueue(it);
    s.finish(it, historyEntry(it, {}, 'success', []));
  }
  assert.deepEqual(Object.keys(s.history()), order);
  assert.deepEqual(Object.keys(s.history(2)), ['p38', 'p39']);
  assert.deepEqual(Object.keys(s.history(2, 1)), ['p1', 'p2']);
  s.close();
});

test('deleting pending prompts leaves a running one alone, also across a restart', () => {
  const dir = freshDir();
  let s = new QueueStore(dir);
  s.enqueue(item('run', 0));
  s.enqueue(item('wait', 1));
  assert.equal(s.take()!.promptId, 'run');
  assert.equal(s.deletePending(['run', 'wait']), 1);
  assert.equal(s.clearPending(), 0);
  s.close();
  s = new QueueStore(dir);
  assert.deepEqual(
    s.running().map((i) => [i.promptId, i.number, i.clientId, i.extraData]),
    [['run', 0, null, { extra_pnginfo: { n: 0 } }]],
  );
  assert.deepEqual(s.pending(), []);
  s.close();
});

test('the event log is pruned to the last eventsKept events', () => {
  const s = new QueueStore(freshDir(), 50);
  for (let i = 1; i <= 1000; i++) s.logEvent('c', null, 'progress', { i });
  const left = s.eventsSince('c', 0);
  assert.equal(left.length, 50);
  assert.deepEqual([left[0].data, left[49].data], [{ i: 951 }, { i: 1000 }]);
  s.close();
});

test('history keeps the last historyKept finished prompts (ComfyUI keeps 10000), also across a restart', () => {
  const dir = freshDir();
  let s = new QueueStore(dir, 20000, 3);
  s.db.pragma('synchronous = OFF');
  const finish = (id: string, n: number) => {
    const it = item(id, n);
    s.enqueue(it);
    s.finish(it, historyEntry(it, {}, 'success', []));
  };
  for (let i = 0; i < 5; i++) finish(`h${i}`, i);
  assert.deepEqual(Object.keys(s.history()), ['h2', 'h3', 'h4']);
  assert.equal(s.historyItem('h0'), undefined);
  s.deleteHistory(['h3']);
  finish('h5', 5);
  assert.deepEqual(Object.keys(s.history()), ['h2', 'h4', 'h5'], 'a deleted entry leaves room: nothing else dropped');
  s.close();
  s = new QueueStore(dir, 20000, 3);
  finish('h6', 6);
  assert.deepEqual(Object.keys(s.history()), ['h4', 'h5', 'h6']);
  s.close();
});

test('PromptQueue: /queue rows carry client_id in extra_data; a given id and number are kept', () => {
  const store = new QueueStore(freshDir());
  const sink = { send: () => {}, preview: () => {} };
  // a real runner that is never started: prompts stay pending
  const q = new PromptQueue<QueueBackend>(
    store,
    sink,
    () => {},
    (ctx) => new LocalRunner(ctx, new Executor(new Map(), {})),
  );
  const a = q.submit({ prompt: {}, extraData: { k: 1 }, clientId: 'alice', outputs: ['1'] });
  // POST /prompt may name the prompt id and the number (ComfyUI accepts both)
  const b = q.submit({ prompt: {}, extraData: {}, clientId: null, outputs: ['1'], number: -7.5, promptId: 'mine' });
  assert.equal(b.prompt_id, 'mine');
  assert.ok(q.has('mine'));
  assert.equal(b.number, -7.5);
  const snap = q.snapshot();
  assert.deepEqual(
    snap.queue_pending.map((r) => (r as unknown[]).slice(0, 2)),
    [
      [-7.5, b.prompt_id],
      [a.number, a.prompt_id],
    ],
  );
  assert.deepEqual((snap.queue_pending[1] as unknown[])[3], { k: 1, client_id: 'alice' });
  assert.deepEqual((snap.queue_pending[0] as unknown[])[3], { client_id: null });
  store.close();
});

test('the running node is remembered across a restart, also in a database made before the column existed', () => {
  const dir = freshDir();
  // a queue table as older versions created it (no running_node column), with a prompt left running
  let s = new QueueStore(dir);
  s.db.exec(`DROP TABLE queue`);
  s.db.exec(`CREATE TABLE queue (prompt_id TEXT PRIMARY KEY, number REAL NOT NULL, prompt TEXT NOT NULL,
    extra_data TEXT NOT NULL, outputs TEXT NOT NULL, client_id TEXT, state TEXT NOT NULL DEFAULT 'pending',
    created INTEGER NOT NULL)`);
  s.enqueue(item('old', 0));
  s.close();
  s = new QueueStore(dir);
  assert.equal(s.take()?.promptId, 'old');
  assert.equal(s.runningNode('old'), null, 'no node started yet');
  s.enqueue(item('waiting', 1));
  s.setRunningNode('old', '1');
  s.setRunningNode('waiting', '1');
  assert.equal(s.runningNode('waiting'), null, 'only a running prompt records a node');
  s.close();
  s = new QueueStore(dir);
  assert.equal(s.runningNode('old'), '1');
  s.close();
});
