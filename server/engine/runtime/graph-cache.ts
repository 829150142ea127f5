/**
 * Graph bytes for a session. Small components are serialised in memory with inline initializers; big ones are
 * written once to `<cacheDir>/<key>/model.onnx` + `model.onnx.bin` (external data) and loaded from there, so a
 * second start skips reading the checkpoint and building the graph altogether.
 * The key addresses the content: a hash of everything the bytes depend on (builder source code, checkpoint and
 * LoRA files by path+size+mtime, component, variant, dtype); hashing a 7 GB checkpoint's bytes would cost more than
 * building its graph, so file identity stands in for file content.
 * Example:
 *   const art = await graphArtifact({ cacheDir, key, externalize: bytes > limit, build: () => buildUnet(...) });
 *   await ort.InferenceSession.create(art.kind === 'file' ? art.path : art.bytes, opts);
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GraphBuilder } from '../onnx/graph.js';
import { serializeModel, writeModel } from '../onnx/serialize.js';

export type GraphArtifact = { kind: 'bytes'; bytes: Uint8Array } | { kind: 'file'; path: string; reused: boolean };

export interface FileIdentity { path: string; size: number; mtimeMs: number }

export function fileIdentity(path: string): FileIdentity {
  const s = statSync(path);
  return { path, size: s.size, mtimeMs: Math.floor(s.mtimeMs) };
}

let codeVersionMemo: string | undefined;
/**
 * Hash of the model-building source (server/engine/*.{ts,js} and onnx/), so a builder change invalidates cached
 * graphs instead of loading stale ones. Reads the files of whichever tree runs (src under tsx, dist when compiled).
 */
export function builderCodeVersion(): string {
  if (codeVersionMemo) return codeVersionMemo;
  const engineDir = dirname(dirname(fileURLToPath(import.meta.url))); // server/engine
  const h = createHash('sha256');
  for (const dir of [engineDir, join(engineDir, 'onnx')]) {
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir).sort()) {
      if (!/\.(ts|js)$/.test(name) || name.endsWith('.d.ts')) continue;
      h.update(name).update(readFileSync(join(dir, name)));
    }
  }
  codeVersionMemo = h.digest('hex').slice(0, 16);
  return codeVersionMemo;
}

/** Stable key over a JSON-able description (object keys sorted). */
export function graphKey(parts: unknown): string {
  const stable = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(stable);
    if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, stable((v as Record<string, unknown>)[k])]));
    return v;
  };
  return createHash('sha256').update(JSON.stringify(stable(parts))).digest('hex').slice(0, 32);
}

export interface ArtifactRequest {
  cacheDir: string;
  key: string;
  /** true: external data on disk (reused across starts); false: inline bytes in memory */
  externalize: boolean;
  build: () => GraphBuilder;
}

/** Whether graphArtifact would reuse a file written earlier (in-memory artifacts are always rebuilt). */
export function artifactCached(req: Omit<ArtifactRequest, 'build'>): boolean {
  return req.externalize && existsSync(join(req.cacheDir, req.key, 'model.onnx'));
}

export function graphArtifact(req: ArtifactRequest): GraphArtifact {
  if (!req.externalize) return { kind: 'bytes', bytes: serializeModel(req.build()) };
  const dir = join(req.cacheDir, req.key);
  const model = join(dir, 'model.onnx');
  if (existsSync(model)) return { kind: 'file', path: model, reused: true };
  mkdirSync(req.cacheDir, { recursive: true });
  // write into a private directory, then rename it into place: readers never see half-written files, and the
  // .bin location recorded inside model.onnx is relative, so it survives the rename
  const tmp = join(req.cacheDir, `${req.key}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
  mkdirSync(tmp);
  try {
    writeModel(req.build(), join(tmp, 'model.onnx'), { externalData: true });
    try {
      renameSync(tmp, dir);
    } catch (e) {
      if (!existsSync(model)) throw e; // another process finished first: use its copy
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return { kind: 'file', path: model, reused: false };
}
