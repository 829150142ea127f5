/**
 * The graph cache's disk budget: after a new artifact is written, the least recently used artifact directories are
 * evicted (whole) until the cache fits; reuse refreshes recency; the new artifact and those in use are spared; 0
 * means no limit; stale `*.tmp-*` leftovers are removed while fresh ones (writes in progress) are kept.
 * Artifacts are real: written by graphArtifact from a one-weight graph, about 0.25 MiB of external data each.
 */
import { settingsFromEnv } from '../../../server/settings.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder } from '../../../server/engine/onnx/graph.js';
import { memoryWeights } from '../../../server/engine/onnx/weights.js';
import {
  STALE_TMP_MS,
  enforceGraphCacheBudget,
  graphArtifact,
  graphCacheBudgetBytes,
  graphKey,
} from '../../../server/engine/runtime/graph-cache.js';

const MiB = 1024 ** 2;
const N = 65536; // floats per artifact: 256 KiB of external data

function build(seed: number): GraphBuilder {
  const data = new Float32Array(N).fill(seed);
  const g = new GraphBuilder({ name: `fake${seed}`, weights: memoryWeights({ w: { shape: [N], data } }) });
  g.output(g.op.Add(g.input('x', 'float32', [N]), g.weight('w')), 'y');
  return g;
}

/** Writes artifact `i` (real writer) with the given budget; returns its key and what it evicted. */
function write(
  cacheDir: string,
  i: number,
  budgetBytes: number,
  extra: Partial<Parameters<typeof graphArtifact>[0]> = {},
) {
  const key = graphKey({ fake: i });
  const art = graphArtifact({ cacheDir, key, externalize: true, build: () => build(i), budgetBytes, ...extra });
  assert.equal(art.kind, 'file');
  return { key, art: art as Extract<typeof art, { kind: 'file' }> };
}

/** Pretends artifact `key` was last used `minutesAgo` minutes ago. */
function age(cacheDir: string, key: string, minutesAgo: number): void {
  const t = new Date(Date.now() - minutesAgo * 60000);
  utimesSync(join(cacheDir, key), t, t);
}

const present = (cacheDir: string, key: string) => existsSync(join(cacheDir, key, 'model.onnx'));

function withDir(fn: (dir: string) => void | Promise<void>) {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tcd-gcb-'));
    try {
      await fn(join(dir, 'cache'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

test(
  'an over-budget write evicts the least recently used artifacts, whole, and logs each',
  withDir((cache) => {
    const budget = 0.8 * MiB; // three artifacts of ~0.25 MiB fit, four do not
    const keys = [0, 1, 2].map((i) => write(cache, i, budget).key);
    age(cache, keys[0], 30);
    age(cache, keys[1], 50);
    age(cache, keys[2], 10); // LRU order: 1, 0, 2
    const lines: string[] = [];
    const d = write(cache, 3, budget, { log: (l) => lines.push(l) });
    assert.deepEqual(
      d.art.evicted.map((e) => e.key),
      [keys[1]],
    );
    assert.ok(
      d.art.evicted[0].bytes > N * 4 && d.art.evicted[0].bytes < N * 4 + 64 * 1024,
      `bytes ${d.art.evicted[0].bytes}`,
    );
    assert.equal(lines.length, 1);
    assert.match(lines[0], new RegExp(`evicted ${keys[1]}`));
    assert.ok(!existsSync(join(cache, keys[1])), 'the whole directory is gone');
    for (const k of [keys[0], keys[2], d.key]) assert.ok(present(cache, k));
    // nothing left behind by the rename-then-delete
    assert.deepEqual(
      readdirSync(cache).filter((n) => n.includes('.tmp-')),
      [],
    );
    // a much smaller budget evicts oldest first until it fits: 0 (30 min) and 2 (10 min) go, the new one stays
    const e = write(cache, 4, 0.3 * MiB);
    assert.deepEqual(
      e.art.evicted.map((x) => x.key),
      [keys[0], keys[2], d.key],
    );
    assert.deepEqual(readdirSync(cache), [e.key]);
  }),
);

test(
  'reuse refreshes recency: a reused artifact outlives newer but unused ones',
  withDir((cache) => {
    const budget = 0.8 * MiB;
    const keys = [0, 1, 2].map((i) => write(cache, i, budget).key);
    age(cache, keys[0], 60);
    age(cache, keys[1], 40);
    age(cache, keys[2], 20);
    const again = write(cache, 0, budget); // the oldest, used again
    assert.equal(again.art.reused, true);
    assert.deepEqual(again.art.evicted, []);
    const d = write(cache, 3, budget);
    assert.deepEqual(
      d.art.evicted.map((e) => e.key),
      [keys[1]],
      'the least recently *used* one goes, not the oldest written',
    );
    assert.ok(present(cache, keys[0]));
  }),
);

test(
  'loaded artifacts and the new one survive, even alone over budget',
  withDir((cache) => {
    const loaded = new Set<string>();
    const inUse = (owner: string) => ({ owner, loaded: () => loaded });
    const a = write(cache, 0, Infinity, { inUse: inUse('session-a') });
    const b = write(cache, 1, Infinity, { inUse: inUse('session-b') });
    age(cache, a.key, 60);
    age(cache, b.key, 30);
    loaded.add('session-a'); // b's session was unloaded
    const c = write(cache, 2, 1, { inUse: inUse('session-c') }); // 1 byte: nothing fits
    assert.deepEqual(
      c.art.evicted.map((e) => e.key),
      [b.key],
    );
    assert.ok(present(cache, a.key), 'in use: kept');
    assert.ok(present(cache, c.key), 'just written: kept');
    // once a is unloaded it can go; the newly written one still stays
    loaded.delete('session-a');
    const d = write(cache, 3, 1, { inUse: inUse('session-d') });
    assert.deepEqual(new Set(d.art.evicted.map((e) => e.key)), new Set([a.key, c.key]));
    assert.deepEqual(readdirSync(cache), [d.key]);
  }),
);

test(
  'budget 0 (TCD_GRAPH_CACHE_MB=0) means unlimited',
  withDir((cache) => {
    const budget = graphCacheBudgetBytes(cache, settingsFromEnv({ TCD_GRAPH_CACHE_MB: '0' }).graphCacheMB);
    assert.equal(budget, Infinity);
    for (let i = 0; i < 5; i++) assert.deepEqual(write(cache, i, budget).art.evicted, []);
    assert.equal(readdirSync(cache).length, 5);
  }),
);

test(
  'stale temporary directories are removed, fresh ones (writes in progress) kept and not counted',
  withDir((cache) => {
    mkdirSync(cache, { recursive: true });
    const lay = (name: string, minutesAgo: number) => {
      const dir = join(cache, name);
      mkdirSync(dir);
      writeFileSync(join(dir, 'model.onnx.bin'), Buffer.alloc(512 * 1024));
      const t = new Date(Date.now() - minutesAgo * 60000);
      utimesSync(join(dir, 'model.onnx.bin'), t, t);
      utimesSync(dir, t, t);
    };
    const k = graphKey({ fake: 'tmp' });
    lay(`${k}.tmp-999999-old`, STALE_TMP_MS / 60000 + 5);
    lay(`${k}.tmp-999998-fresh`, 5);
    // a fresh writer whose directory mtime is old but whose .bin is still growing counts as fresh
    lay(`${k}.tmp-999997-growing`, 120);
    const now = new Date();
    utimesSync(join(cache, `${k}.tmp-999997-growing`, 'model.onnx.bin'), now, now);
    mkdirSync(join(cache, 'not-an-artifact')); // foreign entries are never touched
    const lines: string[] = [];
    const a = write(cache, 0, 0.5 * MiB, { log: (l) => lines.push(l) });
    assert.deepEqual(a.art.evicted, [], 'fresh tmp dirs do not count against the budget');
    assert.deepEqual(
      readdirSync(cache).sort(),
      [a.key, `${k}.tmp-999997-growing`, `${k}.tmp-999998-fresh`, 'not-an-artifact'].sort(),
    );
    assert.equal(lines.length, 1);
    assert.match(lines[0], /removed .*tmp-999999-old/);
  }),
);

test(
  'TCD_GRAPH_CACHE_MB: MiB, and clear errors for anything else; default at least 8 GiB',
  withDir((cache) => {
    const mb = (raw: string) => settingsFromEnv({ TCD_GRAPH_CACHE_MB: raw }).graphCacheMB;
    assert.equal(graphCacheBudgetBytes(cache, mb('20480')), 20 * 1024 ** 3);
    assert.equal(graphCacheBudgetBytes(cache, mb(' 1.5 ')), 1.5 * MiB);
    for (const bad of ['-1', '10GB', 'lots', '1e3', 'NaN']) {
      assert.throws(
        () => mb(bad),
        (e: Error) =>
          e.message.includes('TCD_GRAPH_CACHE_MB') && e.message.includes(JSON.stringify(bad)) && /MiB/.test(e.message),
        bad,
      );
    }
    assert.throws(() => graphCacheBudgetBytes(cache, -1), /non-negative number of MiB/);
    const def = graphCacheBudgetBytes(cache);
    assert.ok(def >= 8 * 1024 ** 3, `default ${def}`);
    assert.equal(graphCacheBudgetBytes(cache), def, 'fixed at first use');
  }),
);

test(
  'enforceGraphCacheBudget on its own: keep set honoured, nothing to do under budget',
  withDir((cache) => {
    const keys = [0, 1].map((i) => write(cache, i, Infinity).key);
    assert.deepEqual(enforceGraphCacheBudget({ cacheDir: cache, budgetBytes: 10 * MiB, keep: new Set() }), []);
    const ev = enforceGraphCacheBudget({ cacheDir: cache, budgetBytes: 0, keep: new Set([keys[0]]) });
    assert.deepEqual(
      ev.map((e) => e.key),
      [keys[1]],
    );
  }),
);
