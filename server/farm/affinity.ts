/**
 * Model affinity: in which order a free worker looks at the per-checkpoint queues. A worker takes the prompts of the
 * checkpoint it already holds first, leaves a checkpoint another idle worker holds to that worker, and never lets a
 * prompt wait more than `maxWaitMs` for this (then plain oldest-first wins). Pure, so it is tested without Redis.
 * Example:
 *   const order = queueOrder(heads, me, others, { affinity: true, maxWaitMs: 10000, orphanGraceMs: 3000 }, Date.now());
 */
import type { WorkerState } from './protocol.js';

/** A non-empty queue: its checkpoint ('' = none), when its oldest waiting prompt was queued and that prompt's queue number. */
export interface QueueHead {
  name: string;
  ckpt: string;
  oldest: number;
  number?: number;
}

export interface AffinityOptions {
  /** false: oldest prompt first whatever the worker holds (what the gain is measured against) */
  affinity: boolean;
  /** a prompt older than this is taken by any worker that can run it */
  maxWaitMs: number;
  /** a checkpoint no live worker has on disk is taken (and reported missing) after this long */
  orphanGraceMs: number;
}

export interface Me {
  id: string;
  loaded: string[];
  onDisk: Set<string>;
}

/** Queue names to try, best first; queues this worker must not take are left out. */
export function queueOrder(
  heads: QueueHead[],
  me: Me,
  others: WorkerState[],
  o: AffinityOptions,
  now: number,
): string[] {
  const onAnyDisk = new Set<string>(me.onDisk);
  for (const w of others) for (const c of w.onDisk) onAnyDisk.add(c);
  const runnable = heads.filter((h) => {
    if (!h.ckpt || me.onDisk.has(h.ckpt)) return true;
    // nobody can run it: after a grace period one worker takes it to report the missing model to the client
    return !onAnyDisk.has(h.ckpt) && now - h.oldest >= o.orphanGraceMs;
  });
  // queue numbers order prompts exactly as the server numbered them; times only break ties
  const oldestFirst = (a: QueueHead, b: QueueHead) => (a.number ?? 0) - (b.number ?? 0) || a.oldest - b.oldest;
  if (!o.affinity) return runnable.sort(oldestFirst).map((h) => h.name);

  const idleHolders = new Set<string>();
  for (const w of others)
    if (w.id !== me.id && w.running.length < w.concurrency) for (const c of w.loaded) idleHolders.add(c);
  const rank = (h: QueueHead): number => {
    if (now - h.oldest >= o.maxWaitMs) return 0; // starving: fairness beats affinity
    if (!h.ckpt || me.loaded.includes(h.ckpt)) return 1; // no model switch here
    if (!idleHolders.has(h.ckpt)) return 2; // needs a load somewhere anyway, and nobody idle holds it
    return 3; // an idle worker holds it: leave it to that worker
  };
  const ranked = runnable.map((h) => ({ h, r: rank(h) })).filter((x) => x.r < 3);
  ranked.sort((a, b) => a.r - b.r || oldestFirst(a.h, b.h));
  return ranked.map((x) => x.h.name);
}
