/**
 * Where the reference fixtures live (../shared/fixtures beside the project, or $TCD_FIXTURES).
 * Tests that need them call `fixtureSkip()` and pass it as node:test's `skip` option, so an absent folder shows
 * up as a visible "skipped: ../shared/fixtures not found" instead of a silent pass.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile } from '../../server/engine/io/safetensors.js';
import { detectCheckpoint } from '../../server/engine/model/detect.js';
import type { Tensor } from '../../server/engine/tensor.js';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FIXTURES = process.env.TCD_FIXTURES ?? join(projectRoot, '..', 'shared', 'fixtures');

export function fixturesPresent(): boolean {
  return existsSync(join(FIXTURES, 'manifest.json'));
}

/** `false` when the fixtures are there, else the skip message for node:test. */
export function fixtureSkip(): false | string {
  return fixturesPresent() ? false : 'skipped: ../shared/fixtures not found';
}

export function fixturePath(name: string): string {
  return join(FIXTURES, name);
}

/**
 * The UNet reference case of a tiny fixture checkpoint as graph feeds: x, t, context, plus text_embeds and time_ids
 * when the UNet takes them (SDXL); `ref` is diffusers' output (unet/out). The caller closes ckpt and cases.
 */
export function unetFixtureCase(family: 'sd1' | 'sdxl') {
  const ckpt = SafetensorsFile.open(fixturePath(`${family}_tiny.safetensors`));
  const cases = SafetensorsFile.open(fixturePath(`${family}_tiny_cases.safetensors`));
  const config = detectCheckpoint(ckpt);
  const feeds: Record<string, Tensor> = {
    x: cases.readTensor('unet/x'),
    t: cases.readTensor('unet/t'),
    context: cases.readTensor('unet/context'),
  };
  if (config.unet.adm) {
    feeds.text_embeds = cases.readTensor('unet/text_embeds');
    feeds.time_ids = cases.readTensor('unet/time_ids');
  }
  return { ckpt, cases, config, cfg: config.unet, feeds, ref: cases.readTensor('unet/out') };
}

export function fixtureJson<T = any>(name: string): T {
  return JSON.parse(readFileSync(fixturePath(name), 'utf8')) as T;
}

/** max |a - b| over two equal-length arrays */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** The fixture README's component tolerance: max |ours - ref| <= 1e-4 * max(1, max |ref|). */
export function componentTolerance(ref: ArrayLike<number>): number {
  return 1e-4 * Math.max(1, maxAbs(ref));
}

/** Asserts the component rule (times `scale`) on two tensors of the same shape; `what` names the case. */
export function assertComponentClose(
  ours: { shape: readonly number[]; data: ArrayLike<number> },
  ref: { shape: readonly number[]; data: ArrayLike<number> },
  what: string,
  scale = 1,
): void {
  assert.deepEqual(ours.shape, ref.shape, `${what}: shape`);
  const d = maxAbsDiff(ours.data, ref.data),
    tol = componentTolerance(ref.data) * scale;
  assert.ok(d <= tol, `${what}: max |diff| ${d} > tolerance ${tol}`);
}
