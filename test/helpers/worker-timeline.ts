/**
 * The engine worker's timeline (RuntimeStats.runTimings: session runs and cancel arrivals, each with its start on the
 * epoch clock) as evidence of what the sampling loops did, and when, without timing anything.
 * Example:
 *   const before = await engine.stats();
 *   await engine.sampleTcd(req, { signal, onStep });
 *   assertStoppedAtCancel(timelineAfter(before, await engine.stats()), reportedSteps);
 */
import assert from 'node:assert/strict';
import type { TimelineEntry } from '../../server/engine/runtime/timeline.js';

export { timelineAfter } from '../../server/engine/runtime/timeline.js';

/** now on the epoch clock the worker's `at` uses (comparable across threads and processes of this machine) */
export const epochNow = () => performance.timeOrigin + performance.now();

/** Busy-waits `ms` on this thread (its event loop holds every message meanwhile); returns the end on the epoch clock. */
export function holdThisThread(ms: number): number {
  const until = performance.now() + ms;
  while (performance.now() < until);
  return epochNow();
}

/**
 * A cancelled loop's precise semantics on the worker's timeline: the cancel reached the worker once, no UNet call
 * started after it arrived, and every UNet call belongs to a step that was reported (`unetPerStep` calls per step).
 */
export function assertStoppedAtCancel(timeline: TimelineEntry[], reportedSteps: number, unetPerStep = 1): void {
  const cancels = timeline.filter((e) => e.component === 'cancel');
  assert.equal(cancels.length, 1, 'the cancel reached the worker once');
  const unet = timeline.filter((e) => e.component === 'unet');
  assert.equal(unet.length, reportedSteps * unetPerStep, 'every UNet call the loop made was reported as a step');
  const late = unet.filter((e) => e.at >= cancels[0].at);
  assert.deepEqual(late, [], 'no UNet call started after the cancel reached the worker');
}
