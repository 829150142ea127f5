/**
 * issue 7 point 4: `tcd-studio run` renders many images in one process: a --prompts CSV (header of NODE.INPUT
 * columns, quoted fields, empty cells keep the value) times a --seeds range, with one summary table at the end;
 * later renders reuse the loaded models (only the nodes whose inputs changed run again). Bad rows fail before any
 * model loads, with the CSV line named.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureDemoCheckpoint } from '../../server/tools/make-checkpoint.js';
import { readPngText } from '../../server/storage/png.js';
import { parseCsv, promptRows, formatTable } from '../../server/run-command.js';
import { PROJECT, runCli, runFlags, tempDirs } from './run-cli.js';

let d: ReturnType<typeof tempDirs>;
before(async () => {
  d = tempDirs('tcd-batch-');
  await ensureDemoCheckpoint(d.models);
});
after(() => rmSync(d.root, { recursive: true, force: true }));

test('CSV parsing: quotes, doubled quotes, commas and newlines inside quotes, CRLF, BOM, empty cells', () => {
  assert.deepEqual(parseCsv('\uFEFFa,b\r\n"x, y","say ""hi"""\r\n"multi\nline",\n'), [
    ['a', 'b'],
    ['x, y', 'say "hi"'],
    ['multi\nline', ''],
  ]);
  const rows = promptRows('Positive.text,5.steps\n"a cat, sitting",\n,3\n');
  assert.deepEqual(rows, [
    { line: 2, sets: [['Positive', 'text', 'a cat, sitting']] },
    { line: 3, sets: [['5', 'steps', '3']] },
  ]);
  assert.throws(() => promptRows('text\nx\n'), /header "text" is not NODE.INPUT/);
  assert.throws(() => promptRows('a.b\n"open\n'), /unterminated/);
  assert.equal(
    formatTable([
      { a: 1, bb: 'x' },
      { a: 22, bb: 'yy' },
    ]),
    'a   bb\n--  --\n1   x\n22  yy',
  );
});

test('--prompts x --seeds renders rows x seeds images in one process, reusing loaded models, with a summary table', async () => {
  const csv = join(d.root, 'prompts.csv');
  // "Positive" is the title of the demo's positive prompt node; 4.width by id; a numeric-looking text stays text
  writeFileSync(csv, 'Positive.text,4.width\n"a red fox, in snow",64\n42,\n');
  const r = await runCli([
    'run',
    join(PROJECT, 'workflows', 'demo.json'),
    '--prompts',
    csv,
    '--seeds',
    '7-8',
    '--set',
    '4.width=64',
    '--set',
    '4.height=64',
    ...runFlags(d),
  ]);
  assert.equal(r.code, 0, r.stderr);
  const paths = r.stdout.trim().split('\n');
  assert.equal(paths.length, 4);
  assert.deepEqual(readdirSync(d.output).sort(), [
    'tcd-demo_00001_.png',
    'tcd-demo_00002_.png',
    'tcd-demo_00003_.png',
    'tcd-demo_00004_.png',
  ]);
  const prompts = paths.map((p) => JSON.parse(readPngText(readFileSync(p)).prompt));
  assert.deepEqual(
    prompts.map((p) => [p['2'].inputs.text, p['5'].inputs.seed, p['4'].inputs.width]),
    [
      ['a red fox, in snow', '7', 64],
      ['a red fox, in snow', '8', 64],
      ['42', '7', 64],
      ['42', '8', 64],
    ],
  );
  // the summary: one line per render; the first runs every node, later ones only what their change touches
  const lines = r.stderr.trim().split('\n');
  const header = lines.findIndex((l) => /^#\s+workflow\s+row\s+seed\s+status/.test(l));
  assert.ok(header >= 0, r.stderr);
  const table = lines.slice(header + 2).map((l) => l.trim().split(/\s{2,}/));
  assert.equal(table.length, 4);
  assert.deepEqual(
    table.map((c) => [c[2], c[3], c[4]]),
    [
      ['2', '7', 'success'],
      ['2', '8', 'success'],
      ['3', '7', 'success'],
      ['3', '8', 'success'],
    ],
  );
  const ran = table.map((c) => Number(c[6]));
  assert.equal(ran[0], 7, 'first render runs all seven nodes');
  assert.equal(ran[1], 3, 'a new seed re-runs sampler, decoder and save only: the checkpoint is not reloaded');
  assert.equal(ran[2], 4, 'a new prompt re-runs its text encoder, sampler, decoder and save');
});

test('a bad row fails before any model loads, naming the CSV line', async () => {
  const csv = join(d.root, 'bad.csv');
  writeFileSync(csv, '5.steps\n4\n999\n');
  const r = await runCli([
    'run',
    join(PROJECT, 'workflows', 'demo.json'),
    '--prompts',
    csv,
    ...runFlags(d),
    '--no-demo',
  ]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /row 3: .*steps/);
});

test('--set or a CSV column naming an input the node does not have fails, listing its inputs; nothing renders', async () => {
  // before: the typo went into an input the class does not declare, which nothing reads: the workflow ran unchanged
  const csv = join(d.root, 'typo.csv');
  writeFileSync(csv, 'TCDSampler.stepz\n3\n');
  for (const [flags, where] of [
    [['--set', 'TCDSampler.stepz=3'], /--set TCDSampler\.stepz=3: /],
    [['--prompts', csv], /typo\.csv line 2: /],
  ] as const) {
    const out = join(d.root, `typo-out-${flags[0].slice(2)}`);
    const r = await runCli(['run', join(PROJECT, 'workflows', 'demo.json'), ...flags, ...runFlags(d), '--out', out]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, where);
    assert.match(r.stderr, /node 5 \(TCDSampler\) has no input "stepz"; its inputs: model, .*steps/);
    assert.equal(existsSync(out) ? readdirSync(out).length : 0, 0, 'no image');
  }
});
