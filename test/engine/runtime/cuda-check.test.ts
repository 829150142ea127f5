/**
 * The CUDA install check (which libraries the provider needs and where the loader looks), the setup script's
 * refusals, and how a provider request is settled (auto / explicit cuda) from what the machine offers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CUDA_ORT_VERSION,
  CUDA_RUNTIME_LIBS,
  CUDNN_LIBS,
  DRIVER_LIBS,
  PROVIDER_LIBS,
  cudaProblems,
  describeCudaProblems,
  ortLibDir,
  ortVersion,
  systemLibDirs,
} from '../../../server/engine/runtime/cuda-check.js';
import {
  cudaOrtPackage,
  mainOrtPackage,
  ortRedirectImport,
  pinnedOrtPackage,
} from '../../../server/engine/runtime/cuda-ort.js';
import {
  type BackendInfo,
  ProviderUnusable,
  describeChoice,
  settleProvider,
} from '../../../server/engine/runtime/providers.js';

/** A folder holding empty files with these names (what the loader's search sees). */
function libDir(root: string, name: string, files: readonly string[]): string {
  const d = join(root, name);
  mkdirSync(d, { recursive: true });
  for (const f of files) writeFileSync(join(d, f), '');
  return d;
}

test('cudaProblems: nothing missing when the provider sits beside libonnxruntime and every library is on the search path', () => {
  const root = mkdtempSync(join(tmpdir(), 'tcd-cudacheck-'));
  try {
    const ort = libDir(root, 'ort', ['libonnxruntime.so.1', ...PROVIDER_LIBS]);
    const cuda = libDir(root, 'cuda', CUDA_RUNTIME_LIBS);
    const sys = libDir(root, 'sys', [...DRIVER_LIBS, ...CUDNN_LIBS]);
    assert.deepEqual(cudaProblems({ ortLibDir: ort, libDirs: [cuda, sys], ortVersion: CUDA_ORT_VERSION }), []);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('cudaProblems: names each missing library by part, with how to get it', () => {
  const root = mkdtempSync(join(tmpdir(), 'tcd-cudacheck-'));
  try {
    const ort = libDir(root, 'ort', ['libonnxruntime.so.1', 'libonnxruntime_providers_shared.so']);
    const cuda = libDir(
      root,
      'cuda',
      CUDA_RUNTIME_LIBS.filter((l) => l !== 'libcublasLt.so.13'),
    );
    const empty = libDir(root, 'empty', []);
    const problems = cudaProblems({ ortLibDir: ort, libDirs: [cuda, empty], ortVersion: CUDA_ORT_VERSION });
    assert.deepEqual(
      problems.map((p) => [p.part, p.missing]),
      [
        ['provider', ['libonnxruntime_providers_cuda.so']],
        ['driver', ['libcuda.so.1']],
        ['cuda-runtime', ['libcublasLt.so.13']],
        ['cudnn', ['libcudnn.so.9']],
      ],
    );
    const text = describeCudaProblems(problems);
    assert.match(text, /^provider: libonnxruntime_providers_cuda.so missing; run `npm run setup:cuda`/m);
    assert.match(text, /^driver: libcuda.so.1 missing; no NVIDIA driver found: install the NVIDIA driver/m);
    assert.match(text, /^cuda-runtime: libcublasLt.so.13 missing; install the CUDA 13 .*LD_LIBRARY_PATH/m);
    assert.match(text, /^cudnn: libcudnn.so.9 missing; install cuDNN 9/m);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('cudaProblems: a provider beside the wrong onnxruntime-node release, or no onnxruntime-node at all', () => {
  const root = mkdtempSync(join(tmpdir(), 'tcd-cudacheck-'));
  try {
    const ort = libDir(root, 'ort', ['libonnxruntime.so.1', ...PROVIDER_LIBS]);
    const all = libDir(root, 'all', [...DRIVER_LIBS, ...CUDA_RUNTIME_LIBS, ...CUDNN_LIBS]);
    const wrong = cudaProblems({ ortLibDir: ort, libDirs: [all], ortVersion: '1.30.0' });
    assert.deepEqual(
      wrong.map((p) => p.part),
      ['provider'],
    );
    assert.match(wrong[0].missing[0], /onnxruntime-node 1\.29\.0 \(installed: 1\.30\.0\)/);
    assert.match(
      wrong[0].how,
      /run `npm run setup:cuda` \(it installs a pinned onnxruntime-node 1\.29\.0 for CUDA engines/,
    );
    const none = cudaProblems({ ortLibDir: null, libDirs: [all] });
    assert.deepEqual(
      none.map((p) => [p.part, p.how]),
      [['provider', 'run `npm install`']],
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('systemLibDirs: LD_LIBRARY_PATH first, then the loader cache and the usual folders; ortLibDir finds libonnxruntime', () => {
  const dirs = systemLibDirs({ LD_LIBRARY_PATH: '/opt/a:/opt/b' });
  assert.deepEqual(dirs.slice(0, 2), ['/opt/a', '/opt/b']);
  assert.ok(dirs.includes('/usr/local/cuda/targets/x86_64-linux/lib'));
  assert.ok(dirs.includes('/usr/lib/x86_64-linux-gnu'));
  assert.match(ortLibDir() ?? '', /onnxruntime-node\/bin\/napi-v\d+\/linux\/x64$/);
});

const runSetup = (...args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', 'server/setup-cuda.ts', ...args], { encoding: 'utf8' });

test(
  'setup:cuda --check on a machine without the CUDA libraries: exit 1, saying what is missing and how to get it',
  { skip: process.platform !== 'linux' },
  () => {
    const r = runSetup('--check');
    // the package CUDA would run with: the project's, or setup:cuda's pinned copy when one was installed here
    const pkg = cudaOrtPackage(process.cwd()) ?? mainOrtPackage();
    const problems = cudaProblems({
      ortLibDir: ortLibDir(pkg),
      libDirs: systemLibDirs(process.env),
      ortVersion: ortVersion(pkg),
    });
    if (problems.length === 0) {
      assert.equal(r.status, 0, r.stderr);
      return;
    }
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /setup:cuda: the CUDA provider cannot load yet:/);
    for (const p of problems) assert.ok(r.stderr.includes(`${p.part}: ${p.missing.join(', ')} missing`), r.stderr);
  },
);

test(
  'setup:cuda refuses a tarball whose sha256 is not the pinned one, and installs nothing',
  { skip: process.platform !== 'linux' },
  () => {
    const root = mkdtempSync(join(tmpdir(), 'tcd-cudasetup-'));
    try {
      const pkg = join(root, 'package', 'Plugins', 'Linux', 'x64');
      mkdirSync(pkg, { recursive: true });
      writeFileSync(join(pkg, 'libonnxruntime_providers_cuda.so'), 'not the real provider');
      const tgz = join(root, 'fake.tgz');
      spawnSync('tar', ['czf', tgz, '-C', root, 'package']);
      const r = runSetup('--tarball', tgz);
      assert.equal(r.status, 2, r.stdout + r.stderr);
      assert.match(r.stderr, /sha256 [0-9a-f]{64} is not the pinned [0-9a-f]{64}; not installing it/);
      assert.doesNotMatch(r.stdout, /installed/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  },
);

const BACKENDS: BackendInfo[] = [
  { name: 'cpu', bundled: true },
  { name: 'webgpu', bundled: true },
  { name: 'cuda', bundled: false },
];

/** settleProvider's view of a machine: which providers create a session, which CUDA libraries are missing. */
function machine(o: { cudaMissing?: string; loads: string[] }) {
  const probed: string[] = [];
  return {
    probed,
    probes: {
      supported: BACKENDS,
      cudaMissing: () => o.cudaMissing ?? null,
      probe: async (ep: string) => {
        probed.push(ep);
        return o.loads.includes(ep) ? null : `no ${ep} device`;
      },
    },
  };
}

test('settleProvider auto: cuda when it loads, else webgpu, else cpu; the reason names what was passed over', async () => {
  const all = machine({ loads: ['cuda', 'webgpu'] });
  const cuda = await settleProvider('auto', all.probes);
  assert.deepEqual(cuda, { ep: 'cuda', requested: 'auto', reason: 'CUDA provider loads' });
  assert.equal(describeChoice(cuda), 'engine: execution provider auto: using cuda (CUDA provider loads)');
  assert.deepEqual(all.probed, ['cuda']);

  const noLibs = machine({ cudaMissing: 'cudnn: libcudnn.so.9 missing', loads: ['webgpu'] });
  const webgpu = await settleProvider(' AUTO ', noLibs.probes);
  assert.equal(
    describeChoice(webgpu),
    'engine: execution provider auto: using webgpu (cuda: cudnn: libcudnn.so.9 missing)',
  );
  assert.deepEqual(noLibs.probed, ['webgpu'], 'missing libraries skip the cuda probe');

  const nothing = machine({ loads: [] });
  assert.equal(
    describeChoice(await settleProvider('auto', nothing.probes)),
    'engine: execution provider auto: using cpu (cuda: no cuda device; webgpu: no webgpu device)',
  );
});

test('settleProvider: cuda asked by name and unusable throws the reason; webgpu by name falls back to cpu', async () => {
  await assert.rejects(
    settleProvider('cuda', machine({ cudaMissing: 'driver: libcuda.so.1 missing', loads: [] }).probes),
    (e: Error) =>
      e instanceof ProviderUnusable &&
      e.message === 'execution provider cuda was asked for and cannot be used: driver: libcuda.so.1 missing',
  );
  await assert.rejects(settleProvider('cuda', machine({ loads: ['webgpu'] }).probes), /cannot be used: no cuda device/);
  assert.deepEqual(await settleProvider('cuda', machine({ loads: ['cuda'] }).probes), {
    ep: 'cuda',
    requested: 'cuda',
    reason: null,
  });
  assert.deepEqual(await settleProvider('webgpu', machine({ loads: [] }).probes), {
    ep: 'cpu',
    requested: 'webgpu',
    reason: 'creating a session failed: no webgpu device',
  });
  assert.deepEqual(await settleProvider(undefined, machine({ loads: [] }).probes), {
    ep: 'cpu',
    requested: 'cpu',
    reason: null,
  });
});

/** A stand-in onnxruntime-node package (version + an entry that says which copy it is) under root/.cuda. */
function fakePinnedOrt(root: string, version: string): string {
  const pkg = join(root, '.cuda', 'node_modules', 'onnxruntime-node');
  mkdirSync(pkg, { recursive: true });
  writeFileSync(
    join(pkg, 'package.json'),
    JSON.stringify({ name: 'onnxruntime-node', version, main: 'dist/index.js' }),
  );
  mkdirSync(join(pkg, 'dist'), { recursive: true });
  writeFileSync(
    join(pkg, 'dist', 'index.js'),
    `module.exports = { env: { versions: { node: ${JSON.stringify(version)} } }, pinned: true };`,
  );
  return pkg;
}

test("cudaOrtPackage: the project's onnxruntime-node when it is 1.29.0, else setup:cuda's pinned copy, else none", () => {
  const root = mkdtempSync(join(tmpdir(), 'tcd-cudaort-'));
  try {
    const main = mainOrtPackage()!;
    const mainIsPinned = ortVersion(main) === CUDA_ORT_VERSION;
    assert.equal(cudaOrtPackage(root, main), mainIsPinned ? main : null);
    const pinned = fakePinnedOrt(root, CUDA_ORT_VERSION);
    assert.equal(pinnedOrtPackage(root), pinned);
    assert.equal(cudaOrtPackage(root, main), mainIsPinned ? main : pinned);
    fakePinnedOrt(root, '1.28.0');
    assert.equal(cudaOrtPackage(root, null), null, 'a copy of another release is not used');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('ortRedirectImport: a child started with it imports the pinned onnxruntime-node; other imports resolve as usual', () => {
  const root = mkdtempSync(join(tmpdir(), 'tcd-cudaort-'));
  try {
    const pkg = fakePinnedOrt(root, CUDA_ORT_VERSION);
    const code =
      "import ort from 'onnxruntime-node'; import { join } from 'node:path'; console.log(ort.env.versions.node, !!ort.pinned, typeof join);";
    const run = (extra: string[]) =>
      spawnSync(process.execPath, [...extra, '--input-type=module', '-e', code], { encoding: 'utf8' });
    const redirected = run(['--import', ortRedirectImport(pkg)]);
    assert.equal(redirected.status, 0, redirected.stderr);
    assert.equal(redirected.stdout.trim(), `${CUDA_ORT_VERSION} true function`);
    const plain = run([]);
    assert.equal(plain.status, 0, plain.stderr);
    assert.equal(plain.stdout.trim(), `${ortVersion(mainOrtPackage())} false function`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
