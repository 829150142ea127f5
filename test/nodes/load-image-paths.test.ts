/**
 * LoadImage / LoadImageMask take any existing image file, as ComfyUI does (its VALIDATE_INPUTS replaces the list
 * check): a subfolder (`pasted/a.png`, where ComfyUI's frontend uploads a pasted image) and annotated names
 * (`clipspace/x.png [input]` from the mask editor, `b.png [output]`). A missing file is a 400 naming node and input;
 * names leaving their folder stay refused. Real server on a real port, the real node registry, real files; one
 * test-only output node (CaptureMaskValues) shows a MASK in its `executed` output.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { startServer, type RunningServer } from '../../server/app/server.js';
import { createRegistry } from '../../nodes/index.js';
import { defineNode, t } from '../../nodes/define.js';
import { makeServices } from '../../server/host.js';
import { encodePng } from '../../server/storage/png.js';
import type { NodeServices } from '../../nodes/services.js';
import { api, uploadForm, WsClient, type WsMessage } from '../server/protocol-client.js';

let s: RunningServer<NodeServices>;
let ws: WsClient;
let root: string;
/** the input folder sits two levels down, so `../../secret.png` would name a real file outside it */
const dir = (r: string) => ({ input: join(r, 'deep', 'input'), output: join(r, 'output'), temp: join(r, 'temp') });

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'tcd-loadimage-'));
  const registry = createRegistry();
  registry.set(
    'CaptureMaskValues',
    defineNode({
      id: 'CaptureMaskValues',
      category: 'testing',
      outputNode: true,
      inputs: [t.socket('MASK', 'mask')],
      outputs: [],
      execute: ({ mask }) => ({ outputs: [], ui: { mask: [...mask.data].map((v) => Math.round(v * 1000) / 1000) } }),
    }),
  );
  const d = dir(root);
  s = await startServer<NodeServices>({
    host: '127.0.0.1',
    port: 0,
    dataDir: join(root, 'data'),
    modelsDir: join(root, 'models'),
    outputDir: d.output,
    inputDir: d.input,
    tempDir: d.temp,
    workflowsDir: join(root, 'workflows'),
    registry,
    log: () => {},
    makeServices: ({ models, dirs }) => makeServices(models, dirs, { dataDir: join(root, 'data'), log: () => {} }),
  });
  ws = await WsClient.connect(s.url, 'loadimage-test');
  writeFileSync(join(root, 'secret.png'), rgbaPng([[1, 2, 3, 255]]));
});
after(async () => {
  ws.close();
  await s.close();
  rmSync(root, { recursive: true, force: true });
});

/** A 1-pixel-high RGBA PNG of the given pixels. */
function rgbaPng(pixels: number[][]): Buffer {
  return encodePng(Uint8Array.from(pixels.flat()), pixels.length, 1, 4);
}

async function queue(prompt: Record<string, unknown>) {
  return api(s.url, 'POST', '/prompt', { prompt, client_id: 'loadimage-test' });
}

/** Queues, waits for the end, and returns the prompt's events (failing on an execution error). */
async function run(prompt: Record<string, unknown>): Promise<WsMessage[]> {
  const r = await queue(prompt);
  assert.equal(r.status, 200, r.text);
  const events = await ws.untilDone(r.json.prompt_id);
  const err = events.find((e) => e.type === 'execution_error');
  assert.equal(err, undefined, JSON.stringify(err?.data));
  return events;
}

const executedOf = (events: WsMessage[], node: string) =>
  events.find((e) => e.type === 'executed' && e.data.node === node)?.data.output;
const cachedOf = (events: WsMessage[]): string[] => events.find((e) => e.type === 'execution_cached')!.data.nodes;

/** The RGB pixels of the image PreviewImage (node '2') showed, read back through /view. */
async function previewed(events: WsMessage[]): Promise<number[][]> {
  const [img] = executedOf(events, '2').images as { filename: string; subfolder: string; type: string }[];
  assert.equal(img.type, 'temp');
  const q = new URLSearchParams({ filename: img.filename, subfolder: img.subfolder, type: img.type });
  const v = await api(s.url, 'GET', `/view?${q}`);
  assert.equal(v.status, 200);
  const png = PNG.sync.read(v.bytes);
  const out: number[][] = [];
  for (let i = 0; i < png.width * png.height; i++) out.push([...png.data.subarray(i * 4, i * 4 + 3)]);
  return out;
}

const preview = (image: string) => ({
  '1': { class_type: 'LoadImage', inputs: { image } },
  '2': { class_type: 'PreviewImage', inputs: { images: ['1', 0] } },
});
const maskOf = (image: string, channel = 'alpha') => ({
  '1': { class_type: 'LoadImageMask', inputs: { image, channel } },
  '2': { class_type: 'CaptureMaskValues', inputs: { mask: ['1', 0] } },
});

test('LoadImage runs a pasted image uploaded to subfolder pasted; the list still shows top-level files only', async () => {
  const up = await api(
    s.url,
    'POST',
    '/upload/image',
    uploadForm(
      'a.png',
      rgbaPng([
        [10, 20, 30, 255],
        [40, 50, 60, 128],
      ]),
      { subfolder: 'pasted' },
    ),
  );
  assert.equal(up.status, 200, up.text);
  assert.deepEqual(up.json, { name: 'a.png', subfolder: 'pasted', type: 'input' });
  const info = (await api(s.url, 'GET', '/object_info/LoadImage')).json;
  assert.deepEqual(info.LoadImage.input.required.image[0], [], 'pasted/a.png is not in the combo list');

  const events = await run(preview('pasted/a.png'));
  assert.deepEqual(await previewed(events), [
    [10, 20, 30],
    [40, 50, 60],
  ]);
  // the same file again: cached; another file under the same name: LoadImage runs again (its fingerprint)
  assert.ok(cachedOf(await run(preview('pasted/a.png'))).includes('1'));
  const again = await api(
    s.url,
    'POST',
    '/upload/image',
    uploadForm(
      'a.png',
      rgbaPng([
        [70, 80, 90, 255],
        [1, 1, 1, 255],
      ]),
      { subfolder: 'pasted', overwrite: 'true' },
    ),
  );
  assert.equal(again.json.name, 'a.png');
  const changed = await run(preview('pasted/a.png'));
  assert.equal(cachedOf(changed).includes('1'), false);
  assert.deepEqual(await previewed(changed), [
    [70, 80, 90],
    [1, 1, 1],
  ]);
});

test('annotated names read the folder they name: [input], [output], with subfolders (the mask editor)', async () => {
  const d = dir(root);
  mkdirSync(join(d.input, 'clipspace'), { recursive: true });
  writeFileSync(join(d.input, 'c.png'), rgbaPng([[200, 0, 0, 255]]));
  writeFileSync(join(d.output, 'c.png'), rgbaPng([[0, 0, 200, 255]]));
  writeFileSync(join(d.output, 'b.png'), rgbaPng([[5, 6, 7, 255]]));
  writeFileSync(join(d.input, 'clipspace', 'clipspace-painted-masked-123.png'), rgbaPng([[9, 8, 7, 255]]));
  assert.deepEqual(await previewed(await run(preview('c.png [input]'))), [[200, 0, 0]]);
  assert.deepEqual(await previewed(await run(preview('c.png [output]'))), [[0, 0, 200]]);
  assert.deepEqual(await previewed(await run(preview('b.png [output]'))), [[5, 6, 7]]);
  assert.deepEqual(await previewed(await run(preview('clipspace/clipspace-painted-masked-123.png [input]'))), [
    [9, 8, 7],
  ]);
  // the fingerprint reads the annotated folder too: a new c.png in output re-runs the node
  writeFileSync(join(d.output, 'c.png'), rgbaPng([[0, 100, 0, 255]]));
  const changed = await run(preview('c.png [output]'));
  assert.equal(cachedOf(changed).includes('1'), false);
  assert.deepEqual(await previewed(changed), [[0, 100, 0]]);
});

/** The 400 for a refused image value: custom_validation_failed on node '1', input `image`. */
async function assertRefused(prompt: Record<string, unknown>, classType: string, value: string) {
  const r = await queue(prompt);
  assert.equal(r.status, 400, `${value}: ${r.text}`);
  assert.equal(r.json.error.type, 'prompt_outputs_failed_validation');
  const ne = r.json.node_errors['1'];
  assert.equal(ne.class_type, classType);
  assert.deepEqual(ne.dependent_outputs, ['2']);
  assert.equal(ne.errors.length, 1);
  const [e] = ne.errors;
  assert.equal(e.type, 'custom_validation_failed', value);
  assert.equal(e.message, 'Custom validation failed for node');
  assert.ok(e.details.startsWith(`image - Invalid image file: ${value}`), e.details);
  assert.deepEqual(e.extra_info, { input_name: 'image' });
}

test('a missing file, a folder, and names leaving their folder are a 400 naming the node and the input', async () => {
  const d = dir(root);
  writeFileSync(join(d.input, 'here.png'), rgbaPng([[1, 1, 1, 255]]));
  const refused = [
    'nope.png',
    'pasted/nope.png',
    'nope.png [output]',
    'pasted',
    '../../secret.png',
    '..%2F..%2Fsecret.png',
    join(root, 'secret.png'),
    'secret.png [../..]',
    'here.png [models]',
    'here.png [temp]',
  ];
  for (const value of refused) {
    await assertRefused(preview(value), 'LoadImage', value);
    await assertRefused(maskOf(value), 'LoadImageMask', value);
  }
  const r = await queue(preview('nope.png'));
  assert.equal(r.json.node_errors['1'].errors[0].details, 'image - Invalid image file: nope.png');
  // a value that is not a name at all is still a type error
  const n = await queue(preview({ a: 1 } as unknown as string));
  assert.equal(n.json.node_errors['1'].errors[0].type, 'invalid_input_type');
});

test('LoadImageMask reads pasted and annotated files; its fingerprint follows the same file', async () => {
  const d = dir(root);
  mkdirSync(join(d.input, 'pasted'), { recursive: true });
  writeFileSync(
    join(d.input, 'pasted', 'm.png'),
    rgbaPng([
      [255, 0, 0, 255],
      [51, 0, 0, 0],
    ]),
  );
  writeFileSync(
    join(d.output, 'm.png'),
    rgbaPng([
      [0, 0, 0, 51],
      [0, 0, 0, 255],
    ]),
  );
  assert.deepEqual(executedOf(await run(maskOf('pasted/m.png', 'red')), '2').mask, [1, 0.2]);
  assert.deepEqual(executedOf(await run(maskOf('pasted/m.png')), '2').mask, [0, 1]);
  assert.deepEqual(executedOf(await run(maskOf('m.png [output]')), '2').mask, [0.8, 0]);
  writeFileSync(
    join(d.output, 'm.png'),
    rgbaPng([
      [0, 0, 0, 0],
      [0, 0, 0, 0],
    ]),
  );
  const changed = await run(maskOf('m.png [output]'));
  assert.equal(cachedOf(changed).includes('1'), false);
  assert.deepEqual(executedOf(changed, '2').mask, [1, 1]);
});
