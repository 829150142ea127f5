/**
 * Can ONNX Runtime's CUDA execution provider load on this machine? A file-level check, run before any session is
 * tried: the provider libraries beside onnxruntime-node's libonnxruntime.so.1 (installed by `npm run setup:cuda`),
 * the NVIDIA driver (libcuda.so.1), the CUDA 13 runtime libraries and cuDNN 9 the provider links against. Each
 * problem says what is missing and how to get it. Used by the setup script, by `--ep auto` (skip CUDA without
 * probing it) and by `--ep cuda` (exit with the reason).
 * Example:
 *   const problems = cudaProblems({ ortLibDir: ortLibDir(), libDirs: systemLibDirs(process.env) });
 *   if (problems.length) console.error(describeCudaProblems(problems));
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** The onnxruntime-node release whose libonnxruntime the CUDA provider below was built against. */
export const CUDA_ORT_VERSION = '1.29.0';

/** The provider libraries a CUDA session needs beside libonnxruntime.so.1 (tensorrt's is optional). */
export const PROVIDER_LIBS = ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'] as const;

/** What the CUDA provider of ONNX Runtime 1.29 (CUDA 13, cuDNN 9) links against, grouped by where it comes from. */
export const CUDA_RUNTIME_LIBS = [
  'libcudart.so.13',
  'libcublas.so.13',
  'libcublasLt.so.13',
  'libcurand.so.10',
  'libcufft.so.12',
] as const;
export const CUDNN_LIBS = ['libcudnn.so.9'] as const;
export const DRIVER_LIBS = ['libcuda.so.1'] as const;

export type CudaPart = 'provider' | 'driver' | 'cuda-runtime' | 'cudnn';

export interface CudaProblem {
  part: CudaPart;
  missing: string[];
  how: string;
}

const HOW: Record<CudaPart, string> = {
  provider: "run `npm run setup:cuda` (fetches ONNX Runtime 1.29.0's CUDA provider from npm and installs it)",
  driver: 'no NVIDIA driver found: install the NVIDIA driver (580 or newer for CUDA 13), then check `nvidia-smi`',
  'cuda-runtime':
    'install the CUDA 13 toolkit or its runtime libraries (e.g. apt install cuda-libraries-13-0, or pip ' +
    'install nvidia-cuda-runtime nvidia-cublas nvidia-curand nvidia-cufft for CUDA 13) and put their lib folder on ' +
    'LD_LIBRARY_PATH (e.g. /usr/local/cuda/targets/x86_64-linux/lib)',
  cudnn:
    'install cuDNN 9 for CUDA 13 (e.g. apt install libcudnn9-cuda-13, or pip install nvidia-cudnn-cu13) and put ' +
    'its lib folder on LD_LIBRARY_PATH if it is not a system folder',
};

/** Folders where the dynamic loader finds libraries: LD_LIBRARY_PATH, the ld.so cache, the usual system folders. */
export function systemLibDirs(env: Record<string, string | undefined> = process.env): string[] {
  const dirs = (env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean);
  try {
    // ldconfig -p lists every library the loader's cache knows, "name (flags) => /path/name"
    const out = execFileSync('ldconfig', ['-p'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 5000,
    });
    for (const m of out.matchAll(/=> (\S+)/g)) dirs.push(dirname(m[1]));
  } catch {
    /* no ldconfig: the usual folders below still apply */
  }
  dirs.push(
    '/usr/lib/x86_64-linux-gnu',
    '/lib/x86_64-linux-gnu',
    '/usr/lib64',
    '/usr/lib',
    '/usr/local/cuda/lib64',
    '/usr/local/cuda/targets/x86_64-linux/lib',
    '/usr/local/nvidia/lib64',
    '/usr/lib/wsl/lib',
  );
  return [...new Set(dirs)];
}

/**
 * The folder holding libonnxruntime.so.1 (linux x64) of the onnxruntime-node package at pkgDir (default: the one this
 * process resolves), or null when it is not there.
 */
export function ortLibDir(pkgDir: string | null = resolvedOrtPackage()): string | null {
  if (!pkgDir) return null;
  try {
    const bin = join(pkgDir, 'bin');
    for (const napi of readdirSync(bin)
      .filter((d) => d.startsWith('napi-v'))
      .sort()
      .reverse()) {
      const dir = join(bin, napi, 'linux', 'x64');
      if (existsSync(join(dir, 'libonnxruntime.so.1'))) return dir;
    }
  } catch {
    /* not installed */
  }
  return null;
}

function resolvedOrtPackage(): string | null {
  try {
    return dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
  } catch {
    return null;
  }
}

/** The version of the onnxruntime-node package at pkgDir (default: the one this process resolves). */
export function ortVersion(pkgDir: string | null = resolvedOrtPackage()): string | null {
  try {
    return (JSON.parse(readFileSync(join(pkgDir!, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return null;
  }
}

function missingIn(dirs: readonly string[], names: readonly string[]): string[] {
  return names.filter((n) => !dirs.some((d) => existsSync(join(d, n))));
}

/**
 * What keeps the CUDA provider from loading, by file presence: empty when every library is where the loader will
 * look. `ortLibDir` is where the provider must sit (null: onnxruntime-node itself is missing); `libDirs` are the
 * loader's folders (systemLibDirs()). A present file can still fail to load (wrong version, no GPU): the worker's
 * probe session is the final word.
 */
export function cudaProblems(o: {
  ortLibDir: string | null;
  libDirs: readonly string[];
  ortVersion?: string | null;
}): CudaProblem[] {
  const problems: CudaProblem[] = [];
  if (o.ortLibDir === null) {
    problems.push({ part: 'provider', missing: ['onnxruntime-node (libonnxruntime.so.1)'], how: 'run `npm install`' });
  } else {
    const missing = missingIn([o.ortLibDir], PROVIDER_LIBS);
    if (missing.length) problems.push({ part: 'provider', missing, how: HOW.provider });
    if (o.ortVersion && o.ortVersion !== CUDA_ORT_VERSION) {
      problems.push({
        part: 'provider',
        missing: [`onnxruntime-node ${CUDA_ORT_VERSION} (installed: ${o.ortVersion})`],
        how:
          `the CUDA provider works only with the libonnxruntime of its own release: run \`npm run setup:cuda\` (it ` +
          `installs a pinned onnxruntime-node ${CUDA_ORT_VERSION} for CUDA engines in .cuda/)`,
      });
    }
  }
  const groups: [CudaPart, readonly string[]][] = [
    ['driver', DRIVER_LIBS],
    ['cuda-runtime', CUDA_RUNTIME_LIBS],
    ['cudnn', CUDNN_LIBS],
  ];
  for (const [part, names] of groups) {
    const missing = missingIn(o.libDirs, names);
    if (missing.length) problems.push({ part, missing, how: HOW[part] });
  }
  return problems;
}

/** One line per problem: "cuda-runtime: libcublas.so.13 missing; install ...". */
export function describeCudaProblems(problems: readonly CudaProblem[]): string {
  return problems.map((p) => `${p.part}: ${p.missing.join(', ')} missing; ${p.how}`).join('\n');
}

/**
 * The check for this machine as it is: the onnxruntime-node package CUDA would run with (cuda-ort.ts; default the
 * resolved one) and the loader's folders.
 */
export function cudaProblemsHere(
  env: Record<string, string | undefined> = process.env,
  pkgDir: string | null | undefined = resolvedOrtPackage(),
): CudaProblem[] {
  pkgDir ??= resolvedOrtPackage();
  return cudaProblems({ ortLibDir: ortLibDir(pkgDir), libDirs: systemLibDirs(env), ortVersion: ortVersion(pkgDir) });
}
