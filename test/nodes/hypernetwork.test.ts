/**
 * HypernetworkLoader against ComfyUI's own hypernetwork code (load_hypernetwork_patch run verbatim in a torch SD1
 * UNet: test/data/hypernetwork/make_reference.py) on sd1_tiny (context width 128): one UNet eval without a
 * hypernetwork (checks the reference UNet), with a relu hypernetwork on the context (128) and on the 64-channel
 * self-attentions at 0.8, and with a layer-norm mish one stacked at -0.5, all within the component tolerance.
 * The .pt files (A1111's pickled layout, as ComfyUI loads them) give the same results through the restricted
 * unpickler. A hypernetwork of widths the model does not have changes nothing; graphs without one have no
 * hypernetwork nodes; a pickle that calls anything but tensor rebuilding, or a file that is no torch archive, is
 * refused before anything runs, naming the node and the input.
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
import type { ModelValue } from '../../nodes/types.js';
import { buildUNetGraph } from '../../server/engine/model/unet.js';
import { readHypernetwork } from '../../server/engine/model/hypernetwork.js';
import { safetensorsWeights } from '../../server/engine/onnx/weights.js';
import { detectCheckpoint } from '../../server/engine/model/detect.js';

const DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'data', 'hypernetwork');
const skip = fixtureSkip() || (existsSync(join(DIR, 'reference.safetensors')) ? false : 'reference not made yet');
let h: Harness;
const models = { get: (id: string) => h.captured.get(id) as ModelValue | undefined };

before(async () => {
  if (skip) return;
  h = makeHarness();
  const ck = join(h.dirs.models, 'checkpoints');
  const hn = join(h.dirs.models, 'hypernetworks');
  mkdirSync(ck, { recursive: true });
  mkdirSync(hn, { recursive: true });
  symlinkSync(join(FIXTURES, 'sd1_tiny.safetensors'), join(ck, 'sd1_tiny.safetensors'));
  for (const f of ['hn_relu', 'hn_mish_ln'])
    for (const ext of ['.safetensors', '.pt']) copyFileSync(join(DIR, f + ext), join(hn, f + ext));
  writeFileSync(join(hn, 'not_torch.pt'), 'not a zip');
  // a pickle that would run os.system('ls') if it were executed
  const evil = Buffer.from('\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.', 'latin1');
  writeFileSync(join(hn, 'evil.pt'), storedZip('archive/data.pkl', evil));
  // widths 96 only: no attention of sd1_tiny has them
  await writeSafetensors(
    join(hn, 'other_widths.safetensors'),
    ['96.0.linear.0', '96.1.linear.0'].flatMap((p) => [
      { name: `${p}.weight`, dtype: 'F32' as const, shape: [96, 96], data: () => new Float32Array(96 * 96).fill(0.1) },
      { name: `${p}.bias`, dtype: 'F32' as const, shape: [96], data: () => new Float32Array(96).fill(0.1) },
    ]),
    { activation_func: 'relu' },
  );
});
after(async () => {
  await h?.close();
});

/** A one-entry zip, stored (the reader checks no CRC). */
function storedZip(name: string, data: Buffer): Buffer {
  const n = Buffer.from(name);
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt32LE(data.length, 18);
  local.writeUInt32LE(data.length, 22);
  local.writeUInt16LE(n.length, 26);
  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0);
  central.writeUInt32LE(data.length, 20);
  central.writeUInt32LE(data.length, 24);
  central.writeUInt16LE(n.length, 28);
  const cdStart = 30 + n.length + data.length;
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(1, 8);
  end.writeUInt16LE(1, 10);
  end.writeUInt32LE(46 + n.length, 12);
  end.writeUInt32LE(cdStart, 16);
  return Buffer.concat([local, n, data, central, n, end]);
}

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
    pa: loader(['ck', 0], 'hn_relu.pt', 0.8),
    pb: loader(['pa', 0], 'hn_mish_ln.pt', -0.5),
    prelu: { class_type: 'CaptureMODEL', inputs: { value: ['pa', 0] } },
    pboth: { class_type: 'CaptureMODEL', inputs: { value: ['pb', 0] } },
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
    ['prelu', 'eps_relu'],
    ['pboth', 'eps_relu_mish'],
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

test(
  'a pickle calling anything else, or no torch archive, is refused naming the node and the input',
  { skip },
  async () => {
    for (const [name, why] of [
      ['evil.pt', /evil\.pt is not a hypernetwork tcd-studio can read: pickle refers to os\.system/],
      ['not_torch.pt', /not_torch\.pt is not a hypernetwork tcd-studio can read: not a zip archive/],
    ] as const) {
      await assert.rejects(
        h.run({
          ck: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'sd1_tiny.safetensors' } },
          a: loader(['ck', 0], name, 1),
          plain: { class_type: 'CaptureMODEL', inputs: { value: ['a', 0] } },
        }),
        (e: Error) => {
          assert.match(e.message, /hypernetwork_name: /);
          assert.match(e.message, why);
          assert.match(e.message, /"a"/);
          return true;
        },
      );
    }
  },
);
