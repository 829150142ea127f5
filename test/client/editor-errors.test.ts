// Errors readable (issue 17, point 6): node error text wraps within the node's width, the messages panel wraps long
// tokens, clearing the messages clears the marks on the nodes, a network failure says "server unreachable, retrying"
// (never "Failed to fetch"), and a prompt stopped by a server restart is reported with its number.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { editorForFile, eventually, openTemplate, RUN_WAIT, shot, WAIT, type Harness } from './harness.js';

let h: Harness;
const skip = editorForFile((started) => (h = started));
const ev = <T>(fn: string): Promise<T> => h.page.evaluate(fn) as Promise<T>;

/** Red error-text pixels (#ff6b6b) drawn below node `id`: inside its width, and to the right of it. */
const RED_PIXELS = (id: number) => `(() => {
  const t = window.__tcd, n = t.editor.nodeById(${id}), ds = t.canvas.ds;
  t.canvas.draw(true, true);
  const ctx = t.canvas.canvas.getContext('2d');
  const count = (gx0, gx1) => {
    const [x0, y0] = ds.convertOffsetToCanvas([n.pos[0] + gx0, n.pos[1] + n.size[1] + 4]);
    const [x1, y1] = ds.convertOffsetToCanvas([n.pos[0] + gx1, n.pos[1] + n.size[1] + 200]);
    const w = Math.max(1, Math.floor(x1 - x0)), h = Math.max(1, Math.floor(y1 - y0));
    const px = ctx.getImageData(Math.floor(x0), Math.floor(y0), w, h).data;
    let k = 0;
    for (let i = 0; i < px.length; i += 4) if (px[i] > 200 && px[i + 1] > 80 && px[i + 1] < 140 && px[i + 2] > 80 && px[i + 2] < 140) k++;
    return k;
  };
  return { inside: count(0, n.size[0]), right: count(n.size[0] + 6, n.size[0] + 400) };
})()`;

test('a validation error wraps inside the node; the messages panel wraps long tokens', { skip }, async () => {
  await openTemplate(h.page, 'tcd-sd15-txt2img.json');
  // a node far from others, so nothing else is drawn to its right
  await h.page.click('[data-testid=queue-button]');
  await h.page.locator('[data-testid=messages] pre.error').waitFor();
  assert.ok(await ev<boolean>(`window.__tcd.runtime.errors.has('1')`), 'the checkpoint loader is marked');
  const red = await ev<{ inside: number; right: number }>(RED_PIXELS(1));
  assert.ok(red.inside > 50, `error text drawn below the node: ${JSON.stringify(red)}`);
  assert.equal(red.right, 0, `no error text beyond the node's right edge: ${JSON.stringify(red)}`);
  const pre = h.page.locator('[data-testid=messages] pre.error').last();
  const [scroll, client] = await pre.evaluate((e) => [e.scrollWidth, e.clientWidth]);
  assert.ok(scroll <= client, `messages wrap: scrollWidth ${scroll} <= clientWidth ${client}`);
  await shot(h.page, 'p6-errors');
});

test('clearing the messages clears the error marks on the nodes', { skip }, async () => {
  await h.page.locator('[data-testid=messages]').getByRole('button', { name: 'clear' }).click();
  await eventually(() => h.page.locator('[data-testid=messages]').count(), 0);
  assert.equal(await ev<number>(`window.__tcd.runtime.errors.size`), 0);
  assert.equal((await ev<{ inside: number }>(RED_PIXELS(1))).inside, 0, 'no error text left on the canvas');
});

test(
  'with the server down, Queue says the server is unreachable and the indicator that it retries',
  { skip },
  async () => {
    await openTemplate(h.page, 'default.json');
    await h.restartServer({ down: true });
    await h.page.waitForSelector('[data-testid=connection].reconnecting', { timeout: WAIT });
    assert.equal(await h.page.textContent('[data-testid=connection]'), '◌ server unreachable, retrying…');
    await h.page.click('[data-testid=queue-button]');
    const msg = h.page.locator('[data-testid=messages] pre.error').last();
    await msg.waitFor();
    assert.equal(await msg.textContent(), 'Queue failed: server unreachable, retrying the connection');
    assert.doesNotMatch((await h.page.locator('[data-testid=messages]').textContent()) ?? '', /Failed to fetch/);
    await h.restartServer();
    await h.page.waitForSelector('[data-testid=connection].open', { timeout: WAIT });
    await h.page.locator('[data-testid=messages]').getByRole('button', { name: 'clear' }).click();
  },
);

test('a prompt stopped by a server restart is reported with its number', { skip }, async () => {
  await h.page.click('[data-testid=queue-button]');
  await h.page.waitForFunction(() => (window as any).__tcd.runtime.running === '3', null, { timeout: RUN_WAIT });
  const queued = await ev<string>(`window.__tcd.session.lastPromptId`);
  await h.restartServer({ signal: 'SIGKILL' });
  const msg = h.page.locator('[data-testid=messages] pre.error', { hasText: 'server restart' });
  await msg.waitFor({ timeout: WAIT });
  const entry = ((await (await h.api(`/history/${queued}`)).json()) as Record<string, { prompt: [number] }>)[queued];
  assert.equal(
    await msg.textContent(),
    `Prompt #${entry.prompt[0]} was stopped by a server restart: queue it again to re-run it.`,
  );
  const item = h.page.locator(`[data-testid=history-panel] li[data-prompt-id="${queued}"]`);
  // the history panel takes the error from the server's history a moment later
  const errored = new RegExp(`#${entry.prompt[0]} .*error`);
  await item.filter({ hasText: errored }).waitFor();
  assert.match((await item.textContent()) ?? '', errored);
  await shot(h.page, 'p6-restart');
});

test(
  'Interrupt leaves no request cancelled; with the server down it says it failed instead of nothing',
  { skip },
  async () => {
    await h.page.waitForSelector('[data-testid=connection].open', { timeout: WAIT });
    // the request ends either finished (its answer read) or failed (dropped unread: net::ERR_ABORTED)
    const isInterrupt = (r: { url(): string }) => r.url().endsWith('/api/interrupt');
    const ended = Promise.race([
      h.page.waitForEvent('requestfinished', isInterrupt).then(() => 'finished'),
      h.page.waitForEvent('requestfailed', isInterrupt).then((r) => `failed: ${r.failure()?.errorText}`),
    ]);
    await h.page.click('[data-testid=interrupt-button]');
    assert.equal(await ended, 'finished');

    await h.restartServer({ down: true });
    await h.page.waitForSelector('[data-testid=connection].reconnecting', { timeout: WAIT });
    await h.page.click('[data-testid=interrupt-button]');
    const msg = h.page.locator('[data-testid=messages] pre.error', { hasText: 'Interrupt failed' });
    await msg.waitFor();
    assert.equal(await msg.textContent(), 'Interrupt failed: server unreachable, retrying the connection');
    assert.deepEqual(
      h.log.filter((l) => /pageerror.*unreachable/.test(l)),
      [],
      'no unhandled rejection',
    );
    await h.restartServer();
    await h.page.waitForSelector('[data-testid=connection].open', { timeout: WAIT });
  },
);
