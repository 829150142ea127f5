// Workflow files as a ComfyUI user handles them: a workflow opened from a file (Open file, a dropped JSON) takes the
// file's name, and Ctrl+S then asks for a name instead of writing that graph over the workflow saved before it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  editorForFile,
  emptyPoint,
  eventually,
  openSaved,
  openTemplate,
  RUN_WAIT,
  shot,
  type Harness,
} from './harness.js';

let h: Harness;
const skip = editorForFile((started) => (h = started));
const ev = <T>(fn: string): Promise<T> => h.page.evaluate(fn) as Promise<T>;

const savedTypes = async (name: string): Promise<string[]> => {
  const res = await h.api(`/userdata/${encodeURIComponent(`workflows/${name}.json`)}`);
  assert.equal(res.status, 200, `workflows/${name}.json is on the server`);
  return ((await res.json()) as { nodes: { type: string }[] }).nodes.map((n) => n.type).sort();
};
const shownName = async () => (await h.page.textContent('[data-testid=workflow-name]'))?.replace(/\s*●$/, '');

/** Ctrl+S on the canvas; the save dialog opens (a workflow with no name on the server yet) and gets `name`. */
async function saveAs(name: string, prefilled: string): Promise<void> {
  await h.page.mouse.click(...(await emptyPoint(h.page)));
  await h.page.keyboard.press('Control+s');
  const input = h.page.locator('[data-testid=save-dialog] input');
  await input.waitFor();
  assert.equal(await input.inputValue(), prefilled, 'the dialog offers the workflow name');
  await input.fill(name);
  await h.page.keyboard.press('Enter');
  await h.page.locator('[data-testid=save-dialog]').waitFor({ state: 'detached' });
}

test(
  'a workflow opened from a file is named after it; Ctrl+S asks instead of overwriting the saved one',
  { skip },
  async () => {
    const defaultTypes = await ev<string[]>(`window.__tcd.graph._nodes.map((n) => n.type).sort()`);
    await saveAs('my fox', '');
    assert.equal(await shownName(), 'my fox');
    assert.deepEqual(await savedTypes('my fox'), defaultTypes);

    const hires = readFileSync('workflows/hires-fix.json');
    const hiresTypes = (JSON.parse(String(hires)) as { nodes: { type: string }[] }).nodes.map((n) => n.type).sort();
    await h.page.setInputFiles('[data-testid=file-input]', {
      name: 'hires-fix.json',
      mimeType: 'application/json',
      buffer: hires,
    });
    await eventually(() => ev<string[]>(`window.__tcd.graph._nodes.map((n) => n.type).sort()`), hiresTypes);
    await eventually(shownName, 'hires-fix', 'the workflow takes the file name');
    await eventually(() => h.page.title(), 'hires-fix - tcd-studio');
    await shot(h.page, 'files-opened-named');

    // Ctrl+S asks (the name is not one saved on the server) and "my fox" keeps the graph it was saved with
    await saveAs('hires copy', 'hires-fix');
    assert.deepEqual(await savedTypes('my fox'), defaultTypes, 'the workflow saved before is untouched');
    assert.deepEqual(await savedTypes('hires copy'), hiresTypes);
    assert.equal(await shownName(), 'hires copy');
  },
);

test('a JSON workflow dropped on the canvas is named after its file too', { skip }, async () => {
  const text = String(readFileSync('workflows/tcd-img2img.json'));
  const at = await emptyPoint(h.page);
  await h.page.evaluate(
    ({ text, at }) => {
      const dt = new DataTransfer();
      dt.items.add(new File([text], 'tcd-img2img.json', { type: 'application/json' }));
      const target = document.elementFromPoint(at[0], at[1])!;
      for (const kind of ['dragenter', 'dragover', 'drop'])
        target.dispatchEvent(new DragEvent(kind, { dataTransfer: dt, clientX: at[0], clientY: at[1], bubbles: true }));
    },
    { text, at },
  );
  await eventually(shownName, 'tcd-img2img');
  await h.page.keyboard.press('Control+s');
  await h.page.locator('[data-testid=save-dialog]').waitFor();
  await h.page.keyboard.press('Escape');
  await h.page.locator('[data-testid=save-dialog]').waitFor({ state: 'detached' });
  assert.equal((await savedTypes('hires copy')).includes('LoadImage'), false, 'nothing was written over it');
});

test(
  'Load on a history entry opens it unnamed: Ctrl+S asks rather than replacing the open saved workflow',
  { skip },
  async () => {
    await openSaved(h.page, 'my fox');
    await eventually(shownName, 'my fox');
    await h.page.click('[data-testid=queue-button]');
    const entry = h.page.locator('[data-testid=history-panel] li.history-item.success').first();
    await entry.waitFor({ timeout: RUN_WAIT });
    await openSaved(h.page, 'hires copy');
    await eventually(shownName, 'hires copy');
    await entry.getByRole('button', { name: 'Load' }).click();
    await eventually(() => ev<boolean>(`window.__tcd.graph._nodes.some((n) => n.type === 'TCDSampler')`), true);
    await eventually(shownName, 'Unsaved workflow');
    await saveAs('from history', '');
    assert.equal((await savedTypes('hires copy')).includes('TCDSampler'), false, '"hires copy" keeps its graph');
    assert.equal((await savedTypes('from history')).includes('TCDSampler'), true);
  },
);

test('Export ▸ API format downloads the prompt Queue sends; Export ▸ Workflow the UI graph', { skip }, async () => {
  await openSaved(h.page, 'my fox');
  await eventually(shownName, 'my fox');
  const exported = async (entry: string) => {
    await h.page.locator('[data-testid=export-menu]').getByRole('button', { name: 'Export ▾' }).click();
    const [file] = await Promise.all([
      h.page.waitForEvent('download'),
      h.page.locator('[data-testid=export-menu]').getByRole('button', { name: entry }).click(),
    ]);
    return { name: file.suggestedFilename(), json: JSON.parse(readFileSync((await file.path())!, 'utf8')) };
  };
  const api = await exported('API format');
  assert.equal(api.name, 'my fox_api.json');
  const prompt = api.json as Record<string, { class_type: string; inputs: Record<string, unknown> }>;
  assert.equal(prompt['3'].class_type, 'TCDSampler');
  assert.deepEqual(prompt['3'].inputs.model, ['4', 0]);
  assert.equal(prompt['3'].inputs.seed, await ev<number>(`window.__tcd.editor.nodeById(3).widgets[0].value`));
  // exactly what Queue would post, and the server takes it as it is
  assert.deepEqual(prompt, await ev(`window.__tcd.toPrompt()`));
  const res = await h.api('/prompt', { method: 'POST', body: JSON.stringify({ prompt, front: true }) });
  assert.equal(res.status, 200, await res.text());
  assert.equal(await h.page.locator('[data-testid=export-menu] .menu-items').count(), 0, 'the menu closed');

  const ui = await exported('Workflow');
  assert.equal(ui.name, 'my fox.json');
  assert.deepEqual(
    (ui.json as { nodes: { id: number }[] }).nodes.map((n) => n.id).sort(),
    await ev<number[]>(`window.__tcd.graph._nodes.map((n) => n.id).sort()`),
  );
});

test('saving under the name of another saved workflow asks "Replace it?" first', { skip }, async () => {
  const defaultTypes = await savedTypes('my fox');
  const hires = readFileSync('workflows/hires-fix.json');
  await h.page.setInputFiles('[data-testid=file-input]', {
    name: 'hires-fix.json',
    mimeType: 'application/json',
    buffer: hires,
  });
  await eventually(shownName, 'hires-fix');
  await h.page.mouse.click(...(await emptyPoint(h.page)));
  await h.page.keyboard.press('Control+s');
  const dialog = h.page.locator('[data-testid=save-dialog]');
  await dialog.locator('input').fill('my fox');
  await h.page.keyboard.press('Enter');
  const ask = dialog.locator('[data-testid=save-replaces]');
  await ask.waitFor();
  assert.equal(await ask.textContent(), '“my fox” is already saved on the server. Replace it?');
  assert.equal(await dialog.getByRole('button', { name: 'Replace' }).count(), 1);
  assert.deepEqual(await savedTypes('my fox'), defaultTypes, 'not replaced yet');
  // another name withdraws the question; back to "my fox", the second Enter replaces it
  await dialog.locator('input').fill('my fox 2');
  await eventually(() => ask.count(), 0);
  await dialog.locator('input').fill('my fox');
  await h.page.keyboard.press('Enter');
  await ask.waitFor();
  await h.page.keyboard.press('Enter');
  await dialog.waitFor({ state: 'detached' });
  assert.equal((await savedTypes('my fox')).includes('TCDSampler'), false, 'replaced by the hires-fix graph');
  assert.equal(await shownName(), 'my fox');
});

test(
  'an API-format prompt file opens as a graph that queues the same prompt; unknown types are named',
  { skip },
  async () => {
    await openTemplate(h.page, 'default.json');
    await eventually(() => ev<boolean>(`window.__tcd.graph._nodes.some((n) => n.type === 'TCDSampler')`), true);
    const prompt =
      await ev<Record<string, { class_type: string; inputs: Record<string, unknown> }>>(`window.__tcd.toPrompt()`);
    prompt['3'].inputs.seed = 1234;
    prompt['6'].inputs.text = 'an API fox';
    const file = { ...prompt, '99': { class_type: 'NoSuchNode', inputs: { x: ['3', 0] } } };
    await openSaved(h.page, 'hires copy'); // any graph but this one first
    await eventually(() => ev<boolean>(`window.__tcd.graph._nodes.some((n) => n.type === 'TCDSampler')`), false);
    await h.page.setInputFiles('[data-testid=file-input]', {
      name: 'fox_api.json',
      mimeType: 'application/json',
      buffer: Buffer.from(JSON.stringify(file)),
    });
    await eventually(shownName, 'fox_api');
    assert.deepEqual(await ev(`window.__tcd.toPrompt()`), prompt, 'the graph queues the prompt of the file');
    const msg = h.page.locator('[data-testid=messages] pre.error').last();
    await msg.waitFor();
    assert.equal(await msg.textContent(), 'fox_api.json: no such node type here, left out: #99 NoSuchNode');
    // laid out without overlaps, and in view
    const overlaps = await ev<number>(`(() => { const ns = window.__tcd.graph._nodes; let k = 0;
    for (const a of ns) for (const b of ns) if (a !== b) { const [ax, ay, aw, ah] = a.boundingRect, [bx, by, bw, bh] = b.boundingRect;
      if (ax < bx + bw && bx < ax + aw && ay < by + bh && by < ay + ah) k++; } return k; })()`);
    assert.equal(overlaps, 0);
    await shot(h.page, 'files-api-prompt-opened');
  },
);

test('Load on a history entry queued through the API (no workflow) opens its prompt as a graph', { skip }, async () => {
  const prompt =
    await ev<Record<string, { class_type: string; inputs: Record<string, unknown> }>>(`window.__tcd.toPrompt()`);
  prompt['3'].inputs.seed = 777;
  const res = await h.api('/prompt', { method: 'POST', body: JSON.stringify({ prompt }) });
  assert.equal(res.status, 200);
  const { prompt_id: id } = (await res.json()) as { prompt_id: string };
  const entry = h.page.locator(`[data-testid=history-panel] li[data-prompt-id="${id}"]`);
  await entry.waitFor({ timeout: RUN_WAIT });
  await openSaved(h.page, 'hires copy'); // another graph first
  await eventually(() => ev<boolean>(`window.__tcd.graph._nodes.some((n) => n.type === 'TCDSampler')`), false);
  await entry.getByRole('button', { name: 'Load' }).click();
  await eventually(() => ev(`window.__tcd.toPrompt()`), prompt);
  assert.equal(await shownName(), 'Unsaved workflow');
});
