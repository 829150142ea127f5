// Model library (issue 17, point 5): the sidebar lists checkpoints and LoRAs (and any other non-empty model folder);
// R on the canvas and the Refresh button re-read the folders and every combo list without a page reload; dragging
// a model onto the canvas (or Enter on it) adds its loader node with that file chosen.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { editorForFile, emptyPoint, shot, WAIT, type Harness } from './harness.js';

let h: Harness;
const skip = editorForFile((started) => (h = started));
const ev = <T>(fn: string): Promise<T> => h.page.evaluate(fn) as Promise<T>;
const DEMO = 'tcd-studio-demo-sdxl.safetensors';

const files = (folder: string) =>
  h.page.locator(`[data-testid=model-library] details[data-folder="${folder}"] li.model-file`);
const fileNames = (folder: string) => files(folder).evaluateAll((ls) => ls.map((l) => (l as HTMLElement).dataset.file));

test('the library lists the checkpoints and an (empty) LoRA folder', { skip }, async () => {
  await files('checkpoints').first().waitFor();
  assert.deepEqual(await fileNames('checkpoints'), [DEMO]);
  assert.deepEqual(await fileNames('loras'), []);
  assert.match(
    (await h.page.locator('[data-testid=model-library] details[data-folder="loras"]').textContent()) ?? '',
    /empty/,
  );
});

test('R on the canvas and the Refresh button list new files in the library and in the combos', { skip }, async () => {
  mkdirSync(join(h.dirs.models, 'loras'), { recursive: true });
  writeFileSync(join(h.dirs.models, 'loras', 'watercolor.safetensors'), Buffer.alloc(64));
  await h.page.mouse.click(...(await emptyPoint(h.page)));
  await h.page.keyboard.press('r');
  await files('loras').first().waitFor({ timeout: WAIT });
  assert.deepEqual(await fileNames('loras'), ['watercolor.safetensors']);
  const loraOptions = await ev<string[]>(`window.__tcd.editor.objectInfo.LoraLoader.input.required.lora_name[0]`);
  assert.deepEqual(loraOptions, ['watercolor.safetensors']);
  copyFileSync(join(h.dirs.models, 'checkpoints', DEMO), join(h.dirs.models, 'checkpoints', 'second.safetensors'));
  await h.page.getByRole('button', { name: 'Refresh' }).click();
  await h.page.waitForFunction(
    () =>
      document.querySelectorAll('[data-testid=model-library] details[data-folder="checkpoints"] li.model-file')
        .length === 2,
  );
  // the checkpoint combo already on the canvas offers it
  const ckptOptions = await ev<string[]>(`window.__tcd.editor.nodeById(4).widgets[0].options.values`);
  assert.deepEqual(ckptOptions.sort(), ['second.safetensors', DEMO].sort());
  await shot(h.page, 'p5-models');
});

test(
  'dragging a model onto the canvas adds its loader node there; Enter on a model adds one too',
  { skip },
  async () => {
    const n0 = await ev<number>(`window.__tcd.graph._nodes.length`);
    await files('loras').first().waitFor();
    const src = (await files('loras').first().boundingBox())!;
    const to = await emptyPoint(h.page, 90);
    await h.page.mouse.move(src.x + 20, src.y + src.height / 2);
    await h.page.mouse.down();
    await h.page.mouse.move(src.x - 100, src.y + 20, { steps: 5 });
    await h.page.mouse.move(to[0], to[1], { steps: 10 });
    await h.page.mouse.up();
    await h.page.waitForFunction((n) => (window as any).__tcd.graph._nodes.length === n + 1, n0);
    const added = await ev<{
      type: string;
      lora: string;
      pos: number[];
    }>(`(() => { const ns = window.__tcd.graph._nodes, n = ns[ns.length - 1];
    return { type: n.type, lora: n.widgets.find((w) => w.name === 'lora_name').value, pos: [...n.pos] }; })()`);
    assert.equal(added.type, 'LoraLoader');
    assert.equal(added.lora, 'watercolor.safetensors');
    const expected = await ev<number[]>(`window.__tcd.editor.toGraph(${JSON.stringify(to)})`);
    assert.ok(
      Math.abs(added.pos[0] - expected[0]) < 2 && Math.abs(added.pos[1] - expected[1]) < 2,
      `${added.pos} vs ${expected}`,
    );
    // keyboard: focus the checkpoint entry and press Enter
    await files('checkpoints').filter({ hasText: 'second.safetensors' }).focus();
    await h.page.keyboard.press('Enter');
    await h.page.waitForFunction((n) => (window as any).__tcd.graph._nodes.length === n + 2, n0);
    const ckpt = await ev<[string, string]>(
      `(() => { const ns = window.__tcd.graph._nodes, n = ns[ns.length - 1]; return [n.type, n.widgets[0].value]; })()`,
    );
    assert.deepEqual(ckpt, ['CheckpointLoaderSimple', 'second.safetensors']);
    // each addition is one undo step
    await h.page.mouse.click(...(await emptyPoint(h.page)));
    await h.page.keyboard.press('Control+z');
    await h.page.keyboard.press('Control+z');
    assert.equal(await ev<number>(`window.__tcd.graph._nodes.length`), n0);
  },
);
