/**
 * ControlNet nodes, as ComfyUI's: ControlNetLoader, DiffControlNetLoader, ControlNetApply (the old one, marked
 * deprecated) and ControlNetApplyAdvanced. Loaders read the file's header only (layout, family); applying records
 * the ControlNet, its hint image, strength and start/end percent on each conditioning entry (a later Apply chains onto
 * an earlier one); the sampler's worker loop runs it per step (engine/runtime/control-residuals.ts).
 */
import { statSync } from 'node:fs';
import { SafetensorsFile } from '../server/engine/io/safetensors.js';
import { inspectControlNet, type ControlNetFileInfo } from '../server/engine/model/controlnet-file.js';
import type { ModelConfig, ModelFamily } from '../server/engine/model/config.js';
import type { Tensor } from '../server/engine/tensor.js';
import { defineNode, t } from './define.js';
import type { NodeServices } from './services.js';
import type { Conditioning, ControlApplied, ControlNetValue } from './types.js';
import type { ModelRef } from '../server/engine/types.js';

const inspected = new Map<string, { key: string; info: ControlNetFileInfo }>();
/** The file's layout and family from its header (memoised per size and mtime: validation asks often). */
function inspectFile(path: string): ControlNetFileInfo {
  const st = statSync(path);
  const key = `${st.size}:${st.mtimeMs}`;
  const hit = inspected.get(path);
  if (hit?.key === key) return hit.info;
  const file = SafetensorsFile.open(path);
  try {
    const info = inspectControlNet(file);
    inspected.set(path, { key, info });
    return info;
  } finally {
    file.close();
  }
}

/** What validation knows of a CONTROL_NET output, and of a CONDITIONING output: the ControlNets applied to it. */
interface ControlNetFacts {
  family: ModelFamily;
  name: string;
}
interface ConditioningFacts {
  controls: ControlNetFacts[];
}
const controlsOf = (f: unknown): ControlNetFacts[] => (f as ConditioningFacts | undefined)?.controls ?? [];

/**
 * A sampler's check before anything runs: every ControlNet on its positive / negative conditioning (as far as
 * validation can follow the links) must be of the family of its model (MODEL facts from the checkpoint loader).
 */
export function controlFamilyCheck(linked: Record<string, unknown>): string | true {
  const family = (linked.model as { family?: ModelFamily } | undefined)?.family;
  if (!family) return true;
  for (const input of ['positive', 'negative']) {
    const bad = controlsOf(linked[input]).find((c) => c.family !== family);
    if (bad)
      return `${input}: the ControlNet ${bad.name} is an ${bad.family.toUpperCase()} ControlNet and cannot control this ${family.toUpperCase()} model`;
  }
  return true;
}

function netFacts(services: NodeServices, name: string): ControlNetFacts[] {
  return [{ family: inspectFile(services.models.resolve('controlnet', name)).family, name }];
}
function withNet(cond: unknown, net: unknown): ConditioningFacts {
  // other facts of the conditioning (its area) pass through
  return { ...(cond ?? {}), controls: [...controlsOf(cond), ...(net ? [net as ControlNetFacts] : [])] };
}

/** Why a models/controlnet file cannot be used (unknown layout, unreadable), from its header; undefined when fine. */
function fileProblem(path: string): string | undefined {
  try {
    inspectFile(path);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

function loadValue(services: NodeServices, name: string, diffBase?: ModelRef): ControlNetValue {
  const path = services.models.resolve('controlnet', name);
  const info = inspectFile(path);
  return {
    path,
    name,
    family: info.family,
    hintChannels: info.config.hintChannels,
    ...(info.diff && diffBase ? { diffBase } : {}),
  };
}

const nameInput = t.combo('control_net_name', (s) => s.models.list('controlnet'));
const fingerprint = ({ control_net_name }: { control_net_name: string }, s: NodeServices) => {
  const st = statSync(s.models.resolve('controlnet', control_net_name));
  return `${st.size}:${st.mtimeMs}`;
};
const validate = ({ control_net_name }: { control_net_name: string }, s: NodeServices) => {
  const problem = fileProblem(s.models.resolve('controlnet', control_net_name));
  return problem ? `control_net_name: ${problem}` : true;
};

export const ControlNetLoader = defineNode({
  id: 'ControlNetLoader',
  displayName: 'Load ControlNet Model',
  category: 'loaders',
  description: 'Loads an SD1 or SDXL ControlNet from models/controlnet (ldm single-file or diffusers layout).',
  inputs: [nameInput],
  outputs: [t.out('CONTROL_NET')],
  fingerprint,
  validate,
  staticFacts: ({ control_net_name }, s) => netFacts(s, control_net_name),
  execute: ({ control_net_name }, ctx) => ({ outputs: [loadValue(ctx.services, control_net_name)] }),
});

export const DiffControlNetLoader = defineNode({
  id: 'DiffControlNetLoader',
  displayName: 'Load ControlNet Model (diff)',
  category: 'loaders',
  description:
    "Loads a diff ControlNet (differences to a model's UNet weights) for `model`; a plain ControlNet loads as is.",
  inputs: [t.socket('MODEL', 'model'), nameInput],
  outputs: [t.out('CONTROL_NET')],
  fingerprint: (a, s) => fingerprint(a, s),
  validate: (a, s) => validate(a, s),
  staticFacts: ({ control_net_name }, s) => netFacts(s, control_net_name),
  execute: ({ model, control_net_name }, ctx) => ({
    outputs: [loadValue(ctx.services, control_net_name, model.ref)],
  }),
});

/** The hint must have the channels the ControlNet's input_hint_block takes. */
function checkHint(net: ControlNetValue, image: Tensor): void {
  if (image.shape.length !== 4 || image.shape[3] !== net.hintChannels)
    throw new Error(
      `image: the ControlNet ${net.name} takes ${net.hintChannels}-channel hint images, got shape [${image.shape.join(', ')}]`,
    );
}

function withControl(cond: Conditioning, applied: ControlApplied, applyToUncond: boolean): Conditioning {
  return cond.map((e) => ({
    ...e,
    control: [...(e.control ?? []), applied],
    controlApplyToUncond: applyToUncond,
  }));
}

const strengthIn = t.float('strength', { default: 1.0, min: 0.0, max: 10.0, step: 0.01 });

export const ControlNetApply = defineNode({
  id: 'ControlNetApply',
  displayName: 'Apply ControlNet (OLD)',
  category: 'conditioning/controlnet',
  description: 'Applies a ControlNet with a hint image to a conditioning (the negative side takes it too).',
  deprecated: true,
  inputs: [
    t.socket('CONDITIONING', 'conditioning'),
    t.socket('CONTROL_NET', 'control_net'),
    t.socket('IMAGE', 'image'),
    strengthIn,
  ],
  outputs: [t.out('CONDITIONING')],
  staticFacts: (_a, _s, linked) => [withNet(linked.conditioning, linked.control_net)],
  execute: ({ conditioning, control_net, image, strength }) => {
    if (strength === 0) return { outputs: [conditioning] };
    checkHint(control_net, image);
    const applied = { net: control_net, hint: image, strength, startPercent: 0, endPercent: 1 };
    return { outputs: [withControl(conditioning, applied, true)] };
  },
});

export const ControlNetApplyAdvanced = defineNode({
  id: 'ControlNetApplyAdvanced',
  displayName: 'Apply ControlNet',
  category: 'conditioning/controlnet',
  description:
    'Applies a ControlNet with a hint image to the positive and negative conditioning between start and end percent of the sampling.',
  inputs: [
    t.socket('CONDITIONING', 'positive'),
    t.socket('CONDITIONING', 'negative'),
    t.socket('CONTROL_NET', 'control_net'),
    t.socket('IMAGE', 'image'),
    strengthIn,
    t.float('start_percent', { default: 0.0, min: 0.0, max: 1.0, step: 0.001 }),
    t.float('end_percent', { default: 1.0, min: 0.0, max: 1.0, step: 0.001 }),
    t.optional(t.socket('VAE', 'vae')),
  ],
  outputs: [t.out('CONDITIONING', 'positive'), t.out('CONDITIONING', 'negative')],
  staticFacts: (_a, _s, linked) => [
    withNet(linked.positive, linked.control_net),
    withNet(linked.negative, linked.control_net),
  ],
  // vae: ComfyUI uses it only for ControlNets that work on latents (SD3/Flux); SD1/SDXL ControlNets ignore it
  execute: ({ positive, negative, control_net, image, strength, start_percent, end_percent }) => {
    if (strength === 0) return { outputs: [positive, negative] };
    checkHint(control_net, image);
    const applied = { net: control_net, hint: image, strength, startPercent: start_percent, endPercent: end_percent };
    return { outputs: [withControl(positive, applied, false), withControl(negative, applied, false)] };
  },
});

/** A ControlNet of another family than the model it is sampled with: the message names the ControlNet. */
export function controlFamilyProblem(model: ModelConfig, net: ControlNetValue): string | null {
  if (net.family === model.family) return null;
  const f = (s: string) => s.toUpperCase();
  return `the ControlNet ${net.name} is an ${f(net.family)} ControlNet and cannot control this ${f(model.family)} model`;
}

/**
 * ComfyUI's apply_empty_x_to_equal_area for 'control': entries of the negative side without an area take the
 * ControlNets of the positive entries made by ControlNetApply (control_apply_to_uncond), unless some negative entry
 * has its own.
 */
export function controlToUncond(positive: Conditioning, negative: Conditioning): Conditioning {
  const cnets = positive.filter((e) => !e.area && e.controlApplyToUncond && e.control?.length).map((e) => e.control!);
  const plain = negative.map((e, i) => ({ e, i })).filter(({ e }) => !e.area);
  if (plain.some(({ e }) => e.control?.length) || !cnets.length || !plain.length) return negative;
  const out = [...negative];
  cnets.forEach((control, x) => {
    const { e, i } = plain[x % plain.length];
    out[i] = { ...e, control };
  });
  return out;
}
