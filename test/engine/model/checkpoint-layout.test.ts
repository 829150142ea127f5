import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SafetensorsFile } from '../../../server/engine/io/safetensors.js';
import { detectCheckpoint, keySourceOf, type KeySource } from '../../../server/engine/model/detect.js';
import { checkpointKeys, type KeyShape } from '../../../server/engine/model/checkpoint-layout.js';
import { fixtureSkip, fixturePath } from '../../helpers/fixtures.js';
import { realArchitecture, realSource } from '../real-architectures.js';
import { presetConfig } from '../../../server/tools/make-checkpoint.js';

const skip = fixtureSkip();
const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);

/** same names and same shapes, reported as the first few differences */
function assertSameKeys(got: KeyShape[], src: KeySource, label: string): void {
  const want = new Map(src.keys().map((n) => [n, src.shape(n)]));
  const have = new Map(got.map((k) => [k.name, k.shape]));
  assert.equal(have.size, got.length, `${label}: generated names are unique`);
  const diffs: string[] = [];
  for (const [n, s] of want) {
    const g = have.get(n);
    if (!g) diffs.push(`missing ${n} [${s}]`);
    else if (g.join() !== s.join()) diffs.push(`${n}: [${g}] vs file [${s}]`);
  }
  for (const n of have.keys()) if (!want.has(n)) diffs.push(`extra ${n}`);
  assert.deepEqual(diffs.slice(0, 10), [], `${label}: ${diffs.length} differences`);
}

for (const model of ['sd15', 'sdxl'] as const) {
  test(`${model}: the layout of the detected config reproduces every key and shape of the real file`, { skip }, () => {
    const src = realSource(model);
    const cfg = detectCheckpoint(src);
    const keys = checkpointKeys(cfg);
    assertSameKeys(keys, src, model);
    const arch = realArchitecture(model);
    assert.equal(keys.length, Object.keys(arch.keys).length);
    assert.equal(
      keys.reduce((s, k) => s + numel(k.shape), 0),
      arch.params,
    );
    assert.equal(
      keys.filter((k) => k.name.startsWith('model.diffusion_model.')).reduce((s, k) => s + numel(k.shape), 0),
      arch.unet_params,
    );
    assert.deepEqual(detectCheckpoint(keySourceOf(keys)), cfg);
  });
}

for (const name of ['sd1_tiny', 'sdxl_tiny']) {
  test(`${name}: the layout of the detected config reproduces the fixture's keys and shapes`, { skip }, () => {
    const f = SafetensorsFile.open(fixturePath(`${name}.safetensors`));
    try {
      const cfg = detectCheckpoint(f);
      const keys = checkpointKeys(cfg);
      assertSameKeys(keys, f, name);
      assert.deepEqual(detectCheckpoint(keySourceOf(keys)), cfg);
    } finally {
      f.close();
    }
  });
}

test('layout follows the config: shapes change with the hyper-parameters, and detection follows back', () => {
  const cfg = presetConfig('sdxl');
  // a variant no file has: 3 res blocks, deeper middle, conv projections, other text widths
  const variant = structuredClone(cfg);
  variant.unet.numResBlocks = 3;
  variant.unet.transformerDepth = [0, 1, 3];
  variant.unet.transformerDepthMiddle = 2;
  variant.unet.linearProjection = false;
  variant.textEncoders[0] = { ...variant.textEncoders[0], width: 512, heads: 8, layers: 4, intermediate: 2048 };
  variant.unet.contextDim = 512 + 1280;
  variant.vae.numResBlocks = 1;
  const keys = checkpointKeys(variant);
  assert.deepEqual(detectCheckpoint(keySourceOf(keys)), variant);
  const shape = new Map(keys.map((k) => [k.name, k.shape]));
  assert.deepEqual(
    shape.get('model.diffusion_model.input_blocks.3.0.op.weight'),
    undefined,
    'level 0 now has 3 res blocks',
  );
  assert.deepEqual(shape.get('model.diffusion_model.input_blocks.4.0.op.weight'), [320, 320, 3, 3]);
  assert.deepEqual(shape.get('model.diffusion_model.input_blocks.5.1.proj_in.weight'), [640, 640, 1, 1]);
  assert.deepEqual(
    shape.get('model.diffusion_model.input_blocks.5.1.transformer_blocks.0.attn2.to_k.weight'),
    [640, 1792],
  );
  assert.ok(!shape.has('first_stage_model.encoder.down.0.block.1.conv1.weight'));
  assert.ok(
    shape.has('first_stage_model.decoder.up.0.block.1.conv1.weight'),
    'decoder has numResBlocks + 1 blocks per level',
  );
});
