/**
 * Runs the real command line (`node --import tsx server/cli.ts ...`) as a child process in a temp project folder
 * layout, for tests. Example:
 *   const r = await runCli(['run', 'workflows/demo.json', '--models', dirs.models]);
 *   assert.equal(r.code, 0, r.stderr);
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROJECT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(
  args: string[],
  o: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(PROJECT, 'server', 'cli.ts'), ...args], {
      cwd: o.cwd ?? PROJECT,
      env: { ...process.env, ...o.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '',
      stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`cli ${args.join(' ')} timed out\n${stderr}`));
    }, o.timeoutMs ?? 120000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
  });
}

/** A fresh models/output/input/data/temp layout under the system temp folder. */
export function tempDirs(prefix = 'tcd-cli-') {
  const root = mkdtempSync(join(tmpdir(), prefix));
  const dirs = {
    root,
    models: join(root, 'models'),
    output: join(root, 'output'),
    input: join(root, 'input'),
    data: join(root, 'data'),
    temp: join(root, 'temp'),
  };
  for (const d of [dirs.models, dirs.output, dirs.input, dirs.data, dirs.temp]) mkdirSync(d, { recursive: true });
  return dirs;
}

/** The usual flags pointing `run` at a temp layout. */
export const runFlags = (d: ReturnType<typeof tempDirs>) => [
  '--models',
  d.models,
  '--out',
  d.output,
  '--input',
  d.input,
  '--data',
  d.data,
];
