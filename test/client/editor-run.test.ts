// Running from the browser against the real server: queue -> output image on SaveImage and in the gallery,
// drop the generated PNG to get its workflow back, queue panel cancel, validation errors on the node,
// websocket reconnect with catch-up.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { browserSkip, shot, startHarness, type Harness } from './harness.js';

const skip = browserSkip();
if (skip) console.log(`# browser tests skipped: ${skip}`);
let h: Harness;
const ev = <T>(fn: string): Promise<T> => h.page.evaluate(fn) as Promise<T>;

before(async () => { if (!skip) h = await startHarness(); });
after(async () => { await h?.close(); });

const RUN_TIMEOUT = 45_000;

test('Queue runs the default graph; the image shows on SaveImage and in the gallery', { skip }, async () => {
  const seedBefore = await ev<number>(`window.__tcd.editor.nodeById(3).widgets[0].value`);
  await h.page.click('[data-testid=queue-button]');
  await h.page.waitForFunction(() => {
    const imgs = (window as any).__tcd.runtime.images.get('9');
    return imgs?.length > 0 && imgs[0].complete && imgs[0].naturalWidth > 0;
  }, null, { timeout: RUN_TIMEOUT });
  const [w, hgt, src] = await ev<[number, number, string]>(`(() => { const i = window.__tcd.runtime.images.get('9')[0]; return [i.naturalWidth, i.naturalHeight, i.src]; })()`);
  assert.equal(w, 512);
  assert.equal(hgt, 512);
  assert.match(src, /\/view\?filename=tcd-studio_\d{5}_\.png/);
  await h.page.waitForSelector('[data-testid=gallery] img');
  // control_after_generate=randomize moved the seed after queueing
  assert.notEqual(await ev<number>(`window.__tcd.editor.nodeById(3).widgets[0].value`), seedBefore);
  await shot(h.page, '10-output-image');
});

test('dropping the generated PNG restores the workflow it was made with', { skip }, async () => {
  const src = await ev<string>(`window.__tcd.runtime.images.get('9')[0].src`);
  const embeddedSeed = await h.page.evaluate(async (url) => {
    const r = await fetch(url);
    return (await r.arrayBuffer()).byteLength;
  }, src);
  assert.ok(embeddedSeed > 1000);
  // wreck the graph, then drop the PNG
  await h.page.evaluate(() => { const t = (window as any).__tcd; t.graph.remove(t.editor.nodeById(6)); t.editor.checkpoint(); });
  assert.equal(await ev<number>(`window.__tcd.graph._nodes.length`), 6);
  await h.page.evaluate(async (url) => {
    const blob = await (await fetch(url)).blob();
    const dt = new DataTransfer();
    dt.items.add(new File([blob], 'generated.png', { type: 'image/png' }));
    document.querySelector('[data-testid=canvas-wrap]')!.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, src);
  await h.page.waitForFunction(() => (window as any).__tcd.graph._nodes.length === 7);
  const types = await ev<string[]>(`window.__tcd.graph._nodes.map((n) => n.type).sort()`);
  assert.deepEqual(types, ['CLIPTextEncode', 'CLIPTextEncode', 'CheckpointLoaderSimple', 'EmptyLatentImage', 'SaveImage', 'TCDSampler', 'VAEDecode']);
  await shot(h.page, '11-png-dropped');
});

test('the queue panel lists a pending prompt and cancels it', { skip }, async () => {
  // Three queued prompts (randomized seeds, so none is cached): the last waits behind the first.
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push(await h.page.evaluate(() => (window as any).__tcd.session.queue()));
  const last = ids[2];
  assert.ok(last, 'queued');
  const sel = `[data-testid=queue-panel] .queue-item.pending[data-prompt-id="${last}"]`;
  await h.page.waitForSelector(sel, { timeout: 10_000 });
  await shot(h.page, '12-queue-pending');
  await h.page.click(`${sel} button.cancel`);
  await h.page.waitForSelector(sel, { state: 'detached', timeout: 10_000 });
  const q = await (await fetch(`${h.url}api/queue`)).json() as { queue_pending: unknown[][]; queue_running: unknown[][] };
  assert.ok(![...q.queue_pending, ...q.queue_running].some((item) => item[1] === last), 'cancelled prompt is gone from /queue');
  // let the others finish so later tests start idle
  await h.page.waitForFunction(() => (window as any).__tcd.session.queueRunning.length === 0 && (window as any).__tcd.session.queuePending.length === 0, null, { timeout: RUN_TIMEOUT * 2 });
});

test('a validation error marks the node and input with the server message', { skip }, async () => {
  await h.page.evaluate(() => { const ed = (window as any).__tcd.editor; ed.nodeById(4).widgets[0].value = 'missing.safetensors'; });
  const id = await h.page.evaluate(() => (window as any).__tcd.session.queue());
  assert.equal(id, null);
  const err = await ev<{ message: string; inputs: Record<string, string> }>(`window.__tcd.runtime.errors.get('4')`);
  assert.ok(err, 'node 4 marked');
  assert.ok('ckpt_name' in err.inputs, JSON.stringify(err));
  assert.match(err.inputs.ckpt_name, /missing\.safetensors|not in list/i);
  await h.page.waitForSelector('[data-testid=messages] pre.error');
  await shot(h.page, '13-validation-error');
  await h.page.evaluate(() => { const ed = (window as any).__tcd.editor; ed.nodeById(4).widgets[0].value = 'tcd-studio-demo-sdxl.safetensors'; });
});

test('the websocket reconnects by itself and catches up on missed events', { skip }, async () => {
  // 1. a dropped socket reconnects on its own, and the indicator says so meanwhile
  await h.page.evaluate(() => (window as any).__tcd.socket.drop());
  await h.page.waitForSelector('[data-testid=connection].reconnecting', { timeout: 5_000 });
  await h.page.waitForSelector('[data-testid=connection].open', { timeout: 15_000 });
  // 2. a whole run happens while the socket is down: its events arrive by replay (since=seq) after reconnecting
  const seq0 = await ev<number | null>(`window.__tcd.socket.lastSeq`);
  assert.equal(typeof seq0, 'number', 'server sends seq');
  const before = await ev<string>(`window.__tcd.runtime.images.get('9')?.[0]?.src ?? ''`);
  const id = await h.page.evaluate(() => { const t = (window as any).__tcd; t.socket.close(); return t.session.queue(); });
  assert.ok(id);
  const deadline = Date.now() + RUN_TIMEOUT;
  for (;;) {
    const hist = await (await fetch(`${h.url}api/history/${id}`)).json() as Record<string, { status?: { completed?: boolean } }>;
    if (hist[id]?.status?.completed) break;
    assert.ok(Date.now() < deadline, 'run finished');
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal(await ev<string>(`window.__tcd.runtime.images.get('9')?.[0]?.src ?? ''`), before, 'nothing arrived while disconnected');
  await h.page.evaluate(() => (window as any).__tcd.socket.connect());
  await h.page.waitForFunction((b) => { const s = (window as any).__tcd.runtime.images.get('9')?.[0]?.src; return s && s !== b; }, before, { timeout: 15_000 });
  const log = await ev<string[]>(`window.__tcd.socket.log`);
  assert.ok(log.some((l) => /^executed#\d+$/.test(l)), log.join(' '));
  assert.ok((await ev<number>(`window.__tcd.socket.lastSeq`)) > seq0!);
  const gallery = await ev<string[]>(`window.__tcd.session.gallery.map((g) => g.url)`);
  assert.equal(new Set(gallery).size, gallery.length, 'no duplicate gallery entries');
  await shot(h.page, '14-reconnected');
});
