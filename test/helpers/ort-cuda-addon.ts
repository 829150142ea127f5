/**
 * The native ort_cuda addon (native/ort-cuda) for tests: why it cannot be built here (a skip reason) and a build into
 * a temp folder with scripts/build-ort-cuda.sh.
 * Example: test('...', { skip: ortCudaAddonSkip }, () => { const { addon, cleanup } = buildOrtCudaAddon(); ... });
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const hasGcc = spawnSync('gcc', ['--version']).status === 0;

export const ortCudaAddonSkip: false | string =
  process.platform !== 'linux' || process.arch !== 'x64'
    ? 'skipped: the addon is built for linux x64'
    : hasGcc
      ? false
      : 'skipped: gcc not installed (apt-get install -y gcc)';

/** Builds the addon into a fresh temp folder; `cleanup` removes it. */
export function buildOrtCudaAddon(): { dir: string; addon: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'tcd-ort-cuda-'));
  const r = spawnSync('bash', ['scripts/build-ort-cuda.sh', dir], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return { dir, addon: join(dir, 'ort_cuda.node'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
