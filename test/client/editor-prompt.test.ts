// Prompt editing in the browser (issue 17, point 1): multiline STRING widgets are live textareas inside the node.
// Every keystroke is in the graph, Enter is a newline, Escape and clicking away keep the text, Ctrl+Enter queues
// exactly what is on screen, undo/redo cover text edits, the text survives a reload.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  editorForFile,
  emptyPoint,
  frames,
  nodePoint,
  RUN_WAIT,
  shot,
  waitForEditor,
  type Harness,
} from './harness.js';

let h: Harness;
const skip = editorForFile((started) => (h = started));
const ev = <T>(fn: string): Promise<T> => h.page.evaluate(fn) as Promise<T>;
const widgetText = (id: number) =>
  ev<string>(`window.__tcd.editor.nodeById(${id}).widgets.find((w) => w.name === 'text').value`);
const area = (id: number) => h.page.locator(`textarea.node-textarea[data-node="${id}"]`);

async function clickInto(id: number): Promise<void> {
  // a locator click waits until the canvas has drawn the node and placed its textarea there (a loaded machine can
  // take a while for the first frames after load)
  await area(id).click();
}

test(
  'the prompt is a textarea in the node; each keystroke is in the graph; Enter is a newline; Escape keeps it',
  { skip },
  async () => {
    assert.equal(await area(6).inputValue(), await widgetText(6));
    await clickInto(6);
    await h.page.keyboard.press('Control+a');
    await h.page.keyboard.type('a lighthouse');
    // no blur, no confirm: the graph already holds the text
    assert.equal(await widgetText(6), 'a lighthouse');
    await h.page.keyboard.press('Enter');
    await h.page.keyboard.type('at dusk');
    assert.equal(await widgetText(6), 'a lighthouse\nat dusk');
    await h.page.keyboard.press('Escape');
    assert.equal(await widgetText(6), 'a lighthouse\nat dusk');
    // clicking away keeps it too
    await h.page.mouse.click(...(await emptyPoint(h.page)));
    assert.equal(await widgetText(6), 'a lighthouse\nat dusk');
    assert.equal(await area(6).inputValue(), 'a lighthouse\nat dusk');
    await shot(h.page, 'p1-prompt-typed');
  },
);

test('Ctrl+Enter inside the textarea queues exactly the text on screen', { skip }, async () => {
  await clickInto(7);
  await h.page.keyboard.press('Control+a');
  await h.page.keyboard.type('ugly, smeared');
  const request = h.page.waitForRequest((r) => r.url().endsWith('/api/prompt') && r.method() === 'POST');
  await h.page.keyboard.press('Control+Enter');
  const body = (await request).postDataJSON() as { prompt: Record<string, { inputs: { text?: string } }> };
  assert.equal(body.prompt['7'].inputs.text, 'ugly, smeared');
  assert.equal(body.prompt['6'].inputs.text, 'a lighthouse\nat dusk');
  // the textarea still has the focus and the text: queueing is not an edit
  assert.equal(await area(7).inputValue(), 'ugly, smeared');
  assert.equal(await ev<string>(`document.activeElement.dataset.node`), '7');
  // the server ran what was sent
  await h.page.waitForFunction(() => (window as any).__tcd.runtime.images.get('9')?.length > 0, null, {
    timeout: RUN_WAIT,
  });
  const hist = (await (await h.api('/history')).json()) as Record<
    string,
    { prompt: [number, string, Record<string, { inputs: { text: string } }>] }
  >;
  const texts = Object.values(hist).map((e) => e.prompt[2]['7'].inputs.text);
  assert.deepEqual(texts, ['ugly, smeared']);
});

test('undo and redo cover text edits (toolbar and Ctrl+Z / Ctrl+Y on the canvas)', { skip }, async () => {
  await clickInto(6);
  await h.page.keyboard.press('Control+End');
  // one input event, so it is one typing burst (one undo step) however slowly a loaded browser takes it
  await h.page.keyboard.insertText(', storm');
  assert.equal(await widgetText(6), 'a lighthouse\nat dusk, storm');
  // the typing burst is recorded (autosaved) before the canvas takes the keys; undo during a pending burst is
  // covered below through the Undo button
  await h.page.waitForFunction(
    () =>
      JSON.parse(localStorage.getItem('tcd-studio.workflow') ?? '{}').nodes?.find((n: { id: number }) => n.id === 6)
        ?.widgets_values?.[0] === 'a lighthouse\nat dusk, storm',
  );
  await h.page.mouse.click(...(await emptyPoint(h.page)));
  await h.page.keyboard.press('Control+z');
  assert.equal(await widgetText(6), 'a lighthouse\nat dusk');
  assert.equal(await area(6).inputValue(), 'a lighthouse\nat dusk', 'the textarea follows the undo');
  await h.page.keyboard.press('Control+y');
  assert.equal(await area(6).inputValue(), 'a lighthouse\nat dusk, storm');
  // typed and undone at once, before the typing burst was recorded: the Undo button still reverts it
  await clickInto(6);
  await h.page.keyboard.type('!');
  await h.page.getByRole('button', { name: 'Undo' }).click();
  assert.equal(await area(6).inputValue(), 'a lighthouse\nat dusk, storm');
});

test('the text survives a reload; a zoomed-out node keeps the textarea over its widget', { skip }, async () => {
  await h.page.waitForFunction(
    () =>
      JSON.parse(localStorage.getItem('tcd-studio.workflow') ?? '{}').nodes?.find((n: { id: number }) => n.id === 6)
        ?.widgets_values?.[0] === 'a lighthouse\nat dusk, storm',
  );
  await h.page.reload();
  await waitForEditor(h.page);
  await area(6).waitFor();
  assert.equal(await area(6).inputValue(), 'a lighthouse\nat dusk, storm');
  // the textarea sits inside the node's rectangle on screen (as placed by a frame drawn after the measurement)
  await frames(h.page);
  const [nx, ny, nw, nh] = await ev<number[]>(`(() => { const e = window.__tcd.editor, n = e.nodeById(6);
    const a = e.toClient([n.pos[0], n.pos[1]]), b = e.toClient([n.pos[0] + n.size[0], n.pos[1] + n.size[1]]);
    return [a[0], a[1], b[0] - a[0], b[1] - a[1]]; })()`);
  await frames(h.page);
  const box = (await area(6).boundingBox())!;
  assert.ok(
    box.x >= nx && box.y >= ny && box.x + box.width <= nx + nw + 1 && box.y + box.height <= ny + nh + 1,
    `textarea ${JSON.stringify(box)} inside node ${[nx, ny, nw, nh]}`,
  );
  assert.ok(box.width > nw * 0.8, 'it spans the node');
});

test('a context menu opened over a prompt is drawn above its textarea', { skip }, async () => {
  await h.page.mouse.click(...(await nodePoint(h.page, 6, 40, -15)), { button: 'right' });
  const entry = h.page.locator('.litecontextmenu .litemenu-entry').nth(3);
  await entry.waitFor();
  const b = (await entry.boundingBox())!;
  const top = await h.page.evaluate(
    ([x, y]) => document.elementFromPoint(x, y)?.closest('.litecontextmenu') !== null,
    [b.x + b.width / 2, b.y + b.height / 2],
  );
  const over = await h.page.evaluate(
    ([x, y]) => {
      const r = document.querySelector('textarea.node-textarea[data-node="6"]')!.getBoundingClientRect();
      return x >= r.left && x <= r.right && y >= r.top && y <= r.bottom;
    },
    [b.x + b.width / 2, b.y + b.height / 2],
  );
  assert.ok(over, 'the menu entry lies over the textarea');
  assert.ok(top, 'and the menu is what the pointer hits');
  await h.page.keyboard.press('Escape');
});
