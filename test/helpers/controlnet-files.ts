/**
 * The tiny ControlNets the ControlNet tests use, made by server/tools/make-controlnet.ts for the fixtures' sd1_tiny
 * and sdxl_tiny UNets (test/data/controlnet/make_reference.py was run on exactly these seeds and layouts).
 * Example: const { sd1, sdxl } = await makeTestControlNets(dir, fixtures);
 *          const [plain, twin] = await controlNetFormRuns([{}, someCpuTwinForm]); assertSameControl(twin, plain);
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '../../server/engine/io/safetensors.js';
import { detectCheckpoint } from '../../server/engine/model/detect.js';
import {
  controlNetConfigFor,
  controlNetWeights,
  inspectControlNet,
} from '../../server/engine/model/controlnet-file.js';
import { buildControlNetGraph } from '../../server/engine/model/controlnet.js';
import { buildUNetGraph, type UNetBuildOptions } from '../../server/engine/model/unet.js';
import type { GraphBuilder } from '../../server/engine/onnx/graph.js';
import { serializeModel } from '../../server/engine/onnx/serialize.js';
import { createSession, runSession } from '../../server/engine/onnx/session.js';
import { safetensorsWeights } from '../../server/engine/onnx/weights.js';
import { hintFor } from '../../server/engine/runtime/control-residuals.js';
import type { Tensor } from '../../server/engine/tensor.js';
import { makeControlNet, type ControlNetLayout } from '../../server/tools/make-controlnet.js';
import { fixturePath, maxAbs, maxAbsDiff, unetFixtureCase } from './fixtures.js';

export const CN_SEEDS = { sd1: 1601, sdxl: 1602 } as const;

export async function makeTestControlNet(
  checkpoint: string,
  out: string,
  seed: number,
  layout: ControlNetLayout,
): Promise<string> {
  const f = SafetensorsFile.open(checkpoint);
  try {
    return await makeControlNet({ unet: detectCheckpoint(f).unet, out, seed, layout });
  } finally {
    f.close();
  }
}

/** sd1_cn (ldm, control_model.*) and sdxl_cn (ldm, unprefixed), as the reference was made from. */
export async function makeTestControlNets(dir: string, fixtures: string): Promise<{ sd1: string; sdxl: string }> {
  return {
    sd1: await makeTestControlNet(
      join(fixtures, 'sd1_tiny.safetensors'),
      join(dir, 'sd1_cn.safetensors'),
      CN_SEEDS.sd1,
      'ldm-prefixed',
    ),
    sdxl: await makeTestControlNet(
      join(fixtures, 'sdxl_tiny.safetensors'),
      join(dir, 'sdxl_cn.safetensors'),
      CN_SEEDS.sdxl,
      'ldm',
    ),
  };
}

export interface ControlNetFormRun {
  residuals: Record<string, Tensor>;
  eps: Tensor;
  /** the ControlNet graph, for what a form put in it */
  controlNet: GraphBuilder;
}

/**
 * The sd1 fixture's test ControlNet and the controlled sd1 UNet, built with each of `forms` (graph options such as a
 * GPU form's CPU twin) and run on one hint: a form that is right gives the first form's residuals and eps. Asserts
 * that the ControlNet controls (every residual non-zero) in the first form.
 */
export async function controlNetFormRuns(forms: UNetBuildOptions[]): Promise<ControlNetFormRun[]> {
  const dir = mkdtempSync(join(tmpdir(), 'tcd-cn-forms-'));
  const { ckpt, cases, config, feeds } = unetFixtureCase('sd1');
  try {
    const cnFile = SafetensorsFile.open((await makeTestControlNets(dir, fixturePath(''))).sd1);
    const info = inspectControlNet(cnFile);
    const cnCfg = controlNetConfigFor(info, config);
    const image = { shape: [1, 3, 64, 64], data: Float32Array.from({ length: 3 * 64 * 64 }, (_, i) => (i % 97) / 97) };
    const hint = hintFor(image, 2, 8, 8);
    const runs: ControlNetFormRun[] = [];
    for (const opts of forms) {
      const controlNet = buildControlNetGraph(cnCfg, controlNetWeights(safetensorsWeights(cnFile), info), opts);
      const residuals = await runSession(await createSession(serializeModel(controlNet)), { ...feeds, hint });
      const unet = buildUNetGraph(config.unet, safetensorsWeights(ckpt), { ...opts, controlInputs: true });
      const { eps } = await runSession(await createSession(serializeModel(unet)), { ...feeds, ...residuals });
      runs.push({ residuals, eps, controlNet });
    }
    cnFile.close();
    assert.ok(
      Object.values(runs[0].residuals).every((r) => maxAbs(r.data) > 1e-3),
      'the test ControlNet controls',
    );
    return runs;
  } finally {
    ckpt.close();
    cases.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `got` gives `want`'s residuals and eps within 1e-4 x max(1, max|ref|) each. */
export function assertSameControl(got: ControlNetFormRun, want: ControlNetFormRun): void {
  for (const [name, r] of Object.entries(want.residuals))
    assert.ok(maxAbsDiff(got.residuals[name].data, r.data) < 1e-4 * Math.max(1, maxAbs(r.data)), `residual ${name}`);
  assert.ok(maxAbsDiff(got.eps.data, want.eps.data) < 1e-4 * Math.max(1, maxAbs(want.eps.data)), 'eps');
}
