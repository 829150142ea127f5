/**
 * --shared-arena on the CPU provider (the twin of the CUDA path: the same addon call registers the provider's arena
 * with ONNX Runtime's environment). The demo workflow runs twice through the real command line with ONNX Runtime's
 * log at info: each session growing an arena of its own, then all of them taking the one shared arena. The image must
 * not change, and the shared run must grow less memory in fewer steps (the sessions reuse what an earlier one grew).
 * Then the addon call itself: registering again keeps the arena, bad arguments are refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { runCli, runFlags, tempDirs, PROJECT } from '../../cli/run-cli.js';
import { buildOrtCudaAddon, ortCudaAddonSkip } from '../../helpers/ort-cuda-addon.js';
import { mainOrtPackage } from '../../../server/engine/runtime/cuda-ort.js';
import { summariseArenaLog } from '../../../server/tools/bench/arena-summary.js';
import { arenaConfigOf } from '../../../server/engine/runtime/shared-arena.js';
import { libonnxruntimeOf, parseCudaOptions } from '../../../server/engine/runtime/cuda-options.js';

test('the arena settings come from the CUDA options that concern arenas', () => {
  const entries = parseCudaOptions('arena_extend_strategy=kSameAsRequested,gpu_mem_limit=8000000000,use_tf32=0');
  assert.deepEqual(arenaConfigOf(entries), [
    ['arena_extend_strategy', '1'],
    ['max_mem', '8000000000'],
  ]);
  assert.deepEqual(arenaConfigOf(parseCudaOptions('arena_extend_strategy=kNextPowerOfTwo')), [
    ['arena_extend_strategy', '0'],
  ]);
  assert.deepEqual(arenaConfigOf([]), []);
});

test('shared arena: one arena for every session, the same image, less growth', { skip: ortCudaAddonSkip }, async () => {
  // the engine loads the helper from the project's build folder (what `npm run build:ort-cuda` makes)
  const build = spawnSync('bash', ['scripts/build-ort-cuda.sh'], { cwd: PROJECT, encoding: 'utf8' });
  assert.equal(build.status, 0, build.stderr);
  const dirs = tempDirs('tcd-shared-arena-');
  try {
    const runs: Record<'own' | 'shared', { log: string; image: string }> = {} as never;
    for (const kind of ['own', 'shared'] as const) {
      const extra = kind === 'shared' ? ['--shared-arena'] : [];
      const r = await runCli([
        'run',
        'workflows/demo.json',
        '--ep',
        'cpu',
        '--ort-log-level',
        'info',
        ...extra,
        ...runFlags(dirs),
      ]);
      assert.equal(r.code, 0, r.stderr);
      const images = readdirSync(dirs.output).filter((f) => f.endsWith('.png'));
      assert.equal(images.length, 1, images.join());
      const file = join(dirs.output, images[0]);
      runs[kind] = { log: r.stdout + r.stderr, image: createHash('sha256').update(readFileSync(file)).digest('hex') };
      rmSync(file);
    }
    assert.match(runs.shared.log, /engine: one memory arena shared by all cpu sessions \(ONNX Runtime \d+\.\d+/);
    assert.doesNotMatch(runs.own.log, /memory arena shared/);
    assert.equal(runs.shared.image, runs.own.image, 'the shared arena changed the image');

    const own = summariseArenaLog(runs.own.log).allocators.Cpu;
    const shared = summariseArenaLog(runs.shared.log).allocators.Cpu;
    assert.ok(own && shared, 'both runs log their arenas');
    // the registration restates the process's log level: the shared arena's own lines are still there
    assert.ok(shared.extensions >= 1, JSON.stringify(shared));
    // sessions reuse what an earlier session's run grew, so the process grows fewer times and by fewer bytes
    assert.ok(shared.extensions < own.extensions, `extensions: shared ${shared.extensions}, own ${own.extensions}`);
    assert.ok(
      shared.extendedBytes < own.extendedBytes,
      `bytes: shared ${shared.extendedBytes}, own ${own.extendedBytes}`,
    );
    // weights are reserved the same way in both
    assert.equal(shared.reservedBytes, own.reservedBytes);
  } finally {
    rmSync(dirs.root, { recursive: true, force: true });
  }
});

test(
  'registering again (an engine restarted in the same process) keeps the arena; bad arguments are refused',
  { skip: ortCudaAddonSkip },
  () => {
    const built = buildOrtCudaAddon();
    try {
      // a process of its own: the registration lasts as long as the process's ONNX Runtime environment
      const code = `
      require(${JSON.stringify(createRequire(import.meta.url).resolve('onnxruntime-node'))});
      const addon = require(${JSON.stringify(built.addon)});
      const lib = ${JSON.stringify(libonnxruntimeOf(mainOrtPackage()!, 'test'))};
      const out = [];
      for (let i = 0; i < 2; i++) out.push(addon.shareArena(lib, 'cpu', 0, 'arena_extend_strategy\\t1\\n', '', 3));
      for (const args of [[lib, 'webgpu', 0, '', '', 3], [lib, 'cpu', 0, '', '', 7], [lib, 'cuda', 99, '', '', 3]]) {
        try { addon.shareArena(...args); out.push('accepted'); } catch (e) { out.push(e.message); }
      }
      console.log(JSON.stringify(out));`;
      const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const [first, again, webgpu, severity, device] = JSON.parse(r.stdout) as string[];
      assert.match(first, /^ONNX Runtime \d+\.\d+\.\d+$/);
      assert.equal(again, first);
      assert.match(webgpu, /ep must be 'cuda' or 'cpu'/);
      assert.match(severity, /bad arguments/);
      assert.match(device, /deviceId out of range/);
    } finally {
      built.cleanup();
    }
  },
);
