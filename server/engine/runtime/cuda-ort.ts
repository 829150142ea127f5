/**
 * Which onnxruntime-node CUDA engines run with. The CUDA provider works only with the libonnxruntime of its own
 * release (1.29.0), while the project's dependency may be newer (kept for WebGPU and CPU speed: server/tools/bench/README.md
 * has the measurements). Arrangement, easy to switch:
 *  - the main onnxruntime-node is 1.29.0: CUDA runs with it, nothing else to do;
 *  - else `npm run setup:cuda` puts a pinned 1.29.0 copy (with the provider beside its libonnxruntime) in
 *    <project>/.cuda/node_modules, and engines that may use CUDA (--ep cuda | auto) run their worker in a child
 *    process whose imports of 'onnxruntime-node' resolve to that copy (a module resolve hook, ortRedirectImport).
 * Example: const pkg = cudaOrtPackage(root); if (pkg && pkg !== mainOrtPackage()) execArgv.push('--import', ortRedirectImport(pkg));
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CUDA_ORT_VERSION, ortVersion } from './cuda-check.js';

/** Where setup:cuda installs the pinned copy, under the project root. */
export const CUDA_ORT_HOME = '.cuda';

/** The onnxruntime-node package folder this process resolves (null when it is not installed). */
export function mainOrtPackage(): string | null {
  try {
    return dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
  } catch {
    return null;
  }
}

/** The pinned copy's package folder under a project root. */
export function pinnedOrtPackage(root: string): string {
  return join(root, CUDA_ORT_HOME, 'node_modules', 'onnxruntime-node');
}

/**
 * The onnxruntime-node package CUDA runs with: the main one when it is the provider's release, else the pinned copy
 * when setup:cuda installed it, else null (CUDA cannot run; cuda-check says how to fix it).
 */
export function cudaOrtPackage(root: string, main: string | null = mainOrtPackage()): string | null {
  if (main && ortVersion(main) === CUDA_ORT_VERSION) return main;
  const pinned = pinnedOrtPackage(root);
  return existsSync(pinned) && ortVersion(pinned) === CUDA_ORT_VERSION ? pinned : null;
}

/**
 * A `--import` argument for a Node child: registers a resolve hook that sends the bare specifier 'onnxruntime-node'
 * to the package at pkgDir (its own 'onnxruntime-common' then resolves beside it). Everything else resolves as usual.
 */
export function ortRedirectImport(pkgDir: string): string {
  const entry = pathToFileURL(createRequire(join(pkgDir, 'package.json')).resolve(pkgDir)).href;
  const hooks =
    `export async function resolve(s, c, next) { return s === 'onnxruntime-node' ? { url: ${JSON.stringify(entry)}, ` +
    'shortCircuit: true } : next(s, c); }';
  const register = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hooks)}`)});`;
  return `data:text/javascript,${encodeURIComponent(register)}`;
}
