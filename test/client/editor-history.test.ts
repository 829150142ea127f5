// History (issue 17, point 3): the sidebar lists the server's /history with thumbnail, prompt text, seed, time and
// status; a thumbnail opens a lightbox with arrows; Load opens the workflow that made an image; Re-run queues it
// again; Delete removes it on the server; outputs stay on their nodes and in the gallery after a reload.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { editorForFile, eventually, RUN_WAIT, shot, WAIT, waitForEditor, type Harness } from './harness.js';

let h: Harness;
const skip = editorForFile((started) => (h = started));
const ev = <T>(fn: string): Promise<T> => h.page.evaluate(fn) as Promise<T>;
const RUN = RUN_WAIT;

const items = () => h.page.locator('[data-testid=history-panel] li.history-item');
type Hist = Record<string, { prompt: [number, string, Record<string, { inputs: Record<string, unknown> }>] }>;
const serverHistory = async () => (await h.api('/history')).json() as Promise<Hist>;

async function typePrompt(text: string): Promise<void> {
  // a locator click waits until the canvas has drawn the node and placed its textarea
  await h.page.locator('textarea.node-textarea[data-node="6"]').click({ position: { x: 20, y: 20 } });
  await h.page.keyboard.press('Control+a');
  await h.page.keyboard.type(text);
}

test(
  'two runs appear in the history sidebar with thumbnail, prompt text, seed, time and status',
  { skip },
  async () => {
    await typePrompt('first fox');
    await h.page.click('[data-testid=queue-button]');
    await items().first().locator('img').waitFor({ timeout: RUN });
    await typePrompt('second fox');
    await h.page.click('[data-testid=queue-button]');
    await h.page.waitForFunction(
      () => document.querySelectorAll('[data-testid=history-panel] li.history-item img').length === 2,
      null,
      { timeout: RUN },
    );
    const hist = await serverHistory();
    const seeds = Object.values(hist).map((e) => e.prompt[2]['3'].inputs.seed as number);
    const texts = await items().locator('.history-text').allTextContents();
    assert.deepEqual(texts, ['second fox', 'first fox'], 'newest first');
    const meta = await items().first().locator('.muted').first().textContent();
    assert.match(meta ?? '', new RegExp(`seed ${seeds[1]} · \\d\\d:\\d\\d:\\d\\d · success`));
    await eventually(() => h.page.locator('[data-testid=gallery] img').count(), 2);
    await shot(h.page, 'p3-history');
  },
);

test('a thumbnail opens the lightbox; arrows step through the images; Escape closes it', { skip }, async () => {
  const urls = await ev<string[]>(`window.__tcd.session.gallery.map((g) => g.url)`);
  await items().nth(1).locator('button.thumb').click();
  const big = h.page.locator('[data-testid=lightbox] img');
  await big.waitFor();
  await eventually(() => big.getAttribute('src'), urls[1]);
  await h.page.waitForFunction(
    () => (document.querySelector('[data-testid=lightbox] img') as HTMLImageElement).naturalWidth === 512,
  );
  await shot(h.page, 'p3-lightbox');
  await h.page.keyboard.press('ArrowRight');
  await eventually(() => big.getAttribute('src'), urls[0], 'wraps around');
  await h.page.keyboard.press('ArrowLeft');
  await eventually(() => big.getAttribute('src'), urls[1]);
  await h.page.getByRole('button', { name: 'previous' }).click();
  await eventually(() => big.getAttribute('src'), urls[0]);
  await h.page.keyboard.press('Escape');
  await eventually(() => h.page.locator('[data-testid=lightbox]').count(), 0);
});

test('Load opens the workflow that made an entry; Re-run queues it again; Delete removes it', { skip }, async () => {
  await typePrompt('something else');
  await items().nth(1).getByRole('button', { name: 'Load' }).click();
  await h.page.waitForFunction(() => (window as any).__tcd.editor.nodeById(6).widgets[0].value === 'first fox');
  assert.equal(await h.page.locator('textarea.node-textarea[data-node="6"]').inputValue(), 'first fox');
  const firstId = await items().nth(1).getAttribute('data-prompt-id');
  const firstSeed = (await serverHistory())[firstId!].prompt[2]['3'].inputs.seed;
  await items().nth(1).getByRole('button', { name: 'Re-run' }).click();
  await h.page.waitForFunction(
    () => document.querySelectorAll('[data-testid=history-panel] li.history-item').length === 3,
    null,
    { timeout: RUN },
  );
  const newest = (await serverHistory())[(await items().first().getAttribute('data-prompt-id'))!];
  assert.equal(newest.prompt[2]['6'].inputs.text, 'first fox');
  assert.equal(newest.prompt[2]['3'].inputs.seed, firstSeed, 'the same prompt, seed included');
  await items().nth(1).getByRole('button', { name: 'Delete' }).click();
  await h.page.waitForFunction(
    () => document.querySelectorAll('[data-testid=history-panel] li.history-item').length === 2,
  );
  const left = await serverHistory();
  assert.equal(Object.keys(left).length, 2);
  assert.ok(firstId! in left, 'the first run is still there');
});

test('after a reload the newest output is back on SaveImage and the gallery lists the history', { skip }, async () => {
  await h.page.reload();
  await waitForEditor(h.page);
  await h.page.waitForFunction(() => (window as any).__tcd.runtime.images.get('9')?.[0]?.naturalWidth === 512, null, {
    timeout: WAIT,
  });
  const hist = await serverHistory();
  const newestFile = (
    Object.values(hist).at(-1) as unknown as { outputs: Record<string, { images: { filename: string }[] }> }
  ).outputs['9'].images[0].filename;
  const src = await ev<string>(`window.__tcd.runtime.images.get('9')[0].src`);
  assert.equal(new URL(src).searchParams.get('filename'), newestFile);
  // one gallery entry per distinct file (a cached re-run lists the same file again)
  const distinct = new Set(
    Object.values(hist).flatMap((e) =>
      Object.values((e as unknown as { outputs: Record<string, { images: { filename: string }[] }> }).outputs).flatMap(
        (o) => o.images.map((i) => i.filename),
      ),
    ),
  );
  await h.page.waitForFunction(
    (n) => document.querySelectorAll('[data-testid=gallery] img').length === n,
    distinct.size,
  );
  await eventually(() => items().count(), 2);
});
