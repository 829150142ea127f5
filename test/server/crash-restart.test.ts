/**
 * Issue 10 point 4 / issue 2 point 8: kill -9 the real server process while a prompt runs, restart it on the same
 * data folder: the pending prompts run, the interrupted one is in history as failed with a clear message naming the
 * node that was running (and its client can replay that event), and output/ holds no partial file.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { api, WsClient, waitHistory } from './protocol-client.js';
import { demoPrompt } from './demo-prompt.js';

const root = mkdtempSync(join(tmpdir(), 'tcd-crash-'));
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const p = (srv.address() as { port: number }).port;
      srv.close(() => resolve(p));
    });
  });
}

/** Spawns `tsx server/cli.ts serve` on the test folders and waits until it listens. */
async function spawnServer(port: number): Promise<{ child: ChildProcess; url: string; log: () => string }> {
  const args = [
    '--import',
    'tsx',
    'server/cli.ts',
    'serve',
    '--port',
    String(port),
    '--data',
    join(root, 'data'),
    '--models',
    join(root, 'models'),
    '--output',
    join(root, 'output'),
    '--input',
    join(root, 'input'),
    '--temp',
    join(root, 'temp'),
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let log = '';
  child.stdout!.on('data', (d) => (log += d));
  child.stderr!.on('data', (d) => (log += d));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60000;
  while (!log.includes('listening')) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`server did not start: ${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, url, log: () => log };
}

test(
  'kill -9 during a run, restart: pending prompts run, the interrupted one is reported failed, no partial output',
  { timeout: 170000 },
  async () => {
    const port = await freePort();
    const a = await spawnServer(port);
    const ws = await WsClient.connect(a.url, 'crash');
    // warm up (first prompt builds the graphs) so the kill lands in the sampler of the long prompt
    const warm = (
      await api(a.url, 'POST', '/prompt', {
        prompt: demoPrompt({ seed: 1, steps: 1, prefix: 'warm' }),
        client_id: 'crash',
      })
    ).json.prompt_id;
    await ws.untilDone(warm, 90000);
    const long = (
      await api(a.url, 'POST', '/prompt', {
        prompt: demoPrompt({ seed: 2, steps: 50, size: 384, prefix: 'killed' }),
        client_id: 'crash',
      })
    ).json.prompt_id;
    const pending = [];
    for (let i = 0; i < 3; i++)
      pending.push(
        (
          await api(a.url, 'POST', '/prompt', {
            prompt: demoPrompt({ seed: 10 + i, steps: 1, prefix: `pending${i}` }),
            client_id: 'crash',
          })
        ).json.prompt_id,
      );
    const progress = await ws.waitFor((m) => m.type === 'progress' && m.data.prompt_id === long, 60000);
    const dying = String(progress.data.node);
    assert.equal(dying, '3', 'the kill lands while the sampler (node 3) reports progress');
    const lastSeq = Math.max(
      ...ws.messages.filter((m) => m.seq !== undefined && m.type !== 'status').map((m) => m.seq!),
    );
    a.child.kill('SIGKILL');
    await new Promise((r) => a.child.once('exit', r));
    ws.close();

    const b = await spawnServer(port);
    assert.match(b.log(), /interrupted prompt/, 'the restart says what it recovered');
    // the client reconnects and replays what it missed: the failure of the killed prompt
    const back = await WsClient.connect(b.url, 'crash', { since: lastSeq });
    const err = await back.waitFor((m) => m.type === 'execution_error' && m.data.prompt_id === long);
    assert.match(err.data.exception_message, /stopped while this prompt was running node 3 \(TCDSampler\)/);
    // the report names where it died, as a failing node does: clients mark the node by id and show its class
    assert.deepEqual([err.data.node_id, err.data.node_type], [dying, 'TCDSampler']);
    for (const id of pending) {
      const h = await waitHistory(b.url, id, 90000);
      assert.equal(h.status.status_str, 'success', JSON.stringify(h.status.messages));
    }
    const killed = await waitHistory(b.url, long);
    assert.equal(killed.status.status_str, 'error');
    assert.equal(killed.status.completed, false);
    assert.match(JSON.stringify(killed.status.messages), /crash or restart/);
    const [kind, stored] = killed.status.messages.find((m: [string, unknown]) => m[0] === 'execution_error')!;
    assert.equal(kind, 'execution_error');
    const { node_id, node_type, exception_message } = stored as Record<string, string>;
    assert.deepEqual([node_id, node_type], ['3', 'TCDSampler'], 'history names the node that was running');
    assert.match(exception_message, /running node 3 \(TCDSampler\)/);
    assert.deepEqual(killed.outputs, {});
    const files = readdirSync(join(root, 'output'));
    assert.ok(!files.some((f) => f.startsWith('.tcd-partial-')), `no partial file: ${files}`);
    assert.ok(!files.some((f) => f.startsWith('killed')), 'nothing from the killed prompt');
    for (let i = 0; i < 3; i++)
      assert.ok(
        files.some((f) => f.startsWith(`pending${i}_`)),
        `pending${i} saved`,
      );
    const q = (await api(b.url, 'GET', '/queue')).json;
    assert.deepEqual([q.queue_running.length, q.queue_pending.length], [0, 0]);
    back.close();
    b.child.kill('SIGTERM');
    await new Promise((r) => b.child.once('exit', r));
  },
);
