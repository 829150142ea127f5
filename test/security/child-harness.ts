/**
 * A stub server (test/executor/stub-server.ts) in a child process, and raw-socket requests, for the hardening tests:
 * they send what an attacker would and then check that the process is still alive and still answers.
 * Example:
 *   const s = await spawnStubServer();
 *   const reply = await rawRequest(s.url, 'GET //[ HTTP/1.1\r\nHost: x\r\n\r\n');
 *   assert.ok(s.alive());
 *   await s.stop();
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { api, sleep, type ApiResponse } from '../server/protocol-client.js';
import { chainPrompt } from '../executor/stub-server.js';

export interface ChildServer {
  url: string;
  root: string;
  child: ChildProcess;
  /** what the child wrote to stderr (an uncaught exception shows here) */
  stderr(): string;
  alive(): boolean;
  /** SIGTERM and wait; the data folder is removed unless `keep` */
  stop(o?: { keep?: boolean }): Promise<void>;
}

export async function spawnStubServer(
  o: {
    token?: string;
    slowDelayMs?: number;
    maxBodyBytes?: number;
    root?: string;
    real?: boolean;
    serve?: boolean;
    env?: Record<string, string>;
  } = {},
): Promise<ChildServer> {
  const root = o.root ?? mkdtempSync(join(tmpdir(), 'tcd-harden-'));
  const entry = fileURLToPath(new URL('./child-server.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', entry], {
    env: { ...process.env, ...o.env, TCD_CHILD_OPTS: JSON.stringify({ ...o, root }) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (c) => {
    err += c;
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (c) => {
      out += c;
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve(JSON.parse(line).url);
    });
    child.once('exit', (code) => reject(new Error(`stub server exited (${code}) before listening: ${err}`)));
  });
  return {
    url,
    root,
    child,
    stderr: () => err,
    alive: () => child.exitCode === null && child.signalCode === null,
    stop: async (so = {}) => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
      if (!so.keep) rmSync(root, { recursive: true, force: true });
    },
  };
}

/** Write `text` on a fresh TCP connection and collect the reply until the server closes or `ms` pass. */
export function rawRequest(url: string, text: string | Buffer, ms = 2000): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const sock = connect(Number(u.port), u.hostname);
    let got = '';
    const done = () => {
      clearTimeout(timer);
      sock.destroy();
      resolve(got);
    };
    const timer = setTimeout(done, ms);
    sock.on('data', (c) => {
      got += c.toString('latin1');
    });
    sock.on('close', done);
    sock.on('error', done);
    sock.write(text);
  });
}

/**
 * A request that must be answered within `ms` (the hardening promise: a refusal comes within a second or two; the
 * default leaves room for a machine shared by parallel test runs).
 */
export async function quick(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
  ms = 3000,
): Promise<ApiResponse> {
  const t0 = Date.now();
  const r = await api(base, method, path, body, headers);
  assert.ok(Date.now() - t0 < ms, `${method} ${path} took ${Date.now() - t0} ms (limit ${ms})`);
  return r;
}

/** Queue a short stub prompt (before an attack), to check afterwards that it was not lost. */
export async function queueWitness(base: string, headers: Record<string, string> = {}): Promise<string> {
  const r = await api(
    base,
    'POST',
    '/prompt',
    { prompt: chainPrompt({ steps: 5, prefix: 'witness' }), client_id: 'witness' },
    headers,
  );
  assert.equal(r.status, 200, r.text);
  return r.json.prompt_id;
}

/** The server process is alive, answers GET /prompt quickly, and the witness prompt completed successfully. */
export async function assertAliveAndWhole(
  s: ChildServer,
  witness: string,
  headers: Record<string, string> = {},
): Promise<void> {
  assert.ok(s.alive(), `server process died: ${s.stderr().slice(-2000)}`);
  assert.equal((await quick(s.url, 'GET', '/prompt', undefined, headers)).status, 200);
  for (let i = 0; i < 200; i++) {
    const h = (await api(s.url, 'GET', `/history/${witness}`, undefined, headers)).json;
    if (h?.[witness]) {
      assert.equal(h[witness].status.status_str, 'success');
      return;
    }
    await sleep(50);
  }
  assert.fail(`witness prompt ${witness} never finished`);
}
