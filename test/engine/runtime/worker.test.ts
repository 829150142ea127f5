/**
 * The worker boundary: crash isolation, a responsive main thread while ONNX Runtime runs, provider fallback,
 * and finding the worker file under tsx and in a compiled tree.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Engine } from '../../../server/engine/engine.js';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import { resolveWorkerFile } from '../../../server/engine/runtime/worker-client.js';
import { cudaProblemsHere } from '../../../server/engine/runtime/cuda-check.js';
import { cudaOrtPackage } from '../../../server/engine/runtime/cuda-ort.js';

/** What keeps CUDA from loading for an engine here (the onnxruntime-node CUDA engines run with: cuda-ort.ts). */
const cudaProblems = () => cudaProblemsHere(process.env, cudaOrtPackage(process.cwd()));
import { componentTolerance, fixturePath, fixtureSkip, maxAbsDiff } from '../../helpers/fixtures.js';
import { debugWorker, workerStarts } from '../../../server/engine/testing.js';

const skip = fixtureSkip();

describe('engine worker', { skip }, () => {
  let cases: SafetensorsFile, ckpt: string, cacheDir: string;
  const decodeMatches = async (engine: Engine) => {
    const out = await engine.vaeDecode({ checkpoint: ckpt }, cases.readTensor('vae/z'));
    const ref = cases.readFloat32('vae/decoded');
    assert.ok(maxAbsDiff(out.data, ref) <= componentTolerance(ref));
  };
  before(() => {
    cases = SafetensorsFile.open(fixturePath('sd1_tiny_cases.safetensors'));
    ckpt = fixturePath('sd1_tiny.safetensors');
    cacheDir = mkdtempSync(join(tmpdir(), 'tcd-worker-'));
  });
  after(() => {
    cases.close();
    rmSync(cacheDir, { recursive: true, force: true });
  });

  test('a crash rejects only the calls in flight, naming their component; the next call gets a fresh worker', async () => {
    const logs: string[] = [];
    const engine = new Engine({ cacheDir, log: (l) => logs.push(l) });
    try {
      await decodeMatches(engine);
      assert.equal(workerStarts(engine), 1);
      // 'throw' never answers and throws at the worker's top level; the decode queued behind it is in flight
      const crash = debugWorker(engine, 'throw');
      const decode = engine.vaeDecode({ checkpoint: ckpt }, cases.readTensor('vae/z'));
      await assert.rejects(
        decode,
        /^EngineWorkerCrashed: engine worker crashed while running the vae decoder of sd1_tiny\.safetensors: debug: uncaught error at the top level of the engine worker/,
      );
      await assert.rejects(crash, /EngineWorkerCrashed/);
      assert.ok(
        logs.some((l) => /worker crashed .*2 call\(s\) failed, the next call starts a fresh worker/.test(l)),
        logs.join('\n'),
      );
      await decodeMatches(engine);
      assert.equal(workerStarts(engine), 2);
      // a worker that exits is the same story
      await assert.rejects(
        debugWorker(engine, 'exit'),
        /engine worker crashed while running the debug: worker exited with code 7/,
      );
      await decodeMatches(engine);
      assert.equal(workerStarts(engine), 3);
    } finally {
      await engine.close();
    }
  });

  test('the main event loop keeps ticking while a UNet call runs', async () => {
    const engine = new Engine({ cacheDir, log: () => {} });
    try {
      const ref = { checkpoint: ckpt, loras: [] };
      const context = { shape: [1, 77, 128], data: new Float32Array(77 * 128) };
      await engine.unet(ref, { shape: [1, 4, 8, 8], data: new Float32Array(256) }, Float32Array.of(500), context); // build + load
      const s = 40; // 320 px: attention over 1600 tokens makes one run last seconds on a CPU
      const x = { shape: [1, 4, s, s], data: new Float32Array(4 * s * s).fill(0.1) };
      let ticks = 0,
        last = performance.now(),
        maxGap = 0;
      const timer = setInterval(() => {
        const now = performance.now();
        maxGap = Math.max(maxGap, now - last);
        last = now;
        ticks++;
      }, 5);
      const t0 = performance.now();
      // repeat until the runs cover a second, however fast this machine is
      let out = await engine.unet(ref, x, Float32Array.of(500), context);
      for (let i = 0; i < 500 && performance.now() - t0 < 1500; i++)
        out = await engine.unet(ref, x, Float32Array.of(500), context);
      const elapsed = performance.now() - t0;
      clearInterval(timer);
      maxGap = Math.max(maxGap, performance.now() - last);
      assert.deepEqual(out.shape, [1, 4, s, s]);
      assert.ok(elapsed > 1000, `the run took only ${elapsed.toFixed(0)} ms, too short to tell`);
      assert.ok(
        maxGap < 250,
        `the event loop stalled for ${maxGap.toFixed(0)} ms during a ${elapsed.toFixed(0)} ms run`,
      );
      assert.ok(ticks >= elapsed / 50, `${ticks} ticks in ${elapsed.toFixed(0)} ms`);
    } finally {
      await engine.close();
    }
  });

  for (const ep of ['webgpu']) {
    test(`ep ${ep}: used when it can create a session, else cpu with one log line saying why`, async () => {
      const logs: string[] = [];
      const engine = new Engine({ ep, cacheDir, log: (l) => logs.push(l) });
      try {
        const out = await engine.vaeDecode({ checkpoint: ckpt }, cases.readTensor('vae/z'));
        const { ep: used } = await engine.stats();
        const epLines = logs.filter((l) => l.startsWith('engine: '));
        assert.equal(epLines.length, 1, logs.join('\n'));
        if (used === 'cpu') {
          assert.match(
            epLines[0],
            new RegExp(
              `^engine: asked for execution provider ${ep}, using cpu: (creating a session failed: |${ep} is not in)`,
            ),
          );
          const ref = cases.readFloat32('vae/decoded');
          assert.ok(maxAbsDiff(out.data, ref) <= componentTolerance(ref));
        } else {
          assert.equal(used, ep);
          assert.equal(epLines[0], `engine: execution provider ${ep}`);
        }
      } finally {
        await engine.close();
      }
    });
  }

  test('ep auto: cuda when it loads, else webgpu, else cpu, in one log line naming why each was passed over', async () => {
    const logs: string[] = [];
    const engine = new Engine({ ep: 'auto', cacheDir, log: (l) => logs.push(l) });
    try {
      const out = await engine.vaeDecode({ checkpoint: ckpt }, cases.readTensor('vae/z'));
      const { ep: used } = await engine.stats();
      const epLines = logs.filter((l) => l.startsWith('engine: '));
      assert.equal(epLines.length, 1, logs.join('\n'));
      const problems = cudaProblems();
      if (used === 'cpu') {
        // this machine: no CUDA libraries (the line says which) and no WebGPU adapter
        assert.ok(problems.length > 0, 'cpu chosen although every CUDA library is present');
        assert.match(epLines[0], /^engine: execution provider auto: using cpu \(cuda: .+; webgpu: .+\)$/);
        for (const p of problems)
          for (const m of p.missing) assert.ok(epLines[0].includes(m), `${m} not named in ${epLines[0]}`);
        const ref = cases.readFloat32('vae/decoded');
        assert.ok(maxAbsDiff(out.data, ref) <= componentTolerance(ref));
      } else {
        assert.match(epLines[0], new RegExp(`^engine: execution provider auto: using ${used} `));
        if (used === 'webgpu') assert.match(epLines[0], /\(cuda: /);
      }
    } finally {
      await engine.close();
    }
  });

  test(
    'ep cuda asked by name and unusable: the engine refuses with what is missing, no fallback',
    { skip: cudaProblems().length === 0 },
    () => {
      const logs: string[] = [];
      assert.throws(
        () => new Engine({ ep: 'cuda', cacheDir, log: (l) => logs.push(l) }),
        (e: Error) => {
          assert.equal(e.name, 'ProviderUnusable');
          assert.match(e.message, /^execution provider cuda was asked for and cannot be used: \n/);
          for (const p of cudaProblems())
            assert.ok(e.message.includes(`${p.part}: ${p.missing.join(', ')} missing`), e.message);
          return true;
        },
      );
      assert.deepEqual(logs, []);
    },
  );

  test('an unknown provider name falls back to cpu and says so', async () => {
    const logs: string[] = [];
    const engine = new Engine({ ep: 'metal', cacheDir, log: (l) => logs.push(l) });
    try {
      await decodeMatches(engine);
      assert.equal((await engine.stats()).ep, 'cpu');
      assert.deepEqual(logs, [
        'engine: asked for execution provider cpu, using cpu: unknown execution provider "metal" (expected cpu | webgpu | cuda | auto)',
      ]);
    } finally {
      await engine.close();
    }
  });
});

test("worker file: the sibling with the module's own extension, else the other one that exists", () => {
  const dir = mkdtempSync(join(tmpdir(), 'tcd-resolve-'));
  try {
    const jsModule = pathToFileURL(join(dir, 'worker-client.js')).href;
    const tsModule = pathToFileURL(join(dir, 'worker-client.ts')).href;
    assert.throws(() => resolveWorkerFile(jsModule), /engine worker not found beside .*worker-client\.js/);
    writeFileSync(join(dir, 'worker.ts'), '');
    assert.equal(resolveWorkerFile(jsModule).href, pathToFileURL(join(dir, 'worker.ts')).href);
    writeFileSync(join(dir, 'worker.js'), '');
    assert.equal(resolveWorkerFile(jsModule).href, pathToFileURL(join(dir, 'worker.js')).href);
    assert.equal(resolveWorkerFile(tsModule).href, pathToFileURL(join(dir, 'worker.ts')).href);
    assert.match(resolveWorkerFile().pathname, /server\/engine\/runtime\/worker\.ts$/); // this checkout, under tsx
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
