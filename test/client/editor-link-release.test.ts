// A link dropped on empty canvas opens litegraph's menu (Add Node / Add Reroute / Search). "Search" opens the search
// box where the menu was, lists only nodes that take the link's type, and connects the chosen node to the link.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  browserSkip,
  drag,
  emptyPoint,
  eventually,
  menuClick,
  shot,
  slotPoint,
  startHarness,
  type Harness,
} from './harness.js';

const skip = browserSkip();
if (skip) console.log(`# browser tests skipped: ${skip}`);
let h: Harness;
const ev = <T>(fn: string): Promise<T> => h.page.evaluate(fn) as Promise<T>;

before(async () => {
  if (!skip) h = await startHarness();
});
after(async () => {
  await h?.close();
});

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
  await items.first().waitFor();
  const types = await items.evaluateAll((els) => els.map((e) => unescape((e as HTMLElement).dataset.type ?? '')));
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
