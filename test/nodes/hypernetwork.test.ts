/**
 * HypernetworkLoader against ComfyUI's own hypernetwork code (load_hypernetwork_patch run verbatim in a torch SD1
 * UNet: test/data/hypernetwork/make_reference.py) on sd1_tiny (context width 128): one UNet eval without a
 * hypernetwork (checks the reference UNet), with a relu hypernetwork on the context (128) and on the 64-channel
 * self-attentions at 0.8, and with a layer-norm mish one stacked at -0.5, all within the component tolerance.
 * A hypernetwork of widths the model does not have changes nothing; graphs without one have no hypernetwork nodes;
 * a .pt file is refused before anything runs, naming the node and the input.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeHarness, type Harness } from '../helpers/run-prompt.js';
import { componentTolerance, fixtureSkip, FIXTURES, maxAbsDiff } from '../helpers/fixtures.js';
import { SafetensorsFile } from '../../server/engine/io/safetensors.js';
import { writeSafetensors } from '../../server/engine/io/safetensors-writer.js';
import { defineNode, t } from '../../nodes/define.js';
import type { ModelValue } from '../../nodes/types.js';
import { buildUNetGraph } from '../../server/engine/model/unet.js';
import { readHypernetwork } from '../../server/engine/model/hypernetwork.js';
import { safetensorsWeights } from '../../server/engine/onnx/weights.js';
import { detectCheckpoint } from '../../server/engine/model/detect.js';

const DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'data', 'hypernetwork');
const skip = fixtureSkip() || (existsSync(join(DIR, 'reference.safetensors')) ? false : 'reference not made yet');
let h: Harness;
const models = new Map<string, ModelValue>();

before(async () => {
  if (skip) return;
  h = makeHarness();
  const ck = join(h.dirs.models, 'checkpoints');
  const hn = join(h.dirs.models, 'hypernetworks');
  mkdirSync(ck, { recursive: true });
  mkdirSync(hn, { recursive: true });
  symlinkSync(join(FIXTURES, 'sd1_tiny.safetensors'), join(ck, 'sd1_tiny.safetensors'));
  for (const f of ['hn_relu.safetensors', 'hn_mish_ln.safetensors']) copyFileSync(join(DIR, f), join(hn, f));
  writeFileSync(join(hn, 'old_style.pt'), 'PK not read');
  // widths 96 only: no attention of sd1_tiny has them
  await writeSafetensors(
    join(hn, 'other_widths.safetensors'),
    ['96.0.linear.0', '96.1.linear.0'].flatMap((p) => [
      { name: `${p}.weight`, dtype: 'F32' as const, shape: [96, 96], data: () => new Float32Array(96 * 96).fill(0.1) },
      { name: `${p}.bias`, dtype: 'F32' as const, shape: [96], data: () => new Float32Array(96).fill(0.1) },
    ]),
    { activation_func: 'relu' },
  );
  h.executor.registry.set(
    'CaptureMODEL',
    defineNode({
      id: 'CaptureMODEL',
      category: 'testing',
      outputNode: true,
      inputs: [t.socket('MODEL', 'value')],
      outputs: [],
      execute: ({ value }, ctx) => {
        models.set(ctx.nodeId, value);
        return { outputs: [] };
      },
    }),
  );
});
after(async () => {
  await h?.close();
});

const loader = (model: unknown[], name: string, strength: number) => ({
  class_type: 'HypernetworkLoader',
  inputs: { model, hypernetwork_name: name, strength },
});

test("UNet evals with hypernetworks equal ComfyUI's hypernetwork code", { skip }, async () => {
  await h.run({
    ck: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'sd1_tiny.safetensors' } },
    a: loader(['ck', 0], 'hn_relu.safetensors', 0.8),
    b: loader(['a', 0], 'hn_mish_ln.safetensors', -0.5),
    c: loader(['ck', 0], 'other_widths.safetensors', 1),
    plain: { class_type: 'CaptureMODEL', inputs: { value: ['ck', 0] } },
    relu: { class_type: 'CaptureMODEL', inputs: { value: ['a', 0] } },
    both: { class_type: 'CaptureMODEL', inputs: { value: ['b', 0] } },
    other: { class_type: 'CaptureMODEL', inputs: { value: ['c', 0] } },
  });
  const ref = SafetensorsFile.open(join(DIR, 'reference.safetensors'));
  const engine = h.executor.services.engine();
  const x = ref.readTensor('x'),
    context = ref.readTensor('context');
  const tt = ref.readFloat32('t');
  const eps = async (id: string) => (await engine.unet(models.get(id)!.ref, x, tt, context)).data as Float32Array;
  const cases: [string, string][] = [
    ['plain', 'eps_plain'],
    ['relu', 'eps_relu'],
    ['both', 'eps_relu_mish'],
  ];
  const plain = ref.readFloat32('eps_plain');
  for (const [id, key] of cases) {
    const want = ref.readFloat32(key);
    const got = await eps(id);
    const d = maxAbsDiff(got, want);
    assert.ok(d <= componentTolerance(want), `${id}: max diff ${d} vs ComfyUI`);
    if (id !== 'plain') assert.ok(maxAbsDiff(want, plain) > 100 * componentTolerance(want), `${id} changes eps`);
  }
  assert.ok(maxAbsDiff(await eps('other'), plain) <= componentTolerance(plain), 'unmatched widths change nothing');
  ref.close();
});

test('graphs without a hypernetwork have no hypernetwork nodes; with one they do', { skip }, () => {
  const file = SafetensorsFile.open(join(FIXTURES, 'sd1_tiny.safetensors'));
  const cfg = detectCheckpoint(file).unet;
  const names = (g: ReturnType<typeof buildUNetGraph>) => g.nodes.map((n) => n.name).join('\n');
  const plain = buildUNetGraph(cfg, safetensorsWeights(file));
  const hnFile = SafetensorsFile.open(join(DIR, 'hn_relu.safetensors'));
  const withHn = buildUNetGraph(cfg, safetensorsWeights(file), { hypernetworks: [readHypernetwork(hnFile, 1)] });
  assert.doesNotMatch(names(plain), /hypernetwork/);
  assert.match(names(withHn), /hypernetwork\.0\.128/);
  assert.match(names(withHn), /hypernetwork\.0\.64/);
  file.close();
  hnFile.close();
});

test('a .pt hypernetwork is refused before anything runs, naming the node and the input', { skip }, async () => {
  await assert.rejects(
    h.run({
      ck: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'sd1_tiny.safetensors' } },
      a: loader(['ck', 0], 'old_style.pt', 1),
      plain: { class_type: 'CaptureMODEL', inputs: { value: ['a', 0] } },
    }),
    (e: Error) => {
      assert.match(e.message, /hypernetwork_name: \.pt hypernetworks are pickles/);
      assert.match(e.message, /"a"/);
      return true;
    },
  );
});
