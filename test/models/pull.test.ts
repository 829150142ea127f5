/**
 * issue 7 point 5 against a real HTTP server on loopback: a download lands in models/<folder> with size and sha256
 * checked; an interrupted transfer leaves a .part that the next pull resumes with a Range request; a server that
 * ignores Range restarts cleanly; a sha mismatch is refused and deleted; offline (connection refused) says so in
 * one line; `tcd-studio models pull/list` through the CLI with a --catalog file.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type IncomingMessage, type ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pullModel, PullError } from '../../server/models/pull.js';
import { CATALOG, checkEntry, findEntry, type CatalogEntry } from '../../server/models/catalog.js';
import { entryState, listText } from '../../server/models/list.js';
import { runCli, tempDirs } from '../cli/run-cli.js';

// 300 kB of deterministic, non-repeating bytes
const BODY = Buffer.alloc(300_000);
for (let i = 0, x = 12345; i < BODY.length; i++) { x = (Math.imul(x, 1103515245) + 12345) >>> 0; BODY[i] = x >>> 24; }
const SHA = createHash('sha256').update(BODY).digest('hex');

interface Seen { url: string; range: string | undefined }
let server: Server, base: string;
const seen: Seen[] = [];
/** cut the next full-body response after this many bytes */
let cutNextAt: number | null = null;

function handler(req: IncomingMessage, res: ServerResponse) {
  seen.push({ url: req.url!, range: req.headers.range });
  if (req.url === '/redirect.bin') { res.writeHead(302, { location: '/file.bin' }).end(); return; }
  if (req.url !== '/file.bin' && req.url !== '/norange.bin') { res.writeHead(404).end(); return; }
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  if (m && req.url === '/file.bin') {
    const start = Number(m[1]);
    if (start >= BODY.length) { res.writeHead(416, { 'content-range': `bytes */${BODY.length}` }).end(); return; }
    res.writeHead(206, { 'content-length': BODY.length - start, 'content-range': `bytes ${start}-${BODY.length - 1}/${BODY.length}` });
    res.end(BODY.subarray(start));
    return;
  }
  res.writeHead(200, { 'content-length': BODY.length });
  if (cutNextAt !== null) {
    const n = cutNextAt; cutNextAt = null;
    res.write(BODY.subarray(0, n), () => setTimeout(() => res.socket?.destroy(), 50));
    return;
  }
  res.end(BODY);
}

let d: ReturnType<typeof tempDirs>;
before(async () => {
  d = tempDirs('tcd-models-');
  server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
after(async () => { await new Promise<void>((r) => server.close(() => r())); rmSync(d.root, { recursive: true, force: true }); });

const entry = (name: string, o: Partial<CatalogEntry> = {}): CatalogEntry =>
  ({ name, folder: 'loras', filename: `${name}.safetensors`, url: `${base}/file.bin`, size: BODY.length, sha256: SHA, description: 'test file', ...o });

test('the built-in catalog: the four models under ComfyUI names, valid entries, unknown values stated as null', () => {
  assert.deepEqual(CATALOG.map((e) => `${e.folder}/${e.filename}`), ['checkpoints/sd_xl_base_1.0.safetensors', 'checkpoints/v1-5-pruned-emaonly.safetensors', 'loras/TCD-SDXL-LoRA.safetensors', 'loras/TCD-SD15-LoRA.safetensors']);
  for (const e of CATALOG) assert.deepEqual(checkEntry(e, 'catalog'), e);
  assert.equal(findEntry('TCD-SD15-LoRA.safetensors')?.name, 'tcd-sd15-lora');
  assert.throws(() => checkEntry({ ...entry('x'), filename: '../evil.safetensors' }, 'f'), /filename/);
});

test('a full download lands in models/<folder> with size and sha256 checked; a second pull finds it installed', async () => {
  const r = await pullModel(entry('plain'), d.models);
  assert.equal(r.path, join(d.models, 'loras', 'plain.safetensors'));
  assert.equal(r.sha256, SHA);
  assert.ok(readFileSync(r.path).equals(BODY));
  assert.ok(!existsSync(`${r.path}.part`));
  assert.equal((await pullModel(entry('plain'), d.models)).alreadyInstalled, true);
  // through a redirect, with the size unknown to the catalog: Content-Length decides
  const r2 = await pullModel(entry('redirected', { url: `${base}/redirect.bin`, size: null, sha256: null }), d.models);
  assert.equal(r2.sha256, SHA);
});

test('an interrupted transfer keeps its .part and the next pull resumes it with a Range request', async () => {
  const e = entry('resumed');
  cutNextAt = 120_000;
  const progress: number[] = [];
  await assert.rejects(pullModel(e, d.models, { onProgress: (n) => progress.push(n) }), (err: unknown) => {
    assert.ok(err instanceof PullError);
    assert.match(err.message, /interrupted at \d+ of 300000 bytes.*run the same command again to resume/);
    return true;
  });
  const part = join(d.models, 'loras', 'resumed.safetensors.part');
  const had = statSync(part).size;
  assert.ok(had > 0 && had <= 120_000, `part has ${had} bytes`);
  assert.deepEqual(entryState(e, d.models), { state: 'partial', bytes: had });
  assert.match(listText(d.models, [e]), new RegExp(`resumed .*partial .*\\(${Math.floor((100 * had) / BODY.length)}%\\)`));
  seen.length = 0;
  const r = await pullModel(e, d.models);
  assert.deepEqual(seen.map((s) => s.range), [`bytes=${had}-`]);
  assert.equal(r.resumedFrom, had);
  assert.equal(r.sha256, SHA, 'the hash covers the resumed part and the rest');
  assert.ok(readFileSync(r.path).equals(BODY));
  assert.ok(!existsSync(part));
});

test('a server that ignores Range restarts the file from the beginning', async () => {
  const e = entry('norange', { url: `${base}/norange.bin` });
  mkdirSync(join(d.models, 'loras'), { recursive: true });
  writeFileSync(join(d.models, 'loras', 'norange.safetensors.part'), Buffer.from('stale bytes that are not the file'));
  const r = await pullModel(e, d.models);
  assert.ok(readFileSync(r.path).equals(BODY));
});

test('a sha256 mismatch is refused and the download deleted; a size mismatch is refused before downloading', async () => {
  const e = entry('wrongsha', { sha256: '0'.repeat(64) });
  await assert.rejects(pullModel(e, d.models), /sha256 mismatch \(expected 0{64}, got [0-9a-f]{64}\); the download was deleted/);
  assert.deepEqual(entryState(e, d.models), { state: 'missing' });
  await assert.rejects(pullModel(entry('wrongsize', { size: 5 }), d.models), /the server sends 300000 bytes, the catalog expects 5/);
});

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as { port: number }).port;
  await new Promise<void>((r) => closed.close(() => r()));
  return port;
}

test('offline (connection refused) is one clear sentence', async () => {
  const port = await closedPort();
  await assert.rejects(pullModel(entry('offline', { url: `http://127.0.0.1:${port}/file.bin` }), d.models),
    new RegExp(`^PullError: cannot download from 127\\.0\\.0\\.1:${port}: connection refused \\(are you offline, or is the server down\\?\\)$`));
});

test('CLI: models pull with a --catalog file, models list, and exit 1 with one line when offline', async () => {
  const cat = join(d.root, 'catalog.json');
  const port = await closedPort();
  writeFileSync(cat, JSON.stringify([entry('cli-file'), entry('cli-offline', { url: `http://127.0.0.1:${port}/file.bin` })]));
  const models = join(d.root, 'cli-models');
  const pull = await runCli(['models', 'pull', 'cli-file', '--catalog', cat, '--models', models]);
  assert.equal(pull.code, 0, pull.stderr);
  assert.match(pull.stdout, /cli-file: .*cli-file\.safetensors \(300\.0 KB; sha256 verified\)/);
  assert.match(pull.stderr, /100%/);
  assert.ok(readFileSync(join(models, 'loras', 'cli-file.safetensors')).equals(BODY));
  const list = await runCli(['models', 'list', '--catalog', cat, '--models', models]);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /loras\/cli-file\.safetensors\s+300.0 KB/);
  assert.match(list.stdout, /sdxl-base\s+checkpoints\/sd_xl_base_1\.0\.safetensors\s+6\.94 GB\s+not installed/);
  assert.match(list.stdout, /cli-file\s+loras\/cli-file\.safetensors\s+300.0 KB\s+installed/);
  const off = await runCli(['models', 'pull', 'cli-offline', '--catalog', cat, '--models', models]);
  assert.equal(off.code, 1);
  assert.equal(off.stderr.trim(), `tcd-studio models: cannot download from 127.0.0.1:${port}: connection refused (are you offline, or is the server down?)`);
});
