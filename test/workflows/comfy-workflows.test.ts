/**
 * issue 16: the shipped ComfyUI-style workflows (hires fix, area composition, inpaint, outpaint, model merge,
 * ComfyUI-TCD, ESRGAN upscale) run unchanged on the demo model through the real executor and nodes, at a small size set here (the
 * templates use real sizes); each produces its image at the size its graph implies.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRegistry } from '../../nodes/index.js';
import { ensureDemoCheckpoint } from '../../server/tools/make-checkpoint.js';
import { ensureDemoControlNet } from '../../server/tools/make-controlnet.js';
import { ensureDemoUpscaleModel } from '../../server/tools/make-upscale-model.js';
import { uiToApi, type UiWorkflow } from '../../server/workflow/convert.js';
import { decodePng, encodePng } from '../../server/storage/png.js';
import type { Prompt } from '../../server/executor/prompt.js';
import { makeHarness, type Harness } from '../helpers/run-prompt.js';
import { PROJECT } from '../cli/run-cli.js';

let h: Harness;
before(async () => {
  h = makeHarness();
  await ensureDemoCheckpoint(h.dirs.models);
  await ensureDemoControlNet(h.dirs.models);
  await ensureDemoUpscaleModel(h.dirs.models);
  // the templates' example.png: 64x64, opaque except a transparent 16x16 square (the area to inpaint)
  const w = 64, hh = 64, rgba = new Uint8Array(w * hh * 4);
  for (let y = 0; y < hh; y++) for (let x = 0; x < w; x++) {
    const i = (y * w + x) * 4;
    rgba.set([x * 4, y * 5, 128, x >= 24 && x < 40 && y >= 16 && y < 32 ? 0 : 255], i);
  }
  writeFileSync(join(h.dirs.input, 'example.png'), encodePng(rgba, w, hh, 4));
});
after(async () => { await h.close(); });

function load(name: string): Prompt {
  const wf = JSON.parse(readFileSync(join(PROJECT, 'workflows', `${name}.json`), 'utf8')) as UiWorkflow;
  return uiToApi(wf, createRegistry()) as Prompt;
}

/** sets `input` on every node of class `cls` */
function set(p: Prompt, cls: string, input: string, value: unknown): void {
  for (const n of Object.values(p)) if (n.class_type === cls) n.inputs[input] = value;
}

async function savedSize(p: Prompt, prefix: string): Promise<[number, number]> {
  await h.run(p);
  const file = readdirSync(h.dirs.output).filter((f) => f.startsWith(prefix)).sort().at(-1);
  assert.ok(file, `${prefix}: no image saved`);
  const { width, height } = decodePng(readFileSync(join(h.dirs.output, file)));
  return [width, height];
}

test('hires-fix: first pass, latent upscale x1.5, second pass at denoise 0.5', async () => {
  const p = load('hires-fix');
  set(p, 'EmptyLatentImage', 'width', 64);
  set(p, 'EmptyLatentImage', 'height', 64);
  assert.deepEqual(await savedSize(p, 'hires-fix'), [96, 96]);
});

test('esrgan-upscale: txt2img, then the demo x2 ESRGAN model doubles the image', async () => {
  const p = load('esrgan-upscale');
  set(p, 'EmptyLatentImage', 'width', 64);
  set(p, 'EmptyLatentImage', 'height', 64);
  set(p, 'KSampler', 'steps', 2);
  assert.deepEqual(await savedSize(p, 'esrgan-upscale'), [128, 128]);
});

test('inpaint: LoadImage alpha -> VAEEncodeForInpaint -> KSampler repaints the hole, keeps the rest', async () => {
  const p = load('inpaint');
  set(p, 'KSampler', 'steps', 2);
  assert.deepEqual(await savedSize(p, 'inpaint'), [64, 64]);
});

test('inpaint-model: LoadImage alpha -> InpaintModelConditioning -> KSampler (the inpainting-checkpoint graph)', async () => {
  const p = load('inpaint-model');
  set(p, 'KSampler', 'steps', 2);
  assert.deepEqual(await savedSize(p, 'inpaint-model'), [64, 64]);
});

test('outpaint: ImagePadForOutpaint widens the image by its borders', async () => {
  const p = load('outpaint');
  set(p, 'ImagePadForOutpaint', 'left', 32);
  set(p, 'ImagePadForOutpaint', 'right', 32);
  set(p, 'ImagePadForOutpaint', 'feathering', 4);
  set(p, 'KSampler', 'steps', 2);
  assert.deepEqual(await savedSize(p, 'outpaint'), [128, 64]);
});

test('comfyui-tcd: TCDModelSamplingDiscrete + SamplerCustom', async () => {
  const p = load('comfyui-tcd');
  set(p, 'EmptyLatentImage', 'width', 64);
  set(p, 'EmptyLatentImage', 'height', 64);
  assert.deepEqual(await savedSize(p, 'comfyui-tcd'), [64, 64]);
});

test('area-composition: a background prompt and two half-image prompts in one KSampler', async () => {
  const p = load('area-composition');
  set(p, 'EmptyLatentImage', 'width', 128);
  set(p, 'EmptyLatentImage', 'height', 64);
  set(p, 'KSampler', 'steps', 2);
  assert.deepEqual(await savedSize(p, 'area-composition'), [128, 64]);
});

test('model-merge: ModelMergeSimple of two checkpoints feeds KSampler', async () => {
  const p = load('model-merge');
  set(p, 'EmptyLatentImage', 'width', 64);
  set(p, 'EmptyLatentImage', 'height', 64);
  assert.deepEqual(await savedSize(p, 'model-merge'), [64, 64]);
});

test('controlnet: ControlNetLoader + ControlNetApplyAdvanced steer KSampler (strength 0 gives other pixels)', async () => {
  const p = load('controlnet');
  set(p, 'EmptyLatentImage', 'width', 64);
  set(p, 'EmptyLatentImage', 'height', 64);
  set(p, 'KSampler', 'steps', 2);
  const pixels = async (strength: number) => {
    set(p, 'ControlNetApplyAdvanced', 'strength', strength);
    assert.deepEqual(await savedSize(p, 'controlnet'), [64, 64]);
    const file = readdirSync(h.dirs.output).filter((f) => f.startsWith('controlnet')).sort().at(-1)!;
    return decodePng(readFileSync(join(h.dirs.output, file))).rgba;
  };
  const controlled = await pixels(0.8);
  const plain = await pixels(0);
  let changed = 0;
  for (let i = 0; i < plain.length; i++) if (Math.abs(plain[i] - controlled[i]) > 4) changed++;
  assert.ok(changed > plain.length / 10, `the ControlNet changed ${changed} of ${plain.length} channel values`);
});
