/**
 * `run` (like `serve`) finds models in the folders of ComfyUI's extra_model_paths.yaml: a checkpoint that exists only
 * in a shared folder named there loads; without the file the same workflow is refused, naming the checkpoint.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureDemoCheckpoint, DEMO_CHECKPOINT_NAME } from '../../server/tools/make-checkpoint.js';
import { PROJECT, runCli, runFlags, tempDirs } from './run-cli.js';

const WORKFLOW = join(PROJECT, 'test', 'cli', 'data', 'comfyui-saved-core.json'); // uses the demo checkpoint

let d: ReturnType<typeof tempDirs>;
let yaml: string;
before(async () => {
  d = tempDirs('tcd-extra-paths-');
  const shared = join(d.root, 'shared-models');
  await ensureDemoCheckpoint(shared); // shared-models/checkpoints/<demo>; d.models stays empty
  yaml = join(d.root, 'extra_model_paths.yaml');
  writeFileSync(yaml, `comfyui:\n  base_path: ${shared}\n  checkpoints: checkpoints\n`);
});
after(() => rmSync(d.root, { recursive: true, force: true }));

test('run reads --extra-model-paths-config: the checkpoint found only there is used', async () => {
  const without = await runCli(['run', WORKFLOW, ...runFlags(d), '--no-demo']);
  assert.equal(without.code, 1, without.stderr);
  assert.match(without.stderr, new RegExp(DEMO_CHECKPOINT_NAME.replace(/[.]/g, '\\.')));

  const r = await runCli(['run', WORKFLOW, ...runFlags(d), '--no-demo', '--extra-model-paths-config', yaml]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(readdirSync(d.output).filter((f) => f.endsWith('.png')).length, 1);
  assert.deepEqual(readdirSync(d.models), [], 'nothing was copied into the models folder');
});
