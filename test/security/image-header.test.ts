/** Image headers are parsed for their declared size (issue 18 findings 5 and 9), not recognised by two magic bytes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import jpeg from 'jpeg-js';
import { readImageHeader, checkImageBudget, ImageTooLargeError } from '../../server/storage/image-sniff.js';
import { encodePng } from '../../server/storage/png.js';

test('PNG, JPEG, GIF, WEBP and BMP headers give kind and size; truncated or fake headers give null', () => {
  const png = encodePng(new Uint8Array(7 * 5 * 3), 7, 5, 3);
  assert.deepEqual(readImageHeader(png), { kind: 'png', width: 7, height: 5 });
  const jpg = Buffer.from(jpeg.encode({ data: new Uint8Array(9 * 4 * 4), width: 9, height: 4 }, 80).data);
  assert.deepEqual(readImageHeader(jpg), { kind: 'jpeg', width: 9, height: 4 });
  const gif = Buffer.concat([Buffer.from('GIF89a'), Buffer.from([3, 0, 2, 0, 0, 0, 0])]);
  assert.deepEqual(readImageHeader(gif), { kind: 'gif', width: 3, height: 2 });
  const vp8l = Buffer.alloc(30);
  vp8l.write('RIFF', 0);
  vp8l.write('WEBPVP8L', 8);
  vp8l[20] = 0x2f;
  vp8l.writeUInt32LE((640 - 1) | ((480 - 1) << 14), 21);
  assert.deepEqual(readImageHeader(vp8l), { kind: 'webp', width: 640, height: 480 });
  const bmp = Buffer.alloc(58);
  bmp.write('BM', 0);
  bmp.writeUInt32LE(54, 10);
  bmp.writeUInt32LE(40, 14);
  bmp.writeInt32LE(3, 18);
  bmp.writeInt32LE(-2, 22);
  bmp.writeUInt16LE(1, 26);
  bmp.writeUInt16LE(24, 28);
  assert.deepEqual(readImageHeader(bmp), { kind: 'bmp', width: 3, height: 2 });
  for (const fake of [
    Buffer.from('BM hello'),
    png.subarray(0, 20),
    jpg.subarray(0, 4),
    Buffer.from('GIF89a'),
    Buffer.alloc(0),
  ]) {
    assert.equal(readImageHeader(fake), null, fake.toString('latin1'));
  }
});

test('the pixel budget is checked from the header alone', () => {
  const png = encodePng(new Uint8Array(4 * 4 * 3), 4, 4, 3);
  const bomb = Buffer.from(png);
  bomb.writeUInt32BE(10000, 16);
  bomb.writeUInt32BE(10000, 20); // IHDR now declares 10000x10000
  assert.equal(checkImageBudget(png, 16).width, 4);
  assert.throws(() => checkImageBudget(png, 15), ImageTooLargeError);
  assert.throws(() => checkImageBudget(bomb), /10000x10000/);
});
