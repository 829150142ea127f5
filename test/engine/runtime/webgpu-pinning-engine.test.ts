/**
 * WebGPU GPU pinning as the Engine applies it (issue 9 point 2): an engine given a device switches on the Vulkan
 * device-select layer in its worker process's environment (process isolation) or in this process's (thread), one
 * GPU per process; without the built layer GPU 1 is refused and GPU 0 runs on the default adapter. The layer's own
 * behaviour is tested in gpu-pinning.test.ts; on the 2x H200 machine `bench --device 1` ran on GPU 1
 * (server/tools/bench/device-run.sh pin).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Engine, pinWebGpu } from '../../../server/engine/engine.js';
import { findVulkanLayer, VULKAN_LAYER_NAME } from '../../../server/engine/runtime/gpu-pinning.js';
import { deviceIsolation, engineOptions } from '../../../server/host.js';
import { debugWorkerEnv } from '../../../server/engine/testing.js';
import { parseCommandLine } from '../../../server/settings.js';

const layer = findVulkanLayer(resolve('.'));
const dir = mkdtempSync(join(tmpdir(), 'tcd-pin-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const quiet = () => {};

test('engines that are not WebGPU, or have no device, are left alone', () => {
  const iso = { mode: 'thread' as const };
  assert.equal(pinWebGpu('cpu', 1, iso, quiet, '/x'), iso);
  assert.equal(pinWebGpu('cuda', 1, iso, quiet, '/x'), iso);
  assert.equal(pinWebGpu('webgpu', undefined, iso, quiet, '/x'), iso);
  assert.equal(process.env.TCD_VULKAN_DEVICE, undefined);
});

test('process isolation: the layer variables go to the child environment only', () => {
  const out = pinWebGpu('webgpu', 1, { mode: 'process', env: { KEEP: '1' } }, quiet, '/opt/tcd/build/vulkan-layer');
  assert.equal(out.mode, 'process');
  assert.equal(out.env?.KEEP, '1');
  assert.equal(out.env?.TCD_VULKAN_DEVICE, '1');
  assert.match(out.env?.VK_LOADER_LAYERS_ENABLE ?? '', new RegExp(VULKAN_LAYER_NAME));
  assert.match(out.env?.VK_ADD_LAYER_PATH ?? '', /^\/opt\/tcd\/build\/vulkan-layer/);
  assert.equal(process.env.TCD_VULKAN_DEVICE, undefined);
});

test('without the built layer: GPU 1 is refused with how to build it, GPU 0 runs on the default adapter (logged)', () => {
  assert.throws(
    () => pinWebGpu('webgpu', 1, { mode: 'process' }, quiet, null),
    /cannot run WebGPU on GPU 1: .*scripts\/build-vulkan-layer\.sh/,
  );
  const logs: string[] = [];
  const iso = { mode: 'thread' as const };
  assert.equal(
    pinWebGpu('webgpu', 0, iso, (l) => logs.push(l), null),
    iso,
  );
  assert.match(logs[0], /webgpu runs on the default GPU/);
});

test('serve --devices runs WebGPU engines in child processes, CUDA/CPU ones as configured (default threads)', () => {
  assert.equal(deviceIsolation('webgpu'), 'process');
  assert.equal(deviceIsolation('WebGPU ', 'thread'), 'process');
  assert.equal(deviceIsolation('cuda'), undefined);
  assert.equal(deviceIsolation('cpu'), undefined);
  assert.equal(deviceIsolation('cuda', 'process'), 'process');
});

test(
  'a WebGPU engine on GPU 1 in a child process starts its worker with the layer on (the parent env untouched)',
  { skip: layer ? false : 'skipped: build/vulkan-layer not built (bash scripts/build-vulkan-layer.sh)' },
  async () => {
    const engine = new Engine({ ep: 'webgpu', device: 1, isolation: 'process', cacheDir: join(dir, 'c1'), log: quiet });
    try {
      const probe = await debugWorkerEnv(engine, 'TCD_VULKAN_DEVICE');
      assert.equal(probe.isolation, 'process');
      assert.notEqual(probe.pid, process.pid);
      assert.equal(probe.value, '1');
      assert.equal((await debugWorkerEnv(engine, 'VK_ADD_LAYER_PATH')).value?.split(':')[0], layer);
      assert.equal(process.env.TCD_VULKAN_DEVICE, undefined);
    } finally {
      await engine.close();
    }
  },
);

test(
  'worker --device N (or TCD_DEVICE) reaches the engine as its device option and pins like it',
  { skip: layer ? false : 'skipped: build/vulkan-layer not built (bash scripts/build-vulkan-layer.sh)' },
  async () => {
    const s = parseCommandLine('worker', ['--device', '1', '--ep', 'webgpu', '--isolation', 'process'], {});
    const engine = new Engine({ ...engineOptions(s.settings, quiet), cacheDir: join(dir, 'c5') });
    try {
      assert.equal((await debugWorkerEnv(engine, 'TCD_VULKAN_DEVICE')).value, '1');
      assert.equal(process.env.TCD_DEVICE, undefined, "nothing is written into this process's environment");
    } finally {
      await engine.close();
    }
  },
);

test(
  'thread isolation pins this process once: its worker thread sees the layer, a second GPU in the same process is refused',
  { skip: layer ? false : 'skipped: build/vulkan-layer not built (bash scripts/build-vulkan-layer.sh)' },
  async () => {
    const engine = new Engine({ ep: 'webgpu', device: 1, cacheDir: join(dir, 'c2'), log: quiet });
    try {
      assert.equal(process.env.TCD_VULKAN_DEVICE, '1');
      assert.equal((await debugWorkerEnv(engine, 'TCD_VULKAN_DEVICE')).value, '1');
      assert.throws(
        () => new Engine({ ep: 'webgpu', device: 0, cacheDir: join(dir, 'c3'), log: quiet }),
        /one process runs on one GPU and this one is on GPU 1/,
      );
      const same = new Engine({ ep: 'webgpu', device: 1, cacheDir: join(dir, 'c4'), log: quiet });
      await same.close();
      // closed right away, while the worker may still be probing WebGPU (here it finds no adapter for GPU 1): close()
      // lets the probe finish first, since terminating a thread inside Dawn's start-up would abort this process
    } finally {
      await engine.close();
    }
  },
);
