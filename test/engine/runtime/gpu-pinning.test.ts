/**
 * WebGPU GPU pinning: the environment webgpuPinningEnv builds, and the real Vulkan layer under it.
 * The native part builds native/vulkan-device-select with scripts/build-vulkan-layer.sh into a temp dir and runs the
 * built list_devices (and onnxruntime-node's WebGPU EP) on Mesa's lavapipe CPU driver. It needs gcc, libvulkan-dev
 * and mesa-vulkan-drivers, and is skipped, with the missing piece named, when they are absent.
 * lavapipe has no VK_EXT_pci_bus_info, so what runs here is the layer's driver-order fallback; the PCI-bus-order
 * path runs on real GPUs (native/vulkan-device-select/README.md has the check for a multi-GPU host).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  VULKAN_LAYER_LIBRARY,
  VULKAN_LAYER_MANIFEST,
  VULKAN_LAYER_NAME,
  applyPinningEnv,
  findVulkanLayer,
  webgpuPinningEnv,
} from '../../../server/engine/runtime/gpu-pinning.js';
import { GraphBuilder } from '../../../server/engine/onnx/graph.js';
import { serializeModel } from '../../../server/engine/onnx/serialize.js';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

// ---- the pure function ----------------------------------------------------------------------------------------

test('webgpuPinningEnv: layer path, layer name, index and the Mesa switch for a fresh environment', () => {
  const r = webgpuPinningEnv(1, '/srv/tcd/build/vulkan-layer', { platform: 'linux' });
  assert.deepEqual(r, {
    env: {
      VK_ADD_LAYER_PATH: '/srv/tcd/build/vulkan-layer',
      VK_LOADER_LAYERS_ENABLE: VULKAN_LAYER_NAME,
      TCD_VULKAN_DEVICE: '1',
      NODEVICE_SELECT: '1',
    },
  });
});

test('webgpuPinningEnv: extends existing layer paths and enabled layers instead of replacing them', () => {
  const base = { VK_ADD_LAYER_PATH: '/opt/layers:/srv/tcd/build/vulkan-layer', VK_LOADER_LAYERS_ENABLE: '*validation' };
  const r = webgpuPinningEnv(0, '/srv/tcd/build/vulkan-layer', { platform: 'linux', base });
  assert.ok('env' in r);
  assert.equal(r.env.VK_ADD_LAYER_PATH, '/srv/tcd/build/vulkan-layer:/opt/layers');
  assert.equal(r.env.VK_LOADER_LAYERS_ENABLE, `*validation,${VULKAN_LAYER_NAME}`);
  const again = webgpuPinningEnv(0, '/srv/tcd/build/vulkan-layer', { platform: 'linux', base: { ...base, ...r.env } });
  assert.ok('env' in again);
  assert.equal(again.env.VK_LOADER_LAYERS_ENABLE, r.env.VK_LOADER_LAYERS_ENABLE, 'applying twice adds nothing');
  assert.equal(again.env.VK_ADD_LAYER_PATH, r.env.VK_ADD_LAYER_PATH);
});

test('webgpuPinningEnv: errors name the problem', () => {
  const err = (r: ReturnType<typeof webgpuPinningEnv>) => ('error' in r ? r.error : `no error: ${JSON.stringify(r)}`);
  assert.match(err(webgpuPinningEnv(0, null, { platform: 'linux' })), /not built .*build-vulkan-layer\.sh.*GPU 0/);
  assert.match(err(webgpuPinningEnv(-1, '/x', { platform: 'linux' })), /integer >= 0, got -1/);
  assert.match(err(webgpuPinningEnv(1.5, '/x', { platform: 'linux' })), /got 1\.5/);
  assert.match(err(webgpuPinningEnv(0, '/x', { platform: 'darwin' })), /Linux; this is darwin/);
  assert.match(err(webgpuPinningEnv(0, '/a:b', { platform: 'linux' })), /contains ':'/);
});

test('findVulkanLayer: the build dir only when both the library and the manifest are there', () => {
  const root = mkdtempSync(join(tmpdir(), 'tcd-pin-'));
  try {
    assert.equal(findVulkanLayer(root), null);
    const dir = join(root, 'build', 'vulkan-layer');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, VULKAN_LAYER_LIBRARY), '');
    assert.equal(findVulkanLayer(root), null, 'library without manifest');
    writeFileSync(join(dir, VULKAN_LAYER_MANIFEST), '{}');
    assert.equal(findVulkanLayer(root), dir);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('applyPinningEnv writes every variable into the target', () => {
  const target: NodeJS.ProcessEnv = { KEEP: 'x' };
  applyPinningEnv({ TCD_VULKAN_DEVICE: '3', NODEVICE_SELECT: '1' }, target);
  assert.deepEqual(target, { KEEP: 'x', TCD_VULKAN_DEVICE: '3', NODEVICE_SELECT: '1' });
});

// ---- the layer itself, on lavapipe --------------------------------------------------------------------------------

function lavapipeIcd(): string | null {
  const dir = '/usr/share/vulkan/icd.d';
  const f = existsSync(dir) ? readdirSync(dir).find((n) => /^lvp_icd\..*json$/.test(n)) : undefined;
  return f ? join(dir, f) : null;
}

function nativeSkip(): false | string {
  if (process.platform !== 'linux') return `skipped: the layer is Linux-only (this is ${process.platform})`;
  if (spawnSync('gcc', ['--version']).status !== 0) return 'skipped: gcc not found (apt-get install -y gcc)';
  if (!existsSync('/usr/include/vulkan/vk_layer.h'))
    return 'skipped: Vulkan headers not found (apt-get install -y libvulkan-dev)';
  if (!lavapipeIcd()) return 'skipped: lavapipe Vulkan driver not found (apt-get install -y mesa-vulkan-drivers)';
  return false;
}

const skip = nativeSkip();
let work = '';
let layerDir = '';
let icd = '';
let twoIcds = '';

before(() => {
  if (skip) return;
  work = mkdtempSync(join(tmpdir(), 'tcd-vklayer-'));
  layerDir = join(work, 'layer');
  const b = spawnSync('bash', [join(projectRoot, 'scripts', 'build-vulkan-layer.sh'), layerDir], { encoding: 'utf8' });
  assert.equal(b.status, 0, `build-vulkan-layer.sh failed:\n${b.stdout}${b.stderr}`);
  icd = lavapipeIcd()!;
  // two ICD manifests for the same driver: the loader then reports two llvmpipe devices
  for (const n of ['a', 'b']) copyFileSync(icd, join(work, `lvp-${n}.json`));
  twoIcds = `${join(work, 'lvp-a.json')}:${join(work, 'lvp-b.json')}`;
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

interface Listing {
  devices: number;
  names: string[];
  groups: number;
  groupSizes: number[];
  listed: boolean;
  created: number;
  stdout: string;
  stderr: string;
}

/** Runs list_devices under `env` (on top of this process's env minus any Vulkan variables from outside). */
function listDevices(env: Record<string, string>, args: string[] = []): Listing {
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^(VK_|TCD_VULKAN|NODEVICE_SELECT)/.test(k)),
  );
  const r = spawnSync(join(layerDir, 'list_devices'), args, {
    env: { ...clean, ...env },
    encoding: 'utf8',
    timeout: 20_000,
  });
  assert.equal(r.status, 0, `list_devices exited ${r.status} (signal ${r.signal}):\n${r.stdout}${r.stderr}`);
  const lines = r.stdout.split('\n');
  const num = (re: RegExp) => Number(lines.find((l) => re.test(l))?.match(re)?.[1] ?? NaN);
  return {
    devices: num(/^devices (\d+)$/),
    names: lines.filter((l) => l.startsWith('device ')).map((l) => l.replace(/^device \d+ /, '')),
    groups: num(/^groups(?: \(khr\))? (\d+)$/),
    groupSizes: lines.filter((l) => l.startsWith('group ')).map((l) => Number(l.split(' ')[3])),
    listed: lines.filter((l) => l.startsWith('group ')).every((l) => l.endsWith('listed 1')),
    created: lines.filter((l) => l.startsWith('created ')).length,
    stdout: r.stdout,
    stderr: r.stderr,
  };
}

function pinned(device: number, extra: Record<string, string> = {}): Record<string, string> {
  const r = webgpuPinningEnv(device, layerDir, { platform: 'linux' });
  assert.ok('env' in r, JSON.stringify(r));
  return { ...r.env, TCD_VULKAN_DEVICE_DEBUG: '1', ...extra };
}

test(
  'layer on lavapipe (driver-order fallback: llvmpipe has no VK_EXT_pci_bus_info): TCD_VULKAN_DEVICE=0 lists exactly llvmpipe',
  { skip },
  () => {
    const l = listDevices(pinned(0, { VK_DRIVER_FILES: icd }));
    assert.equal(l.devices, 1, l.stdout);
    assert.match(l.names[0], /^llvmpipe/);
    assert.equal(l.groups, 1);
    assert.deepEqual(l.groupSizes, [1]);
    assert.match(l.stdout, /^incomplete 1$/m, 'a short array gets VK_INCOMPLETE');
    assert.equal(l.created, 1, 'vkCreateDevice through the layer works');
    assert.match(l.stderr, /VK_LAYER_TCD_device_select: device 0 of 1 \(driver order\): llvmpipe/);
  },
);

test('layer on lavapipe: TCD_VULKAN_DEVICE=1 with one device lists none and says why on stderr', { skip }, () => {
  const l = listDevices(pinned(1, { VK_DRIVER_FILES: icd }));
  assert.equal(l.devices, 0, l.stdout);
  assert.equal(l.groups, 0);
  assert.match(
    l.stderr,
    /TCD_VULKAN_DEVICE=1 but this host has 1 Vulkan physical device \(valid: 0\.\.0\); exposing none/,
  );
  assert.equal(l.stderr.match(/exposing none/g)?.length, 1, 'one line, not one per enumeration');
});

test('layer on lavapipe: unset TCD_VULKAN_DEVICE passes through (same listing as without the layer)', { skip }, () => {
  const without = listDevices({ VK_DRIVER_FILES: twoIcds });
  const { TCD_VULKAN_DEVICE: _drop, ...rest } = pinned(0, { VK_DRIVER_FILES: twoIcds });
  const through = listDevices(rest);
  assert.equal(without.devices, 2, without.stdout);
  assert.equal(through.stdout, without.stdout);
  assert.doesNotMatch(through.stderr, /TCD_device_select/);
  const loaded = listDevices({ ...rest, VK_LOADER_DEBUG: 'layer' });
  assert.match(loaded.stderr, /Insert instance layer "VK_LAYER_TCD_device_select"/, 'the loader did load the layer');
});

test(
  'layer on two lavapipe devices (driver order): index 1 gives one device and one group of one, core and KHR entry points',
  { skip },
  () => {
    for (const args of [[], ['--khr']]) {
      const l = listDevices(pinned(1, { VK_DRIVER_FILES: twoIcds }), args);
      assert.equal(l.devices, 1, l.stdout);
      assert.equal(l.groups, 1, l.stdout);
      assert.deepEqual(l.groupSizes, [1]);
      assert.ok(l.listed, `the group holds the device enumerate returned:\n${l.stdout}`);
      assert.equal(l.created, 1);
      assert.match(l.stderr, /device 1 of 2 \(driver order\)/);
    }
    const out = listDevices(pinned(2, { VK_DRIVER_FILES: twoIcds }), ['--khr']);
    assert.equal(out.devices, 0);
    assert.equal(out.groups, 0);
    assert.match(out.stderr, /TCD_VULKAN_DEVICE=2 but this host has 2 Vulkan physical devices \(valid: 0\.\.1\)/);
    const bad = listDevices({ ...pinned(0, { VK_DRIVER_FILES: twoIcds }), TCD_VULKAN_DEVICE: 'gpu1' });
    assert.equal(bad.devices, 0);
    assert.match(bad.stderr, /TCD_VULKAN_DEVICE="gpu1" is not a device index/);
  },
);

test('onnxruntime-node WebGPU goes through the layer when the env is set before it starts', { skip }, (t) => {
  // Dawn rejects lavapipe as an adapter (it lacks shaderUniform*ArrayDynamicIndexing), so no WebGPU session can run
  // here; what this shows is that ORT's Dawn loads our layer from the process environment and sees what it exposes.
  const g = new GraphBuilder();
  const x = g.input('x', 'float32', [4]);
  g.output(g.op.Add(x, x), 'y');
  const model = join(work, 'add.onnx');
  writeFileSync(model, serializeModel(g));
  const script = `
    const ort = await import('onnxruntime-node');
    if (!ort.listSupportedBackends().some((b) => b.name === 'webgpu')) { console.log('NO_WEBGPU'); process.exit(0); }
    try { await ort.InferenceSession.create(${JSON.stringify(model)}, { executionProviders: ['webgpu'] }); console.log('SESSION_OK'); }
    catch (e) { console.log('SESSION_ERR ' + String(e.message ?? e).split('\\n')[0]); }`;
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^(VK_|TCD_VULKAN|NODEVICE_SELECT)/.test(k)),
  );
  const run = (env: Record<string, string>) =>
    spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: projectRoot,
      env: { ...clean, ...env },
      encoding: 'utf8',
      timeout: 60_000,
    });
  const inRange = run(pinned(0, { VK_DRIVER_FILES: icd }));
  if (inRange.stdout.includes('NO_WEBGPU')) {
    t.skip('this onnxruntime-node build has no webgpu backend');
    return;
  }
  assert.equal(inRange.status, 0, inRange.stderr);
  assert.match(inRange.stderr, /VK_LAYER_TCD_device_select: device 0 of 1 \(driver order\): llvmpipe/);
  const outOfRange = run(pinned(1, { VK_DRIVER_FILES: icd }));
  assert.equal(outOfRange.status, 0, `node must not crash on zero devices:\n${outOfRange.stderr}`);
  assert.match(outOfRange.stderr, /TCD_VULKAN_DEVICE=1 but this host has 1 Vulkan physical device/);
  assert.match(outOfRange.stdout, /SESSION_ERR .*Failed to get a WebGPU adapter/);
});
