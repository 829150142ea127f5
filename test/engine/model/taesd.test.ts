/**
 * issue 16 (TAESD): the TAESD decoder and encoder graphs against torch (test/data/upscale/make_reference.py, from
 * madebyollin's published architecture; random weights at the real size, regenerated here from the same seed), with
 * ComfyUI's VAELoader scale/shift for taesd and taesdxl. Components within 1e-4 x max(1, max|ref|). VAELoader lists
 * and loads them from models/vae_approx by ComfyUI's rule.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import { safetensorsWeights } from '../../../server/engine/onnx/weights.js';
import { serializeModel } from '../../../server/engine/onnx/serialize.js';
import { createSession, runSession } from '../../../server/engine/onnx/session.js';
import {
  buildTaesdDecoderGraph,
  buildTaesdEncoderGraph,
  taesdFileProblem,
  TAESD_SCALING,
} from '../../../server/engine/model/taesd.js';
import { makeTaesdFile } from '../../../server/tools/make-taesd.js';
import { TAESD_SEED, taesdInputs } from '../../data/upscale/make-inputs.js';
import type { Tensor } from '../../../server/engine/tensor.js';
import { objectInfoFor } from '../../../server/executor/object-info.js';
import { makeServices } from '../../../server/host.js';
import { ModelFolders } from '../../../server/storage/model-folders.js';
import { createRegistry } from '../../../nodes/index.js';
import type { VaeValue } from '../../../nodes/types.js';
import { makeHarness, type Harness } from '../../helpers/run-prompt.js';
import { DEMO_CHECKPOINT_NAME, ensureDemoCheckpoint } from '../../../server/tools/make-checkpoint.js';
import jpeg from 'jpeg-js';

const registry = createRegistry();

let tmp: string;
let enc: SafetensorsFile, dec: SafetensorsFile;
const REF = 'test/data/upscale/taesd_reference.safetensors';
let ref: SafetensorsFile;
before(async () => {
  ref = SafetensorsFile.open(REF);
  tmp = mkdtempSync(join(tmpdir(), 'taesd-'));
  enc = SafetensorsFile.open(await makeTaesdFile('encoder', join(tmp, 'enc.safetensors'), TAESD_SEED));
  dec = SafetensorsFile.open(await makeTaesdFile('decoder', join(tmp, 'dec.safetensors'), TAESD_SEED));
});
after(() => {
  enc.close();
  dec.close();
  ref.close();
  rmSync(tmp, { recursive: true, force: true });
});

function assertClose(ours: Tensor, r: Tensor, what: string): void {
  assert.deepEqual(ours.shape, r.shape, what);
  const scale = Math.max(1, ...Array.from(r.data, Math.abs));
  let worst = 0;
  for (let i = 0; i < r.data.length; i++) worst = Math.max(worst, Math.abs(ours.data[i] - r.data[i]));
  assert.ok(worst <= 1e-4 * scale, `${what}: max diff ${worst} (scale ${scale})`);
}

test('TAESD decoder (taesd and taesdxl scaling) and encoder match torch', async () => {
  const { latent, image } = taesdInputs();
  for (const [name, key] of [
    ['taesd', 'decoded_sd1'],
    ['taesdxl', 'decoded_sdxl'],
  ] as const) {
    const s = await createSession(serializeModel(buildTaesdDecoderGraph(safetensorsWeights(dec), TAESD_SCALING[name])));
    const out = (await runSession(s, { latent: { shape: [1, 4, 8, 8], data: latent } })).image;
    assert.deepEqual(out.shape, [1, 3, 64, 64]);
    assertClose(out, ref.readTensor(key), name);
    await s.release();
  }
  const s = await createSession(serializeModel(buildTaesdEncoderGraph(safetensorsWeights(enc), TAESD_SCALING.taesd)));
  const mean = (await runSession(s, { image: { shape: [1, 3, 32, 32], data: image } })).mean;
  assertClose(mean, ref.readTensor('encoded_sd1'), 'encoder');
  await s.release();
});

test('taesdFileProblem: the right half passes, the other half and a checkpoint are named', () => {
  assert.equal(taesdFileProblem(safetensorsWeights(dec), 'decoder'), undefined);
  assert.equal(taesdFileProblem(safetensorsWeights(enc), 'encoder'), undefined);
  assert.match(taesdFileProblem(safetensorsWeights(enc), 'decoder') ?? '', /not a TAESD decoder/);
  assert.match(taesdFileProblem(safetensorsWeights(dec), 'encoder') ?? '', /not a TAESD encoder/);
});

describe('VAELoader taesd / taesdxl (models/vae_approx)', () => {
  let h: Harness;
  before(async () => {
    h = makeHarness();
    const dir = join(h.dirs.models, 'vae_approx');
    mkdirSync(dir, { recursive: true });
    copyFileSync(join(tmp, 'enc.safetensors'), join(dir, 'taesd_encoder.safetensors'));
    copyFileSync(join(tmp, 'dec.safetensors'), join(dir, 'taesd_decoder.safetensors'));
    copyFileSync(join(tmp, 'dec.safetensors'), join(dir, 'taesdxl_decoder.safetensors')); // no taesdxl encoder
  });
  after(async () => {
    await h.close();
  });
  const services = () =>
    makeServices(
      new ModelFolders(h.dirs.models),
      { output: h.dirs.output, input: h.dirs.input, temp: h.dirs.temp },
      { ep: 'cpu', log: () => {} },
      false,
    );

  test("lists taesd only when both of its files are present (ComfyUI's rule)", () => {
    const info = objectInfoFor(registry.get('VAELoader')!, services()) as {
      input: { required: { vae_name: [string[]] } };
    };
    assert.deepEqual(info.input.required.vae_name[0], ['taesd']);
  });

  test('decodes and encodes through the engine like the graph, with taesd scaling', async () => {
    const s = services();
    const [vae] = (await registry.get('VAELoader')!.execute({ vae_name: 'taesd' }, { services: s } as never))
      .outputs as VaeValue[];
    assert.equal(vae.ref.taesd?.scale, 0.18215);
    const { latent, image } = taesdInputs();
    const dec = await s.engine().vaeDecode(vae.ref, { shape: [1, 4, 8, 8], data: latent });
    assertClose(dec, ref.readTensor('decoded_sd1'), 'engine decode');
    const enc = await s.engine().vaeEncode(vae.ref, { shape: [1, 3, 32, 32], data: image });
    assertClose(enc, ref.readTensor('encoded_sd1'), 'engine encode');
    await s.engine().close();
  });

  test('a prompt decodes a latent with the TAESD VAE; a broken TAESD file is a 400 naming VAELoader and vae_name', async () => {
    const prompt = {
      vae: { class_type: 'VAELoader', inputs: { vae_name: 'taesd' } },
      lat: { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 48, batch_size: 2 } },
      dec: { class_type: 'VAEDecode', inputs: { samples: ['lat', 0], vae: ['vae', 0] } },
      out: { class_type: 'CaptureIMAGE', inputs: { value: ['dec', 0] } },
    };
    await h.run(prompt);
    assert.deepEqual((h.captured.get('out') as Tensor).shape, [2, 48, 64, 3]);
    const dir = join(h.dirs.models, 'vae_approx');
    writeFileSync(join(dir, 'taesd_encoder.safetensors'), readFileSync(join(tmp, 'enc.safetensors')).subarray(0, 5000));
    await assert.rejects(h.run(prompt), (e: Error) => {
      assert.match(e.message, /"class_type":"VAELoader"/);
      assert.match(e.message, /vae_name: taesd_encoder\.safetensors: /);
      return true;
    });
  });
});

describe('--preview-method taesd', () => {
  let h: Harness;
  before(async () => {
    h = makeHarness(undefined, { previews: true, previewMethod: 'taesd' });
    await ensureDemoCheckpoint(h.dirs.models);
  });
  after(async () => {
    await h.close();
  });
  const prompt = (sampler: 'KSampler' | 'TCDSampler', seed: number) => ({
    ckpt: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: DEMO_CHECKPOINT_NAME } },
    pos: { class_type: 'CLIPTextEncode', inputs: { text: 'a house', clip: ['ckpt', 1] } },
    neg: { class_type: 'CLIPTextEncode', inputs: { text: '', clip: ['ckpt', 1] } },
    lat: { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
    s: {
      class_type: sampler,
      inputs:
        sampler === 'KSampler'
          ? {
              model: ['ckpt', 0],
              positive: ['pos', 0],
              negative: ['neg', 0],
              latent_image: ['lat', 0],
              seed,
              steps: 2,
              cfg: 1,
              sampler_name: 'euler',
              scheduler: 'simple',
              denoise: 1,
            }
          : {
              model: ['ckpt', 0],
              positive: ['pos', 0],
              negative: ['neg', 0],
              latent_image: ['lat', 0],
              seed,
              steps: 2,
              cfg: 1,
              eta: 0.3,
              denoise: 1,
              original_inference_steps: 50,
            },
    },
    out: { class_type: 'CaptureLATENT', inputs: { value: ['s', 0] } },
  });
  const sizes = (previews: Uint8Array[]) =>
    previews.map((p) => {
      const img = jpeg.decode(p);
      return `${img.width}x${img.height}`;
    });

  test('without the SDXL TAESD decoder: latent2rgb previews (one latent pixel per pixel)', async () => {
    const r = await h.run(prompt('KSampler', 1));
    assert.deepEqual(sizes(r.previews), ['8x8', '8x8']);
  });

  test('with taesdxl_decoder in models/vae_approx: KSampler and TCDSampler previews are TAESD-decoded (8x the latent)', async () => {
    const dir = join(h.dirs.models, 'vae_approx');
    mkdirSync(dir, { recursive: true });
    copyFileSync(join(tmp, 'dec.safetensors'), join(dir, 'taesdxl_decoder.safetensors'));
    // new seeds: a cached sampler would not run (and send nothing)
    assert.deepEqual(sizes((await h.run(prompt('KSampler', 2))).previews), ['64x64', '64x64']);
    assert.deepEqual(sizes((await h.run(prompt('TCDSampler', 3))).previews), ['64x64', '64x64']);
  });
});
