/**
 * Where a run's memory went, from ONNX Runtime's own log at level info (TCD_ORT_LOG_LEVEL=info): its BFC arenas say
 * when they are made, what they reserve for initializers (weights) and each time they grow for activations and
 * scratch space (cuDNN workspaces come from the arena too). Summed per allocator ('Cuda', 'Cpu', 'CudaPinned') they
 * tell the weights from the growth, and the largest growths with the session that logged last before them, which
 * nvidia-smi's single peak cannot. Memory outside the arenas (the CUDA context, cuBLAS and CUDA-graph pools) is what
 * the peak holds beyond these sums.
 * Example: TCD_ORT_LOG_LEVEL=info node dist/server/tools/bench.js ... 2> ort.log
 *          node dist/server/tools/bench/arena-summary.js ort.log > arenas.json
 */
import { readFileSync } from 'node:fs';

export interface ArenaGrowth {
  allocator: string;
  /** what the allocation that made the arena grow asked for */
  requestedBytes: number;
  /** what the arena took from the device for it */
  extendedBytes: number;
  /** the session log id seen last before it (sessions log as they are made; runs log nothing at info) */
  after: string | null;
}

export interface AllocatorTotals {
  arenas: number;
  /** initializers placed through Reserve */
  reservedBytes: number;
  reserves: number;
  /** growth of the arenas (activations, scratch) */
  extendedBytes: number;
  extensions: number;
}

export interface ArenaSummary {
  allocators: Record<string, AllocatorTotals>;
  /** the largest growths, largest first */
  largest: ArenaGrowth[];
}

const CREATE = /Creating BFCArena for (\S+?) with/;
const RESERVE = /Reserving memory in BFCArena for (\S+?) size: (\d+)/;
const EXTENDING = /Extending BFCArena for (\S+?)\. .*num_bytes: (\d+)/;
const EXTENDED = /Extended allocation by (\d+) bytes/;
// "[I:onnxruntime:sdxl:unet, inference_session.cc:...": the logger's id, which is the session's logId for session lines
const LOGGER = /\[[VIWEF]:onnxruntime:([^,\]]+),/;

/** Folds an ORT log (any other lines are ignored) into per-allocator totals and the `top` largest growths. */
export function summariseArenaLog(text: string, top = 12): ArenaSummary {
  const allocators: Record<string, AllocatorTotals> = {};
  const totals = (name: string) =>
    (allocators[name] ??= { arenas: 0, reservedBytes: 0, reserves: 0, extendedBytes: 0, extensions: 0 });
  const growths: ArenaGrowth[] = [];
  let session: string | null = null;
  let pending: { allocator: string; requestedBytes: number } | null = null;
  for (const line of text.split('\n')) {
    const logger = LOGGER.exec(line)?.[1];
    // the default logger (onnxruntime-node, or the addon's env) is not a session
    if (logger && logger.includes(':')) session = logger;
    let m: RegExpExecArray | null;
    if ((m = CREATE.exec(line))) totals(m[1]).arenas++;
    else if ((m = RESERVE.exec(line))) {
      const t = totals(m[1]);
      t.reservedBytes += Number(m[2]);
      t.reserves++;
    } else if ((m = EXTENDING.exec(line))) pending = { allocator: m[1], requestedBytes: Number(m[2]) };
    else if ((m = EXTENDED.exec(line)) && pending) {
      const extendedBytes = Number(m[1]);
      const t = totals(pending.allocator);
      t.extendedBytes += extendedBytes;
      t.extensions++;
      growths.push({ ...pending, extendedBytes, after: session });
      pending = null;
    }
  }
  growths.sort((a, b) => b.extendedBytes - a.extendedBytes);
  return { allocators, largest: growths.slice(0, top) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const out: Record<string, ArenaSummary> = {};
  for (const f of process.argv.slice(2)) out[f] = summariseArenaLog(readFileSync(f, 'utf8'));
  console.log(JSON.stringify(out, null, 1));
}
