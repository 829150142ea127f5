/**
 * The engine worker's timeline (RuntimeStats.runTimings: session runs and cancel arrivals, each with its start on the
 * epoch clock) as evidence of what the sampling loops did, and when, without timing anything.
 * Example:
 *   const before = await engine.stats();
 *   await engine.sampleTcd(req, { signal, onStep });
 *   assertStoppedAtCancel(timelineAfter(before, await engine.stats()), reportedSteps);
 */
import assert from 'node:assert/strict';
import type { RuntimeStats } from '../../server/engine/runtime/protocol.js';
import { timelineAfter, type TimelineEntry } from '../../server/engine/runtime/timeline.js';

export { timelineAfter };

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

/**
 * Runs a 4-step sampling loop (`run` gets its onStep) whose step-0 report blocks this thread for 1.5 s, and asserts
 * from the worker's timeline that the loop never waited for the main thread: all 4 steps were reported and every
 * UNet call started before the block ended (with a per-step acknowledgement, step 2 could not have).
 */
export async function assertLoopRunsWhileMainBlocked(
  stats: () => Promise<RuntimeStats>,
  run: (onStep: (p: { step: number }) => void) => Promise<unknown>,
): Promise<void> {
  const prior = await stats();
  const steps: number[] = [];
  let blockEnd = 0;
  await run((p) => {
    steps.push(p.step);
    if (p.step === 0) blockEnd = holdThisThread(1500); // no message gets in or out of the main thread meanwhile
  });
  assert.deepEqual(steps, [0, 1, 2, 3]);
  const unet = timelineAfter(prior, await stats()).filter((e) => e.component === 'unet');
  assert.equal(unet.length, 4);
  const afterBlock = unet.filter((e) => e.at >= blockEnd).length;
  assert.equal(afterBlock, 0, `${afterBlock} of 4 UNet calls started after the main thread was free again`);
}
