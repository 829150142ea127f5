/**
 * The project's baseline JPEG encoder (server/storage/jpeg.ts), decoded by an independent decoder (jpeg-js): sizes,
 * edge blocks, byte stuffing, quality scaling, and the standard Huffman tables' completeness.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import jpeg from 'jpeg-js';
import { dct8x8, encodeJpeg, HUFFMAN, ZIGZAG } from '../../server/storage/jpeg.js';

function decode(bytes: Uint8Array) {
  return jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true });
}

/** mean and max |a - b| over the RGB channels of two RGBA images */
function rgbError(a: Uint8Array, b: Uint8Array): { mean: number; max: number } {
  let sum = 0,
    max = 0,
    n = 0;
  for (let i = 0; i < a.length; i++) {
    if (i % 4 === 3) continue;
    const d = Math.abs(a[i] - b[i]);
    sum += d;
    max = Math.max(max, d);
    n++;
  }
  return { mean: sum / n, max };
}

function image(w: number, h: number, f: (x: number, y: number, c: number) => number): Uint8Array {
  const px = new Uint8Array(w * h * 4);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) px[(y * w + x) * 4 + c] = Math.max(0, Math.min(255, Math.round(f(x, y, c))));
      px[(y * w + x) * 4 + 3] = 255;
    }
  return px;
}

const smooth = (x: number, y: number, c: number) => 128 + 100 * Math.sin(x / 9 + c) * Math.cos(y / 7 - c);

test('the Huffman tables are the standard complete sets: every DC category and AC run/size symbol has a code', () => {
  const acSymbols = new Set([0x00, 0xf0]);
  for (let run = 0; run < 16; run++) for (let size = 1; size <= 10; size++) acSymbols.add((run << 4) | size);
  for (const spec of [HUFFMAN.acLuma, HUFFMAN.acChroma]) {
    assert.equal(
      spec.counts.reduce((a, b) => a + b, 0),
      spec.symbols.length,
    );
    assert.deepEqual(new Set(spec.symbols), acSymbols);
    assert.equal(spec.symbols.length, 162);
  }
  for (const spec of [HUFFMAN.dcLuma, HUFFMAN.dcChroma]) {
    assert.equal(
      spec.counts.reduce((a, b) => a + b, 0),
      12,
    );
    assert.deepEqual(spec.symbols, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  }
  assert.deepEqual(
    [...ZIGZAG].sort((a, b) => a - b),
    [...Array(64).keys()],
  );
});

test("the fast DCT is JPEG's DCT: F(v, u) = 1/4 C(u) C(v) sum f(y, x) cos((2x+1)u pi/16) cos((2y+1)v pi/16)", () => {
  const f = Float64Array.from({ length: 64 }, (_, i) => 100 * Math.sin(i * 1.7) + (i % 5) * 3);
  const got = dct8x8(f.slice());
  const C = (k: number) => (k === 0 ? Math.SQRT1_2 : 1);
  for (let v = 0; v < 8; v++)
    for (let u = 0; u < 8; u++) {
      let s = 0;
      for (let y = 0; y < 8; y++)
        for (let x = 0; x < 8; x++)
          s += f[y * 8 + x] * Math.cos(((2 * x + 1) * u * Math.PI) / 16) * Math.cos(((2 * y + 1) * v * Math.PI) / 16);
      assert.ok(Math.abs(got[v * 8 + u] - (C(u) * C(v) * s) / 4) < 1e-9, `F(${v}, ${u})`);
    }
});

test('a smooth image round-trips through an independent decoder, at every size including partial edge blocks', () => {
  for (const [w, h] of [
    [64, 48],
    [1, 1],
    [7, 13],
    [9, 9],
    [130, 67],
  ]) {
    const px = image(w, h, smooth);
    const bytes = encodeJpeg(px, w, h, 4, 90);
    assert.deepEqual([bytes[0], bytes[1], bytes.at(-2), bytes.at(-1)], [0xff, 0xd8, 0xff, 0xd9]);
    const back = decode(bytes);
    assert.deepEqual([back.width, back.height], [w, h]);
    const e = rgbError(px, back.data);
    assert.ok(e.mean < 2 && e.max < 20, `${w}x${h}: mean ${e.mean}, max ${e.max}`);
  }
});

test('RGB input equals RGBA input; flat colours stay exact to a level', () => {
  const w = 24,
    h = 16;
  const rgba = image(w, h, smooth);
  const rgb = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) rgb.set(rgba.subarray(i * 4, i * 4 + 3), i * 3);
  assert.deepEqual(encodeJpeg(rgb, w, h, 3, 80), encodeJpeg(rgba, w, h, 4, 80));
  for (const colour of [
    [0, 0, 0],
    [255, 255, 255],
    [200, 30, 90],
  ]) {
    const flat = image(16, 16, (_x, _y, c) => colour[c]);
    const e = rgbError(flat, decode(encodeJpeg(flat, 16, 16, 4, 90)).data);
    assert.ok(e.max <= 2, `${colour}: max ${e.max}`);
  }
});

test('noise (long codes, many 0xFF bytes to stuff) decodes; quality trades size for error', () => {
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 255;
  const w = 96,
    h = 80;
  const px = image(w, h, () => rand());
  const results = [10, 50, 95, 100].map((q) => {
    const bytes = encodeJpeg(px, w, h, 4, q);
    return { q, size: bytes.length, ...rgbError(px, decode(bytes).data) };
  });
  for (let i = 1; i < results.length; i++) {
    assert.ok(results[i].size > results[i - 1].size, JSON.stringify(results));
    assert.ok(results[i].mean < results[i - 1].mean, JSON.stringify(results));
  }
  assert.ok(results[3].mean < 1.5, JSON.stringify(results[3])); // quality 100: quantisation by 1
});

test('bad sizes are refused', () => {
  assert.throws(() => encodeJpeg(new Uint8Array(0), 0, 4, 4), /bad size/);
  assert.throws(() => encodeJpeg(new Uint8Array(10), 4, 4, 4), /fewer pixels/);
});
