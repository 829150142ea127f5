/**
 * Downloads one catalog entry into models/<folder>/<filename>: streamed into `<filename>.part`, resumed with an HTTP
 * Range request when a .part is already there, checked for size and (when the catalog knows it) sha256, and only
 * then renamed into place, so a half-downloaded or corrupt file is never listed as a model.
 * Example:
 *   await pullModel(findEntry('tcd-sdxl-lora')!, 'models', { onProgress: (done, total) => ... });
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { CatalogEntry } from './catalog.js';

export interface PullOptions {
  /** bytes done (including a resumed part) and the total when known */
  onProgress?: (done: number, total: number | null) => void;
  log?: (message: string) => void;
  /** do not check the sha256 even when the catalog has one */
  skipSha?: boolean;
  signal?: AbortSignal;
}

export interface PullResult { path: string; bytes: number; sha256: string; resumedFrom: number; alreadyInstalled: boolean }

/** A download failure with a one-line, user-facing message. */
export class PullError extends Error { constructor(message: string) { super(message); this.name = 'PullError'; } }

/** Why a request could not even start, in words a user can act on. */
export function connectionProblem(url: string, e: unknown): string {
  const host = new URL(url).host;
  const code = (e as { cause?: { code?: string } }).cause?.code ?? (e as { code?: string }).code;
  switch (code) {
    case 'ECONNREFUSED': return `cannot download from ${host}: connection refused (are you offline, or is the server down?)`;
    case 'ENOTFOUND': case 'EAI_AGAIN': return `cannot download from ${host}: the name does not resolve (are you offline?)`;
    case 'ETIMEDOUT': case 'UND_ERR_CONNECT_TIMEOUT': return `cannot download from ${host}: the connection timed out (are you offline?)`;
    case 'ENETUNREACH': case 'EHOSTUNREACH': return `cannot download from ${host}: network unreachable (are you offline?)`;
    default: return `cannot download from ${host}: ${code ?? (e as { cause?: Error }).cause?.message ?? (e as Error).message}`;
  }
}

async function hashFile(path: string, hash: Hash): Promise<void> {
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}

export async function pullModel(entry: CatalogEntry, modelsDir: string, o: PullOptions = {}): Promise<PullResult> {
  const dir = join(modelsDir, entry.folder);
  const dest = join(dir, entry.filename);
  const part = `${dest}.part`;
  mkdirSync(dir, { recursive: true });
  if (existsSync(dest) && (entry.size === null || statSync(dest).size === entry.size)) {
    return { path: dest, bytes: statSync(dest).size, sha256: '', resumedFrom: 0, alreadyInstalled: true };
  }
  let start = existsSync(part) ? statSync(part).size : 0;
  if (entry.size !== null && start > entry.size) { unlinkSync(part); start = 0; }

  const hash = createHash('sha256');
  let total: number | null = entry.size;
  let done = start;
  if (!(entry.size !== null && start === entry.size)) {
    let res: Response;
    try {
      res = await fetch(entry.url, { headers: start > 0 ? { range: `bytes=${start}-` } : {}, signal: o.signal });
    } catch (e) { throw new PullError(connectionProblem(entry.url, e)); }
    if (res.status === 416 && start > 0) {
      // the server says nothing is left: the part may be whole (size unknown to us) or stale; start over once
      await res.body?.cancel();
      unlinkSync(part);
      return pullModel(entry, modelsDir, o);
    }
    if (res.status !== 200 && res.status !== 206) { await res.body?.cancel(); throw new PullError(`cannot download ${entry.name}: HTTP ${res.status} ${res.statusText} from ${entry.url}`); }
    let append = false;
    if (res.status === 206) {
      const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
      if (!m || Number(m[1]) !== start) { await res.body?.cancel(); throw new PullError(`cannot resume ${entry.name}: unexpected Content-Range "${res.headers.get('content-range')}"`); }
      if (m[2] !== '*') total ??= Number(m[2]);
      append = true;
      o.log?.(`resuming ${entry.filename} at ${start} bytes`);
    } else {
      // 200: the server ignored the Range (or there was no part): the body is the whole file
      done = 0;
      const len = res.headers.get('content-length');
      if (len !== null) total ??= Number(len);
      if (entry.size !== null && len !== null && Number(len) !== entry.size) { await res.body?.cancel(); throw new PullError(`cannot download ${entry.name}: the server sends ${len} bytes, the catalog expects ${entry.size}`); }
    }
    if (append) await hashFile(part, hash);
    const out = createWriteStream(part, { flags: append ? 'a' : 'w' });
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        hash.update(chunk);
        done += chunk.length;
        if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
        o.onProgress?.(done, total);
      }
    } catch (e) {
      await new Promise<void>((r) => out.end(() => r()));
      if (o.signal?.aborted) throw new PullError(`download of ${entry.name} stopped at ${done} bytes; run the same command again to resume`);
      throw new PullError(`download of ${entry.name} interrupted at ${done}${total ? ` of ${total}` : ''} bytes (${(e as Error).message}); run the same command again to resume`);
    }
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  } else {
    await hashFile(part, hash);
  }

  const bytes = statSync(part).size;
  if (total !== null && bytes !== total) throw new PullError(`download of ${entry.name} ended at ${bytes} of ${total} bytes; run the same command again to resume`);
  const sha256 = hash.digest('hex');
  if (entry.sha256 && !o.skipSha && sha256 !== entry.sha256) {
    unlinkSync(part);
    throw new PullError(`${entry.name}: sha256 mismatch (expected ${entry.sha256}, got ${sha256}); the download was deleted`);
  }
  renameSync(part, dest);
  return { path: dest, bytes, sha256, resumedFrom: start, alreadyInstalled: false };
}
