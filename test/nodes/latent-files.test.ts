/**
 * SaveLatent -> LoadLatent round trip through the real executor (ComfyUI's .latent safetensors: latent_tensor plus the
 * latent_format_version_0 marker; files without it are read as old-format latents divided by 0.18215), and
 * LoadImageMask's channels (alpha inverted, as ComfyUI).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile } from '../../server/engine/io/safetensors.js';
import { writeSafetensors } from '../../server/engine/io/safetensors-writer.js';
import { encodePng } from '../../server/storage/png.js';
import type { Tensor } from '../../server/engine/tensor.js';
import type { LatentValue } from '../../nodes/types.js';
import { makeHarness, type Harness } from '../helpers/run-prompt.js';

let h: Harness;
before(() => {
  h = makeHarness();
});
after(async () => {
  await h.close();
});

test("SaveLatent writes ComfyUI's .latent file and LoadLatent reads it back unchanged", async () => {
  const r = await h.run({
    img: { class_type: 'EmptyImage', inputs: { width: 16, height: 8, batch_size: 2, color: 0x808080 } },
    empty: { class_type: 'EmptyLatentImage', inputs: { width: 32, height: 16, batch_size: 2 } },
    comp: { class_type: 'LatentBlend', inputs: { samples1: ['empty', 0], samples2: ['empty', 0], blend_factor: 0.5 } },
    save: { class_type: 'SaveLatent', inputs: { samples: ['comp', 0], filename_prefix: 'latents/test' } },
  });
  const executed = r.events.find((e) => e.type === 'executed')!.data as unknown as {
    output: { latents: { filename: string; subfolder: string; type: string }[] };
  };
  assert.deepEqual(executed.output.latents, [{ filename: 'test_00001_.latent', subfolder: 'latents', type: 'output' }]);
  const path = join(h.dirs.output, 'latents', 'test_00001_.latent');
  const f = SafetensorsFile.open(path);
  assert.deepEqual(f.shape('latent_tensor'), [2, 4, 2, 4]);
  assert.deepEqual(f.shape('latent_format_version_0'), [0]);
  assert.equal(typeof JSON.parse(f.metadata!.prompt).save, 'object');
  f.close();
  copyFileSync(path, join(h.dirs.input, 'saved.latent'));
  // an old-format file (no marker): values are divided by 0.18215 on load
  await writeSafetensors(join(h.dirs.input, 'old.latent'), [
    { name: 'latent_tensor', dtype: 'F32', shape: [1, 4, 1, 1], data: () => Float32Array.of(0.18215, 0, -0.18215, 1) },
  ]);
  assert.deepEqual(
    readdirSync(h.dirs.input)
      .filter((n) => n.endsWith('.latent'))
      .sort(),
    ['old.latent', 'saved.latent'],
  );
  await h.run({
    load: { class_type: 'LoadLatent', inputs: { latent: 'saved.latent' } },
    out: { class_type: 'CaptureLATENT', inputs: { value: ['load', 0] } },
  });
  const back = (h.captured.get('out') as LatentValue).samples;
  assert.deepEqual(back.shape, [2, 4, 2, 4]);
  assert.ok(back.data.every((v) => v === 0));
  await h.run({
    load: { class_type: 'LoadLatent', inputs: { latent: 'old.latent' } },
    out: { class_type: 'CaptureLATENT', inputs: { value: ['load', 0] } },
  });
  const old = (h.captured.get('out') as LatentValue).samples.data;
  assert.ok(Math.abs(old[0] - 1) < 1e-6 && Math.abs(old[2] + 1) < 1e-6 && Math.abs(old[3] - 1 / 0.18215) < 1e-4);
});

test('LoadImageMask: red channel as is, alpha inverted', async () => {
  const rgba = Uint8Array.of(255, 0, 0, 255, 51, 0, 0, 0);
  writeFileSync(join(h.dirs.input, 'two.png'), encodePng(rgba, 2, 1, 4));
  for (const [channel, want] of [
    ['red', [1, 0.2]],
    ['alpha', [0, 1]],
    ['green', [0, 0]],
  ] as const) {
    await h.run({
      m: { class_type: 'LoadImageMask', inputs: { image: 'two.png', channel } },
      inv: { class_type: 'SetLatentNoiseMask', inputs: { samples: ['e', 0], mask: ['m', 0] } },
      e: { class_type: 'EmptyLatentImage', inputs: { width: 16, height: 16, batch_size: 1 } },
      out: { class_type: 'CaptureLATENT', inputs: { value: ['inv', 0] } },
    });
    const mask = (h.captured.get('out') as LatentValue).noise_mask as Tensor;
    assert.deepEqual(mask.shape, [1, 1, 1, 2]);
    assert.deepEqual(
      [...mask.data].map((v) => Math.round(v * 1000) / 1000),
      want,
      channel,
    );
  }
});
