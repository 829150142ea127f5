// Images in (issue 17, point 2): LoadImage's upload button, drag-and-drop of an image onto a node or the canvas,
// paste from the clipboard, the chosen image drawn on the node, lists refreshed after an upload, and the img2img
// template run from the browser. A dropped PNG that carries a workflow still opens the workflow.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PNG } from 'pngjs';
import {
  editorForFile,
  emptyPoint,
  menuClick,
  nodePoint,
  openTemplate,
  RUN_WAIT,
  shot,
  WAIT,
  type Harness,
} from './harness.js';
import type { Page } from 'playwright-core';

let h: Harness;
const skip = editorForFile((started) => (h = started));
const ev = <T>(fn: string): Promise<T> => h.page.evaluate(fn) as Promise<T>;

/** A w x h PNG with a colour gradient (no workflow inside). */
function gradientPng(w: number, hgt: number, tint: number): Buffer {
  const png = new PNG({ width: w, height: hgt });
  for (let y = 0; y < hgt; y++)
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 4;
      png.data[i] = (x * 255) / w;
      png.data[i + 1] = (y * 255) / hgt;
      png.data[i + 2] = tint;
      png.data[i + 3] = 255;
    }
  return PNG.sync.write(png);
}

/** What the browser does when a file is dropped at a point: dragenter/over, then drop with a DataTransfer. */
async function dropFile(page: Page, bytes: Buffer, name: string, type: string, at: [number, number]): Promise<void> {
  await page.evaluate(
    ({ b64, name, type, at }) => {
      const bin = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bin], name, { type }));
      const target = document.elementFromPoint(at[0], at[1])!;
      for (const kind of ['dragenter', 'dragover', 'drop']) {
        target.dispatchEvent(
          new DragEvent(kind, { dataTransfer: dt, clientX: at[0], clientY: at[1], bubbles: true, cancelable: true }),
        );
      }
    },
    { b64: bytes.toString('base64'), name, type, at },
  );
}

const imageName = (id: number) =>
  ev<string>(`window.__tcd.editor.nodeById(${id}).widgets.find((w) => w.name === 'image').value`);
const shownImage = (id: number) =>
  ev<[number, number, string] | null>(`(() => { const i = window.__tcd.runtime.images.get('${id}')?.[0];
  return i && i.complete && i.naturalWidth ? [i.naturalWidth, i.naturalHeight, new URL(i.src).searchParams.get('filename')] : null; })()`);
const nodeTypes = () => ev<[number, string][]>(`window.__tcd.graph._nodes.map((n) => [n.id, n.type])`);

test(
  'img2img template: the upload button stores the image, lists it, shows it, and the graph runs',
  { skip },
  async () => {
    await openTemplate(h.page, 'tcd-img2img.json');
    await h.page.waitForFunction(() => (window as any).__tcd.editor.nodeById(8)?.type === 'LoadImage');
    const [btnY, width] = await ev<[number, number]>(
      `(() => { const n = window.__tcd.editor.nodeById(8); return [n.widgets.find((w) => w.name === 'upload').y, n.size[0]]; })()`,
    );
    const chooser = h.page.waitForEvent('filechooser');
    await h.page.mouse.click(...(await nodePoint(h.page, 8, width / 2, btnY + 10)));
    await (await chooser).setFiles({ name: 'fox-in.png', mimeType: 'image/png', buffer: gradientPng(128, 96, 40) });
    await h.page.waitForFunction(() => (window as any).__tcd.editor.nodeById(8).widgets[0].value === 'fox-in.png');
    // the file is on the server, the combo lists it, the node shows it
    const listed = (await (await h.api('/object_info/LoadImage')).json()) as {
      LoadImage: { input: { required: { image: [string[]] } } };
    };
    assert.ok(listed.LoadImage.input.required.image[0].includes('fox-in.png'));
    assert.ok((await ev<string[]>(`window.__tcd.editor.nodeById(8).widgets[0].options.values`)).includes('fox-in.png'));
    await h.page.waitForFunction(() => (window as any).__tcd.runtime.images.get('8')?.[0]?.naturalWidth > 0);
    assert.deepEqual(await shownImage(8), [128, 96, 'fox-in.png']);
    // the template's models are not installed here: take the demo checkpoint and bypass the TCD LoRA, all by hand
    const [ckY, ckW] = await ev<[number, number]>(
      `(() => { const n = window.__tcd.editor.nodeById(1); return [n.widgets[0].y, n.size[0]]; })()`,
    );
    await h.page.mouse.click(...(await nodePoint(h.page, 1, ckW / 2, ckY + 10)));
    await menuClick(h.page, 'tcd-studio-demo-sdxl.safetensors');
    await h.page.mouse.click(...(await nodePoint(h.page, 10, 60, -15)));
    await h.page.keyboard.press('Control+b');
    assert.equal(await ev<number>(`window.__tcd.editor.nodeById(10).mode`), 4);
    await shot(h.page, 'p2-img2img-ready');
    await h.page.click('[data-testid=queue-button]');
    await h.page.waitForFunction(() => (window as any).__tcd.runtime.images.get('7')?.[0]?.naturalWidth > 0, null, {
      timeout: RUN_WAIT,
    });
    const out = await ev<[number, number]>(
      `(() => { const i = window.__tcd.runtime.images.get('7')[0]; return [i.naturalWidth, i.naturalHeight]; })()`,
    );
    assert.deepEqual(out, [128, 96], 'img2img keeps the input size');
    const hist = (await (await h.api('/history')).json()) as Record<
      string,
      {
        prompt: [number, string, Record<string, { class_type: string; inputs: { image?: string } }>];
        status: { status_str: string };
      }
    >;
    const entry = Object.values(hist)[0];
    assert.equal(entry.status.status_str, 'success');
    assert.equal(Object.values(entry.prompt[2]).find((n) => n.class_type === 'LoadImage')?.inputs.image, 'fox-in.png');
    await shot(h.page, 'p2-img2img-done');
  },
);

test(
  'an image dropped onto the LoadImage node replaces its image; dropped on empty canvas it makes a LoadImage',
  { skip },
  async () => {
    await dropFile(
      h.page,
      gradientPng(64, 64, 200),
      'dropped-on-node.png',
      'image/png',
      await nodePoint(h.page, 8, 100, 60),
    );
    await h.page.waitForFunction(
      () => (window as any).__tcd.editor.nodeById(8).widgets[0].value === 'dropped-on-node.png',
    );
    await h.page.waitForFunction(() => (window as any).__tcd.runtime.images.get('8')?.[0]?.naturalWidth === 64);
    const before = (await nodeTypes()).length;
    const at = await emptyPoint(h.page, 90);
    await dropFile(h.page, gradientPng(48, 32, 90), 'dropped-on-canvas.png', 'image/png', at);
    await h.page.waitForFunction((n) => (window as any).__tcd.graph._nodes.length === n + 1, before);
    const added = await ev<{
      type: string;
      image: string;
      pos: number[];
      id: number;
    }>(`(() => { const ns = window.__tcd.graph._nodes, n = ns[ns.length - 1];
    return { type: n.type, image: n.widgets[0].value, pos: [...n.pos], id: n.id }; })()`);
    assert.equal(added.type, 'LoadImage');
    assert.equal(added.image, 'dropped-on-canvas.png');
    const expected = await ev<number[]>(`window.__tcd.editor.toGraph(${JSON.stringify(at)})`);
    assert.ok(
      Math.abs(added.pos[0] - expected[0]) < 1 && Math.abs(added.pos[1] - expected[1]) < 1,
      `placed at the drop point ${added.pos} vs ${expected}`,
    );
    await h.page.waitForFunction(
      (id) => (window as any).__tcd.runtime.images.get(String(id))?.[0]?.naturalWidth === 48,
      added.id,
    );
    // one undo removes the dropped node again
    await h.page.mouse.click(...(await emptyPoint(h.page)));
    await h.page.keyboard.press('Control+z');
    assert.equal((await nodeTypes()).length, before);
    await shot(h.page, 'p2-dropped');
  },
);

test('an image pasted from the clipboard goes into the selected LoadImage', { skip }, async () => {
  await h.browser.contexts()[0].grantPermissions(['clipboard-read', 'clipboard-write'], { origin: h.url });
  await h.page.evaluate(
    async (b64) => {
      const bin = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      await navigator.clipboard.write([new ClipboardItem({ 'image/png': new Blob([bin], { type: 'image/png' }) })]);
    },
    gradientPng(40, 30, 10).toString('base64'),
  );
  await h.page.mouse.click(...(await nodePoint(h.page, 8, 60, -15)));
  await h.page.keyboard.press('Control+v');
  await h.page.waitForFunction(() => (window as any).__tcd.runtime.images.get('8')?.[0]?.naturalWidth === 40, null, {
    timeout: WAIT,
  });
  const name = await imageName(8);
  assert.notEqual(name, 'dropped-on-node.png');
  const onServer = await fetch(`${h.url}api/view?type=input&filename=${encodeURIComponent(name)}`);
  assert.equal(onServer.status, 200);
});

test('a dropped PNG that carries a workflow opens that workflow instead', { skip }, async () => {
  const hist = (await (await h.api('/history')).json()) as Record<
    string,
    { outputs: Record<string, { images: { filename: string }[] }> }
  >;
  const file = Object.values(Object.values(hist)[0].outputs)[0].images[0].filename;
  const bytes = Buffer.from(await (await fetch(`${h.url}api/view?type=output&filename=${file}`)).arrayBuffer());
  await openTemplate(h.page, 'default.json');
  await h.page.waitForFunction(
    () => !(window as any).__tcd.editor.nodeById(8) || (window as any).__tcd.editor.nodeById(8).type !== 'LoadImage',
  );
  await dropFile(h.page, bytes, file, 'image/png', await emptyPoint(h.page));
  await h.page.waitForFunction(() => (window as any).__tcd.editor.nodeById(8)?.type === 'LoadImage');
  assert.equal(await imageName(8), 'fox-in.png');
  assert.equal(
    await ev<number>(`window.__tcd.editor.nodeById(10).mode`),
    4,
    'the workflow as it was run (LoRA bypassed)',
  );
});
