/**
 * A workflow with two checkpoint loaders can hand a sampler the model of one and the text encoders of the other.
 * Before, the sampler failed with ONNX Runtime's "Got invalid dimensions for input: context ... Got: 2048 Expected:
 * 768"; now it names the input (positive / negative), the widths and the likely cause. Real nodes and engine on the
 * SD1 and SDXL tiny fixture checkpoints.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { makeHarness, type Harness } from '../helpers/run-prompt.js';
import { FIXTURES, fixtureSkip } from '../helpers/fixtures.js';

const skip = fixtureSkip();
let h: Harness;
before(() => {
  if (!skip) h = makeHarness(FIXTURES);
});
after(async () => {
  await h?.close();
});

/** sampler node 5 on the model of `modelFrom` and the conditioning of `clipFrom` (loaders 1: SD1, 2: SDXL) */
function prompt(sampler: 'TCDSampler' | 'KSampler', modelFrom: string, clipFrom: string) {
  const common = { model: [modelFrom, 0], positive: ['3', 0], negative: ['4', 0], latent_image: ['6', 0], seed: 1 };
  const inputs =
    sampler === 'TCDSampler'
      ? { ...common, steps: 1, cfg: 2, eta: 0.3, denoise: 1, original_inference_steps: 50 }
      : { ...common, steps: 1, cfg: 2, sampler_name: 'euler', scheduler: 'normal', denoise: 1 };
  return {
    '1': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'sd1_tiny.safetensors' } },
    '2': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'sdxl_tiny.safetensors' } },
    '3': { class_type: 'CLIPTextEncode', inputs: { text: 'a cat', clip: [clipFrom, 1] } },
    '4': { class_type: 'CLIPTextEncode', inputs: { text: '', clip: [clipFrom, 1] } },
    '6': { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 1 } },
    '5': { class_type: sampler, inputs },
    '7': { class_type: 'CaptureLATENT', inputs: { value: ['5', 0] } },
  };
}

test('a sampler given the conditioning of another checkpoint names the input and both widths', { skip }, async () => {
  for (const sampler of ['TCDSampler', 'KSampler'] as const) {
    const r = await h.run(prompt(sampler, '1', '2'), { allowErrors: true });
    const e = r.events.find((x) => x.type === 'execution_error')?.data as Record<string, unknown> | undefined;
    assert.ok(e, `${sampler}: execution_error`);
    assert.equal(e.node_id, '5');
    assert.equal(e.node_type, sampler);
    assert.match(
      String(e.exception_message),
      /^positive conditioning: its text embedding is \d+ wide, but this sd1 model takes \d+ \(was it encoded with the CLIP of another checkpoint\?\)$/,
    );
    // the matching pair runs
    const ok = await h.run(prompt(sampler, '1', '1'));
    assert.equal(ok.status, 'success');
  }
});
