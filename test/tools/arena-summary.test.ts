/**
 * --ort-log-level reaches ONNX Runtime in the engine (its environment and every session), and the arena summary reads
 * the memory profile out of a real run's log: the demo workflow on the CPU provider, first at the default level (no
 * ONNX Runtime lines at all), then at info (the sessions' own log ids, the CPU arenas made and grown).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { runCli, runFlags, tempDirs } from '../cli/run-cli.js';
import { summariseArenaLog } from '../../server/tools/bench/arena-summary.js';

test('ort log level: silent by default, arena growth by session at info', async () => {
  const dirs = tempDirs('tcd-ort-log-');
  try {
    const quiet = await runCli(['run', 'workflows/demo.json', '--ep', 'cpu', ...runFlags(dirs)]);
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.doesNotMatch(quiet.stderr, /\[[IVW]:onnxruntime/);
    assert.deepEqual(summariseArenaLog(quiet.stderr).allocators, {});

    const info = await runCli([
      'run',
      'workflows/demo.json',
      '--ep',
      'cpu',
      '--ort-log-level',
      'info',
      ...runFlags(dirs),
    ]);
    assert.equal(info.code, 0, info.stderr);
    // the sessions log under the engine's ids, at the level asked for
    assert.match(info.stderr, /\[I:onnxruntime:sdxl:unet, .*session_log_severity_level:1/);
    assert.match(info.stderr, /\[I:onnxruntime:loop:step, /);
    const s = summariseArenaLog(info.stderr);
    assert.deepEqual(Object.keys(s.allocators), ['Cpu']);
    const cpu = s.allocators.Cpu;
    assert.ok(cpu.arenas >= 1 && cpu.extensions >= 1 && cpu.reserves >= 1, JSON.stringify(cpu));
    assert.equal(cpu.extensions, (info.stderr.match(/Extended allocation by/g) ?? []).length);
    // an arena grows by at least what was asked, and the growths are sorted and attributed to our sessions
    for (const g of s.largest) {
      assert.ok(g.extendedBytes >= g.requestedBytes, JSON.stringify(g));
      assert.match(g.after ?? '', /^(sdxl|loop):/);
    }
    const sizes = s.largest.map((g) => g.extendedBytes);
    assert.deepEqual(
      sizes,
      [...sizes].sort((a, b) => b - a),
    );
    assert.equal(
      cpu.extendedBytes,
      [...info.stderr.matchAll(/Extended allocation by (\d+) bytes/g)].reduce((a, m) => a + Number(m[1]), 0),
    );
  } finally {
    rmSync(dirs.root, { recursive: true, force: true });
  }
});
