import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ModelCache, ModelTooBigError } from '../../../server/engine/runtime/model-cache.js';

class Fake {
  disposed = false;
  constructor(readonly name: string) {}
  dispose() {
    this.disposed = true;
  }
}
const load = (name: string) => async () => new Fake(name);

test('LRU eviction order under a RAM budget, with hits refreshing recency', async () => {
  const cache = new ModelCache<Fake>({ ram: 100, vram: Infinity });
  const a = await cache.acquire('a', { pool: 'ram', bytes: 40 }, 'A', load('a'));
  await cache.acquire('b', { pool: 'ram', bytes: 40 }, 'B', load('b'));
  assert.equal(cache.used('ram'), 80);
  assert.equal(await cache.acquire('a', { pool: 'ram', bytes: 40 }, 'A', load('never')), a); // hit: A is now most recent
  await cache.acquire('c', { pool: 'ram', bytes: 40 }, 'C', load('c')); // evicts B, the least recently used
  assert.deepEqual(cache.keys(), ['a', 'c']);
  assert.deepEqual(cache.evictions, ['B']);
  await cache.acquire('d', { pool: 'ram', bytes: 90 }, 'D', load('d')); // needs both gone
  assert.deepEqual(cache.keys(), ['d']);
  assert.deepEqual(cache.evictions, ['B', 'A', 'C']);
  assert.equal(a.disposed, true);
});

test('pools are budgeted separately', async () => {
  const cache = new ModelCache<Fake>({ ram: 50, vram: 50 });
  await cache.acquire('r', { pool: 'ram', bytes: 50 }, 'R', load('r'));
  await cache.acquire('v', { pool: 'vram', bytes: 50 }, 'V', load('v'));
  assert.deepEqual(cache.keys(), ['r', 'v']);
  await cache.acquire('v2', { pool: 'vram', bytes: 10 }, 'V2', load('v2'));
  assert.deepEqual(cache.keys(), ['r', 'v2']);
});

test('a model bigger than the whole budget is refused before loading, naming it and both sizes', async () => {
  const cache = new ModelCache<Fake>({ ram: 3 * 1024 * 1024, vram: Infinity });
  let loaded = false;
  await assert.rejects(
    cache.acquire('x', { pool: 'ram', bytes: 5 * 1024 * 1024 }, 'sdxl unet of big.safetensors', async () => {
      loaded = true;
      return new Fake('x');
    }),
    (e: unknown) =>
      e instanceof ModelTooBigError &&
      /^sdxl unet of big\.safetensors needs 5\.0 MiB but the whole RAM budget is 3\.0 MiB/.test(e.message),
  );
  assert.equal(loaded, false);
});

test('clear disposes everything without counting evictions; concurrent loads of one key share one load', async () => {
  const cache = new ModelCache<Fake>({ ram: 100, vram: Infinity });
  let loads = 0;
  const slow = async () => {
    loads++;
    await new Promise((r) => setTimeout(r, 10));
    return new Fake('s');
  };
  const [x, y] = await Promise.all([
    cache.acquire('s', { pool: 'ram', bytes: 10 }, 'S', slow),
    cache.acquire('s', { pool: 'ram', bytes: 10 }, 'S', slow),
  ]);
  assert.equal(loads, 1);
  assert.equal(x, y);
  await cache.clear();
  assert.equal(x.disposed, true);
  assert.deepEqual(cache.keys(), []);
  assert.deepEqual(cache.evictions, []);
});
