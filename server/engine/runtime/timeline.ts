/**
 * The worker's timeline (RuntimeStats.runTimings) read and written in pieces: a loop's contiguous phases, and the
 * entries one call added.
 * Example (worker): const mark = phaseMarks(store, 'tcd'); ...set-up...; mark('setup'); ...UNet...; mark('unet');
 * Example (main):   const before = await engine.stats(); ...; const added = timelineAfter(before, await engine.stats());
 */
import type { RuntimeStats } from './protocol.js';

export type TimelineEntry = RuntimeStats['runTimings'][number];

/**
 * Contiguous phases of a loop: each mark records, as `<prefix>_<name>`, the time since the previous mark (the first
 * since this call), so a loop's phases add up to its whole time in the worker.
 */
export function phaseMarks(
  store: { recordRun(component: string, ms: number, end?: number): void },
  prefix: string,
): (name: string) => void {
  let last = performance.now();
  return (name) => {
    const now = performance.now();
    store.recordRun(`${prefix}_${name}`, now - last, now);
    last = now;
  };
}

/** The entries recorded after `before` was taken (found by its last entry, not by a clock). */
export function timelineAfter(before: RuntimeStats, after: RuntimeStats): TimelineEntry[] {
  const last = before.runTimings.at(-1);
  if (!last) return after.runTimings;
  const i = after.runTimings.findIndex((e) => e.at === last.at && e.component === last.component);
  if (i < 0) throw new Error('the worker timeline rolled over (over 1000 entries) between the two stats calls');
  return after.runTimings.slice(i + 1);
}
