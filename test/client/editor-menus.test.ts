// litegraph's menus as a ComfyUI user meets them. A link dropped on empty canvas opens Add Node / Add Reroute /
// Search; "Search" opens the search box where the menu was, lists only nodes that take the link's type, and connects
// the chosen node to the link. A combo's long value list has a filter box: typing narrows it, Enter picks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { editorForFile, drag, emptyPoint, eventually, menuClick, shot, slotPoint, type Harness } from './harness.js';

let h: Harness;
const skip = editorForFile((started) => (h = started));
const ev = <T>(fn: string): Promise<T> => h.page.evaluate(fn) as Promise<T>;

test('Search from a released CLIP link lists nodes taking CLIP and connects the chosen one', { skip }, async () => {
  const before = await ev<number>(`window.__tcd.graph._nodes.length`);
  const at = await emptyPoint(h.page, 120);
  await drag(h.page, await slotPoint(h.page, 4, 'output', 1), at); // Load Checkpoint's CLIP
  await menuClick(h.page, 'Search');
  const box = h.page.locator('.litesearchbox');
  await box.waitFor();
  const r = (await box.boundingBox())!;
  assert.ok(
    Math.abs(r.x - at[0]) < 250 && Math.abs(r.y - at[1]) < 250,
    `box near the drop: ${JSON.stringify([r, at])}`,
  );
  await h.page.keyboard.type('encode');
  const items = h.page.locator('.litesearchbox .lite-search-item');
  const listed = () => items.evaluateAll((els) => els.map((e) => unescape((e as HTMLElement).dataset.type ?? '')));
  // the box refreshes a moment after each keystroke: wait for the list of the whole query
  const types = await ev<string[]>(`window.__tcd.editor.search('encode', { input: 'CLIP' })`);
  await eventually(listed, types);
  assert.ok(types.includes('CLIPTextEncode'), types.join(', '));
  assert.ok(!types.includes('VAEEncode'), `no node without a CLIP input: ${types.join(', ')}`);
  const info = (await (await h.api('/object_info')).json()) as Record<
    string,
    { input: { required?: Record<string, [unknown]>; optional?: Record<string, [unknown]> } }
  >;
  for (const t of types.filter((t) => t !== 'Reroute')) {
    const specs = [...Object.values(info[t].input.required ?? {}), ...Object.values(info[t].input.optional ?? {})];
    assert.ok(
      specs.some(([type]) => type === 'CLIP' || type === '*'),
      `${t} takes CLIP`,
    );
  }
  await shot(h.page, 'link-release-search');
  await h.page.keyboard.press('Enter');
  await eventually(() => ev<number>(`window.__tcd.graph._nodes.length`), before + 1);
  const added = await ev<{ type: string; from: [number, number] | null }>(`(() => {
    const g = window.__tcd.graph, n = g._nodes[g._nodes.length - 1], id = n.inputs.find((i) => i.type === 'CLIP')?.link;
    const link = id == null ? null : (g.links.get?.(id) ?? g.links[id]);
    return { type: n.type, from: link ? [link.origin_id, link.origin_slot] : null };
  })()`);
  assert.deepEqual(added, { type: types[0], from: [4, 1] });
  assert.deepEqual(
    h.log.filter((l) => l.startsWith('pageerror')),
    [],
  );
});

test('a long combo list (sampler_name) filters as one types; Enter picks the first match', { skip }, async () => {
  const id = await ev<number>(`window.__tcd.editor.addNode('KSampler').id`);
  const widgetPoint = (name: string) =>
    h.page.evaluate(
      ([id, name]) => {
        const ed = (window as any).__tcd.editor;
        const n = ed.nodeById(id);
        const w = n.widgets.find((x: { name: string }) => x.name === name);
        return ed.toClient([n.pos[0] + n.size[0] / 2, n.pos[1] + w.y + 10]) as [number, number];
      },
      [id, name] as const,
    );
  await h.page.mouse.click(...(await widgetPoint('sampler_name')));
  const filter = h.page.locator('.litecontextmenu .menu-filter');
  await filter.waitFor();
  assert.equal(await filter.evaluate((e) => e === document.activeElement), true, 'focused: typing filters at once');
  await h.page.keyboard.type('2m_sde');
  const shown = () =>
    h.page
      .locator('.litecontextmenu .litemenu-entry')
      .evaluateAll((els) => els.filter((e) => (e as HTMLElement).style.display !== 'none').map((e) => e.textContent));
  await eventually(async () => (await shown()).every((t) => t!.includes('2m_sde')) && (await shown()).length > 0, true);
  const first = (await shown())[0];
  await shot(h.page, 'menus-combo-filter');
  await h.page.keyboard.press('Enter');
  await eventually(
    () => ev<string>(`window.__tcd.editor.nodeById(${id}).widgets.find((w) => w.name === 'sampler_name').value`),
    first,
  );
  await eventually(() => h.page.locator('.litecontextmenu').count(), 0, 'the list closed');
  // node and canvas menus get no filter box
  await h.page.mouse.click(...((await widgetPoint('seed')).map((v, i) => (i === 1 ? v - 60 : v)) as [number, number]), {
    button: 'right',
  });
  await h.page.locator('.litecontextmenu .litemenu-entry').first().waitFor();
  assert.equal(await h.page.locator('.litecontextmenu .menu-filter').count(), 0);
});
