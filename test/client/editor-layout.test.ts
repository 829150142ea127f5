// The editor in a 1280x800 window (a common laptop), first visit: the default graph is seen whole, Save Image
// included, at a zoom where widgets still show their text; the toolbar is one row whose labels do not break, and the
// unsaved marker stays in view. Narrower windows wrap the toolbar onto a second row rather than hiding controls.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Page } from 'playwright-core';
import { browserSkip, eventually, startHarness, waitForEditor, WAIT, type Harness } from './harness.js';

const skip = browserSkip();
if (skip) console.log(`# browser tests skipped: ${skip}`);
let h: Harness;
let page: Page;

before(async () => {
  if (skip) return;
  h = await startHarness({ waitForEditor: false });
  await h.page.close();
  // a context of its own: no autosaved workflow, so this is a first visit
  page = await (await h.browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  page.setDefaultTimeout(WAIT);
  await page.goto(h.url);
  await waitForEditor(page);
});
after(async () => {
  await h?.close();
});

type Box = { left: number; top: number; right: number; bottom: number };
const box = (sel: string) =>
  page.locator(sel).evaluate((e) => {
    const r = e.getBoundingClientRect();
    return { left: r.left, top: r.top, right: r.right, bottom: r.bottom };
  });

test('first visit at 1280x800: the whole default graph is in view, widget text still drawn', { skip }, async () => {
  await page.locator('aside.side').waitFor();
  // string, not a function: tsx would wrap inner arrow functions in a __name() helper the page lacks
  const view = async () =>
    (await page.evaluate(`(() => {
      const { editor, canvas, graph } = window.__tcd, r = editor.el.getBoundingClientRect();
      const out = graph._nodes.filter((n) => {
        const a = editor.toClient([n.pos[0], n.pos[1] - 30]), b = editor.toClient([n.pos[0] + n.size[0], n.pos[1] + n.size[1]]);
        return a[0] < r.left || a[1] < r.top || b[0] > r.right || b[1] > r.bottom;
      }).map((n) => n.type);
      return { out, lowQuality: canvas.low_quality };
    })()`)) as { out: string[]; lowQuality: boolean };
  await eventually(view, { out: [], lowQuality: false }, 'every node inside the canvas, drawn in full');
  const scale = await page.evaluate(() => (window as any).__tcd.canvas.ds.scale as number);
  assert.ok(scale <= 0.8, `never zoomed in past the stored view: ${scale}`);
  await page.screenshot({ path: 'test-output/screenshots/layout-1280-first-visit.png' });
});

/** Toolbar controls whose label broke onto a second line, or that reach past the window's right edge. */
const brokenControls = async (width: number) =>
  (await page.evaluate(`[...document.querySelectorAll('.toolbar > *')]
    .filter((e) => {
      const walk = document.createTreeWalker(e, NodeFilter.SHOW_TEXT), range = document.createRange();
      let broken = false;
      for (let t = walk.nextNode(); t; t = walk.nextNode()) {
        range.selectNodeContents(t);
        const tops = [...range.getClientRects()].filter((l) => l.width > 0).map((l) => Math.round(l.top));
        broken ||= new Set(tops).size > 1;
      }
      const r = e.getBoundingClientRect();
      return r.width > 0 && (broken || r.right > ${width}); // (the hidden file input and spacer have no width)
    })
    .map((e) => e.textContent)`)) as string[];

test('the toolbar is one row of unbroken labels; the unsaved marker is not cut off', { skip }, async () => {
  assert.deepEqual(await brokenControls(1280), []);
  const bar = await box('.toolbar');
  assert.ok(bar.bottom - bar.top < 45, `one row: ${bar.bottom - bar.top}px high`);
  // an edit marks the workflow modified: the marker shows right after the (maybe shortened) name
  await page.click('[data-testid=queue-button]');
  const marker = page.locator('[data-testid=unsaved]');
  await marker.waitFor();
  const name: Box = await box('[data-testid=workflow-name]');
  const dot: Box = await box('[data-testid=unsaved]');
  assert.ok(dot.right - dot.left > 4, 'the marker has a width');
  assert.ok(
    dot.left >= name.left && dot.right <= name.right,
    `marker inside the name's box: ${JSON.stringify([dot, name])}`,
  );
  await page.screenshot({
    path: 'test-output/screenshots/layout-1280-toolbar.png',
    clip: { x: 0, y: 0, width: 1280, height: 60 },
  });
});

test('at 960 px the toolbar wraps whole controls; none is cut off', { skip }, async () => {
  await page.setViewportSize({ width: 960, height: 700 });
  await eventually(() => brokenControls(960), []);
  await page.locator('[data-testid=panel-toggle]').click({ trial: true }); // reachable, not covered
});
