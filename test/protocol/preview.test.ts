/**
 * Preview frames as the server writes them and the clients read them (protocol/preview.ts): the byte layout of
 * both frame types, and decode(encode(x)) == x.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodePreviewFrame, encodePreviewFrame, encodePreviewFrameWithMetadata } from '../../protocol/preview.js';

const image = new Uint8Array([0xff, 0xd8, 0xff, 0x00, 0x42]);

test('type 1 frame: [u32 BE 1][u32 BE image type][bytes], decoded back', () => {
  const f = encodePreviewFrame({ format: 'jpeg', bytes: image });
  assert.deepEqual([...f.subarray(0, 8)], [0, 0, 0, 1, 0, 0, 0, 1]);
  assert.deepEqual([...f.subarray(8)], [...image]);
  assert.deepEqual(decodePreviewFrame(f), { mime: 'image/jpeg', bytes: image });
  const png = encodePreviewFrame({ format: 'png', bytes: image });
  assert.equal(png[7], 2);
  assert.equal(decodePreviewFrame(png.buffer as ArrayBuffer)?.mime, 'image/png', 'an ArrayBuffer decodes too');
});

test('type 4 frame: [u32 BE 4][u32 BE json length][json][bytes], ids and mime decoded back', () => {
  const f = encodePreviewFrameWithMetadata({ format: 'png', bytes: image }, { node_id: '9', prompt_id: 'p1' });
  const view = new DataView(f.buffer);
  assert.equal(view.getUint32(0), 4);
  const n = view.getUint32(4);
  const meta = JSON.parse(new TextDecoder().decode(f.subarray(8, 8 + n)));
  assert.deepEqual(meta, {
    node_id: '9',
    prompt_id: 'p1',
    display_node_id: '9',
    parent_node_id: null,
    real_node_id: '9',
    image_type: 'image/png',
  });
  assert.deepEqual([...f.subarray(8 + n)], [...image]);
  assert.deepEqual(decodePreviewFrame(f), { mime: 'image/png', bytes: image, promptId: 'p1', nodeId: '9' });
  // a frame inside a larger buffer (as ws hands out pooled Buffers) decodes from its own offset
  const pooled = new Uint8Array(f.length + 3);
  pooled.set(f, 3);
  assert.deepEqual(decodePreviewFrame(pooled.subarray(3)), {
    mime: 'image/png',
    bytes: image,
    promptId: 'p1',
    nodeId: '9',
  });
});

test('unknown frame types, short frames and broken metadata decode to null', () => {
  assert.equal(decodePreviewFrame(new Uint8Array([0, 0, 0, 7, 0, 0, 0, 1, 5])), null);
  assert.equal(decodePreviewFrame(new Uint8Array([0, 0, 0, 1])), null);
  assert.equal(decodePreviewFrame(new Uint8Array([0, 0, 0, 4, 0, 0, 0, 2, 0x7b, 0x7b, 1])), null);
});
