/**
 * RebatchLatents against ComfyUI's own node (nodes_rebatch.py run with torch: test/data/rebatch/reference.*, made by
 * make_reference.py there): lists of latents with several sizes, noise masks (tiled, all-ones dropped) and batch
 * indices regroup exactly as ComfyUI's do. Through the executor, each new batch runs the next node once.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile } from '../../server/engine/io/safetensors.js';
import type { LatentValue } from '../../nodes/types.js';
import { rebatchLatents } from '../../nodes/rebatch.js';
import { defineNode, t } from '../../nodes/define.js';
import { makeHarness, type Harness } from '../helpers/run-prompt.js';

const DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'data', 'rebatch');
const present = existsSync(join(DIR, 'reference.json'));

interface Entry {
  samples: string;
  noise_mask?: string;
  batch_index?: number[];
}
interface Case {
  name: string;
  batch_size: number;
  inputs: Entry[];
  outputs: Entry[];
}

test(
  "RebatchLatents equals ComfyUI's node run with torch",
  { skip: present ? false : 'skipped: test/data/rebatch/reference.json not made yet' },
  () => {
    const { cases } = JSON.parse(readFileSync(join(DIR, 'reference.json'), 'utf8')) as { cases: Case[] };
    const file = SafetensorsFile.open(join(DIR, 'reference.safetensors'));
    try {
      assert.ok(cases.length >= 8);
      for (const c of cases) {
        const latents: LatentValue[] = c.inputs.map((e) => ({
          samples: file.readTensor(e.samples),
          ...(e.noise_mask ? { noise_mask: file.readTensor(e.noise_mask) } : {}),
          ...(e.batch_index ? { batch_index: e.batch_index } : {}),
        }));
        const got = rebatchLatents(latents, c.batch_size);
        assert.equal(got.length, c.outputs.length, `${c.name}: number of batches`);
        c.outputs.forEach((want, j) => {
          const g = got[j];
          const at = `${c.name} batch ${j}`;
          const ref = file.readTensor(want.samples);
          assert.deepEqual(g.samples.shape, ref.shape, `${at}: shape`);
          assert.deepEqual(g.samples.data, ref.data, `${at}: samples`);
          assert.deepEqual(g.batch_index, want.batch_index, `${at}: batch_index`);
          assert.equal(!!g.noise_mask, !!want.noise_mask, `${at}: noise_mask present`);
          if (want.noise_mask) {
            const m = file.readTensor(want.noise_mask);
            assert.deepEqual(g.noise_mask!.shape, m.shape, `${at}: mask shape`);
            assert.deepEqual(g.noise_mask!.data, m.data, `${at}: mask`);
          }
        });
      }
    } finally {
      file.close();
    }
  },
);

let h: Harness;
const seen: LatentValue[] = [];
before(() => {
  h = makeHarness();
  h.executor.registry.set(
    'CollectLATENT',
    defineNode({
      id: 'CollectLATENT',
      category: 'testing',
      outputNode: true,
      inputs: [t.socket('LATENT', 'value')],
      outputs: [],
      execute: ({ value }) => {
        seen.push(value);
        return { outputs: [] };
      },
    }),
  );
});
after(async () => {
  await h.close();
});

test('through the executor: a batch of 5 rebatched by 2 runs the next node three times', async () => {
  const r = await h.run({
    e: { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 48, batch_size: 5 } },
    rb: { class_type: 'RebatchLatents', inputs: { latents: ['e', 0], batch_size: 2 } },
    rep: { class_type: 'RepeatLatentBatch', inputs: { samples: ['rb', 0], amount: 2 } },
    out: { class_type: 'CollectLATENT', inputs: { value: ['rep', 0] } },
  });
  assert.equal(r.status, 'success');
  assert.deepEqual(
    seen.map((l) => l.samples.shape),
    [
      [4, 4, 6, 8],
      [4, 4, 6, 8],
      [2, 4, 6, 8],
    ],
  );
  const info = h.executor.registry.get('RebatchLatents')!;
  assert.equal(info.inputIsList, true);
  assert.deepEqual(
    info.outputs.map((o) => o.isList),
    [true],
  );
});
