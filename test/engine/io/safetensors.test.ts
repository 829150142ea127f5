import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  writeFileSync,
  openSync,
  writeSync,
  ftruncateSync,
  closeSync,
  statSync,
  rmSync,
  existsSync,
  copyFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile, SafetensorsError, halfToFloat } from '../../../server/engine/io/safetensors.js';
import {
  writeSafetensors,
  writerSettings,
  floatToHalf,
  encodeValues,
} from '../../../server/engine/io/safetensors-writer.js';
import { fixtureSkip, fixturePath } from '../../helpers/fixtures.js';
import { PROJECT } from '../../cli/run-cli.js';

const dir = mkdtempSync(join(tmpdir(), 'st-test-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

/** values that exercise signs, subnormals, ties, overflow and specials */
function trickyValues(): Float32Array {
  const v = [
    0,
    -0,
    1,
    -1,
    0.1,
    1 / 3,
    65504,
    65520,
    1e5,
    -1e5,
    6.1e-5,
    5.96e-8,
    2.98e-8,
    1e-10,
    1.00048828125,
    1.00146484375,
    Infinity,
    -Infinity,
    3.14159,
    2 ** -14,
    2 ** -24,
    3 * 2 ** -25,
  ];
  let s = 12345;
  for (let i = 0; i < 1000; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    v.push((s / 2 ** 32 - 0.5) * 2 ** ((i % 40) - 20));
  }
  return new Float32Array(v);
}

test('floatToHalf inverts halfToFloat on every finite half and rounds to nearest', () => {
  for (let h = 0; h < 65536; h++) {
    const x = halfToFloat(h);
    if (Number.isNaN(x)) {
      assert.ok(Number.isNaN(halfToFloat(floatToHalf(x))));
      continue;
    }
    assert.equal(floatToHalf(x), h, `half 0x${h.toString(16)}`);
  }
  for (const x of trickyValues()) {
    if (!Number.isFinite(x)) continue;
    const got = halfToFloat(floatToHalf(x));
    if (Math.abs(x) >= 65520) {
      assert.equal(got, Math.sign(x) * Infinity);
      continue;
    }
    // no half value is strictly closer than the one chosen
    const h = floatToHalf(x);
    for (const nb of [h - 1, h + 1]) {
      if ((nb & 0x7fff) > 0x7bff || nb < 0 || (nb ^ h) & 0x8000) continue;
      assert.ok(Math.abs(halfToFloat(nb) - x) >= Math.abs(got - x), `x=${x}`);
    }
  }
  assert.equal(floatToHalf(1.00048828125), 0x3c00, 'tie rounds to even (down)');
  assert.equal(floatToHalf(1.00146484375), 0x3c02, 'tie rounds to even (up)');
});

test('F32, F16 and BF16 round trips through writer and reader', async () => {
  const src = trickyValues();
  const path = join(dir, 'rt.safetensors');
  const size = await writeSafetensors(
    path,
    [
      { name: 'a.f32', dtype: 'F32', shape: [src.length], data: () => src },
      { name: 'b.f16', dtype: 'F16', shape: [2, src.length / 2], data: () => src },
      { name: 'c.bf16', dtype: 'BF16', shape: [src.length, 1], data: async () => src },
      { name: 'empty', dtype: 'F32', shape: [0, 3], data: () => new Float32Array(0) },
    ],
    { format: 'pt', note: 'round trip' },
  );
  assert.equal(statSync(path).size, size);
  const f = SafetensorsFile.open(path);
  try {
    assert.deepEqual(f.keys(), ['a.f32', 'b.f16', 'c.bf16', 'empty']);
    assert.deepEqual(f.metadata, { format: 'pt', note: 'round trip' });
    assert.equal(f.dataStart % 8, 0, 'data section aligned to 8');
    assert.deepEqual(f.shape('b.f16'), [2, src.length / 2]);
    assert.equal(f.info('c.bf16').dtype, 'BF16');
    assert.deepEqual([...f.readFloat32('a.f32')], [...src]);
    const h = f.readFloat32('b.f16');
    for (let i = 0; i < src.length; i++) assert.equal(h[i], halfToFloat(floatToHalf(src[i])));
    const b = f.readFloat32('c.bf16');
    for (let i = 0; i < src.length; i++) {
      const x = src[i];
      if (!Number.isFinite(x)) {
        assert.equal(b[i], x);
        continue;
      }
      // bf16 keeps 8 significant bits: rounding error <= half an ulp = 2^-8 relative
      assert.ok(Math.abs(b[i] - x) <= Math.abs(x) * 2 ** -8 + 1e-38, `bf16 ${x} -> ${b[i]}`);
    }
    // bf16 bytes are the upper 16 bits of float32, rounded to nearest even
    assert.deepEqual(
      [
        ...new Uint16Array(encodeValues(new Float32Array([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -2]), 'BF16').buffer, 0, 4),
      ].map((x) => x.toString(16)),
      ['3f80', '3f80', '3f82', 'c000'],
    );
    assert.equal(f.readFloat32('empty').length, 0);
  } finally {
    f.close();
  }
});

test('writer is atomic: a failing producer leaves neither the target nor a temp file', async () => {
  const sub = mkdtempSync(join(dir, 'atomic-'));
  const path = join(sub, 'x.safetensors');
  await assert.rejects(
    writeSafetensors(path, [
      { name: 'ok', dtype: 'F32', shape: [2], data: () => new Float32Array(2) },
      { name: 'bad', dtype: 'F32', shape: [3], data: () => new Float32Array(2) },
    ]),
    /x\.safetensors: tensor "bad": data\(\) gave 2 values, shape \[3\] needs 3/,
  );
  assert.equal(existsSync(path), false);
  assert.deepEqual(readdirSync(sub), []);
});

test('a tensor beyond 5 GiB reads correctly (sparse file, no disk used)', () => {
  const gap = 5 * 2 ** 30; // past both 2^31 and 2^32
  const tail = new Float32Array([1.5, -2.25, 3e-3, 42]);
  const header = {
    gap: { dtype: 'U8', shape: [gap], data_offsets: [0, gap] },
    tail: { dtype: 'F32', shape: [2, 2], data_offsets: [gap, gap + 16] },
  };
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const path = join(dir, 'big.safetensors');
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, len, 0, 8, 0);
    writeSync(fd, json, 0, json.length, 8);
    ftruncateSync(fd, 8 + json.length + gap + 16);
    writeSync(fd, new Uint8Array(tail.buffer), 0, 16, 8 + json.length + gap);
  } finally {
    closeSync(fd);
  }
  const f = SafetensorsFile.open(path);
  try {
    assert.equal(f.info('tail').begin, 8 + json.length + gap);
    assert.deepEqual(f.readTensor('tail'), { shape: [2, 2], data: tail });
  } finally {
    f.close();
    rmSync(path);
  }
});

test('big tensors are written and read in pieces (chunk sizes lowered to exercise the loops)', async () => {
  const n = 10_007,
    src = new Float32Array(n).map((_, i) => Math.fround(Math.sin(i) * 100));
  const path = join(dir, 'chunks.safetensors');
  const [w, r] = [writerSettings.chunkValues, SafetensorsFile.readChunkBytes];
  writerSettings.chunkValues = 1000;
  SafetensorsFile.readChunkBytes = 4096;
  try {
    await writeSafetensors(path, [
      { name: 'h', dtype: 'F16', shape: [n], data: () => src },
      { name: 'f', dtype: 'F32', shape: [n], data: () => src },
    ]);
    const f = SafetensorsFile.open(path);
    try {
      assert.deepEqual(f.readFloat32('f'), src);
      const h = f.readFloat32('h');
      for (let i = 0; i < n; i++) assert.equal(h[i], halfToFloat(floatToHalf(src[i])));
    } finally {
      f.close();
    }
  } finally {
    writerSettings.chunkValues = w;
    SafetensorsFile.readChunkBytes = r;
  }
});

/** a small valid file to damage in the error tests */
async function validFile(name: string): Promise<{ path: string; bytes: Buffer; headerLen: number }> {
  const path = join(dir, name);
  await writeSafetensors(path, [
    { name: 'w', dtype: 'F32', shape: [4, 4], data: () => new Float32Array(16).fill(1) },
    { name: 'b', dtype: 'F16', shape: [4], data: () => new Float32Array(4) },
  ]);
  const bytes = readFileSync(path);
  return { path, bytes, headerLen: Number(bytes.readBigUInt64LE(0)) };
}

function openError(path: string): SafetensorsError {
  try {
    SafetensorsFile.open(path).close();
  } catch (e) {
    assert.ok(e instanceof SafetensorsError, String(e));
    return e;
  }
  assert.fail(`${path} opened without error`);
}

test('truncated files give an error naming the file and the problem', async () => {
  const { path, bytes, headerLen } = await validFile('trunc.safetensors');
  writeFileSync(path, bytes.subarray(0, bytes.length - 3));
  assert.match(
    openError(path).message,
    /^trunc\.safetensors: file is truncated: tensor "b" ends at byte \d+ but the file has \d+ bytes$/,
  );
  writeFileSync(path, bytes.subarray(0, 8 + headerLen - 10));
  assert.match(openError(path).message, /^trunc\.safetensors: file is truncated inside its header/);
  writeFileSync(path, bytes.subarray(0, 5));
  assert.match(openError(path).message, /^trunc\.safetensors: file is truncated \(5 bytes/);
  assert.match(openError(join(dir, 'missing.safetensors')).message, /^missing\.safetensors: cannot open/);
});

test('corrupt headers give an error naming the file and the problem', async () => {
  const { path, bytes } = await validFile('corrupt.safetensors');
  const a = Buffer.from(bytes);
  a.write('#!garbage', 10, 'latin1');
  writeFileSync(path, a);
  assert.match(openError(path).message, /^corrupt\.safetensors: header is not valid JSON/);
  const b = Buffer.from(bytes);
  b.writeBigUInt64LE(2n ** 40n, 0);
  writeFileSync(path, b);
  assert.match(
    openError(path).message,
    /^corrupt\.safetensors: not a safetensors file \(header length 1099511627776\)/,
  );
  writeFileSync(path, withHeader({ w: { dtype: 'Q4', shape: [1], data_offsets: [0, 1] } }, 8));
  assert.match(openError(path).message, /^corrupt\.safetensors: tensor "w" has an unsupported or missing dtype \(Q4\)/);
  writeFileSync(path, withHeader([1, 2], 8));
  assert.match(openError(path).message, /^corrupt\.safetensors: header is not a JSON object/);
});

test('a PyTorch file (.ckpt/.pt, zip or bare pickle) is named as such, with what to do', () => {
  // before: "not a safetensors file (header length 7741253907690769000)" for a .ckpt in models/checkpoints
  const zip = join(dir, 'model.ckpt');
  copyFileSync(join(PROJECT, 'test', 'data', 'hypernetwork', 'hn_relu.pt'), zip); // written by torch.save
  const pickle = join(dir, 'old.pt');
  writeFileSync(pickle, Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x2e, 0x0a, 0x0a])); // pickle.dumps({}, 2)
  for (const [path, name] of [
    [zip, 'model.ckpt'],
    [pickle, 'old.pt'],
  ]) {
    assert.equal(
      openError(path).message,
      `${name}: a PyTorch pickle file (torch.save: .ckpt/.pt/.pth), not safetensors; only .safetensors files can be ` +
        'read here: convert it to .safetensors (or download the .safetensors release of the model)',
    );
  }
});

function withHeader(header: unknown, dataBytes: number): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, Buffer.alloc(dataBytes)]);
}

test('bad offsets give an error naming the file, the tensor and the problem', () => {
  const path = join(dir, 'offsets.safetensors');
  writeFileSync(path, withHeader({ w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 12] } }, 16));
  assert.match(
    openError(path).message,
    /^offsets\.safetensors: tensor "w" has bad data_offsets \[0, 12\]: 12 bytes, its shape \[2,2\] and dtype F32 need 16$/,
  );
  writeFileSync(path, withHeader({ w: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, 16));
  assert.match(openError(path).message, /^offsets\.safetensors: tensor "w" has invalid data_offsets \[8,0\]/);
  writeFileSync(
    path,
    withHeader(
      { w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, v: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } },
      16,
    ),
  );
  assert.match(openError(path).message, /^offsets\.safetensors: bad data_offsets: tensors "w" and "v" overlap$/);
  writeFileSync(path, withHeader({ w: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, 16));
  assert.match(openError(path).message, /^offsets\.safetensors: tensor "w" has an invalid shape/);
  const f = SafetensorsFile.open(fixtureLikeValid());
  assert.throws(() => f.info('nope'), /has no tensor "nope"/);
  f.close();
});

function fixtureLikeValid(): string {
  const path = join(dir, 'tiny-valid.safetensors');
  writeFileSync(path, withHeader({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, 8));
  return path;
}

test('reads the fp16 tiny fixture checkpoint lazily', { skip: fixtureSkip() }, () => {
  const f = SafetensorsFile.open(fixturePath('sd1_tiny.safetensors'));
  try {
    assert.equal(f.keys().length, 980);
    const w = f.readTensor('model.diffusion_model.input_blocks.0.0.weight');
    assert.deepEqual(w.shape, [32, 4, 3, 3]);
    assert.ok(w.data.every(Number.isFinite) && w.data.some((x) => x !== 0));
  } finally {
    f.close();
  }
});
