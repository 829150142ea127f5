import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32 } from 'node:zlib';
import { PNG } from 'pngjs';
import { readPngText, workflowFromPng } from '../../../client/graph/png-text.js';
import { defaultWorkflow } from '../../../client/graph/default-workflow.js';

/** A real 2x2 PNG (encoded by pngjs) with text chunks spliced in after IHDR, as SaveImage writes them. */
function pngWithText(chunks: Record<string, string>): Uint8Array {
  const png = new PNG({ width: 2, height: 2 });
  png.data.fill(200);
  const base = PNG.sync.write(png);
  const ihdrEnd = 8 + 12 + base.readUInt32BE(8);
  const parts: Buffer[] = [base.subarray(0, ihdrEnd)];
  for (const [k, v] of Object.entries(chunks)) {
    const data = Buffer.concat([Buffer.from(k, 'latin1'), Buffer.from([0]), Buffer.from(v, 'latin1')]);
    const head = Buffer.alloc(8);
    head.writeUInt32BE(data.length, 0);
    head.write('tEXt', 4, 'latin1');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
    parts.push(head, data, crc);
  }
  parts.push(base.subarray(ihdrEnd));
  return new Uint8Array(Buffer.concat(parts));
}

test('reads the workflow and prompt tEXt chunks', () => {
  const wf = defaultWorkflow();
  const bytes = pngWithText({ prompt: '{"3":{}}', workflow: JSON.stringify(wf) });
  assert.deepEqual(readPngText(bytes), { prompt: '{"3":{}}', workflow: JSON.stringify(wf) });
  assert.deepEqual(workflowFromPng(bytes), wf);
  // pngjs still decodes it: the splice produced a valid PNG
  assert.equal(PNG.sync.read(Buffer.from(bytes)).width, 2);
});

test('a PNG without a workflow gives null; non-PNG bytes throw', () => {
  assert.equal(workflowFromPng(pngWithText({})), null);
  assert.throws(() => readPngText(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9])), /not a PNG/);
});
