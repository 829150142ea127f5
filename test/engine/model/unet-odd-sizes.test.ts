/**
 * Latents whose size halves to an odd number on the way down the UNet (EmptyLatentImage 72x72 on SDXL, 520x520 on
 * SD1, img2img of a 1000x1000 picture...). ComfyUI runs them: its Upsample interpolates to the size of the skip it
 * meets. Before, the graph upsampled x2 blindly and ONNX Runtime failed in a Concat ("Non concat axis dimensions must
 * match") at the sampler. Checked here: the upsampling rule itself against torch's nearest-to-size index rule, and
 * the fixture UNets on odd latents in both graph forms (plain and the channels-last CPU twin).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { upsampleNearest2xLike } from '../../../server/engine/model/blocks.js';
import { buildUNetGraph } from '../../../server/engine/model/unet.js';
import { GraphBuilder } from '../../../server/engine/onnx/graph.js';
import { memoryWeights, safetensorsWeights } from '../../../server/engine/onnx/weights.js';
import { serializeModel } from '../../../server/engine/onnx/serialize.js';
import { createSession, runSession } from '../../../server/engine/onnx/session.js';
import { fixtureSkip, maxAbs, maxAbsDiff, unetFixtureCase } from '../../helpers/fixtures.js';

const skip = fixtureSkip();

/** torch F.interpolate(x, size=(H, W), mode='nearest'): out[i, j] = in[floor(i * h / H), floor(j * w / W)] */
function torchNearest(x: Float32Array, c: number, h: number, w: number, H: number, W: number): Float32Array {
  const out = new Float32Array(c * H * W);
  for (let k = 0; k < c; k++)
    for (let i = 0; i < H; i++)
      for (let j = 0; j < W; j++)
        out[(k * H + i) * W + j] = x[(k * h + Math.floor((i * h) / H)) * w + Math.floor((j * w) / W)];
  return out;
}

test('upsampleNearest2xLike: x2 cut to the skip is torch nearest to the skip size, plain and channels-last', async () => {
  for (const nhwcConv of [false, 'cpu-twin'] as const) {
    for (const [h, w, H, W] of [
      [3, 5, 5, 9],
      [4, 3, 8, 5],
      [2, 2, 4, 4],
      [1, 1, 1, 2],
    ]) {
      const g = new GraphBuilder({ weights: memoryWeights({}), nhwcConv });
      const x = g.input('x', 'float32', [1, 2, 'h', 'w']);
      const like = g.input('like', 'float32', [1, 3, 'H', 'W']);
      g.output(upsampleNearest2xLike(g, x, like), 'y', 'float32', [1, 2, 'H', 'W']);
      const data = Float32Array.from({ length: 2 * h * w }, (_, i) => i + 1);
      const { y } = await runSession(await createSession(serializeModel(g)), {
        x: { shape: [1, 2, h, w], data },
        like: { shape: [1, 3, H, W], data: new Float32Array(3 * H * W) },
      });
      assert.deepEqual(y.shape, [1, 2, H, W], `${nhwcConv} ${h}x${w} -> ${H}x${W}`);
      assert.deepEqual([...y.data], [...torchNearest(data, 2, h, w, H, W)], `${nhwcConv} ${h}x${w} -> ${H}x${W}`);
    }
  }
});

for (const family of ['sd1', 'sdxl'] as const) {
  test(`${family} UNet runs latents whose sizes halve to odd numbers; both graph forms agree`, { skip }, async () => {
    const { ckpt, cases, cfg, feeds } = unetFixtureCase(family);
    const [b, c] = feeds.x.shape;
    const sessions = await Promise.all(
      ([false, 'cpu-twin'] as const).map(async (nhwcConv) =>
        createSession(serializeModel(buildUNetGraph(cfg, safetensorsWeights(ckpt), { nhwcConv }))),
      ),
    );
    // 9 -> 5 -> 3 (-> 2 on SD1's third level), 7 -> 4 -> 2, 6 -> 3 -> 2
    for (const [hh, ww] of [
      [9, 7],
      [6, 9],
    ]) {
      const n = b * c * hh * ww;
      const x = { shape: [b, c, hh, ww], data: Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37)) };
      const [plain, twin] = await Promise.all(sessions.map(async (s) => (await runSession(s, { ...feeds, x })).eps));
      assert.deepEqual(plain.shape, [b, cfg.outChannels, hh, ww]);
      assert.ok(plain.data.every(Number.isFinite), 'finite');
      assert.ok(maxAbs(plain.data) > 0, 'not all zero');
      assert.ok(maxAbsDiff(plain.data, twin.data) < 1e-4 * Math.max(1, maxAbs(plain.data)), 'forms agree');
    }
    ckpt.close();
    cases.close();
  });
}
