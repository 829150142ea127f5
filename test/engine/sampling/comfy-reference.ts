/**
 * What the tests against ComfyUI's own sampler code share (unipc-reference.json, comfy-samplers-reference.json,
 * comfy-cfgpp-reference.json, each made by running ComfyUI's code with torch; see their `meta`): loading a reference
 * file, the drivers' deterministic toy denoisers computed op by op in float32 as torch does, the tolerance rule and
 * the case names.
 * Example:
 *   const REF = loadReference<{ mu: number[]; v: number[]; cases: Case[] }>('unipc-reference.json');
 *   const out = await getSampler('uni_pc')({ denoiser: toyDenoiser(REF.mu, REF.v, calls), x, sigmas });
 *   assert.ok(maxAbsDiff(out, c.cpu32) <= tolFor(c.cpu32));
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Denoiser } from '../../../server/engine/sampling/noise.js';

export const f = Math.fround;

/** A reference JSON beside this file. */
export function loadReference<T>(name: string): T {
  return JSON.parse(readFileSync(fileURLToPath(new URL(`./${name}`, import.meta.url)), 'utf8')) as T;
}

/** The toys' wave terms, float32 like torch: 0.125 sin(3x) (the drivers' cond toy) and 0.1 cos(2x) (the uncond toy). */
export const SIN_WAVE = (x: number) => f(0.125 * f(Math.sin(f(3 * x))));
export const COS_WAVE = (x: number) => f(f(0.1) * f(Math.cos(f(2 * x))));

/** The toy denoiser mu + v/(v+s^2)(x-mu) + wave(x)/(1+s), counting its calls. */
export function toyDenoiser(
  mu: number[],
  v: number[],
  calls: { n: number },
  wave: (x: number) => number = SIN_WAVE,
): Denoiser {
  return async (x, sigma) => {
    calls.n++;
    const s = f(sigma),
      s2 = f(s * s),
      out = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const k = f(v[i] / f(v[i] + s2));
      out[i] = f(f(mu[i] + f(k * f(x[i] - mu[i]))) + f(wave(x[i]) / f(1 + s)));
    }
    return out;
  };
}

/** max(1, |ref|): the scale of the relative tolerances */
export const scaleOf = (ref: ArrayLike<number>) => Math.max(1, ...Array.from(ref, Math.abs));
/** 1e-5 relative to the reference's scale */
export const tolFor = (ref: ArrayLike<number>) => 1e-5 * scaleOf(ref);

/** "karras-8-d0.6" -> scheduler, steps, denoise (null for the special cases: cut, late start) */
export function parseName(name: string): { scheduler: string; steps: number; denoise: number } | null {
  const m = /^(karras|normal|simple)-(\d+)-d([\d.]+)$/.exec(name);
  return m ? { scheduler: m[1], steps: Number(m[2]), denoise: Number(m[3]) } : null;
}
