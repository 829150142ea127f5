/**
 * VAELoader: a VAE-only file (the checkpoint's first_stage_model.* written on its own, as published VAEs are) decodes
 * and encodes exactly like the checkpoint's VAE; a diffusers-layout VAE is refused before anything runs, naming the
 * node and input.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile } from '../../server/engine/io/safetensors.js';
import { writeSafetensors } from '../../server/engine/io/safetensors-writer.js';
import type { Tensor } from '../../server/engine/tensor.js';
import type { LatentValue } from '../../nodes/types.js';
import { FIXTURES, fixturePath, fixtureSkip } from '../helpers/fixtures.js';
import { makeHarness, type Harness } from '../helpers/run-prompt.js';

describe('VAELoader', { skip: fixtureSkip() }, () => {
  let h: Harness;
  before(async () => {
    h = makeHarness();
    symlinkSync(FIXTURES, join(h.dirs.models, 'checkpoints'));
    const dir = join(h.dirs.models, 'vae');
    mkdirSync(dir, { recursive: true });
    const src = SafetensorsFile.open(fixturePath('sd1_tiny.safetensors'));
    const vaeKeys = src.keys().filter((k) => k.startsWith('first_stage_model.'));
    await writeSafetensors(
      join(dir, 'tiny_vae.safetensors'),
      vaeKeys.map((k) => ({
        name: k.slice('first_stage_model.'.length),
        dtype: 'F32' as const,
        shape: src.shape(k),
        data: () => src.readFloat32(k),
      })),
    );
    await writeSafetensors(join(dir, 'diffusers_vae.safetensors'), [
      {
        name: 'encoder.down_blocks.0.resnets.0.conv1.weight',
        dtype: 'F32',
        shape: [4, 4, 3, 3],
        data: () => new Float32Array(144),
      },
      {
        name: 'decoder.up_blocks.0.resnets.0.conv1.weight',
        dtype: 'F32',
        shape: [4, 4, 3, 3],
        data: () => new Float32Array(144),
      },
    ]);
    copyFileSync(fixturePath('sd1_tiny_lora_kohya.safetensors'), join(dir, 'a_lora.safetensors'));
    src.close();
  });
  after(async () => {
    await h.close();
  });

  const prompt = (vae: unknown[]) => ({
    ckpt: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'sd1_tiny.safetensors' } },
    vaefile: { class_type: 'VAELoader', inputs: { vae_name: 'tiny_vae.safetensors' } },
    img: { class_type: 'EmptyImage', inputs: { width: 32, height: 24, batch_size: 1, color: 0x3366cc } },
    enc: { class_type: 'VAEEncode', inputs: { pixels: ['img', 0], vae } },
    dec: { class_type: 'VAEDecode', inputs: { samples: ['enc', 0], vae } },
    outLatent: { class_type: 'CaptureLATENT', inputs: { value: ['enc', 0] } },
    outImage: { class_type: 'CaptureIMAGE', inputs: { value: ['dec', 0] } },
  });

  test("a VAE-only file encodes and decodes exactly as the checkpoint's own VAE", async () => {
    await h.run(prompt(['ckpt', 2]));
    const lat = (h.captured.get('outLatent') as LatentValue).samples,
      img = h.captured.get('outImage') as Tensor;
    await h.run(prompt(['vaefile', 0]));
    const lat2 = (h.captured.get('outLatent') as LatentValue).samples,
      img2 = h.captured.get('outImage') as Tensor;
    assert.deepEqual(lat2.shape, [1, 4, 3, 4]);
    assert.deepEqual([...lat2.data], [...lat.data]);
    assert.deepEqual([...img2.data], [...img.data]);
  });

  test('a diffusers-layout VAE is a 400 naming VAELoader and vae_name', async () => {
    const p = {
      ...prompt(['vaefile', 0]),
      vaefile: { class_type: 'VAELoader', inputs: { vae_name: 'diffusers_vae.safetensors' } },
    };
    await assert.rejects(
      h.run(p),
      (e: Error) =>
        /"class_type":"VAELoader"/.test(e.message) && /diffusers' layout/.test(e.message) && /vae_name/.test(e.message),
    );
  });

  test('a file with no VAE weights (a LoRA in models/vae) is a 400 saying it is no VAE', async () => {
    // before: "no known text encoder keys ...; not an SD1.x/SDXL single-file checkpoint", the checkpoint rule's text
    const p = {
      ...prompt(['vaefile', 0]),
      vaefile: { class_type: 'VAELoader', inputs: { vae_name: 'a_lora.safetensors' } },
    };
    await assert.rejects(h.run(p), (e: Error) =>
      /vae_name: a_lora\.safetensors is not a VAE: it has no encoder\.\* \/ decoder\.\* weights/.test(e.message),
    );
  });
});
