/**
 * `npm run setup:cuda` (compiled: node dist/server/setup-cuda.js): installs ONNX Runtime's CUDA execution provider
 * beside the libonnxruntime.so.1 of the onnxruntime-node release it was built for (1.29.0). The provider comes from the
 * npm package com.github.asus4.onnxruntime.linux-x64-gpu 0.4.9 (= ONNX Runtime 1.29.0 for CUDA 13 and cuDNN 9,
 * Microsoft's MIT build; 179 MB), fetched with `npm pack` and checked against the sha256 pinned below. When the
 * project's onnxruntime-node is another release, a pinned onnxruntime-node 1.29.0 goes to .cuda/node_modules and
 * CUDA engines run with it (server/engine/runtime/cuda-ort.ts). Then it checks the driver, CUDA 13 and cuDNN 9
 * libraries and says what is missing and how to get it, and builds the small native helper behind --cuda-options and
 * --cuda-graph when gcc is there (scripts/build-ort-cuda.sh).
 * Options: --tarball FILE (an already downloaded copy of the provider package, e.g. without registry access),
 *          --ort-tarball FILE --ort-common-tarball FILE (onnxruntime-node / onnxruntime-common 1.29.0 packages),
 *          --check (only the library check, nothing installed).
 * Exit code: 0 installed and every library found; 1 installed but something the provider needs is missing; 2 failed.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  CUDA_ORT_VERSION,
  cudaProblemsHere,
  describeCudaProblems,
  ortLibDir,
  ortVersion,
} from './engine/runtime/cuda-check.js';
import { CUDA_ORT_HOME, cudaOrtPackage, mainOrtPackage, pinnedOrtPackage } from './engine/runtime/cuda-ort.js';
import { CUDA_ADDON } from './engine/runtime/cuda-options.js';

export const PROVIDER_PACKAGE = 'com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9';
/** sha256 of that package's tarball as published (checked 2026-12-04) */
export const PROVIDER_SHA256 = '2b459e0c17f340c92970c10ed86de4f37a3009f93c14053e6ad4334cbb6be412';
const PLUGIN_DIR = join('package', 'Plugins', 'Linux', 'x64');

/** The project root: the nearest folder above this file with a package.json (server/ or dist/server/). */
const PROJECT_ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
})();

async function sha256(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

function fail(message: string): never {
  console.error(`setup:cuda: ${message}`);
  process.exit(2);
}

/** A package tarball: the given file, or `npm pack` of spec into work. */
function packed(spec: string, file: string | undefined, work: string): string {
  if (file) return file;
  console.log(`setup:cuda: fetching ${spec} with npm pack`);
  const name = execFileSync('npm', ['pack', '--silent', spec], {
    cwd: work,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  })
    .trim()
    .split('\n')
    .pop()!;
  return join(work, name);
}

/** Unpacks a package tarball as <dest>/<name> (replacing what was there). */
function unpackPackage(tgz: string, dest: string, name: string, work: string): void {
  const tmp = mkdtempSync(join(work, 'pkg-'));
  execFileSync('tar', ['xzf', tgz, '-C', tmp]);
  mkdirSync(dest, { recursive: true });
  rmSync(join(dest, name), { recursive: true, force: true });
  renameSync(join(tmp, 'package'), join(dest, name));
}

/**
 * The onnxruntime-node package the provider goes beside: the project's own when it is 1.29.0, else a pinned copy in
 * .cuda/node_modules (installed now unless it is already there).
 */
function cudaOrt(work: string, o: { ortTarball?: string; commonTarball?: string }): string {
  const existing = cudaOrtPackage(PROJECT_ROOT);
  if (existing) return existing;
  if (!mainOrtPackage()) fail('onnxruntime-node is not installed: run `npm install` first');
  const modules = join(PROJECT_ROOT, CUDA_ORT_HOME, 'node_modules');
  console.log(
    `setup:cuda: the project's onnxruntime-node is ${ortVersion()}; CUDA engines get a pinned ${CUDA_ORT_VERSION} in ${modules}`,
  );
  unpackPackage(
    packed(`onnxruntime-common@${CUDA_ORT_VERSION}`, o.commonTarball, work),
    modules,
    'onnxruntime-common',
    work,
  );
  unpackPackage(packed(`onnxruntime-node@${CUDA_ORT_VERSION}`, o.ortTarball, work), modules, 'onnxruntime-node', work);
  const pkg = pinnedOrtPackage(PROJECT_ROOT);
  if (ortVersion(pkg) !== CUDA_ORT_VERSION) fail(`${pkg} is not onnxruntime-node ${CUDA_ORT_VERSION}`);
  return pkg;
}

async function install(o: { tarball?: string; ortTarball?: string; commonTarball?: string }): Promise<void> {
  if (process.platform !== 'linux' || process.arch !== 'x64')
    fail(`the CUDA provider is built for linux x64, this is ${process.platform} ${process.arch}`);
  const work = mkdtempSync(join(tmpdir(), 'tcd-cuda-'));
  try {
    // the provider first: a tarball that fails its checksum installs nothing at all
    const tgz = packed(PROVIDER_PACKAGE, o.tarball, work);
    const sum = await sha256(tgz);
    if (sum !== PROVIDER_SHA256) fail(`${tgz}: sha256 ${sum} is not the pinned ${PROVIDER_SHA256}; not installing it`);
    execFileSync('tar', ['xzf', tgz, '-C', work, PLUGIN_DIR]);
    const dest = ortLibDir(cudaOrt(work, o));
    if (!dest || !existsSync(dest)) fail('no libonnxruntime.so.1 (linux x64) in the onnxruntime-node package for CUDA');
    const libs = readdirSync(join(work, PLUGIN_DIR)).filter((f) => f.endsWith('.so'));
    for (const f of libs) copyFileSync(join(work, PLUGIN_DIR, f), join(dest, f));
    console.log(`setup:cuda: installed ${libs.join(', ')} into ${dest} (sha256 checked)`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  buildOrtCudaAddon();
}

/**
 * The helper behind --cuda-options and --cuda-graph (native/ort-cuda): built with gcc when there is one. CUDA runs
 * without it (only those two flags need it), so a missing compiler is a note, not a failure.
 */
function buildOrtCudaAddon(): void {
  try {
    execFileSync('bash', [join(PROJECT_ROOT, 'scripts', 'build-ort-cuda.sh')], { stdio: 'pipe' });
    console.log(`setup:cuda: built ${CUDA_ADDON} (for --cuda-options and --cuda-graph)`);
  } catch (e) {
    const why = String((e as { stderr?: Buffer }).stderr ?? (e as Error).message).trim();
    console.log(`setup:cuda: note: --cuda-options and --cuda-graph need a helper that was not built: ${why}`);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      tarball: { type: 'string' },
      'ort-tarball': { type: 'string' },
      'ort-common-tarball': { type: 'string' },
      check: { type: 'boolean' },
    },
  });
  if (!values.check) {
    await install({
      tarball: values.tarball,
      ortTarball: values['ort-tarball'],
      commonTarball: values['ort-common-tarball'],
    });
  }
  const problems = cudaProblemsHere(process.env, cudaOrtPackage(PROJECT_ROOT) ?? mainOrtPackage());
  if (problems.length === 0) {
    console.log(
      'setup:cuda: driver, CUDA 13 and cuDNN 9 libraries found; start with `npm start` (--ep auto picks cuda) ' +
        'or `npm start -- --ep cuda`',
    );
    return;
  }
  console.error(`setup:cuda: the CUDA provider cannot load yet:\n${describeCudaProblems(problems)}`);
  process.exit(1);
}

await main();
