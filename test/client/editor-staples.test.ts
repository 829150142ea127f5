// Layout and staples (issue 17, point 7): readable default zoom, fit to view (.), collapsible side panel, node library
// (category tree + search), Note and Reroute nodes, a named workflow with an unsaved marker, Ctrl+S saving on the
// server (userdata routes), batch count and Queue (front), progress in the tab title, a favicon, and no
// "Convert to Subgraph" in the menus.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  editorForFile,
  drag,
  emptyPoint,
  eventually,
  menuEntries,
  nodePoint,
  openSaved,
  openTemplate,
  RUN_WAIT,
  shot,
  slotPoint,
  WAIT,
  waitForEditor,
  type Harness,
} from './harness.js';

let h: Harness;
const skip = editorForFile((started) => (h = started));
const ev = <T>(fn: string): Promise<T> => h.page.evaluate(fn) as Promise<T>;
const RUN = RUN_WAIT;

/** Screen rectangle of all nodes (title bars included) and of the canvas. */
const BOUNDS = `(() => { const e = window.__tcd.editor, ns = window.__tcd.graph._nodes;
  let x0 = 1e9, y0 = 1e9, x1 = -1e9, y1 = -1e9;
  for (const n of ns) { const a = e.toClient([n.pos[0], n.pos[1] - 30]), b = e.toClient([n.pos[0] + n.size[0], n.pos[1] + n.size[1]]);
    x0 = Math.min(x0, a[0]); y0 = Math.min(y0, a[1]); x1 = Math.max(x1, b[0]); y1 = Math.max(y1, b[1]); }
  const r = e.el.getBoundingClientRect();
  return { nodes: [x0, y0, x1, y1], canvas: [r.left, r.top, r.right, r.bottom], scale: window.__tcd.canvas.ds.scale }; })()`;
type Bounds = { nodes: number[]; canvas: number[]; scale: number };
const inside = (b: Bounds) =>
  b.nodes[0] >= b.canvas[0] && b.nodes[1] >= b.canvas[1] && b.nodes[2] <= b.canvas[2] && b.nodes[3] <= b.canvas[3];

test('the default graph opens at a readable zoom, whole; "." fits it again after panning away', { skip }, async () => {
  const b = await ev<Bounds>(BOUNDS);
  assert.ok(b.scale >= 0.8, `scale ${b.scale}`);
  assert.ok(inside(b), `all nodes visible: ${JSON.stringify(b)}`);
  const p = await emptyPoint(h.page, 60);
  await drag(h.page, p, [p[0] - 600, p[1] - 300]);
  assert.ok(!inside(await ev<Bounds>(BOUNDS)), 'panned away');
  await h.page.keyboard.press('.');
  const fit = await ev<Bounds>(BOUNDS);
  assert.ok(inside(fit), `fits again: ${JSON.stringify(fit)}`);
  assert.ok(fit.scale <= 1);
  await shot(h.page, 'p7-default-zoom');
});

test('the side panel collapses and comes back (mouse and keyboard); the canvas takes the room', { skip }, async () => {
  const width = () => ev<number>(`window.__tcd.editor.el.clientWidth`);
  const w0 = await width();
  await h.page.click('[data-testid=panel-toggle]');
  await h.page.locator('aside.side').waitFor({ state: 'detached' });
  await h.page.waitForFunction((w) => (window as any).__tcd.editor.el.clientWidth > w + 200, w0);
  await h.page.focus('[data-testid=panel-toggle]');
  await h.page.keyboard.press('Enter');
  await h.page.locator('aside.side').waitFor();
  await h.page.waitForFunction((w) => (window as any).__tcd.editor.el.clientWidth === w, w0);
});

test(
  'node library: the category tree lists object_info; search + Enter adds a node; drag adds it at the drop point',
  { skip },
  async () => {
    const info = (await (await h.api('/object_info')).json()) as Record<
      string,
      { category: string; display_name: string }
    >;
    await h.page.locator('[data-testid=node-library] details[data-category="latent"] > summary').click();
    const latent = await h.page
      .locator('[data-testid=node-library] details[data-category="latent"] > ul > li.library-node')
      .evaluateAll((ls) => ls.map((l) => (l as HTMLElement).dataset.type).sort());
    assert.deepEqual(
      latent,
      Object.keys(info)
        .filter((t) => info[t].category === 'latent')
        .sort(),
    );
    const n0 = await ev<number>(`window.__tcd.graph._nodes.length`);
    await h.page.fill('[data-testid=node-library] input', 'empty latent');
    await h.page.locator('[data-testid=node-library] .results li').first().waitFor();
    await h.page.keyboard.press('Tab');
    assert.equal(await ev<string>(`document.activeElement.dataset.type`), 'EmptyLatentImage');
    await h.page.keyboard.press('Enter');
    await h.page.waitForFunction((n) => (window as any).__tcd.graph._nodes.length === n + 1, n0);
    // drag "Note" from the library onto the canvas
    await h.page.fill('[data-testid=node-library] input', 'note');
    const item = h.page.locator('[data-testid=node-library] .results li[data-type="Note"]');
    await item.waitFor();
    const box = (await item.boundingBox())!;
    const to = await emptyPoint(h.page, 100);
    await h.page.mouse.move(box.x + 10, box.y + box.height / 2);
    await h.page.mouse.down();
    await h.page.mouse.move(box.x - 100, box.y, { steps: 5 });
    await h.page.mouse.move(to[0], to[1], { steps: 10 });
    await h.page.mouse.up();
    await h.page.waitForFunction((n) => (window as any).__tcd.graph._nodes.length === n + 2, n0);
    const note = await ev<{ type: string; id: number }>(
      `(() => { const ns = window.__tcd.graph._nodes, n = ns[ns.length - 1]; return { type: n.type, id: n.id }; })()`,
    );
    assert.equal(note.type, 'Note');
    await h.page.fill('[data-testid=node-library] input', '');
    // the note takes text like a prompt
    const area = h.page.locator(`textarea.node-textarea[data-node="${note.id}"]`);
    await area.click({ position: { x: 20, y: 20 } });
    await h.page.keyboard.type('remember: TCD wants cfg 1');
    assert.equal(
      await ev<string>(`window.__tcd.editor.nodeById(${note.id}).widgets[0].value`),
      'remember: TCD wants cfg 1',
    );
    await shot(h.page, 'p7-library-note');
  },
);

test('a Reroute carries a link; Note and Reroute never reach the server', { skip }, async () => {
  await h.page.fill('[data-testid=node-library] input', 'reroute');
  await h.page.locator('[data-testid=node-library] .results li[data-type="Reroute"]').click();
  await h.page.fill('[data-testid=node-library] input', '');
  const reroute = await ev<number>(`(() => { const ns = window.__tcd.graph._nodes; return ns[ns.length - 1].id; })()`);
  // move it to empty space, then VAE -> reroute -> VAEDecode.vae
  const at = await emptyPoint(h.page, 80);
  await h.page.evaluate(
    ([id, p]) => {
      const t = (window as any).__tcd;
      t.editor.nodeById(id).pos = t.editor.toGraph(p);
      t.canvas.setDirty(true, true);
    },
    [reroute, at] as const,
  );
  await drag(h.page, await slotPoint(h.page, 4, 'output', 2), await slotPoint(h.page, reroute, 'input', 0));
  await drag(h.page, await slotPoint(h.page, reroute, 'output', 0), await slotPoint(h.page, 8, 'input', 1));
  const origin = await ev<number>(
    `(() => { const t = window.__tcd, l = t.graph._links.get(t.editor.nodeById(8).inputs[1].link); return l.origin_id; })()`,
  );
  assert.equal(origin, reroute, 'VAEDecode.vae comes from the reroute');
  const prompt =
    await ev<Record<string, { class_type: string; inputs: Record<string, unknown> }>>(`window.__tcd.toPrompt()`);
  assert.deepEqual(prompt['8'].inputs.vae, ['4', 2], 'resolved through the reroute');
  assert.ok(!Object.values(prompt).some((n) => n.class_type === 'Note' || n.class_type === 'Reroute'));
});

test(
  'the workflow has a name and an unsaved marker; Ctrl+S saves it on the server under a name',
  { skip },
  async () => {
    assert.match((await h.page.textContent('[data-testid=workflow-name]')) ?? '', /Unsaved workflow/);
    assert.equal(await h.page.locator('[data-testid=unsaved]').count(), 1, 'edited above: modified');
    await h.page.mouse.click(...(await emptyPoint(h.page)));
    await h.page.keyboard.press('Control+s');
    await h.page.locator('[data-testid=save-dialog]').waitFor();
    await h.page.keyboard.type('my fox');
    await h.page.keyboard.press('Enter');
    await h.page.locator('[data-testid=save-dialog]').waitFor({ state: 'detached' });
    await h.page.locator('[data-testid=unsaved]').waitFor({ state: 'detached' });
    assert.match((await h.page.textContent('[data-testid=workflow-name]')) ?? '', /^my fox$/);
    const onServer = (await (await h.api(`/userdata/${encodeURIComponent('workflows/my fox.json')}`)).json()) as {
      nodes: { type: string }[];
    };
    assert.equal(onServer.nodes.length, await ev<number>(`window.__tcd.graph._nodes.length`));
    // an edit marks it again; Ctrl+S inside a prompt saves under the same name without asking
    await h.page.locator('textarea.node-textarea[data-node="6"]').click({ position: { x: 20, y: 20 } });
    await h.page.keyboard.press('Control+a');
    await h.page.keyboard.type('a saved fox');
    await h.page.locator('[data-testid=unsaved]').waitFor();
    await h.page.keyboard.press('Control+s');
    await h.page.locator('[data-testid=unsaved]').waitFor({ state: 'detached' });
    await eventually(() => h.page.locator('[data-testid=save-dialog]').count(), 0);
    const again = (await (await h.api(`/userdata/${encodeURIComponent('workflows/my fox.json')}`)).json()) as {
      nodes: { id: number; widgets_values: unknown[] }[];
    };
    assert.equal(again.nodes.find((n) => n.id === 6)!.widgets_values[0], 'a saved fox');
    // name and saved state survive a reload; the saved workflow opens from the Templates dialog
    await h.page.reload();
    await waitForEditor(h.page);
    assert.match((await h.page.textContent('[data-testid=workflow-name]')) ?? '', /^my fox$/);
    await openTemplate(h.page, 'default.json');
    await openSaved(h.page, 'my fox');
    await h.page.waitForFunction(() => (window as any).__tcd.editor.nodeById(6)?.widgets[0].value === 'a saved fox');
    assert.match((await h.page.textContent('[data-testid=workflow-name]')) ?? '', /^my fox$/);
    await eventually(() => h.page.locator('[data-testid=unsaved]').count(), 0);
    await eventually(() => h.page.title(), 'my fox - tcd-studio');
  },
);

test('batch count queues N prompts; Queue (front) jumps the line; the tab title shows progress', { skip }, async () => {
  // every prompt id the server knows (queued, running, done)
  const ids = async () => {
    const q = (await (await h.api('/queue')).json()) as {
      queue_running: [number, string][];
      queue_pending: [number, string][];
    };
    return new Set(
      [...q.queue_running, ...q.queue_pending]
        .map((i) => i[1])
        .concat(Object.keys(await (await h.api('/history')).json())),
    );
  };
  const waitNew = async (known: Set<string>, n: number) => {
    for (const deadline = Date.now() + WAIT; ;) {
      const fresh = [...(await ids())].filter((x) => !known.has(x));
      if (fresh.length >= n) return fresh;
      assert.ok(Date.now() < deadline, `${n} new prompts queued`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const known = await ids();
  const before = Object.keys(await (await h.api('/history')).json()).length;
  await h.page.fill('[data-testid=batch-count]', '3');
  await h.page.click('[data-testid=queue-button]');
  const batch = await waitNew(known, 3);
  await h.page.fill('[data-testid=batch-count]', '1');
  await h.page.click('[data-testid=queue-front]');
  const front = (await waitNew(new Set([...known, ...batch]), 1))[0];
  await h.page.waitForFunction(() => /^\[\d+%\] /.test(document.title), null, { timeout: RUN });
  for (
    const deadline = Date.now() + 4 * RUN;
    Object.keys(await (await h.api('/history')).json()).length < before + 4;
  ) {
    assert.ok(Date.now() < deadline, 'four runs finished');
    await new Promise((r) => setTimeout(r, 250));
  }
  type E = {
    prompt: [number, string, Record<string, { inputs: { seed?: number } }>];
    status: { messages: [string, { timestamp: number }][] };
  };
  const hist = (await (await h.api('/history')).json()) as Record<string, E>;
  const done = (id: string) => Math.max(...hist[id].status.messages.map((m) => m[1].timestamp));
  assert.equal(batch.length, 3);
  assert.ok(hist[front] && batch.every((b) => hist[b]), JSON.stringify({ keys: Object.keys(hist), batch, front }));
  assert.ok(
    batch.some((b) => done(front) < done(b)),
    'the front prompt ran before a batch prompt queued earlier',
  );
  const seeds = new Set(
    Object.values(hist)
      .slice(-4)
      .map((e) => e.prompt[2]['3'].inputs.seed),
  );
  assert.equal(seeds.size, 4, 'each queued prompt got its own seed (randomize)');
  await h.page.waitForFunction(() => !/^\[/.test(document.title));
  // randomize moved the seed after queueing: the workflow is modified
  await eventually(() => h.page.title(), '*my fox - tcd-studio');
});

test('a favicon; no "Convert to Subgraph" in the canvas or node menus', { skip }, async () => {
  const href = await h.page.$eval('link[rel=icon]', (l) => (l as HTMLLinkElement).href);
  const icon = await fetch(href);
  assert.equal(icon.status, 200);
  assert.match(icon.headers.get('content-type') ?? '', /svg/);
  await h.page.mouse.click(...(await nodePoint(h.page, 6, 60, -15)));
  await h.page.keyboard.down('Shift');
  await h.page.mouse.click(...(await nodePoint(h.page, 7, 60, -15)));
  await h.page.keyboard.up('Shift');
  await h.page.mouse.click(...(await emptyPoint(h.page, 80)), { button: 'right' });
  await h.page.locator('.litecontextmenu').first().waitFor();
  const canvasMenu = await menuEntries(h.page);
  assert.ok(canvasMenu.includes('Add Node'), canvasMenu.join(', '));
  assert.ok(!canvasMenu.some((e) => /Subgraph/.test(e)), canvasMenu.join(', '));
  await h.page.keyboard.press('Escape');
  await h.page.mouse.click(...(await emptyPoint(h.page, 80)));
  await h.page.mouse.click(...(await nodePoint(h.page, 6, 60, -15)), { button: 'right' });
  await h.page.locator('.litecontextmenu').first().waitFor();
  const nodeMenu = await menuEntries(h.page);
  assert.ok(nodeMenu.length > 3 && !nodeMenu.some((e) => /Subgraph/.test(e)), nodeMenu.join(', '));
  await h.page.keyboard.press('Escape');
});
