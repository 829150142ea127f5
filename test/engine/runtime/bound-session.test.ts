/**
 * BoundSession (server/engine/runtime/bound-session.ts, native/ort-cuda graph_session.c): the UNet with its inputs
 * and outputs bound at fixed device addresses, the form ONNX Runtime's CUDA graphs need (--cuda-graph). CI has no
 * GPU, so these run the same addon path on the CPU provider (host memory, memcpy instead of cudaMemcpy, no capture):
 * one binding per input shape, reused when a shape comes back, and the UNet through the session store (the fixtures'
 * diffusers outputs, and a whole TCD loop with CFG, i.e. batch-2 calls, equal to the plain session's).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { after, before, describe, test } from 'node:test';
import ort from 'onnxruntime-node';
import { GraphBuilder } from '../../../server/engine/onnx/graph.js';
import { serializeModel } from '../../../server/engine/onnx/serialize.js';
import { BoundSession } from '../../../server/engine/runtime/bound-session.js';
import { runComponentCall } from '../../../server/engine/runtime/components.js';
import { controlNetSession } from '../../../server/engine/runtime/control-residuals.js';
import { libonnxruntimeOf } from '../../../server/engine/runtime/cuda-options.js';
import { mainOrtPackage } from '../../../server/engine/runtime/cuda-ort.js';
import { SessionStore } from '../../../server/engine/runtime/session-store.js';
import { runTcdLoop } from '../../../server/engine/runtime/tcd-loop.js';
import { TorchGenerator } from '../../../server/engine/rng.js';
import type { Tensor } from '../../../server/engine/tensor.js';
import { assertComponentClose, fixturePath, fixtureSkip, maxAbsDiff, unetFixtureCase } from '../../helpers/fixtures.js';
import { buildOrtCudaAddon, ortCudaAddonSkip } from '../../helpers/ort-cuda-addon.js';
import { CN_SEEDS, makeTestControlNet } from '../../helpers/controlnet-files.js';

const skip = ortCudaAddonSkip;
let built: ReturnType<typeof buildOrtCudaAddon> | null = null;
let addonPath = '';
before(() => {
  if (skip) return;
  built = buildOrtCudaAddon();
  addonPath = built.addon;
});
after(() => built?.cleanup());

/** A CPU bound session of `model` with the built addon (or `addon`). */
const cpuBound = (model: Uint8Array, addon = addonPath) =>
  BoundSession.create(model, {
    ep: 'cpu',
    deviceId: 0,
    cudaOptions: [],
    cudaGraph: false,
    logId: 'small',
    ortPackageDir: mainOrtPackage()!,
    addonPath: addon,
  });

/** y = (x + x) * w, and n = the int64 count of x's rows cast to float, over dynamic rows */
function smallModel(): Uint8Array {
  const g = new GraphBuilder({ name: 'small' });
  const x = g.input('x', 'float32', ['n', 3]);
  const w = g.input('w', 'float16', [3]);
  const k = g.input('k', 'int64', [1]);
  g.output(g.op.Mul(g.op.Add(x, x), g.op.Cast(w, { to: 1 })), 'y');
  g.output(g.op.Cast(k, { to: 1 }), 'kf');
  return serializeModel(g);
}

const f16 = (v: number[]) => {
  // 1, 10, 0.5 in IEEE half
  const bits: Record<number, number> = { 1: 0x3c00, 10: 0x4900, 0.5: 0x3800 };
  return Uint16Array.from(v.map((x) => bits[x]));
};

describe('BoundSession on the CPU provider (the CUDA graph path with host memory)', { skip }, () => {
  test('results as an ORT session gives, for shapes that change and come back; float16 and int64 inputs', async () => {
    const model = smallModel();
    const bound = cpuBound(model);
    const plain = await ort.InferenceSession.create(model);
    try {
      assert.equal(bound.cudaGraph, false, 'no CUDA graphs on the CPU');
      assert.deepEqual([...bound.inputNames], ['x', 'w', 'k']);
      assert.deepEqual([...bound.outputNames], ['y', 'kf']);
      // 39 shapes, more than the 32 bindings a session keeps: the first ones are freed and made again on return
      const shapes = [1, 3, 1, 2, 3, ...Array.from({ length: 36 }, (_, i) => i + 4), 1, 2];
      for (const rows of shapes) {
        const feeds = {
          x: new ort.Tensor(
            'float32',
            Float32Array.from({ length: rows * 3 }, (_, i) => i - rows),
            [rows, 3],
          ),
          w: new ort.Tensor('float16', f16([1, 10, 0.5]), [3]),
          k: new ort.Tensor('int64', BigInt64Array.from([BigInt(rows * 7)]), [1]),
        };
        const got = await bound.run(feeds);
        const want = await plain.run(feeds);
        assert.deepEqual(got.y.dims, [rows, 3]);
        assert.deepEqual([...(got.y.data as Float32Array)], [...(want.y.data as Float32Array)], `rows ${rows}`);
        assert.deepEqual([...(got.kf.data as Float32Array)], [rows * 7]);
        // only what was asked for
        assert.deepEqual(Object.keys(await bound.run(feeds, ['kf'])), ['kf']);
      }
    } finally {
      await bound.release();
      await plain.release();
    }
  });

  test('mistakes are named: data of the wrong size, an unknown output, another element type, a missing input, a released session', async () => {
    const bound = cpuBound(smallModel());
    const feeds = {
      x: new ort.Tensor('float32', new Float32Array(6), [2, 3]),
      w: new ort.Tensor('float16', f16([1, 1, 1]), [3]),
      k: new ort.Tensor('int64', BigInt64Array.from([1n]), [1]),
    };
    await assert.rejects(bound.run(feeds, ['z']), /the session has no output z/);
    // a tensor whose data does not fill its dims (ort.Tensor refuses to make one) is refused before anything is copied
    const short = {
      dims: [3, 3],
      data: new Float32Array(6),
      location: 'cpu',
      type: 'float32',
    } as unknown as ort.Tensor;
    await assert.rejects(
      bound.run({ ...feeds, x: short }, ['y']),
      /input x has 24 bytes of data for 36 bytes of tensor/,
    );
    // a typed array of another element type with the right byte count is refused (float16 travels as 16-bit ints)
    const halfAsFloat = { ...feeds, w: { ...feeds.w, data: new Float32Array(2) } as unknown as ort.Tensor };
    Object.setPrototypeOf(halfAsFloat.w, ort.Tensor.prototype);
    await assert.rejects(bound.run(halfAsFloat, ['y']), /input w: its typed array does not hold element type 10/);
    // ONNX Runtime's own failures carry its name (what the CUDA graph fallback retries on)
    const { k: _k, ...withoutK } = feeds;
    await assert.rejects(bound.run(withoutK, ['y']), /^Error: ONNX Runtime run: .*\bk\b/);
    await bound.release();
    await assert.rejects(bound.run(feeds, ['y']), /this session was released/);
    assert.throws(
      () => cpuBound(smallModel(), join(built!.dir, 'missing.node')),
      /--cuda-graph needs the native helper .*missing\.node: run `npm run setup:cuda`/,
    );
  });
});

describe(
  'BoundSessions in several worker threads at once (engines on several GPUs share one process)',
  { skip },
  () => {
    test('each thread gets its own results while the others run', async () => {
      const lib = libonnxruntimeOf(mainOrtPackage()!, 'test');
      const ortEntry = createRequire(import.meta.url).resolve('onnxruntime-node');
      // plain CommonJS so the threads need no TypeScript loader: shapes and data differ per thread and per run
      const code = `
      const { workerData: d, parentPort } = require('node:worker_threads');
      require(d.ortEntry); // loads libonnxruntime into the process, as the engine's worker does
      const addon = require(d.addon);
      const h = addon.createSession(d.lib, d.model, 'cpu', 0, '', false, 't' + d.id);
      let bad = 0;
      for (let i = 0; i < d.runs; i++) {
        const rows = 1 + ((i + d.id) % 4);
        const x = Float32Array.from({ length: rows * 3 }, (_, k) => k + i * 0.5 + d.id * 100);
        const w = Uint16Array.from([0x3c00, 0x4900, 0x3800]); // 1, 10, 0.5
        const [y, kf] = addon.run(h, ['x', 'w', 'k'], [1, 10, 7], [[rows, 3], [3], [1]],
          [x, w, BigInt64Array.from([BigInt(i)])]);
        const ys = new Float32Array(y.data);
        if (y.name !== 'y' || y.dims.join() !== rows + ',3') bad++;
        for (let k = 0; k < ys.length; k++) if (ys[k] !== 2 * x[k] * [1, 10, 0.5][k % 3]) bad++;
        if (new Float32Array(kf.data)[0] !== i) bad++;
      }
      addon.releaseSession(h);
      parentPort.postMessage(bad);
    `;
      const runs = 300;
      const results = await Promise.all(
        [0, 1, 2].map(
          (id) =>
            new Promise<number>((resolve, reject) => {
              const w = new Worker(code, {
                eval: true,
                workerData: { id, runs, lib, ortEntry, addon: addonPath, model: smallModel() },
              });
              w.once('message', resolve);
              w.once('error', reject);
            }),
        ),
      );
      assert.deepEqual(results, [0, 0, 0]);
    });
  },
);

describe("a bound session made first sets the process's ONNX Runtime log level", { skip }, () => {
  // ONNX Runtime keeps one environment per process, made by whichever asks first at the level it gives: a bound
  // session made at "errors only" before any other session silenced --ort-log-level info (the arena log) for all
  const environmentLines = (severity: number | null) => {
    const code = `
      const ort = require(${JSON.stringify(createRequire(import.meta.url).resolve('onnxruntime-node'))});
      const addon = require(${JSON.stringify(addonPath)});
      const model = Buffer.from(${JSON.stringify(Buffer.from(smallModel()).toString('base64'))}, 'base64');
      const lib = ${JSON.stringify(libonnxruntimeOf(mainOrtPackage()!, 'test'))};
      ort.env.logLevel = 'info';
      (async () => {
        const args = [lib, model, 'cpu', 0, '', false, 'bound'];
        addon.createSession(...args, ...(${severity} === null ? [] : [${severity}])); // makes the environment
        const s = await ort.InferenceSession.create(model, { logId: 'after' });
        await s.run({ x: new ort.Tensor('float32', new Float32Array(3), [1, 3]),
          w: new ort.Tensor('float16', new Uint16Array(3), [3]), k: new ort.Tensor('int64', new BigInt64Array(1), [1]) });
      })();`;
    const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    // the environment's own logger (not a session's): arena creation and growth
    return (r.stderr.match(/\[I:onnxruntime:tcd-studio, bfc_arena/g) ?? []).length;
  };
  test('given the level in use (info), the environment logs the arenas', () => {
    assert.ok(environmentLines(1) > 0);
  });
  test('without it (errors only, the old call), the environment is silent: what the engine must not do', () => {
    assert.equal(environmentLines(null), 0);
  });
});

describe('the session store with bound UNets on the CPU provider', { skip: skip || fixtureSkip() }, () => {
  const stores: Record<'plain' | 'bound', SessionStore> = {} as never;
  let cacheDir = '';
  before(async () => {
    cacheDir = mkdtempSync(join(tmpdir(), 'tcd-bound-store-'));
    for (const kind of ['plain', 'bound'] as const) {
      stores[kind] = await SessionStore.start(
        {
          ep: 'cpu',
          ramBudget: 4 * 1024 ** 3,
          vramBudget: Infinity,
          cacheDir: join(cacheDir, kind),
          externalDataMinBytes: kind === 'bound' ? 0 : Infinity, // the bound one loads from a file with external data
          cudaAddon: addonPath,
        },
        () => {},
      );
    }
    stores.bound.boundOverride = true;
  });
  after(async () => {
    for (const s of Object.values(stores)) await s?.free();
    if (cacheDir) rmSync(cacheDir, { recursive: true, force: true });
  });

  for (const family of ['sd1', 'sdxl'] as const) {
    test(`${family} UNet matches diffusers`, async () => {
      const { ckpt, cases, feeds, ref } = unetFixtureCase(family);
      try {
        const eps = (await runComponentCall(stores.bound, {
          op: 'unet',
          model: { checkpoint: fixturePath(`${family}_tiny.safetensors`), loras: [] },
          x: feeds.x,
          t: Float32Array.from(feeds.t.data),
          context: feeds.context,
          ...(feeds.text_embeds ? { extra: { textEmbeds: feeds.text_embeds, timeIds: feeds.time_ids } } : {}),
        })) as Tensor;
        assertComponentClose(eps, ref, `${family} bound UNet`);
      } finally {
        ckpt.close();
        cases.close();
      }
    });
  }

  test('TCD loops give the plain sessions latents: with CFG (batch-2 calls), without (batch 1), with a ControlNet', async () => {
    const { ckpt, cases, feeds } = unetFixtureCase('sd1');
    const cnDir = mkdtempSync(join(tmpdir(), 'tcd-bound-cn-'));
    try {
      const gen = new TorchGenerator(5);
      const shape = feeds.x.shape;
      const noise = () => gen.randn([...shape]);
      const negative = { context: { shape: feeds.context.shape, data: new Float32Array(feeds.context.data.length) } };
      // the ControlNet's session is bound too; its residuals feed the controlled UNet
      const path = await makeTestControlNet(
        fixturePath('sd1_tiny.safetensors'),
        join(cnDir, 'cn.safetensors'),
        CN_SEEDS.sd1,
        'ldm-prefixed',
      );
      const hintShape = [1, 3, shape[2] * 8, shape[3] * 8];
      const hint = { shape: hintShape, data: Float32Array.from(gen.randn(hintShape), (v) => Math.abs(v) % 1) };
      const control = [{ path, hint, strength: 0.8, startPercent: 0, endPercent: 1 }];
      for (const [cfg, controlled] of [
        [2.5, false],
        [1, false],
        [2.5, true],
      ] as const) {
        const call = {
          op: 'sampleTcd' as const,
          model: { checkpoint: fixturePath('sd1_tiny.safetensors'), loras: [] },
          x: { shape, data: noise() },
          timesteps: [999, 759, 499, 259],
          eta: 0.3,
          noises: [noise(), noise(), noise()],
          positive: { context: feeds.context, ...(controlled ? { control } : {}) },
          ...(cfg !== 1 ? { negative: controlled ? { ...negative, control } : negative } : {}),
          cfg,
          predictionType: 'epsilon' as const,
          previews: false,
        };
        const plain = await runTcdLoop(
          stores.plain,
          call,
          () => {},
          () => false,
        );
        const bound = await runTcdLoop(
          stores.bound,
          call,
          () => {},
          () => false,
        );
        assert.deepEqual(bound.shape, plain.shape);
        const diff = maxAbsDiff(bound.data, plain.data);
        assert.ok(diff <= 1e-5, `cfg ${cfg}${controlled ? ', ControlNet' : ''}: ${diff}`);
        if (controlled) {
          // the ControlNet ran as a bound session in the one store and as ORT's in the other
          const model = call.model;
          assert.ok((await controlNetSession(stores.bound, model, control[0])) instanceof BoundSession);
          assert.ok(!((await controlNetSession(stores.plain, model, control[0])) instanceof BoundSession));
        }
      }
    } finally {
      ckpt.close();
      cases.close();
      rmSync(cnDir, { recursive: true, force: true });
    }
  });
});
