/**
 * The graph cache's disk budget end to end: the real Engine on the CPU (worker, session store, graph cache) with
 * every component written to files (externalDataMinMB: 0) and a budget far below one artifact
 * (the graphCacheMB option, which reaches the worker in its start message). Graphs of loaded sessions survive; after free() they are unloaded and
 * the next written graphs evict them, one log line each.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../../../server/engine/engine.js';
import { ensureDemoCheckpoint } from '../../../server/tools/make-checkpoint.js';
import { maxAbsDiff } from '../../helpers/fixtures.js';

const artifacts = (dir: string) =>
  readdirSync(dir)
    .filter((n) => /^[0-9a-f]{32}$/.test(n))
    .sort();

test('Engine on the CPU with a tiny graph cache budget: loaded graphs kept, unloaded ones evicted', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tcd-gcb-engine-'));
  const lines: string[] = [];
  const cacheDir = join(dir, 'cache');
  // ~10 KiB: every artifact is over budget on its own
  const engine = new Engine({
    ep: 'cpu',
    cacheDir,
    externalDataMinMB: 0,
    graphCacheMB: 0.01,
    log: (l) => lines.push(l),
  });
  try {
    const ckpt = await ensureDemoCheckpoint(join(dir, 'models'));
    const copy = join(dir, 'copy.safetensors'); // another file identity: other graph keys, same weights
    copyFileSync(ckpt, copy);

    const a = await engine.encodeText({ checkpoint: ckpt, loras: [], clipSkip: -1 }, 'a cat');
    const first = artifacts(cacheDir);
    assert.ok(first.length >= 1, 'text encoder graphs were written to files');
    assert.deepEqual(
      lines.filter((l) => /graph cache: evicted/.test(l)),
      [],
      'loaded graphs are never evicted',
    );

    await engine.free();
    const b = await engine.encodeText({ checkpoint: copy, loras: [], clipSkip: -1 }, 'a cat');
    assert.equal(maxAbsDiff(a.context.data, b.context.data), 0);
    const second = artifacts(cacheDir);
    assert.equal(second.length, first.length);
    assert.deepEqual(
      second.filter((k) => first.includes(k)),
      [],
      'the unloaded graphs went',
    );
    const evictedKeys = lines.flatMap((l) => /graph cache: evicted ([0-9a-f]{32})/.exec(l)?.[1] ?? []).sort();
    assert.deepEqual(evictedKeys, first, 'one log line per evicted artifact');
    assert.equal((await engine.stats()).graphsBuilt, 2 * first.length);
  } finally {
    await engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
