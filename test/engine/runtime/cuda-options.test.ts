/**
 * --cuda-options (server/engine/runtime/cuda-options.ts, native/ort-cuda): parsing and checking against the
 * CUDA provider's option names, the setting and the engine refusing typos on any machine, and the native addon built
 * with gcc and run in a child process against this project's onnxruntime-node. Without a GPU the CUDA provider
 * cannot load, so the addon's path is proven by where a CUDA session now fails: inside the options step it adds
 * (the provider library's load error, prefixed by the addon), where without it the same request fails in
 * ONNX Runtime's own append. Whether the provider honours each option is a GPU run (server/tools/bench/device-run.sh
 * cudaopts logs the options in effect).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { Engine } from '../../../server/engine/engine.js';
import { ortVersion } from '../../../server/engine/runtime/cuda-check.js';
import {
  CUDA_OPTION_RULES,
  describeCudaOptions,
  parseCudaOptions,
} from '../../../server/engine/runtime/cuda-options.js';
import { gpuTuningOf, settingsFromEnv } from '../../../server/settings.js';
import { buildOrtCudaAddon, ortCudaAddonSkip } from '../../helpers/ort-cuda-addon.js';

test('parseCudaOptions: KEY=VALUE by commas or semicolons, checked, booleans as 1/0, last value of a key wins', () => {
  assert.deepEqual(
    parseCudaOptions(' arena_extend_strategy=kSameAsRequested; cudnn_conv_use_max_workspace=false ,prefer_nhwc=TRUE,'),
    [
      ['arena_extend_strategy', 'kSameAsRequested'],
      ['cudnn_conv_use_max_workspace', '0'],
      ['prefer_nhwc', '1'],
    ],
  );
  assert.deepEqual(parseCudaOptions('gpu_mem_limit=8589934592,use_tf32=1,use_tf32=0'), [
    ['gpu_mem_limit', '8589934592'],
    ['use_tf32', '0'],
  ]);
  assert.deepEqual(parseCudaOptions(''), []);
  assert.deepEqual(parseCudaOptions(' , ;'), []);
  assert.equal(
    describeCudaOptions(parseCudaOptions('cudnn_conv_algo_search=HEURISTIC,use_tf32=0')),
    'cudnn_conv_algo_search=HEURISTIC, use_tf32=0',
  );
  // the description parses back to the same entries (settings store it, the worker parses it again)
  const e = parseCudaOptions('cudnn_conv_algo_search=DEFAULT,gpu_mem_limit=1024,do_copy_in_default_stream=0');
  assert.deepEqual(parseCudaOptions(describeCudaOptions(e)), e);
});

test('parseCudaOptions: each mistake is named with what the option takes', () => {
  const fails = (text: string, re: RegExp) => assert.throws(() => parseCudaOptions(text, 'TCD_CUDA_OPTIONS'), re);
  fails('use_tf32', /^Error: TCD_CUDA_OPTIONS: 'use_tf32' is not KEY=VALUE$/);
  fails('=1', /'=1' is not KEY=VALUE/);
  fails('use_tf32=2', /^Error: TCD_CUDA_OPTIONS: use_tf32 takes 0 or 1, got '2'$/);
  fails('arena_extend_strategy=grow', /arena_extend_strategy takes kNextPowerOfTwo \| kSameAsRequested, got 'grow'/);
  fails('cudnn_conv_algo_search=heuristic', /takes EXHAUSTIVE \| HEURISTIC \| DEFAULT, got 'heuristic'/);
  fails('gpu_mem_limit=-1', /gpu_mem_limit takes a whole number, got '-1'/);
  fails('gpu_mem_limit=8GB', /gpu_mem_limit takes a whole number/);
  fails('device_id=1', /'device_id' is not a CUDA provider option tcd-studio passes \(the device is --device\)/);
  fails('enable_cuda_graph=1', /'enable_cuda_graph' is not .*\(use --cuda-graph: .*bound in GPU memory\)/);
  fails(
    'cudnn_algo=1',
    /'cudnn_algo' is not a CUDA provider option tcd-studio passes; known: cudnn_conv_algo_search, /,
  );
  assert.ok(!('enable_cuda_graph' in CUDA_OPTION_RULES) && !('device_id' in CUDA_OPTION_RULES));
});

test('--cuda-options / TCD_CUDA_OPTIONS: checked when read, handed to the engine as one normalised line', () => {
  const s = settingsFromEnv({ TCD_CUDA_OPTIONS: 'prefer_nhwc=true;cudnn_conv_use_max_workspace=0' });
  assert.equal(gpuTuningOf(s).cudaOptions, 'prefer_nhwc=1, cudnn_conv_use_max_workspace=0');
  assert.equal(gpuTuningOf(settingsFromEnv({})).cudaOptions, undefined);
  assert.throws(
    () => settingsFromEnv({ TCD_CUDA_OPTIONS: 'prefer_nhwc=yes' }),
    /TCD_CUDA_OPTIONS: prefer_nhwc takes 0 or 1/,
  );
});

test('an engine refuses mistaken CUDA options at once, whatever the provider', () => {
  assert.throws(
    () => new Engine({ ep: 'cpu', tuning: { cudaOptions: 'arena_extend_strategy=never' }, log: () => {} }),
    /--cuda-options: arena_extend_strategy takes kNextPowerOfTwo \| kSameAsRequested, got 'never'/,
  );
});

test(
  'the native addon: built with gcc, it puts the options in front of every CUDA session and leaves CPU sessions alone',
  { skip: ortCudaAddonSkip },
  () => {
    const built = buildOrtCudaAddon();
    try {
      const child = spawnSync(
        process.execPath,
        ['--import', 'tsx', 'test/helpers/cuda-options-child.ts', built.addon],
        { encoding: 'utf8', timeout: 120_000 },
      );
      assert.equal(child.status, 0, child.stderr);
      const r = JSON.parse(child.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
      // before onnxruntime-node is imported there is no libonnxruntime to patch
      assert.match(
        String(r.beforeImport),
        /libonnxruntime\.so\.1 is not loaded in this process \(import onnxruntime-node first\)$/,
      );
      assert.equal(r.release, `ONNX Runtime ${ortVersion()}`);
      // CPU sessions are untouched, before and after
      assert.deepEqual(r.cpuWith, [2, -4, 7]);
      assert.deepEqual(r.cpuWithout, [2, -4, 7]);
      // no CUDA provider here: ONNX Runtime's own append fails without the addon ...
      assert.doesNotMatch(String(r.cudaBefore), /tcd-studio/);
      assert.match(
        String(r.cudaBefore),
        /OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library/,
      );
      // ... and with it, the same request fails inside the options step the addon inserted
      assert.match(String(r.cudaWith), /^tcd-studio CUDA provider options \(applying them\): .*Failed to load library/);
      assert.equal(r.effectiveWith, '', 'no CUDA session was set up, so no options are in effect');
      // with no options installed the wrapper calls straight through
      assert.equal(r.cudaWithout, r.cudaBefore);
    } finally {
      built.cleanup();
    }
  },
);
