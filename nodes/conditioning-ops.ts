/**
 * Conditioning operations, ComfyUI's semantics: Combine (both lists), ZeroOut, Average, Concat (token axis),
 * SetArea / SetAreaPercentage / SetMask (regional prompts; the sampler weights each entry by its area or mask).
 * A CONDITIONING is a list of entries; every node maps over the entries and copies each entry's other fields.
 */
import { defineNode, t } from './define.js';
import type { Tensor } from '../server/engine/tensor.js';
import type { CondEntry, Conditioning } from './types.js';

const MAX_RESOLUTION = 16384;
const f = Math.fround;
const condIn = t.socket('CONDITIONING', 'conditioning');
const zeros = (x: Tensor): Tensor => ({ shape: [...x.shape], data: new Float32Array(x.data.length) });

export const ConditioningCombine = defineNode({
  id: 'ConditioningCombine',
  displayName: 'Conditioning (Combine)',
  category: 'conditioning',
  description:
    'Both conditionings as one list: the sampler runs each and averages the predictions (by area/mask weight).',
  inputs: [t.socket('CONDITIONING', 'conditioning_1'), t.socket('CONDITIONING', 'conditioning_2')],
  outputs: [t.out('CONDITIONING')],
  execute: ({ conditioning_1, conditioning_2 }) => {
    const c: Conditioning = [...conditioning_1, ...conditioning_2];
    return { outputs: [c] };
  },
});

export const ConditioningZeroOut = defineNode({
  id: 'ConditioningZeroOut',
  displayName: 'ConditioningZeroOut',
  category: 'advanced/conditioning',
  inputs: [condIn],
  outputs: [t.out('CONDITIONING')],
  execute: ({ conditioning }) => {
    const c: Conditioning = conditioning.map((e) => ({
      ...e,
      context: zeros(e.context),
      pooled: e.pooled ? zeros(e.pooled) : e.pooled,
    }));
    return { outputs: [c] };
  },
});

function firstOf(c: Conditioning, name: string): CondEntry {
  if (c.length === 0) throw new Error(`${name} is empty`);
  return c[0];
}

export const ConditioningAverage = defineNode({
  id: 'ConditioningAverage',
  displayName: 'Conditioning (Average)',
  category: 'conditioning',
  description:
    "to * strength + from * (1 - strength), tokens cut or zero-padded to conditioning_to's length; pooled too.",
  inputs: [
    t.socket('CONDITIONING', 'conditioning_to'),
    t.socket('CONDITIONING', 'conditioning_from'),
    t.float('conditioning_to_strength', { default: 1.0, min: 0, max: 1, step: 0.01 }),
  ],
  outputs: [t.out('CONDITIONING')],
  execute: ({ conditioning_to, conditioning_from, conditioning_to_strength: s }) => {
    const from = firstOf(conditioning_from, 'conditioning_from');
    const a = f(s),
      b = f(1 - s);
    const mix = (x: Float32Array, y: (i: number) => number) => x.map((v, i) => f(f(v * a) + f(y(i) * b)));
    const c: Conditioning = conditioning_to.map((e) => {
      const [, S, C] = e.context.shape,
        [, Sf, Cf] = from.context.shape;
      if (Cf !== C)
        throw new Error(`conditioning_from has ${Cf} channels, conditioning_to ${C} (another model family?)`);
      const fromB = from.context.shape[0] === 1 ? () => 0 : (b: number) => b;
      const fromAt = (i: number) => {
        const tok = Math.floor(i / C) % S,
          b = Math.floor(i / (S * C));
        return tok < Sf ? from.context.data[(fromB(b) * Sf + tok) * C + (i % C)] : 0; // zero padding past from's tokens
      };
      const context = { shape: [...e.context.shape], data: mix(e.context.data, fromAt) };
      const pooledTo = e.pooled ?? from.pooled;
      let pooled = e.pooled;
      if (from.pooled && pooledTo)
        pooled = { shape: [...pooledTo.shape], data: mix(pooledTo.data, (i) => from.pooled!.data[i]) };
      else if (from.pooled) pooled = from.pooled;
      return { ...e, context, pooled };
    });
    return { outputs: [c] };
  },
});

export const ConditioningConcat = defineNode({
  id: 'ConditioningConcat',
  displayName: 'Conditioning (Concat)',
  category: 'conditioning',
  description: "Appends conditioning_from's tokens to each entry of conditioning_to.",
  inputs: [t.socket('CONDITIONING', 'conditioning_to'), t.socket('CONDITIONING', 'conditioning_from')],
  outputs: [t.out('CONDITIONING')],
  execute: ({ conditioning_to, conditioning_from }) => {
    const from = firstOf(conditioning_from, 'conditioning_from').context;
    const c: Conditioning = conditioning_to.map((e) => {
      const [B, S, C] = e.context.shape;
      if (from.shape[2] !== C)
        throw new Error(
          `conditioning_from has ${from.shape[2]} channels, conditioning_to ${C} (another model family?)`,
        );
      if (from.shape[0] !== B)
        throw new Error(`conditioning_from has a batch of ${from.shape[0]}, conditioning_to ${B}`);
      const Sf = from.shape[1],
        data = new Float32Array(B * (S + Sf) * C);
      for (let b = 0; b < B; b++) {
        data.set(e.context.data.subarray(b * S * C, (b + 1) * S * C), b * (S + Sf) * C);
        data.set(from.data.subarray(b * Sf * C, (b + 1) * Sf * C), (b * (S + Sf) + S) * C);
      }
      return { ...e, context: { shape: [B, S + Sf, C], data } };
    });
    return { outputs: [c] };
  },
});

const strengthIn = t.float('strength', { default: 1.0, min: 0, max: 10, step: 0.01 });

/**
 * Validation-time facts of a CONDITIONING (node-definition.ts staticFacts): `area`, the pixel area's origin in latent
 * cells when every entry has one from ConditioningSetArea (what the sampler checks against its latent before anything
 * runs); other facts (ControlNets) pass through.
 */
export interface AreaFacts {
  area?: { x: number; y: number };
}
function withArea(cond: unknown, area: AreaFacts['area']): object {
  const { area: _old, ...rest } = (cond ?? {}) as AreaFacts & Record<string, unknown>;
  return area ? { ...rest, area } : rest;
}

/** Facts of a LATENT known at validation: its size in cells (EmptyLatentImage; size-changing nodes drop it). */
export interface LatentFacts {
  cells?: { w: number; h: number };
}

/**
 * A sampler's check before anything runs: a ConditioningSetArea area on positive / negative that starts beyond the
 * latent (known when latent_image comes from EmptyLatentImage through size-keeping nodes) leaves nothing to condition;
 * ComfyUI fails on it when sampling. The same rule as regionOf at run time.
 */
export function areaInsideCheck(linked: Record<string, unknown>): string | true {
  const cells = (linked.latent_image as LatentFacts | undefined)?.cells;
  if (!cells) return true;
  for (const input of ['positive', 'negative']) {
    const area = (linked[input] as AreaFacts | undefined)?.area;
    if (area && (area.x >= cells.w || area.y >= cells.h))
      return `${input}: the conditioning area at (${area.x * 8}, ${area.y * 8}) px lies outside the ${cells.w * 8}x${cells.h * 8} latent of latent_image`;
  }
  return true;
}

export const ConditioningSetArea = defineNode({
  id: 'ConditioningSetArea',
  displayName: 'Conditioning (Set Area)',
  category: 'conditioning',
  description: 'Applies the conditioning only inside a rectangle (pixels, multiples of 8), with a strength.',
  inputs: [
    condIn,
    t.int('width', { default: 64, min: 64, max: MAX_RESOLUTION, step: 8 }),
    t.int('height', { default: 64, min: 64, max: MAX_RESOLUTION, step: 8 }),
    t.int('x', { default: 0, min: 0, max: MAX_RESOLUTION, step: 8 }),
    t.int('y', { default: 0, min: 0, max: MAX_RESOLUTION, step: 8 }),
    strengthIn,
  ],
  outputs: [t.out('CONDITIONING')],
  staticFacts: ({ x, y }, _s, linked) => [
    withArea(linked.conditioning, { x: Math.floor(x / 8), y: Math.floor(y / 8) }),
  ],
  execute: ({ conditioning, width, height, x, y, strength }) => {
    const area = {
      unit: 'cells' as const,
      h: Math.floor(height / 8),
      w: Math.floor(width / 8),
      y: Math.floor(y / 8),
      x: Math.floor(x / 8),
    };
    const c: Conditioning = conditioning.map((e) => ({ ...e, area, strength, setAreaToBounds: false }));
    return { outputs: [c] };
  },
});

const fraction = (name: string, def: number) => t.float(name, { default: def, min: 0, max: 1, step: 0.01 });

export const ConditioningSetAreaPercentage = defineNode({
  id: 'ConditioningSetAreaPercentage',
  displayName: 'Conditioning (Set Area with Percentage)',
  category: 'conditioning',
  description: 'Applies the conditioning only inside a rectangle given as fractions of the image.',
  inputs: [condIn, fraction('width', 1.0), fraction('height', 1.0), fraction('x', 0), fraction('y', 0), strengthIn],
  outputs: [t.out('CONDITIONING')],
  // an area starting at 1.0 begins at the latent's far edge whatever its size: nothing of it can lie inside, so the
  // sampler would fail; refused before anything runs (other sizes are only known when the sampler runs)
  staticFacts: (_a, _s, linked) => [withArea(linked.conditioning, undefined)], // a size-relative area replaces it
  validate: ({ x, y }) =>
    x >= 1 || y >= 1
      ? `${x >= 1 ? 'x' : 'y'} is ${x >= 1 ? x : y}: the area starts at the latent's edge, so none of it lies inside`
      : true,
  execute: ({ conditioning, width, height, x, y, strength }) => {
    const area = { unit: 'fraction' as const, h: height, w: width, y, x };
    const c: Conditioning = conditioning.map((e) => ({ ...e, area, strength, setAreaToBounds: false }));
    return { outputs: [c] };
  },
});

export const ConditioningSetMask = defineNode({
  id: 'ConditioningSetMask',
  displayName: 'Conditioning (Set Mask)',
  category: 'conditioning',
  description: 'Weights the conditioning by a mask; "mask bounds" also restricts it to the mask\'s bounding box.',
  inputs: [condIn, t.socket('MASK', 'mask'), strengthIn, t.combo('set_cond_area', ['default', 'mask bounds'])],
  outputs: [t.out('CONDITIONING')],
  // "mask bounds" replaces the area by the mask's bounding box (known when the sampler runs)
  staticFacts: ({ set_cond_area }, _s, linked) => [
    set_cond_area === 'default' ? linked.conditioning : withArea(linked.conditioning, undefined),
  ],
  execute: ({ conditioning, mask, strength, set_cond_area }) => {
    const m: Tensor = mask.shape.length < 3 ? { shape: [1, ...mask.shape], data: mask.data } : mask;
    const c: Conditioning = conditioning.map((e) => ({
      ...e,
      mask: m,
      maskStrength: strength,
      setAreaToBounds: set_cond_area !== 'default',
    }));
    return { outputs: [c] };
  },
});
