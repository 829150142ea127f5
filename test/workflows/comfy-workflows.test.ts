/**
 * issue 16: the shipped ComfyUI-style workflows (hires fix, ...) run unchanged on the demo model through the real
 * executor and nodes, at a small size set here (the templates use real sizes); each produces its image at the size
 * its graph implies.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createRegistry } from '../../nodes/index.js';
import { ensureDemoCheckpoint } from '../../server/tools/make-checkpoint.js';
import { uiToApi, type UiWorkflow } from '../../server/workflow/convert.js';
import { decodePng } from '../../server/storage/png.js';
import type { Prompt } from '../../server/executor/prompt.js';
import { makeHarness, type Harness } from '../helpers/run-prompt.js';
import { PROJECT } from '../cli/run-cli.js';

let h: Harness;
before(async () => { h = makeHarness(); await ensureDemoCheckpoint(h.dirs.models); });
after(async () => { await h.close(); });

function load(name: string): Prompt {
  const wf = JSON.parse(readFileSync(join(PROJECT, 'workflows', `${name}.json`), 'utf8')) as UiWorkflow;
  return uiToApi(wf, createRegistry()) as Prompt;
}

/** sets `input` on every node of class `cls` */
function set(p: Prompt, cls: string, input: string, value: unknown): void {
  for (const n of Object.values(p)) if (n.class_type === cls) n.inputs[input] = value;
}

async function savedSize(p: Prompt, prefix: string): Promise<[number, number]> {
  await h.run(p);
  const file = readdirSync(h.dirs.output).filter((f) => f.startsWith(prefix)).sort().at(-1);
  assert.ok(file, `${prefix}: no image saved`);
  const { width, height } = decodePng(readFileSync(join(h.dirs.output, file)));
  return [width, height];
}

test('hires-fix: first pass, latent upscale x1.5, second pass at denoise 0.5', async () => {
  const p = load('hires-fix');
  set(p, 'EmptyLatentImage', 'width', 64);
  set(p, 'EmptyLatentImage', 'height', 64);
  assert.deepEqual(await savedSize(p, 'hires-fix'), [96, 96]);
});
