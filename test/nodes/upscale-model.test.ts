/**
 * issue 16 (upscale models): UpscaleModelLoader / ImageUpscaleWithModel against torch references made from the
 * published RRDBNet architecture and ComfyUI's tiled_scale (test/data/upscale/make_reference.py, float64): whole
 * images in the three key layouts, the tiled blend at a small tile, and the node itself (512-pixel tiles, overlap 32)
 * on an image wider than one tile. Components within 1e-4 relative; bad files are a 400 naming the node and input.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { SafetensorsFile } from '../../server/engine/io/safetensors.js';
import { writeSafetensors } from '../../server/engine/io/safetensors-writer.js';
import { tiledScale } from '../../server/engine/ops/tiled-scale.js';
import { objectInfoFor } from '../../server/executor/object-info.js';
import { makeServices } from '../../server/host.js';
import { ModelFolders } from '../../server/storage/model-folders.js';
import type { Tensor } from '../../server/engine/tensor.js';
import type { NodeContext } from '../../server/executor/node-definition.js';
import type { NodeServices } from '../../nodes/services.js';
import type { UpscaleModelValue } from '../../nodes/types.js';
import { toNCHW, toNHWC } from '../../nodes/image-ops.js';
import { ensureDemoUpscaleModel, DEMO_UPSCALE_MODEL_NAME } from '../../server/tools/make-upscale-model.js';
import { makeHarness, type Harness } from '../helpers/run-prompt.js';
import { registry } from './model-free-helpers.js';

const DATA = resolve('test/data/upscale');
const modelPath = (name: string) => join(DATA, `${name}.safetensors`);

/** max |a - b| <= tol * max(1, |b|) per component, same shape */
function assertClose(ours: Tensor, ref: Tensor, what: string, tol = 1e-4): void {
  assert.deepEqual(ours.shape, ref.shape, `${what}: shape`);
  let worst = 0,
    at = 0;
  for (let i = 0; i < ref.data.length; i++) {
    const d = Math.abs(ours.data[i] - ref.data[i]) / Math.max(1, Math.abs(ref.data[i]));
    if (!(d <= worst)) [worst, at] = [d, i];
  }
  assert.ok(worst <= tol, `${what}: relative diff ${worst} at ${at} (ours ${ours.data[at]}, ref ${ref.data[at]})`);
}

describe('upscale models against torch', () => {
  let services: NodeServices;
  let inputs: SafetensorsFile, ref: SafetensorsFile;
  before(() => {
    inputs = SafetensorsFile.open(join(DATA, 'inputs.safetensors'));
    ref = SafetensorsFile.open(join(DATA, 'reference.safetensors'));
    services = makeServices(
      new ModelFolders(DATA, { upscale_models: [DATA] }), // the test models as models/upscale_models
      { output: DATA, input: DATA, temp: DATA },
      { ep: 'cpu', log: () => {} },
      false,
    );
  });
  after(async () => {
    await services.engine().close();
    inputs.close();
    ref.close();
  });

  test('whole images: old ESRGAN x4, Real-ESRGAN x2 with pixel-unshuffle and odd sizes (padded, cropped)', async () => {
    const e = services.engine();
    assertClose(
      await e.upscaleImage({ path: modelPath('esrgan-old-x4') }, inputs.readTensor('img_a')),
      ref.readTensor('a_old_x4'),
      'old x4',
    );
    const b = await e.upscaleImage({ path: modelPath('realesrgan-x2-unshuffle') }, inputs.readTensor('img_b'));
    assertClose(b, ref.readTensor('b_unshuffle_x2'), 'unshuffle x2');
    assert.deepEqual(b.shape, [1, 3, 36, 46]);
  });

  test("ComfyUI's tiled blend (tile 16, overlap 4) on a batch of two, BSRGAN layout", async () => {
    const e = services.engine();
    const out = await tiledScale(
      inputs.readTensor('img_d'),
      (t) => e.upscaleImage({ path: modelPath('bsrgan-x2') }, t),
      {
        tile: 16,
        overlap: 4,
        scale: 2,
      },
    );
    assertClose(out, ref.readTensor('d_tiled16_x2'), 'tiled x2');
  });

  test('ImageUpscaleWithModel: 512-pixel tiles overlapping by 32 on a 600-pixel-wide image, progress per tile', async () => {
    const run = async (model: string, image: Tensor) => {
      const progress: [number, number][] = [];
      const ctx = {
        services,
        progress: (v: number, m: number) => progress.push([v, m]),
        checkInterrupted: () => {},
        log: () => {},
      } as unknown as NodeContext<NodeServices>;
      const [upscale_model] = (await registry.get('UpscaleModelLoader')!.execute({ model_name: model }, ctx)).outputs;
      const [out] = (await registry.get('ImageUpscaleWithModel')!.execute({ upscale_model, image: toNHWC(image) }, ctx))
        .outputs as Tensor[];
      return { out: toNCHW(out), progress, scale: (upscale_model as UpscaleModelValue).scale };
    };
    const c = await run('realesrgan-x2-unshuffle.safetensors', inputs.readTensor('img_c'));
    assert.equal(c.scale, 2);
    assertClose(c.out, ref.readTensor('c_node_tiled_x2'), 'node tiled x2');
    assert.deepEqual(c.progress, [
      [1, 2],
      [2, 2],
    ]);
    const a = await run('esrgan-old-x4.safetensors', inputs.readTensor('img_a'));
    assertClose(a.out, ref.readTensor('e_node_x4'), 'node x4');
    assert.deepEqual(a.progress, [[1, 1]]);
    for (const v of c.out.data) assert.ok(v >= 0 && v <= 1);
  });
});

describe('UpscaleModelLoader / ImageUpscaleWithModel in prompts', () => {
  let h: Harness;
  before(async () => {
    h = makeHarness();
    await ensureDemoUpscaleModel(h.dirs.models);
    const dir = join(h.dirs.models, 'upscale_models');
    await writeSafetensors(join(dir, 'swinir.safetensors'), [
      {
        name: 'layers.0.residual_group.blocks.0.norm1.weight',
        dtype: 'F32',
        shape: [4],
        data: () => new Float32Array(4),
      },
    ]);
    // a corrupted copy: the header promises more bytes than the file holds
    const demo = readFileSync(join(dir, DEMO_UPSCALE_MODEL_NAME));
    writeFileSync(join(dir, 'truncated.safetensors'), demo.subarray(0, demo.length - 100));
    copyFileSync(join(dir, DEMO_UPSCALE_MODEL_NAME), join(dir, 'pickled.pth'));
    mkdirSync(join(dir, 'sub'), { recursive: true });
    copyFileSync(modelPath('esrgan-old-x4'), join(dir, 'sub', 'old-x4.safetensors'));
  });
  after(async () => {
    await h.close();
  });

  const prompt = (model: string, width = 40, height = 24) => ({
    load: { class_type: 'UpscaleModelLoader', inputs: { model_name: model } },
    img: { class_type: 'EmptyImage', inputs: { width, height, batch_size: 2, color: 0x3366cc } },
    up: { class_type: 'ImageUpscaleWithModel', inputs: { upscale_model: ['load', 0], image: ['img', 0] } },
    out: { class_type: 'CaptureIMAGE', inputs: { value: ['up', 0] } },
  });

  test('runs any listed model (subfolders too) on a batch; the size follows the scale', async () => {
    await h.run(prompt(DEMO_UPSCALE_MODEL_NAME));
    assert.deepEqual((h.captured.get('out') as Tensor).shape, [2, 48, 80, 3]);
    // a 1-pixel image: padded to spandrel's 2-pixel minimum inside the call, cropped back to 1 x scale
    await h.run(prompt(DEMO_UPSCALE_MODEL_NAME, 1, 1));
    assert.deepEqual((h.captured.get('out') as Tensor).shape, [2, 2, 2, 3]);
    const r = await h.run(prompt('sub/old-x4.safetensors', 520, 8));
    const img = h.captured.get('out') as Tensor;
    assert.deepEqual(img.shape, [2, 32, 2080, 3]);
    // a flat colour stays flat across the tile seam of a 2-tile image (the blend is a weighted mean)
    const px = (x: number) => [...img.data.subarray((16 * 2080 + x) * 3, (16 * 2080 + x) * 3 + 3)];
    const progress = r.events.filter((e) => e.type === 'progress' && (e.data as { node: string }).node === 'up');
    assert.deepEqual(
      progress.map((e) => [(e.data as { value: number }).value, (e.data as { max: number }).max]),
      [
        [1, 4],
        [2, 4],
        [3, 4],
        [4, 4],
      ],
    );
    assert.ok(px(1000).every((v, i) => Math.abs(v - px(1100)[i]) < 1e-5));
  });

  for (const [file, why] of [
    ['swinir.safetensors', /unknown upscale model architecture/],
    ['truncated.safetensors', /model_name/],
    ['pickled.pth', /only \.safetensors upscale models/],
  ] as const) {
    test(`${file}: a 400 naming UpscaleModelLoader and model_name, before anything runs`, async () => {
      await assert.rejects(h.run(prompt(file)), (e: Error) => {
        assert.match(e.message, /^prompt invalid/);
        assert.match(e.message, /"class_type":"UpscaleModelLoader"/);
        assert.match(e.message, /model_name: /);
        assert.match(e.message, why);
        return true;
      });
    });
  }

  test("object_info: ComfyUI's names, inputs, outputs and categories", () => {
    const info = (id: string) => objectInfoFor(registry.get(id)!, { models: new ModelFolders(h.dirs.models) });
    const loader = info('UpscaleModelLoader') as Record<string, any>;
    assert.deepEqual(
      loader.input.required.model_name[0],
      [
        'pickled.pth',
        'sub/old-x4.safetensors',
        'swinir.safetensors',
        DEMO_UPSCALE_MODEL_NAME,
        'truncated.safetensors',
      ].sort(),
    );
    assert.deepEqual(loader.input_order, { required: ['model_name'] });
    assert.deepEqual(
      [loader.output, loader.output_name, loader.category, loader.display_name, loader.python_module],
      [['UPSCALE_MODEL'], ['UPSCALE_MODEL'], 'loaders', 'Load Upscale Model', 'comfy_extras.nodes_upscale_model'],
    );
    const up = info('ImageUpscaleWithModel') as Record<string, any>;
    assert.deepEqual(up.input.required, { upscale_model: ['UPSCALE_MODEL'], image: ['IMAGE'] });
    assert.deepEqual(
      [up.output, up.category, up.display_name, up.output_node],
      [['IMAGE'], 'image/upscaling', 'Upscale Image (using Model)', false],
    );
  });
});
