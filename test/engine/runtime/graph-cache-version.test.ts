/**
 * The graph cache key's code version covers every builder source under server/engine, sub-folders included. Since
 * the model code moved into server/engine/model/ it hashed only server/engine/*.ts and onnx/*.ts, so a changed UNet,
 * VAE or LoRA builder kept loading the graphs cached before the change (data/onnx-cache survives upgrades).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { builderCodeVersion, sourceVersion } from '../../../server/engine/runtime/graph-cache.js';
import { PROJECT } from '../../cli/run-cli.js';

const root = mkdtempSync(join(tmpdir(), 'tcd-code-version-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('a change to any engine source file, at any depth, gives a new code version; other files do not', () => {
  const engine = join(root, 'engine');
  cpSync(join(PROJECT, 'server', 'engine'), engine, { recursive: true });
  const base = sourceVersion(engine);
  assert.equal(base, builderCodeVersion(), 'the copy hashes as the tree that runs');
  const seen = new Set([base]);
  for (const file of ['model/unet.ts', 'model/vae.ts', 'lora/patch.ts', 'runtime/components.ts', 'onnx/ops.ts']) {
    appendFileSync(join(engine, file), '\n// changed\n');
    const v = sourceVersion(engine);
    assert.ok(!seen.has(v), `${file}: a change must give a new version`);
    seen.add(v);
  }
  // a note or a new non-source file changes nothing
  const last = sourceVersion(engine);
  writeFileSync(join(engine, 'onnx', 'NOTES.md'), 'text');
  writeFileSync(join(engine, 'model', 'types.d.ts'), 'export {};');
  assert.equal(sourceVersion(engine), last);
});
