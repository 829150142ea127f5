// Undo/redo in the browser against the real server: a chain of edits of different kinds (widget arrow, node drag,
// typing in a prompt, adding a node from the canvas menu, a link, a node resize) is undone and redone step by step,
// with pauses and clicks on empty canvas in between (so debounced checkpoints, the load settling timer and first draws
// after graph.configure all get their chance to record something): each step must give back exactly the state it
// left, redo must stay available until the last redo, and the clean/modified state must follow.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  editorForFile,
  canvasMenuClick,
  drag,
  emptyPoint,
  menuClick,
  nodePoint,
  openTemplate,
  slotPoint,
  WAIT,
  type Harness,
} from './harness.js';

let h: Harness;
const skip = editorForFile((started) => (h = started));
const ev = <T>(fn: string): Promise<T> => h.page.evaluate(fn) as Promise<T>;

/**
 * The graph as the editor's history keeps it: serialized without the viewport (extra.ds), nodes by id and without
 * their execution order (z-order, which a click on a node changes, is no edit; litegraph derives the order from it).
 */
const norm = (wf: string) => `((wf) => { const { extra, nodes, ...rest } = wf; const { ds, ...e } = extra ?? {};
  const byId = [...nodes].sort((a, b) => a.id - b.id).map(({ order, ...n }) => n);
  return JSON.stringify({ ...rest, nodes: byId, extra: e }); })(${wf})`;
const GRAPH = norm('window.__tcd.editor.serialize()');
/** History's present, in the same form. */
const PRESENT = norm('JSON.parse(window.__tcd.editor.history.present)');
const graph = () => ev<string>(GRAPH);
interface Hist {
  present: string;
  undo: number;
  redo: number;
  modified: boolean;
}
const hist = () =>
  ev<Hist>(`(() => { const e = window.__tcd.editor, s = e.history;
    return { present: ${PRESENT}, undo: s.undoCount, redo: s.redoCount, modified: e.modified }; })()`);

/**
 * Waits until the editor is at rest: no checkpoint pending, two frames drawn (litegraph's first-draw layout), and
 * what history holds as the present is what the graph serializes to. The pause first is on purpose, not a wait for
 * something: it gives any timer the last action started (debounce, settling) the time to fire and record a step
 * that it should not, which the step counts checked after it would then show.
 */
async function atRest(): Promise<void> {
  await h.page.waitForTimeout(250);
  await h.page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  await h.page.waitForFunction(
    ([g, p]) => (window as any).__tcd.editor.timer === null && eval(p) === eval(g),
    [GRAPH, PRESENT],
    { timeout: WAIT },
  );
}

/** A click on empty canvas: a mouse-up (afterChange, pointerup checkpoint) that changes nothing. */
async function clickEmpty(): Promise<void> {
  await h.page.mouse.click(...(await emptyPoint(h.page, 80)));
}

const widget = (id: number, name: string) =>
  ev<unknown>(`window.__tcd.editor.nodeById(${id}).widgets.find((w) => w.name === '${name}').value`);

test(
  'six edits of different kinds are undone and redone one by one, each restoring exactly its state',
  { skip },
  async () => {
    await atRest();
    const states = [await graph()];
    assert.equal((await hist()).modified, false, 'the freshly loaded default workflow is clean');
    // each edit is exactly one undo step, however many changes litegraph reported while it happened
    const recorded = async (what: string) => {
      await atRest();
      const g = await graph();
      assert.notEqual(g, states.at(-1), `${what} changed the graph`);
      states.push(g);
      assert.equal((await hist()).undo, states.length - 1, `${what} is one undo step`);
    };
    // 1. a widget arrow
    const [wy, ww] = await ev<[number, number]>(`(() => { const n = window.__tcd.editor.nodeById(3);
      return [n.widgets.find((w) => w.name === 'steps').y, n.size[0]]; })()`);
    await h.page.mouse.click(...(await nodePoint(h.page, 3, ww - 22, wy + 10)));
    await recorded('the steps arrow');
    assert.equal(await widget(3, 'steps'), 5);
    // 2. a node dragged by its title
    const from = await nodePoint(h.page, 5, 60, -15);
    await drag(h.page, from, [from[0] + 70, from[1] + 50]);
    await recorded('dragging node 5');
    // 3. typing in the prompt textarea, then clicking away
    await h.page.locator('textarea.node-textarea[data-node="6"]').click();
    await h.page.keyboard.press('Control+End');
    // one input event: keystrokes typed one by one are one step only while they come less than 500 ms apart, which
    // a starved browser does not promise
    await h.page.keyboard.insertText(', at night');
    await clickEmpty();
    await recorded('typing');
    assert.match(String(await widget(6, 'text')), /, at night$/);
    // 4. a node added from the canvas menu
    const n0 = await ev<number>(`window.__tcd.graph._nodes.length`);
    await canvasMenuClick(h.page, () => emptyPoint(h.page, 150), 'Add Node');
    await menuClick(h.page, 'latent');
    await menuClick(h.page, 'Empty Latent Image');
    await h.page.waitForFunction((n) => (window as any).__tcd.graph._nodes.length === n + 1, n0);
    await recorded('adding a node');
    const added = await ev<number>(`window.__tcd.graph._nodes.at(-1).id`);
    // 5. a link from the new node's LATENT to the sampler's latent_image (replacing node 5's)
    const latentIn = await ev<number>(
      `window.__tcd.editor.nodeById(3).inputs.findIndex((i) => i.name === 'latent_image')`,
    );
    await drag(h.page, await slotPoint(h.page, added, 'output', 0), await slotPoint(h.page, 3, 'input', latentIn));
    await recorded('the link');
    const origin = `(() => { const g = window.__tcd.graph, id = window.__tcd.editor.nodeById(3).inputs[${latentIn}].link;
      return (g.links.get?.(id) ?? g.links[id] ?? g._links.get(id)).origin_id; })()`;
    assert.equal(await ev<number>(origin), added);
    // 6. a node resized by its bottom-right corner
    const size0 = await ev<number[]>(`[...window.__tcd.editor.nodeById(7).size]`);
    const corner = await nodePoint(h.page, 7, size0[0] - 3, size0[1] - 3);
    await drag(h.page, corner, [corner[0] + 80, corner[1] + 60]);
    await recorded('resizing node 7');
    const size1 = await ev<number[]>(`[...window.__tcd.editor.nodeById(7).size]`);
    assert.ok(size1[0] > size0[0] + 40 && size1[1] > size0[1] + 30, `resized: ${size0} -> ${size1}`);
    assert.equal((await hist()).modified, true);

    const last = states.length - 1;
    // between steps: a pause, a click on empty canvas, and a click on a node's title (selects it and brings it to
    // the front: no edit)
    const clicks = async () => {
      await atRest();
      await clickEmpty();
      await atRest();
      await h.page.mouse.click(...(await nodePoint(h.page, 4, 40, -15)));
      await atRest();
      await h.page.evaluate(() => (window as any).__tcd.canvas.canvas.focus());
    };
    for (let i = last - 1; i >= 0; i--) {
      await h.page.keyboard.press('Control+z');
      await clicks();
      assert.equal(await graph(), states[i], `undo to state ${i}`);
      const s = await hist();
      assert.equal(s.present, states[i], `history's present after undo to ${i}`);
      assert.deepEqual([s.undo, s.redo], [i, last - i], `undo/redo steps at state ${i}`);
      assert.equal(s.modified, i > 0, `modified at state ${i}`);
    }
    assert.equal(await widget(3, 'steps'), 4);
    for (let i = 1; i <= last; i++) {
      await h.page.keyboard.press('Control+y');
      await clicks();
      assert.equal(await graph(), states[i], `redo to state ${i}`);
      const s = await hist();
      assert.equal(s.present, states[i], `history's present after redo to ${i}`);
      assert.deepEqual([s.undo, s.redo], [i, last - i], `undo/redo steps at state ${i}`);
      assert.equal(s.modified, true);
    }
    // undo after redo
    await h.page.keyboard.press('Control+z');
    await atRest();
    assert.equal(await graph(), states[last - 1]);
    await h.page.keyboard.press('Control+y');
    await atRest();
    assert.equal(await graph(), states[last]);
  },
);

test('undo right after opening a template gives back the previous graph; redo the template', { skip }, async () => {
  await atRest();
  const before = await graph();
  await openTemplate(h.page, 'demo.json');
  await atRest();
  const opened = await graph();
  assert.notEqual(opened, before);
  const o = await hist();
  assert.equal(o.modified, false, 'an opened template is clean');
  assert.equal(o.present, opened);
  const steps = o.undo;
  await h.page.evaluate(() => (window as any).__tcd.canvas.canvas.focus());
  await h.page.keyboard.press('Control+z');
  await atRest();
  await clickEmpty();
  await atRest();
  assert.equal(await graph(), before, 'one undo gives back the graph before the template');
  assert.equal((await hist()).undo, steps - 1);
  assert.equal((await hist()).redo, 1);
  await h.page.keyboard.press('Control+y');
  await atRest();
  await clickEmpty();
  await atRest();
  assert.equal(await graph(), opened);
  const s = await hist();
  assert.equal(s.redo, 0);
  assert.equal(s.modified, false, 'back at the template as opened: clean again');
});
