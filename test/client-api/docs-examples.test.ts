/**
 * The snippets in docs/api.md run as written against a token-protected server: the five-line TypeScript example
 * (the package name pointed at server/client-api) and the curl example (bash, curl, jq).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { serve } from '../../server/host.js';
import { decodePng } from '../../server/storage/png.js';
import { PROJECT, tempDirs } from '../cli/run-cli.js';

const TOKEN = 'docs-token';
const DOC = readFileSync(join(PROJECT, 'docs', 'api.md'), 'utf8');
let d: ReturnType<typeof tempDirs>;
let server: Awaited<ReturnType<typeof serve>>;
before(async () => {
  d = tempDirs('tcd-docs-');
  symlinkSync(join(PROJECT, 'workflows'), join(d.root, 'workflows'));
  server = await serve({
    port: 0,
    listen: '127.0.0.1',
    models: d.models,
    data: d.data,
    output: d.output,
    input: d.input,
    temp: d.temp,
    token: TOKEN,
    log: () => {},
  });
});
after(async () => {
  await server.close();
  rmSync(d.root, { recursive: true, force: true });
});

function block(lang: string, after = ''): string {
  const from = after ? DOC.indexOf(after) : 0;
  const m = new RegExp('```' + lang + '\\n([\\s\\S]*?)```').exec(DOC.slice(from));
  assert.ok(m, `no ${lang} block after "${after}"`);
  return m[1];
}

function exec(
  cmd: string,
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { cwd: d.root, env: { ...process.env, ...env } });
    let out = '',
      err = '';
    c.stdout.on('data', (x) => {
      out += x;
    });
    c.stderr.on('data', (x) => {
      err += x;
    });
    c.on('close', (code) => resolve({ code, out, err }));
  });
}

test('the five-line TypeScript example saves the demo image and prints progress', async () => {
  const code = block('ts');
  assert.equal(code.trim().split('\n').length, 5);
  const file = join(d.root, 'example.mts');
  writeFileSync(
    file,
    code
      .replace(`'tcd-studio'`, `'${pathToFileURL(join(PROJECT, 'server', 'client-api', 'index.ts')).href}'`)
      .replace(`'http://127.0.0.1:8188'`, `'${server.url}'`),
  );
  const r = await exec(process.execPath, ['--import', import.meta.resolve('tsx'), file], { TCD_TOKEN: TOKEN });
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /step 4\/4/);
  const png = decodePng(readFileSync(join(d.root, 'out.png')));
  assert.deepEqual([png.width, png.height], [512, 512]);
});

const haveTools = spawnSync('bash', ['-c', 'command -v curl && command -v jq']).status === 0;
test(
  'the curl example queues, waits and downloads the image',
  { skip: haveTools ? false : 'curl or jq not installed' },
  async () => {
    const script = block('sh', '## With curl')
      .replace('URL=http://127.0.0.1:8188', `URL=${server.url}`)
      .replaceAll('/tmp/req.json', join(d.root, 'req.json'));
    const r = await exec('bash', ['-euo', 'pipefail', '-c', script], { TCD_TOKEN: TOKEN });
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out.trim(), '"success"');
    const pngs = readdirSync(d.root).filter((f) => /^tcd-demo_\d+_\.png$/.test(f));
    assert.equal(pngs.length, 1);
    assert.ok(readFileSync(join(d.root, pngs[0])).equals(readFileSync(join(d.output, pngs[0]))));
  },
);
