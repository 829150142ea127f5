/**
 * The settings table (server/settings.ts): flags beat variables beat defaults, bad values name their flag or
 * variable, the deprecated data-folder name still works, flag names are unique per command, docs/settings.md is the
 * table's own rendering, and every command's --help (the real CLI) prints its options and exits 0.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  COMMANDS,
  SETTINGS,
  UsageError,
  helpText,
  parseCommandLine,
  settingsFromEnv,
  settingsMarkdown,
  settingsWith,
  type Command,
} from '../../server/settings.js';
import { PROJECT, runCli } from './run-cli.js';

test('flag, then variable, then default; folders resolved from the working directory', () => {
  const env = { TCD_PORT: '9000', TCD_LISTEN: '0.0.0.0', TCD_MODELS: 'm', TCD_EP: 'webgpu' };
  const a = parseCommandLine('serve', ['--port', '1234'], env).settings;
  assert.equal(a.port, 1234, 'the flag wins');
  assert.equal(a.listen, '0.0.0.0', 'then the variable');
  assert.equal(a.models, resolve('m'));
  assert.equal(a.ep, 'webgpu');
  assert.equal(a.output, resolve('output'), 'then the default');
  assert.equal(a.demo, true);
  const b = parseCommandLine('serve', ['--no-demo', '--devices', '0, 1'], {}).settings;
  assert.equal(b.port, 8188);
  assert.equal(b.demo, false);
  assert.deepEqual(b.devices, ['0', '1']);
  const r = parseCommandLine('run', ['a.json', '--out', 'o', '--set', '3.seed=1', '--set', 'x.y=2', 'b.json'], {});
  assert.deepEqual(r.positionals, ['a.json', 'b.json']);
  assert.equal(r.settings.output, resolve('o'), 'run --out is --output');
  assert.deepEqual(r.settings.set, ['3.seed=1', 'x.y=2']);
  assert.equal(
    parseCommandLine('convert', ['w.json', '--out', 'api.json'], {}).settings.convertOut,
    'api.json',
    'convert --out is its own',
  );
});

test('one name for the data folder: TCD_DATA, with TCD_DATA_DIR as a deprecated alias it beats', () => {
  assert.equal(parseCommandLine('serve', [], { TCD_DATA_DIR: '/old' }).settings.data, '/old');
  assert.equal(parseCommandLine('serve', [], { TCD_DATA_DIR: '/old', TCD_DATA: '/new' }).settings.data, '/new');
  assert.equal(parseCommandLine('serve', ['--data', '/flag'], { TCD_DATA: '/new' }).settings.data, '/flag');
});

test('bad values and unknown flags are usage errors naming the flag or variable', () => {
  assert.throws(
    () => parseCommandLine('serve', ['--port', 'eighty'], {}),
    (e: Error) => e instanceof UsageError && /--port must be an integer >= 0, got "eighty"/.test(e.message),
  );
  assert.throws(() => parseCommandLine('serve', [], { TCD_PORT: '-1' }), /TCD_PORT must be an integer >= 0, got "-1"/);
  assert.throws(() => parseCommandLine('worker', ['--concurrency', '0'], {}), /--concurrency must be an integer >= 1/);
  assert.throws(
    () => parseCommandLine('serve', ['--gpu-layout', 'NWHC'], {}),
    /--gpu-layout must be NHWC or NCHW, got "NWHC"/,
  );
  assert.throws(
    () => parseCommandLine('serve', ['--seeds', '1-4'], {}),
    (e: Error) => e instanceof UsageError && /Unknown option '--seeds'/.test(e.message),
  );
  assert.throws(() => parseCommandLine('serve', ['stray'], {}), UsageError, 'serve takes no positionals');
  assert.throws(
    () => settingsFromEnv({ TCD_GPU_GRAPH_CAPTURE: 'maybe' }),
    /TCD_GPU_GRAPH_CAPTURE must be 1\/true or 0\/false/,
  );
  assert.equal(settingsFromEnv({ TCD_GPU_GRAPH_CAPTURE: '1' }).gpuGraphCapture, true);
  assert.equal(parseCommandLine('serve', ['--gpu-graph-capture'], {}).settings.gpuGraphCapture, true);
});

test("settings of other commands are not read: `run` ignores TCD_PORT, `serve` ignores run's flags", () => {
  assert.equal(parseCommandLine('run', [], { TCD_PORT: 'not a port' }).settings.port, 8188);
});

test('every flag name is unique within its command, every variable names one setting', () => {
  for (const command of Object.keys(COMMANDS) as Command[]) {
    const flags = Object.values(SETTINGS)
      .filter((s) => s.commands.includes(command))
      .flatMap((s) => (s.flag ? [s.flag, ...(s.aliases ?? [])] : []));
    assert.equal(new Set(flags).size, flags.length, `${command}: ${flags.join(' ')}`);
    assert.ok(!flags.includes('help'));
  }
  const vars = Object.values(SETTINGS)
    .flatMap((s) => [s.env, ...(s.deprecatedEnv ?? [])])
    .filter(Boolean);
  assert.equal(new Set(vars).size, vars.length);
  assert.ok(
    vars.every((v) => /^TCD_[A-Z0-9_]+$/.test(v!)),
    vars.join(' '),
  );
});

test('no code below the entry point reads a TCD_* variable: only the settings table names them for reading', () => {
  const files = (dir: string): string[] =>
    readdirSync(join(PROJECT, dir), { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
    );
  const readers = [...files('server'), ...files('nodes')]
    .filter((f) => f !== join('server', 'settings.ts'))
    .filter((f) =>
      readFileSync(join(PROJECT, f), 'utf8')
        .split('\n')
        .filter((l) => !/^\s*(\*|\/\/|\/\*)/.test(l)) // code, not comments
        .some((l) => /(process\.env|\benv)(\.TCD_|\[['"]TCD_)/.test(l)),
    );
  assert.deepEqual(readers, []);
  const md = settingsMarkdown();
  for (const s of Object.values(SETTINGS)) if (s.env) assert.ok(md.includes(`\`${s.env}\``), `${s.env} documented`);
});

test('settingsWith: defaults plus what is given, no environment', () => {
  const saved = process.env.TCD_PORT;
  process.env.TCD_PORT = '1';
  try {
    const s = settingsWith({ listen: '::1', models: 'rel' });
    assert.equal(s.port, 8188);
    assert.equal(s.listen, '::1');
    assert.equal(s.models, resolve('rel'));
  } finally {
    if (saved === undefined) delete process.env.TCD_PORT;
    else process.env.TCD_PORT = saved;
  }
});

test('docs/settings.md is generated from the table (npx tsx scripts/write-settings-doc.ts) and linked from the README', () => {
  assert.equal(readFileSync(join(PROJECT, 'docs', 'settings.md'), 'utf8'), settingsMarkdown());
  assert.match(readFileSync(join(PROJECT, 'README.md'), 'utf8'), /docs\/settings\.md/);
  for (const s of Object.values(SETTINGS)) if (s.flag) assert.ok(settingsMarkdown().includes(`--${s.flag}`), s.flag);
});

test("help text lists a command's own options with variable and default", () => {
  const h = helpText('worker');
  assert.match(h, /--queue redis:\/\/HOST:PORT +serve: put prompts .*\(env TCD_QUEUE\)/);
  assert.match(h, /--concurrency N +prompts this worker runs at once \(default 1\)/);
  assert.doesNotMatch(h, /--port/);
});

for (const command of ['serve', 'worker', 'run'] as const) {
  test(`tcd-studio ${command} --help prints its options and exits 0`, async () => {
    const r = await runCli([command, '--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.startsWith(`usage: tcd-studio ${command}`), r.stdout);
    assert.equal(r.stdout.trim(), helpText(command).trim());
    assert.match(r.stdout, /--models DIR/);
  });
}

test('an unknown option exits 2 and points at --help', async () => {
  const r = await runCli(['serve', '--bogus']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Unknown option '--bogus'.*serve --help/);
});
