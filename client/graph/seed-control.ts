// control_after_generate: what a seed widget does to its value after each queue (ComfyUI semantics).
import type { SeedControl } from './widget-spec.js';

/**
 * Next seed value after queueing. `random` is injectable so tests are deterministic.
 * @example nextSeed(5, 'increment', { min: 0, max: 10 }) // 6
 */
export function nextSeed(
  value: number,
  control: SeedControl,
  range: { min?: number; max?: number; step?: number } = {},
  random: () => number = Math.random,
): number {
  const min = range.min ?? 0;
  // Seeds can be up to 2^64-1, beyond doubles' integer range; randomize within the safe range like ComfyUI's 1125899906842624 cap.
  const max = Math.min(range.max ?? Number.MAX_SAFE_INTEGER, 1125899906842624);
  const step = range.step ?? 1;
  switch (control) {
    case 'fixed':
      return value;
    case 'increment':
      return Math.min(max, value + step);
    case 'decrement':
      return Math.max(min, value - step);
    case 'randomize':
      return Math.floor(random() * (max - min + 1)) + min;
  }
}
