/**
 * Graph bytes for a session. Small components are serialised in memory with inline initializers; big ones are
 * written once to `<cacheDir>/<key>/model.onnx` + `model.onnx.bin` (external data) and loaded from there, so a
 * second start skips reading the checkpoint and building the graph altogether.
 * The key addresses the content: a hash of everything the bytes depend on (builder source code, checkpoint and
 * LoRA files by path+size+mtime, component, variant, dtype); hashing a 7 GB checkpoint's bytes would cost more than
 * building its graph, so file identity stands in for file content.
 * The cache has a disk budget (engine option graphCacheMB, see graphCacheBudgetBytes): after each new artifact, the
 * least recently
 * used ones (directory mtime, refreshed on every reuse) are deleted until the total fits, sparing the new one and
 * those whose sessions are loaded (request.inUse).
 * Example:
 *   const art = await graphArtifact({ cacheDir, key, externalize: bytes > limit, build: () => buildUnet(...) });
 *   await ort.InferenceSession.create(art.kind === 'file' ? art.path : art.bytes, opts);
 */
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  linkSync,
  openSync,
  readSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  statfsSync,
  utimesSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GraphBuilder } from '../onnx/graph.js';
import {
  DataType,
  type ExternalTensor,
  externalTensors,
  type ReusableData,
  serializeModel,
  writeModel,
} from '../onnx/serialize.js';

export type GraphArtifact =
  | { kind: 'bytes'; bytes: Uint8Array }
  /** evicted: artifacts deleted to keep the cache under its disk budget after this one was written */
  | { kind: 'file'; path: string; reused: boolean; evicted: Evicted[] };

export interface FileIdentity {
  path: string;
  size: number;
  mtimeMs: number;
}

export function fileIdentity(path: string): FileIdentity {
  const s = statSync(path);
  return { path, size: s.size, mtimeMs: Math.floor(s.mtimeMs) };
}

let codeVersionMemo: string | undefined;
/**
 * Hash of the model-building source (every .ts/.js file under server/engine, sub-folders included: model/, lora/,
 * onnx/, runtime/...), so a builder change invalidates cached graphs instead of loading stale ones. Reads the files
 * of whichever tree runs (src under tsx, dist when compiled).
 */
export function builderCodeVersion(): string {
  codeVersionMemo ??= sourceVersion(dirname(dirname(fileURLToPath(import.meta.url)))); // server/engine
  return codeVersionMemo;
}

/** Hash of the .ts/.js sources (not .d.ts) under `root`, every depth, by relative path and content. */
export function sourceVersion(root: string): string {
  const h = createHash('sha256');
  const walk = (dir: string, rel: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const path = join(dir, e.name),
        name = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(path, name);
      else if (e.isFile() && /\.(ts|js)$/.test(e.name) && !e.name.endsWith('.d.ts'))
        h.update(name).update('\0').update(readFileSync(path));
    }
  };
  if (existsSync(root)) walk(root, '');
  return h.digest('hex').slice(0, 16);
}

/** Stable key over a JSON-able description (object keys sorted). */
export function graphKey(parts: unknown): string {
  const stable = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(stable);
    if (v && typeof v === 'object')
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, stable((v as Record<string, unknown>)[k])]),
      );
    return v;
  };
  return createHash('sha256')
    .update(JSON.stringify(stable(parts)))
    .digest('hex')
    .slice(0, 32);
}

export interface ArtifactRequest {
  cacheDir: string;
  key: string;
  /** true: external data on disk (reused across starts); false: inline bytes in memory */
  externalize: boolean;
  build: () => GraphBuilder;
  /**
   * Artifacts in use here, never evicted: `owner` (the caller's key for what this artifact becomes, e.g. a session
   * key) is remembered against `key`, and an artifact is kept while one of its owners is in `loaded()`.
   */
  inUse?: { owner: string; loaded: () => Iterable<string> };
  /** disk budget in bytes (Infinity: none); default graphCacheBudgetBytes(cacheDir) */
  budgetBytes?: number;
  /** one line per evicted artifact */
  log?: (line: string) => void;
  /**
   * key of a cached artifact (same cacheDir) whose weights this graph shares, e.g. the plain UNet under a LoRA
   * branch graph: its .bin is hard-linked in and the shared initializers are referenced there, not rewritten
   */
  reuseFrom?: string;
}

/** graph key -> owners (session keys) that used it in this thread, for ArtifactRequest.inUse */
const owners = new Map<string, Set<string>>();

function noteOwner(req: ArtifactRequest): void {
  if (!req.inUse) return;
  let set = owners.get(req.key);
  if (!set) owners.set(req.key, (set = new Set()));
  set.add(req.inUse.owner);
}

/** Graph keys whose owners are loaded now (plus the one just written). */
function keptKeys(req: ArtifactRequest): Set<string> {
  const keep = new Set([req.key]);
  if (!req.inUse) return keep;
  const loaded = new Set(req.inUse.loaded());
  for (const [key, set] of owners) if ([...set].some((o) => loaded.has(o))) keep.add(key);
  return keep;
}

/** Marks an artifact directory as used now (its mtime is the recency eviction goes by). */
function touch(dir: string): void {
  try {
    const now = new Date();
    utimesSync(dir, now, now);
  } catch {
    /* a read-only or vanished cache entry: recency is advisory */
  }
}

/** Whether graphArtifact would reuse a file written earlier (in-memory artifacts are always rebuilt). */
export function artifactCached(req: Omit<ArtifactRequest, 'build'>): boolean {
  return req.externalize && existsSync(join(req.cacheDir, req.key, 'model.onnx'));
}

export function graphArtifact(req: ArtifactRequest): GraphArtifact {
  if (!req.externalize) return { kind: 'bytes', bytes: serializeModel(req.build()) };
  const dir = join(req.cacheDir, req.key);
  const model = join(dir, 'model.onnx');
  noteOwner(req);
  if (existsSync(model)) {
    touch(dir);
    return { kind: 'file', path: model, reused: true, evicted: [] };
  }
  const budgetBytes = req.budgetBytes ?? graphCacheBudgetBytes(req.cacheDir);
  mkdirSync(req.cacheDir, { recursive: true });
  // write into a private directory, then rename it into place: readers never see half-written files, and the
  // .bin location recorded inside model.onnx is relative, so it survives the rename
  const tmp = join(req.cacheDir, `${req.key}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
  mkdirSync(tmp);
  try {
    writeModel(req.build(), join(tmp, 'model.onnx'), { externalData: true, reuse: reusableData(req, tmp) });
    try {
      renameSync(tmp, dir);
    } catch (e) {
      if (!existsSync(model)) throw e; // another process finished first: use its copy
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  touch(dir);
  const evicted = enforceGraphCacheBudget({
    cacheDir: req.cacheDir,
    budgetBytes,
    keep: keptKeys(req),
    log: req.log,
  });
  return { kind: 'file', path: model, reused: false, evicted };
}

/**
 * The weights of req.reuseFrom's artifact, hard-linked into `tmp` as base.onnx.bin (no bytes copied; the link keeps
 * them alive if that artifact is evicted). Undefined when there is none or the link fails (then all is written).
 */
function reusableData(req: ArtifactRequest, tmp: string): ReusableData | undefined {
  if (!req.reuseFrom) return undefined;
  const baseDir = join(req.cacheDir, req.reuseFrom);
  const tensors = ownWeights(baseDir);
  if (!tensors) return undefined;
  try {
    linkSync(join(baseDir, WEIGHT_FILE), join(tmp, REUSED_BIN));
  } catch {
    return undefined;
  }
  return { location: REUSED_BIN, tensors };
}
const REUSED_BIN = 'base.onnx.bin';
const WEIGHT_FILE = 'model.onnx.bin';

/** The initializers an artifact keeps in its own weight file (not in a linked base.onnx.bin); null without one. */
function ownWeights(dir: string): Map<string, ExternalTensor> | null {
  try {
    const placed = externalTensors(readFileSync(join(dir, 'model.onnx')));
    return new Map([...placed].filter(([, t]) => t.location === WEIGHT_FILE));
  } catch {
    return null;
  }
}

/** The initializers of a cached artifact's weight file, read by name (bytes in that graph's compute dtype). */
export interface SharedWeights {
  dtype: 'float16' | 'float32';
  has(name: string): boolean;
  /** every initializer name in the file */
  names(): string[];
  /** a fresh, aligned copy of the initializer's bytes */
  read(name: string): Uint8Array;
  close(): void;
}

/** Opens the weights of the artifact `key` in cacheDir (null when it is not cached with external data). */
export function sharedWeights(cacheDir: string, key: string): SharedWeights | null {
  const dir = join(cacheDir, key);
  const placed = ownWeights(dir);
  if (!placed) return null;
  const fd = openSync(join(dir, WEIGHT_FILE), 'r');
  const first = placed.values().next().value;
  return {
    dtype: first?.dataType === DataType.FLOAT16 ? 'float16' : 'float32',
    has: (name) => placed.has(name),
    names: () => [...placed.keys()],
    read: (name) => {
      const t = placed.get(name);
      if (!t) throw new Error(`"${name}" is not in ${key}'s weight file`);
      const out = new Uint8Array(t.bytes);
      let done = 0;
      while (done < t.bytes) {
        const n = readSync(fd, out, done, t.bytes - done, t.offset + done);
        if (n <= 0) throw new Error(`${key}'s weight file ends inside "${name}"`);
        done += n;
      }
      return out;
    },
    close: () => closeSync(fd),
  };
}

// ---- disk budget -------------------------------------------------------------------------------------------------

/** An artifact deleted to make room. */
export interface Evicted {
  key: string;
  bytes: number;
  lastUsed: Date;
}

const MiB = 1024 ** 2;
const DEFAULT_FLOOR = 8 * 1024 ** 3;
/** a `<key>.tmp-*` directory untouched this long is a dead writer's leftover, not a write in progress */
export const STALE_TMP_MS = 60 * 60 * 1000;
const ARTIFACT_DIR = /^[0-9a-f]{32}$/; // graphKey's output: nothing else in cacheDir is ever evicted

const defaultBudgets = new Map<string, number>();

/**
 * The graph cache's disk budget in bytes. `megabytes` (MiB; 0 = no limit, Infinity; the engine's graphCacheMB option,
 * from --graph-cache-mb / TCD_GRAPH_CACHE_MB) when given; otherwise,
 * fixed at first use per cacheDir: half of what the cache could grow into (free space on its filesystem plus what it
 * holds already, so an existing cache is not purged on the first write), but at least 8 GiB (one SDXL fp16 UNet
 * plus its VAE and text encoders).
 * Example: graphCacheBudgetBytes('/data/onnx-cache', 20480) === 20 * 1024 ** 3
 */
export function graphCacheBudgetBytes(cacheDir: string, megabytes?: number): number {
  if (megabytes !== undefined) {
    if (!(megabytes >= 0)) throw new Error(`graph cache budget must be a non-negative number of MiB, got ${megabytes}`);
    return megabytes === 0 ? Infinity : Math.round(megabytes * MiB);
  }
  let budget = defaultBudgets.get(cacheDir);
  if (budget === undefined) {
    let free = 0;
    try {
      const fs = statfsSync(existsSync(cacheDir) ? cacheDir : dirname(cacheDir));
      free = Number(fs.bavail) * Number(fs.bsize);
    } catch {
      /* no statfs here (or no such parent): the floor applies */
    }
    budget = Math.max(
      DEFAULT_FLOOR,
      Math.floor((free + cacheEntries(cacheDir).reduce((n, e) => n + (e.tmp ? 0 : e.bytes), 0)) / 2),
    );
    defaultBudgets.set(cacheDir, budget);
  }
  return budget;
}

interface CacheEntry {
  name: string;
  tmp: boolean;
  bytes: number;
  mtimeMs: number;
}

/**
 * Sum of file sizes under `path` and the newest mtime of it and anything in it. A file hard-linked into several
 * artifacts (a shared base .bin) counts its share in each, so the total counts it once.
 */
function measure(path: string): { bytes: number; newestMs: number } {
  const s = statSync(path);
  if (!s.isDirectory()) return { bytes: s.size / Math.max(1, s.nlink), newestMs: s.mtimeMs };
  let bytes = 0;
  let newestMs = s.mtimeMs;
  for (const name of readdirSync(path)) {
    try {
      const m = measure(join(path, name));
      bytes += m.bytes;
      newestMs = Math.max(newestMs, m.newestMs);
    } catch {
      /* removed meanwhile */
    }
  }
  return { bytes, newestMs };
}

/** Artifact and temporary directories in cacheDir; an artifact's mtime is its last use (touch). */
function cacheEntries(cacheDir: string): CacheEntry[] {
  if (!existsSync(cacheDir)) return [];
  const out: CacheEntry[] = [];
  for (const name of readdirSync(cacheDir)) {
    const tmp = name.includes('.tmp-');
    if (!tmp && !ARTIFACT_DIR.test(name)) continue;
    try {
      const path = join(cacheDir, name);
      if (!statSync(path).isDirectory()) continue;
      const m = measure(path);
      // a writer's progress shows in its files (the .bin grows), not in the directory's own mtime
      out.push({ name, tmp, bytes: m.bytes, mtimeMs: tmp ? m.newestMs : statSync(path).mtimeMs });
    } catch {
      /* removed meanwhile */
    }
  }
  return out;
}

/** Deletes a cache directory: renamed out of the way first, so no reader ever sees a half-deleted artifact. */
function remove(cacheDir: string, name: string): void {
  const doomed = join(
    cacheDir,
    `${name.split('.tmp-')[0]}.tmp-evict-${process.pid}-${Math.random().toString(36).slice(2)}`,
  );
  renameSync(join(cacheDir, name), doomed);
  rmSync(doomed, { recursive: true, force: true });
}

export interface BudgetRequest {
  cacheDir: string;
  /** Infinity: no limit (stale temporary directories are still removed) */
  budgetBytes: number;
  /** artifact keys never evicted (the one just written, those in use) */
  keep: ReadonlySet<string>;
  log?: (line: string) => void;
  now?: number;
}

/**
 * Removes temporary directories older than STALE_TMP_MS, then evicts whole artifact directories, least recently
 * used first, until the artifacts total at most budgetBytes (or only kept ones are left). Returns what was evicted.
 * Example: enforceGraphCacheBudget({ cacheDir, budgetBytes: 8 * 1024 ** 3, keep: new Set([key]), log: console.log })
 */
export function enforceGraphCacheBudget(req: BudgetRequest): Evicted[] {
  const now = req.now ?? Date.now();
  const entries = cacheEntries(req.cacheDir);
  for (const e of entries) {
    if (!e.tmp || now - e.mtimeMs < STALE_TMP_MS) continue;
    try {
      rmSync(join(req.cacheDir, e.name), { recursive: true, force: true });
      req.log?.(
        `graph cache: removed ${e.name}, a temporary directory untouched for ${Math.round((now - e.mtimeMs) / 60000)} min`,
      );
    } catch {
      /* another process got there first */
    }
  }
  const artifacts = entries.filter((e) => !e.tmp).sort((a, b) => a.mtimeMs - b.mtimeMs);
  let total = artifacts.reduce((n, e) => n + e.bytes, 0);
  const evicted: Evicted[] = [];
  for (const e of artifacts) {
    if (total <= req.budgetBytes) break;
    if (req.keep.has(e.name)) continue;
    try {
      remove(req.cacheDir, e.name);
    } catch {
      continue; /* another process evicted or is replacing it */
    }
    total -= e.bytes;
    owners.delete(e.name);
    evicted.push({ key: e.name, bytes: e.bytes, lastUsed: new Date(e.mtimeMs) });
    req.log?.(
      `graph cache: evicted ${e.name} (${(e.bytes / MiB).toFixed(1)} MiB, last used ${new Date(e.mtimeMs).toISOString()}); ` +
        `cache now ${(total / MiB).toFixed(1)} MiB of ${Number.isFinite(req.budgetBytes) ? `${(req.budgetBytes / MiB).toFixed(1)} MiB` : 'unlimited'}`,
    );
  }
  return evicted;
}
