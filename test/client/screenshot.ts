// Takes the README's editor screenshot (docs/editor.png) with Chromium: the default graph after one run on the
// demo model, with a prompt typed in its node and the history panel filled.
//   npx tsx test/client/screenshot.ts
import { startHarness } from './harness.js';

const h = await startHarness();
try {
  const box = (await h.page.locator('textarea.node-textarea[data-node="6"]').boundingBox())!;
  await h.page.mouse.click(box.x + 20, box.y + 20);
  await h.page.keyboard.press('Control+a');
  await h.page.keyboard.type('a photograph of a red fox in a snowy forest, soft morning light, detailed');
  await h.page.click('[data-testid=queue-button]');
  await h.page.waitForFunction(() => (window as any).__tcd.runtime.images.get('9')?.[0]?.naturalWidth > 0, null, {
    timeout: 60_000,
  });
  await h.page.locator('[data-testid=history-panel] li.history-item img').first().waitFor();
  await h.page.locator('[data-testid=node-library] details[data-category="sampling"] > summary').click();
  await h.page.mouse.click(5, 300); // focus away from the textarea
  await new Promise((r) => setTimeout(r, 500));
  await h.page.screenshot({ path: 'docs/editor.png' });
  console.log('wrote docs/editor.png');
} finally {
  await h.close();
}
