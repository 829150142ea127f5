/**
 * Issue 18 finding 6: a full data disk used to crash the server (SQLITE_FULL thrown inside the queue loop) and keep
 * it from starting. Here the server's whole data root is a small tmpfs that the test fills: writes are refused with
 * 507, the server stays up, restarts while the disk is full, and resumes once space returns, with the prompt that
 * was running when the disk filled recorded in history. Needs root to mount a tmpfs; skipped otherwise.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, openSync, writeSync, closeSync, unlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnStubServer, quick } from './child-harness.js';
import { api, uploadForm, waitHistory, sleep } from '../server/protocol-client.js';
import { chainPrompt } from '../executor/stub-server.js';
import { encodePng } from '../../server/storage/png.js';

function mountTmpfs(sizeMb: number): string | null {
  const dir = mkdtempSync(join(tmpdir(), 'tcd-full-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMb}m`, 'tmpfs', dir], { stdio: 'ignore' });
    return dir;
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return null;
  }
}

/** Fills the filesystem of `dir` to the last page with one file; returns its path. */
function fill(dir: string): string {
  const path = join(dir, 'filler');
  const fd = openSync(path, 'w');
  for (const size of [1 << 20, 4096, 512]) {
    const chunk = Buffer.alloc(size, 1);
    try {
      for (;;) writeSync(fd, chunk);
    } catch (e) {
      assert.equal((e as NodeJS.ErrnoException).code, 'ENOSPC');
    }
  }
  closeSync(fd);
  return path;
}

const mounted = mountTmpfs(24);

test(
  'finding 6: a full disk gives 507 refusals, the server stays up and restarts, and resumes when space returns',
  { skip: mounted ? false : 'needs root to mount a tmpfs' },
  async () => {
    const root = mounted!;
    let s = await spawnStubServer({ root, slowDelayMs: 20 });
    try {
      const first = (await api(s.url, 'POST', '/prompt', { prompt: chainPrompt({ steps: 2 }), client_id: 'c' })).json
        .prompt_id;
      assert.equal((await waitHistory(s.url, first, 20000)).status.status_str, 'success');
      // a prompt running when the disk fills
      const running = (
        await api(s.url, 'POST', '/prompt', { prompt: chainPrompt({ steps: 100, prefix: 'running' }), client_id: 'c' })
      ).json.prompt_id;
      for (let i = 0; i < 100 && (await api(s.url, 'GET', '/queue')).json.queue_running.length === 0; i++)
        await sleep(20);
      const filler = fill(root);

      const refused = await quick(s.url, 'POST', '/prompt', { prompt: chainPrompt(), client_id: 'c' });
      assert.equal(refused.status, 507, refused.text);
      assert.equal(refused.json.error.type, 'insufficient_storage');
      assert.match(refused.json.error.message, /disk is full/);
      const up = await quick(
        s.url,
        'POST',
        '/upload/image',
        uploadForm('x.png', encodePng(new Uint8Array(12), 2, 2, 3)),
      );
      assert.equal(up.status, 507, up.text);
      assert.equal((await quick(s.url, 'GET', '/history')).status, 200);
      assert.equal((await quick(s.url, 'GET', '/queue')).status, 200);
      await sleep(3000); // the running prompt ends (its image cannot be saved) and its result cannot be stored
      assert.ok(s.alive(), `server died on a full disk: ${s.stderr().slice(-2000)}`);
      assert.equal((await quick(s.url, 'GET', '/prompt')).status, 200);

      // a restart while the disk is still full comes up and refuses writes the same way
      await s.stop({ keep: true });
      s = await spawnStubServer({ root, slowDelayMs: 20 });
      assert.equal((await quick(s.url, 'POST', '/prompt', { prompt: chainPrompt(), client_id: 'c' })).status, 507);
      assert.ok(s.alive(), s.stderr());

      // space returns: new prompts are accepted and run, and the interrupted one is in history
      unlinkSync(filler);
      const after = await quick(s.url, 'POST', '/prompt', { prompt: chainPrompt({ steps: 2 }), client_id: 'c' });
      assert.equal(after.status, 200, after.text);
      assert.equal((await waitHistory(s.url, after.json.prompt_id, 20000)).status.status_str, 'success');
      const h = await waitHistory(s.url, running, 20000);
      assert.equal(h.status.status_str, 'error', 'reported failed, not lost');
      assert.ok((await api(s.url, 'GET', `/history/${first}`)).json[first], 'earlier history kept');
    } finally {
      await s.stop({ keep: true });
      try {
        execFileSync('umount', [root]);
      } catch {
        /* already gone */
      }
      rmSync(root, { recursive: true, force: true });
    }
  },
);
