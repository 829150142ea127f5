// A prompt's <textarea> lies above the canvas: a node drawn over the prompt node (dragged onto it, or a Primitive
// placed there by a double-click) must show over the textarea, not be hidden under it; once the prompt node is brought
// to the front, its textarea is whole again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { editorForFile, drag, eventually, frames, nodePoint, shot, type Harness } from './harness.js';

let h: Harness;
const skip = editorForFile((started) => (h = started));

/** What a click at the client point reaches: 'textarea' (a prompt), 'canvas', or another tag. */
const hit = (p: [number, number]) =>
  h.page.evaluate(([x, y]) => {
    const e = document.elementFromPoint(x, y);
    return e?.localName === 'textarea' ? `textarea:${(e as HTMLElement).dataset.node}` : (e?.localName ?? 'none');
  }, p);

test(
  'a node dragged over a prompt shows above its textarea; clicking the prompt node brings the text back',
  { skip },
  async () => {
    // Empty Latent Image (5) by its title onto the middle of the positive prompt's text (node 6)
    const target = await nodePoint(h.page, 6, 120, 60);
    assert.equal(await hit(target), 'textarea:6', 'the prompt is under the point at first');
    const title = await nodePoint(h.page, 5, 60, -15);
    await drag(h.page, title, [target[0] - 40, target[1] - 20]);
    await frames(h.page);
    const covered = await nodePoint(h.page, 5, 100, 30); // inside the moved latent node, over the prompt
    const beside = await nodePoint(h.page, 6, 380, 150); // the prompt's text right of the latent node
    assert.equal(
      await h.page.evaluate(([x, y]) => {
        const { editor } = (window as any).__tcd;
        const [gx, gy] = editor.toGraph([x, y]);
        return editor.graph.getNodeOnPos(gx, gy)?.id;
      }, covered),
      5,
    );
    await eventually(() => hit(covered), 'canvas', 'the latent node, drawn above the prompt, gets the click');
    assert.equal(await hit(beside), 'textarea:6', 'the rest of the prompt is still a textarea');
    await shot(h.page, 'dom-overlap-node-over-prompt');
    // a click on the prompt node's title brings it to the front: its textarea covers the latent node again
    await h.page.mouse.click(...(await nodePoint(h.page, 6, 150, -15)));
    await eventually(() => hit(covered), 'textarea:6', 'the prompt node in front: its text is whole');
  },
);
