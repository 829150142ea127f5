/**
 * GET /jobs keeps the summaries of finished jobs: ComfyUI's frontend asks for the list after every `status` message
 * (each idle tab gets a keepalive `status` every few seconds), and each request used to parse every history entry
 * (prompt + workflow). Now each entry is read once; new ones are read as they come, deleted ones dropped.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { api, waitHistory } from '../server/protocol-client.js';
import { startStubServer, chainPrompt, type StubServer } from '../executor/stub-server.js';
import { JobSummaries, type JobSource } from '../../server/app/comfy-frontend/jobs.js';

const stubs: StubServer[] = [];
after(async () => {
  for (const s of stubs) await s.stop();
});

test('finished-job summaries: each history entry is read once, new ones as they finish, deleted ones dropped', async () => {
  const s = await startStubServer();
  stubs.push(s);
  const run = async (seed: number) => {
    const id = (await api(s.url, 'POST', '/prompt', { prompt: chainPrompt({ seed }) })).json.prompt_id as string;
    await waitHistory(s.url, id);
    return id;
  };
  const ids = [await run(1), await run(2), await run(3)];
  const reads: string[] = [];
  // the real queue, with its entry reads counted
  const src: JobSource = {
    running: () => s.queue.running(),
    pending: () => s.queue.pending(),
    historyKeys: () => s.queue.historyKeys(),
    historyItem: (id) => (reads.push(id), s.queue.historyItem(id)),
  };
  const summaries = new JobSummaries();
  const first = summaries.finished(src);
  assert.deepEqual(first.map((j) => j.id).sort(), [...ids].sort());
  assert.deepEqual(
    first.map((j) => j.status),
    ['completed', 'completed', 'completed'],
  );
  assert.equal(reads.length, 3);
  const again = summaries.finished(src);
  assert.deepEqual(again, first, 'the same summaries');
  assert.equal(reads.length, 3, 'nothing read again');
  const fourth = await run(4);
  assert.equal(summaries.finished(src).length, 4);
  assert.deepEqual(reads.slice(3), [fourth], 'only the new entry is read');
  assert.equal((await api(s.url, 'POST', '/history', { delete: [ids[0]] })).status, 200);
  assert.deepEqual(
    summaries
      .finished(src)
      .map((j) => j.id)
      .sort(),
    [ids[1], ids[2], fourth].sort(),
  );
  assert.equal(reads.length, 4);
  // the route answers from the same summaries: the newest first, the deleted one gone
  const listed = (await api(s.url, 'GET', '/api/jobs?status=completed,failed,cancelled&limit=64&offset=0')).json;
  assert.deepEqual(
    listed.jobs.map((j: { id: string }) => j.id),
    [fourth, ids[2], ids[1]],
  );
  assert.equal(listed.pagination.total, 3);
  assert.equal((await api(s.url, 'POST', '/history', { clear: true })).status, 200);
  assert.deepEqual((await api(s.url, 'GET', '/api/jobs?status=completed')).json.jobs, []);
});
