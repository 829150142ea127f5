// Running from the browser against the real server, which requires an access token: the token dialog (wrong token
// refused, right one kept across reloads), queue -> live preview on the sampler and output image on SaveImage and
// in the gallery, drop the generated PNG to get its workflow back, queue panel cancel, validation errors on the node,
// a widget converted to an input and driven by a Primitive node, websocket reconnect with catch-up.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  browserSkip,
  dblclickUntil,
  eventually,
  menuClick,
  menuEntries,
  nodePoint,
  RUN_WAIT,
  shot,
  slotPoint,
  startHarness,
  WAIT,
  waitForEditor,
  type Harness,
} from './harness.js';

const skip = browserSkip();
if (skip) console.log(`# browser tests skipped: ${skip}`);
let h: Harness;
const ev = <T>(fn: string): Promise<T> => h.page.evaluate(fn) as Promise<T>;

const TOKEN = 'SECRET-tcd-7f3a';
before(async () => {
  if (!skip) h = await startHarness({ token: TOKEN, waitForEditor: false });
});
after(async () => {
  await h?.close();
});

const RUN_TIMEOUT = RUN_WAIT;

/** Draws the canvas now and measures the sampler's preview panel: on-screen size and luma spread of its pixels. */
const PREVIEW_PROBE = `(() => {
  const t = window.__tcd, img = t.runtime.previews.get('3');
  if (!img) return null;
  t.canvas.draw(true, true);
  const n = t.editor.nodeById(3), [x, y, w, h] = t.previewRect(3), ds = t.canvas.ds;
  const [cx, cy] = ds.convertOffsetToCanvas([n.pos[0] + x, n.pos[1] + y + 18]);
  const cw = Math.floor(w * ds.scale), ch = Math.floor((h - 18) * ds.scale);
  const px = t.canvas.canvas.getContext('2d').getImageData(Math.floor(cx), Math.floor(cy), cw, ch).data;
  let sum = 0, sq = 0, k = 0;
  for (let i = 0; i < px.length; i += 4) { const l = 0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2]; sum += l; sq += l * l; k++; }
  const mean = sum / k;
  return { size: [w, h], nodeWidth: n.size[0], onScreen: [w * ds.scale, h * ds.scale], std: Math.sqrt(sq / k - mean * mean), natural: [img.naturalWidth, img.naturalHeight] };
})()`;

test(
  'the server wants a token: the editor asks once, refuses a wrong one, keeps the right one across reloads',
  { skip },
  async () => {
    await h.page.waitForSelector('[data-testid=token-dialog]', { timeout: WAIT });
    assert.equal((await h.api('/object_info', { headers: { Authorization: 'Bearer nope' } })).status, 401);
    await shot(h.page, '16-token-dialog');
    await h.page.fill('[data-testid=token-dialog] input', 'wrong-token');
    await h.page.press('[data-testid=token-dialog] input', 'Enter');
    await h.page.waitForSelector('[data-testid=token-error]', { timeout: WAIT });
    assert.match((await h.page.textContent('[data-testid=token-error]')) ?? '', /refused/);
    assert.equal(
      await ev<string | null>(`localStorage.getItem('tcd-studio.token')`),
      null,
      'a refused token is not kept',
    );
    await shot(h.page, '17-token-refused');
    await h.page.fill('[data-testid=token-dialog] input', TOKEN);
    await h.page.press('[data-testid=token-dialog] input', 'Enter');
    await waitForEditor(h.page);
    await eventually(() => h.page.locator('[data-testid=token-dialog]').count(), 0);
    assert.equal(await ev<string | null>(`localStorage.getItem('tcd-studio.token')`), TOKEN);
    // a reload goes straight to the editor: every request carries the kept token, none is refused, no dialog
    const refused: string[] = [];
    const onResponse = (r: { status(): number; url(): string }) => {
      if (r.status() === 401) refused.push(r.url());
    };
    h.page.on('response', onResponse);
    await h.page.reload();
    await waitForEditor(h.page);
    h.page.off('response', onResponse);
    assert.deepEqual(refused, []);
    await eventually(() => h.page.locator('[data-testid=token-dialog]').count(), 0);
  },
);

test('Queue runs the default graph; the image shows on SaveImage and in the gallery', { skip }, async () => {
  const seedBefore = await ev<number>(`window.__tcd.editor.nodeById(3).widgets[0].value`);
  await h.page.click('[data-testid=queue-button]');
  await h.page.waitForFunction(
    () => {
      const imgs = (window as any).__tcd.runtime.images.get('9');
      return imgs?.length > 0 && imgs[0].complete && imgs[0].naturalWidth > 0;
    },
    null,
    { timeout: RUN_TIMEOUT },
  );
  const [w, hgt, src] = await ev<[number, number, string]>(
    `(() => { const i = window.__tcd.runtime.images.get('9')[0]; return [i.naturalWidth, i.naturalHeight, i.src]; })()`,
  );
  assert.equal(w, 512);
  assert.equal(hgt, 512);
  assert.match(src, /\/view\?filename=tcd-studio_\d{5}_\.png/);
  // the image was fetched with the token (<img> cannot send headers); without it /view refuses
  assert.equal(new URL(src).searchParams.get('token'), TOKEN);
  const bare = new URL(src);
  bare.searchParams.delete('token');
  assert.equal((await fetch(bare)).status, 401);
  // the sampler's last live preview stays up in a panel reserved below the node, big enough to read
  const preview = await ev<{
    size: number[];
    nodeWidth: number;
    onScreen: number[];
    std: number;
    natural: number[];
  } | null>(PREVIEW_PROBE);
  assert.ok(preview, 'a live preview reached the sampler');
  // at least 256 graph units square and as wide as the node (it used to get the ~30 units left under the widgets)
  assert.ok(
    preview.size[0] >= Math.max(256, preview.nodeWidth) && preview.size[1] >= 256,
    `preview panel: ${preview.size}`,
  );
  assert.ok(preview.std > 8, `the panel shows an image, not a flat fill (luma std ${preview.std.toFixed(1)})`);
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
  await h.page.evaluate(() => {
    const t = (window as any).__tcd;
    t.graph.remove(t.editor.nodeById(6));
    t.editor.checkpoint();
  });
  assert.equal(await ev<number>(`window.__tcd.graph._nodes.length`), 6);
  await h.page.evaluate(async (url) => {
    const blob = await (await fetch(url)).blob();
    const dt = new DataTransfer();
    dt.items.add(new File([blob], 'generated.png', { type: 'image/png' }));
    document
      .querySelector('[data-testid=canvas-wrap]')!
      .dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, src);
  await h.page.waitForFunction(() => (window as any).__tcd.graph._nodes.length === 7);
  const types = await ev<string[]>(`window.__tcd.graph._nodes.map((n) => n.type).sort()`);
  assert.deepEqual(types, [
    'CLIPTextEncode',
    'CLIPTextEncode',
    'CheckpointLoaderSimple',
    'EmptyLatentImage',
    'SaveImage',
    'TCDSampler',
    'VAEDecode',
  ]);
  await shot(h.page, '11-png-dropped');
});

test('the queue panel lists a pending prompt and cancels it', { skip }, async () => {
  // Three queued prompts (randomized seeds, so none is cached): the last waits behind the first.
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push(await h.page.evaluate(() => (window as any).__tcd.session.queue()));
  const last = ids[2];
  assert.ok(last, 'queued');
  const sel = `[data-testid=queue-panel] .queue-item.pending[data-prompt-id="${last}"]`;
  await h.page.waitForSelector(sel, { timeout: WAIT });
  await shot(h.page, '12-queue-pending');
  await h.page.click(`${sel} button.cancel`);
  await h.page.waitForSelector(sel, { state: 'detached', timeout: WAIT });
  const q = (await (await h.api('/queue')).json()) as { queue_pending: unknown[][]; queue_running: unknown[][] };
  assert.ok(
    ![...q.queue_pending, ...q.queue_running].some((item) => item[1] === last),
    'cancelled prompt is gone from /queue',
  );
  // let the others finish so later tests start idle
  await h.page.waitForFunction(
    () =>
      (window as any).__tcd.session.queueRunning.length === 0 &&
      (window as any).__tcd.session.queuePending.length === 0,
    null,
    { timeout: RUN_TIMEOUT * 2 },
  );
});

test('a validation error marks the node and input with the server message', { skip }, async () => {
  await h.page.evaluate(() => {
    const ed = (window as any).__tcd.editor;
    ed.nodeById(4).widgets[0].value = 'missing.safetensors';
  });
  const id = await h.page.evaluate(() => (window as any).__tcd.session.queue());
  assert.equal(id, null);
  const err = await ev<{ message: string; inputs: Record<string, string> }>(`window.__tcd.runtime.errors.get('4')`);
  assert.ok(err, 'node 4 marked');
  assert.ok('ckpt_name' in err.inputs, JSON.stringify(err));
  assert.match(err.inputs.ckpt_name, /missing\.safetensors|not in list/i);
  await h.page.waitForSelector('[data-testid=messages] pre.error');
  await shot(h.page, '13-validation-error');
  await h.page.evaluate(() => {
    const ed = (window as any).__tcd.editor;
    ed.nodeById(4).widgets[0].value = 'tcd-studio-demo-sdxl.safetensors';
  });
});

test(
  'Convert seed to input, a Primitive drives it, the workflow queues with its value; Convert seed to widget undoes it',
  { skip },
  async () => {
    const seedSlot = await ev<number>(
      `window.__tcd.editor.nodeById(3).inputs.findIndex((i) => i.widget?.name === 'seed')`,
    );
    assert.ok(seedSlot >= 0);
    // node context menu -> Convert Widget to Input -> Convert seed to input
    await h.page.mouse.click(...(await nodePoint(h.page, 3, 80, -15)), { button: 'right' });
    await menuClick(h.page, 'Convert Widget to Input');
    const entries = await menuEntries(h.page);
    assert.ok(
      entries.includes('Convert seed to input') && entries.includes('Convert steps to input'),
      entries.join(', '),
    );
    assert.ok(
      !entries.some((e) => e.includes('control_after_generate')),
      'the seed control is not convertible by itself',
    );
    await menuClick(h.page, 'Convert seed to input');
    const hidden = await ev<Record<string, boolean>>(
      `Object.fromEntries(window.__tcd.editor.nodeById(3).widgets.map((w) => [w.name, !!w.hidden]))`,
    );
    assert.equal(hidden.seed, true);
    assert.equal(hidden.control_after_generate, true);
    assert.equal(hidden.steps, false);
    // double-click the seed socket: a Primitive node appears, linked, with the seed's widget and value
    const seedValue = await ev<number>(`window.__tcd.editor.nodeById(3).widgets[0].value`);
    // the socket moves when the widget hides: aimed after the canvas redrew, again if a busy machine stretched the
    // double-click
    const hasPrimitive = () =>
      h.page.evaluate(() => (window as any).__tcd.graph._nodes.some((n: any) => n.type === 'PrimitiveNode'));
    await dblclickUntil(h.page, () => slotPoint(h.page, 3, 'input', seedSlot), hasPrimitive);
    assert.ok(await hasPrimitive(), 'double-clicking the converted seed socket adds a linked Primitive node');
    const prim = await ev<{ id: number; type: string; widgets: [string, unknown][]; linked: boolean }>(`(() => {
    const p = window.__tcd.graph._nodes.find((n) => n.type === 'PrimitiveNode');
    return { id: p.id, type: p.outputs[0].type, widgets: p.widgets.map((w) => [w.name, w.value]), linked: p.outputs[0].links.length === 1 };
  })()`);
    assert.equal(prim.type, 'INT');
    assert.deepEqual(
      prim.widgets.map((w) => w[0]),
      ['value', 'control_after_generate'],
    );
    assert.equal(prim.widgets[0][1], seedValue);
    assert.ok(prim.linked);
    // a fixed-by-hand value, advanced by +1 after each queue
    await h.page.evaluate((id) => {
      const t = (window as any).__tcd,
        p = t.editor.nodeById(id);
      p.widgets[0].value = 123456;
      p.widgets[1].value = 'increment';
      t.editor.checkpoint();
    }, prim.id);
    // UI format: the seed input carries widget {name} and the link from the primitive
    const wf = await ev<{ nodes: any[]; links: any[] }>(`window.__tcd.editor.serialize()`);
    const seedInput = wf.nodes.find((n) => n.id === 3).inputs.find((i: any) => i.name === 'seed');
    assert.deepEqual(seedInput.widget, { name: 'seed' });
    const link = wf.links.find((l) => l[0] === seedInput.link);
    assert.deepEqual([link[1], link[3], link[5]], [prim.id, 3, 'INT']);
    // both converters resolve the primitive away: the client's and the server's give the same prompt
    const local =
      await ev<Record<string, { class_type: string; inputs: Record<string, unknown> }>>(`window.__tcd.toPrompt()`);
    assert.equal(local['3'].inputs.seed, 123456);
    assert.equal(local[String(prim.id)], undefined);
    const conv = (await (await h.api('/workflow/convert', { method: 'POST', body: JSON.stringify(wf) })).json()) as {
      prompt: typeof local;
    };
    const strip = (p: typeof local) =>
      Object.fromEntries(Object.entries(p).map(([k, v]) => [k, { class_type: v.class_type, inputs: v.inputs }]));
    assert.deepEqual(strip(conv.prompt), strip(local));
    await shot(h.page, '18-widget-converted');
    // Queue: runs with 123456, then the primitive's control advances it to 123457
    await h.page.click('[data-testid=queue-button]');
    await h.page.waitForFunction(
      (id) => (window as any).__tcd.editor.nodeById(id).widgets[0].value === 123457,
      prim.id,
    );
    const id = await ev<string>(`window.__tcd.session.lastPromptId`);
    const deadline = Date.now() + RUN_TIMEOUT;
    let entry: {
      prompt: [number, string, Record<string, { inputs: Record<string, unknown> }>];
      status: { completed: boolean };
      outputs: Record<string, { images?: unknown[] }>;
    };
    for (;;) {
      entry = ((await (await h.api(`/history/${id}`)).json()) as Record<string, typeof entry>)[id];
      if (entry?.status?.completed) break;
      assert.ok(Date.now() < deadline, 'run finished');
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(entry.prompt[2]['3'].inputs.seed, 123456);
    assert.equal(entry.outputs['9'].images?.length, 1);
    // the conversion and the primitive survive a reload
    await h.page.reload();
    await waitForEditor(h.page);
    assert.deepEqual(await ev(`window.__tcd.editor.nodeById(3).properties.converted_widgets`), ['seed']);
    assert.deepEqual(await ev(`window.__tcd.editor.nodeById(${prim.id}).widgets.map((w) => w.value)`), [
      123457,
      'increment',
    ]);
    assert.equal(await ev(`window.__tcd.toPrompt()['3'].inputs.seed`), 123457);
    // Convert seed to widget: the link goes, the widget is back and drives the prompt again
    await h.page.mouse.click(...(await nodePoint(h.page, 3, 80, -15)), { button: 'right' });
    await menuClick(h.page, 'Convert seed to widget');
    assert.equal(await ev(`window.__tcd.editor.nodeById(3).inputs[${seedSlot}].link`), null);
    assert.equal(await ev(`window.__tcd.editor.nodeById(3).widgets[0].hidden`), false);
    assert.equal(await ev(`window.__tcd.editor.nodeById(3).properties.converted_widgets`), undefined);
    assert.equal(await ev(`window.__tcd.toPrompt()['3'].inputs.seed`), seedValue);
    await h.page.evaluate((pid) => {
      const t = (window as any).__tcd;
      t.graph.remove(t.editor.nodeById(pid));
      t.editor.checkpoint();
    }, prim.id);
  },
);

test('the websocket reconnects by itself and catches up on missed events', { skip }, async () => {
  // 1. a dropped socket reconnects on its own, and the indicator says so meanwhile
  await h.page.evaluate(() => (window as any).__tcd.socket.drop());
  await h.page.waitForSelector('[data-testid=connection].reconnecting', { timeout: WAIT });
  await h.page.waitForSelector('[data-testid=connection].open', { timeout: WAIT });
  // 2. a whole run happens while the socket is down: its events arrive by replay (since=seq) after reconnecting
  const seq0 = await ev<number | null>(`window.__tcd.socket.lastSeq`);
  assert.equal(typeof seq0, 'number', 'server sends seq');
  const before = await ev<string>(`window.__tcd.runtime.images.get('9')?.[0]?.src ?? ''`);
  const id = await h.page.evaluate(() => {
    const t = (window as any).__tcd;
    t.socket.close();
    return t.session.queue();
  });
  assert.ok(id);
  const deadline = Date.now() + RUN_TIMEOUT;
  for (;;) {
    const hist = (await (await h.api(`/history/${id}`)).json()) as Record<string, { status?: { completed?: boolean } }>;
    if (hist[id]?.status?.completed) break;
    assert.ok(Date.now() < deadline, 'run finished');
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.equal(
    await ev<string>(`window.__tcd.runtime.images.get('9')?.[0]?.src ?? ''`),
    before,
    'nothing arrived while disconnected',
  );
  await h.page.evaluate(() => (window as any).__tcd.socket.connect());
  await h.page.waitForFunction(
    (b) => {
      const s = (window as any).__tcd.runtime.images.get('9')?.[0]?.src;
      return s && s !== b;
    },
    before,
    { timeout: WAIT },
  );
  const log = await ev<string[]>(`window.__tcd.socket.log`);
  assert.ok(
    log.some((l) => /^executed#\d+$/.test(l)),
    log.join(' '),
  );
  assert.ok((await ev<number>(`window.__tcd.socket.lastSeq`)) > seq0!);
  const gallery = await ev<string[]>(`window.__tcd.session.gallery.map((g) => g.url)`);
  assert.equal(new Set(gallery).size, gallery.length, 'no duplicate gallery entries');
  await shot(h.page, '14-reconnected');
});
